"""When an on-demand stream should have a transcoder: pure, clock passed in.

``activation: OnDemand`` streams (an RTMP pull from an origin, say) get no transcoder
until a viewer asks for them, and lose it again once nobody has watched for
``idleTimeoutSeconds``: GPU time is spent only on streams someone watches. The edges
record demand (``cascade:demand``) and viewer activity (``cascade:viewers:{s}``) in Redis;
the operator and ``cascade up`` both decide with :func:`on_demand_verdict`, so the two
runtimes behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass

# A request older than this no longer starts a stopped stream: the player that made it has
# given up (the player page retries every few seconds, refreshing the demand).
DEMAND_WINDOW_SECONDS = 30.0

# Condition reasons (CamelCase), shared by both runtimes.
ALWAYS_ON = "AlwaysOn"
VIEWER_DEMAND = "ViewerDemand"
WATCHED = "Watched"
AWAITING_VIEWERS = "AwaitingViewers"
NO_VIEWERS = "NoViewers"


@dataclass(frozen=True, slots=True)
class Activity:
    """What is known about one on-demand stream (Unix seconds; 0 means never)."""

    active_since: float | None  # when its transcoder was started; None: it has none
    last_demand: float = 0.0  # last request that found it without a transcoder
    last_viewer: float = 0.0  # last request of a viewer session (any replica)
    stopped_at: float = 0.0  # when it was last stopped for want of viewers


@dataclass(frozen=True, slots=True)
class Verdict:
    run: bool
    reason: str  # CamelCase
    message: str
    recheck_at: float | None = None  # when the verdict can change without new activity


def on_demand_verdict(activity: Activity, idle_timeout: float, now: float) -> Verdict:
    """Run a transcoder for an on-demand stream, or not.

    A stopped stream starts on demand younger than ``DEMAND_WINDOW_SECONDS`` and newer than
    its last stop (the request that started the run just ended is still in Redis; with an
    ``idle_timeout`` under the window it would start the stream again at once). A running one
    keeps running while anything (its start, a demand, a viewer) happened within
    ``idle_timeout``; ``idle_timeout`` 0 means never stop once started.
    """
    if activity.active_since is None:
        age = now - activity.last_demand
        fresh = activity.last_demand > activity.stopped_at and age <= DEMAND_WINDOW_SECONDS
        if activity.last_demand and fresh:
            return Verdict(True, VIEWER_DEMAND, f"a viewer asked for the stream {age:.0f}s ago")
        return Verdict(False, AWAITING_VIEWERS, "no transcoder until a viewer asks for the stream")
    latest = max(activity.active_since, activity.last_demand, activity.last_viewer)
    if idle_timeout <= 0:
        return Verdict(
            True, VIEWER_DEMAND, "started on demand; idleTimeoutSeconds is 0 (never stops)"
        )
    deadline = latest + idle_timeout
    if now < deadline:
        watched = activity.last_viewer >= activity.active_since
        reason = WATCHED if watched else VIEWER_DEMAND
        return Verdict(
            True,
            reason,
            f"last viewer activity {now - latest:.0f}s ago; stops after {idle_timeout:.0f}s without",
            recheck_at=deadline,
        )
    return Verdict(
        False,
        NO_VIEWERS,
        f"stopped: no viewer for {now - latest:.0f}s (idleTimeoutSeconds {idle_timeout:.0f})",
    )
