"""LiveStream status: conditions, each with one owner, and a phase derived from them.

Pure: the clock is passed in, nothing is stored between calls. The phase shown by
``kubectl get`` is computed from the conditions every time; no handler reads it back.

=================== ================================== ===============================
Condition type      Owner (the only writer)            True means
=================== ================================== ===============================
Active              lifecycle (``core.lifecycle``)     the stream should have a transcoder
                                                       now (always for ``Always``; for
                                                       ``OnDemand`` while it is watched)
CapacityAvailable   capacity planner (``capacity``)    within MAX_CONCURRENT_STREAMS and
                                                       the NVENC session budget
Scheduled           pod watcher (Pod's PodScheduled)   the transcoder pod has a node
Ingesting           health timer (Redis health)        parts are flowing
Ready               reconciler (``reconcile``)         transcoder pod running and ready;
                                                       otherwise why not (``WaitingForPod``,
                                                       ``TranscoderRestarting``,
                                                       ``ImagePullFailed`` ...)
=================== ================================== ===============================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from cascade.contract.schema import Health, StreamState

ACTIVE = "Active"
CAPACITY_AVAILABLE = "CapacityAvailable"
SCHEDULED = "Scheduled"
INGESTING = "Ingesting"
READY = "Ready"

Status = Literal["True", "False", "Unknown"]

# Ready reasons that mean the stream will not come up without a change: phase Failed.
FAILED_REASONS = frozenset(
    {"TranscoderFailed", "InvalidSpec", "ImagePullFailed", "PodRejected", "NameConflict"}
)
# Ready reason while a failed transcoder waits out its backoff: phase Restarting.
RESTARTING = "TranscoderRestarting"

# Ingesting reasons, one per transcoder state (StreamState), and the phase each shows.
_INGESTING_BY_STATE: dict[StreamState, tuple[Status, str]] = {
    StreamState.STARTING: ("False", "TranscoderStarting"),
    StreamState.LIVE: ("True", "PartsFlowing"),
    StreamState.RECONNECTING: ("False", "InputReconnecting"),
    StreamState.IDLE: ("False", "InputIdle"),
    StreamState.ENDED: ("False", "StreamEnded"),
}
_PHASE_BY_INGESTING_REASON = {
    "PartsFlowing": "Live",
    "InputReconnecting": "Reconnecting",
    "InputIdle": "Idle",
    "StreamEnded": "Ended",
}
# Health older than this is not trusted (the transcoder writes it every few seconds).
HEALTH_STALE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Condition:
    type: str
    status: Status
    reason: str  # CamelCase
    message: str = ""
    last_transition_time: str = ""  # RFC 3339, set by set_condition
    observed_generation: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
        }
        if self.observed_generation is not None:
            data["observedGeneration"] = self.observed_generation
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Condition:
        status = data.get("status", "Unknown")
        return cls(
            type=str(data["type"]),
            status=status if status in ("True", "False") else "Unknown",
            reason=str(data.get("reason", "")),
            message=str(data.get("message", "")),
            last_transition_time=str(data.get("lastTransitionTime", "")),
            observed_generation=data.get("observedGeneration"),
        )


def rfc3339(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Iterable[Condition], new: Condition, now: datetime
) -> list[Condition]:
    """``conditions`` with ``new`` in place of the same type (appended if absent).

    ``lastTransitionTime`` is kept when the status does not change (a new reason or
    message alone is not a transition), and is ``now`` otherwise.
    """
    result: list[Condition] = []
    found = False
    for old in conditions:
        if old.type != new.type:
            result.append(old)
            continue
        found = True
        moved = old.status != new.status or not old.last_transition_time
        when = rfc3339(now) if moved else old.last_transition_time
        result.append(replace(new, last_transition_time=when))
    if not found:
        result.append(replace(new, last_transition_time=rfc3339(now)))
    return result


def derive_phase(conditions: Iterable[Condition]) -> str:
    """The display phase, computed from the conditions alone.

    Failed (Ready False with a failure reason) > Idle (not Active: an on-demand stream
    nobody watches) > Restarting (a failed transcoder in its backoff) > Pending (no
    capacity or not scheduled) > Live / Reconnecting / Idle / Ended (from Ingesting) > Starting.
    """
    by_type = {c.type: c for c in conditions}
    ready = by_type.get(READY)
    if ready is not None and ready.status == "False" and ready.reason in FAILED_REASONS:
        return "Failed"
    active = by_type.get(ACTIVE)
    if active is not None and active.status == "False":
        return "Idle"
    if ready is not None and ready.status == "False" and ready.reason == RESTARTING:
        return "Restarting"
    capacity = by_type.get(CAPACITY_AVAILABLE)
    if capacity is not None and capacity.status == "False":
        return "Pending"
    scheduled = by_type.get(SCHEDULED)
    if scheduled is None or scheduled.status != "True":
        return "Pending"
    ingesting = by_type.get(INGESTING)
    if ingesting is None or ingesting.status == "Unknown":
        return "Starting"
    return _PHASE_BY_INGESTING_REASON.get(ingesting.reason, "Starting")


def health_conditions(
    health: Health | None, now: datetime, *, observed_generation: int | None = None
) -> list[Condition]:
    """The ``Ingesting`` condition from the transcoder's health hash in Redis.

    The transcoder's own reason and last error go into the message; the condition's
    reason is one per transcoder state, so the phase can be derived from it.
    """
    if health is None:
        return [
            Condition(
                INGESTING,
                "Unknown",
                "NoHealthReport",
                "the transcoder has not reported health to Redis",
                observed_generation=observed_generation,
            )
        ]
    age = now.timestamp() - health.updated_at
    if health.updated_at and age > HEALTH_STALE_SECONDS:
        return [
            Condition(
                INGESTING,
                "Unknown",
                "HealthStale",
                f"last health report {age:.0f}s ago (over {HEALTH_STALE_SECONDS:.0f}s)",
                observed_generation=observed_generation,
            )
        ]
    status, reason = _INGESTING_BY_STATE[health.state]
    parts = [f"transcoder {health.state.value}"]
    if health.reason:
        parts.append(f"reason {health.reason}")
    if health.state is StreamState.LIVE:
        parts.append(f"input {health.input_bitrate_kbps:.0f} kbps at {health.fps:.1f} fps")
    if health.restarts:
        parts.append(f"{health.restarts} FFmpeg restarts")
    if health.last_error:
        parts.append(f"last error: {health.last_error}")
    return [
        Condition(
            INGESTING, status, reason, "; ".join(parts), observed_generation=observed_generation
        )
    ]
