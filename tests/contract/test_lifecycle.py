"""On-demand lifecycle rule: a table of activities and the verdicts they get."""

from __future__ import annotations

import pytest

from cascade.contract.lifecycle import (
    AWAITING_VIEWERS,
    DEMAND_WINDOW_SECONDS,
    NO_VIEWERS,
    VIEWER_DEMAND,
    WATCHED,
    Activity,
    on_demand_verdict,
)

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("activity", "idle", "run", "reason", "recheck"),
    [
        # stopped: never asked, asked recently, asked too long ago
        (Activity(None), 60, False, AWAITING_VIEWERS, None),
        (Activity(None, last_demand=NOW - 2), 60, True, VIEWER_DEMAND, None),
        (
            Activity(None, last_demand=NOW - DEMAND_WINDOW_SECONDS - 1),
            60,
            False,
            AWAITING_VIEWERS,
            None,
        ),
        # the request that started the last run does not start it again after the stop
        (Activity(None, last_demand=NOW - 8, stopped_at=NOW - 1), 4, False, AWAITING_VIEWERS, None),
        (Activity(None, last_demand=NOW - 0.5, stopped_at=NOW - 1), 4, True, VIEWER_DEMAND, None),
        # running: just started, watched, idle past the timeout
        (Activity(NOW - 5), 60, True, VIEWER_DEMAND, NOW + 55),
        (Activity(NOW - 100, last_viewer=NOW - 10), 60, True, WATCHED, NOW + 50),
        (
            Activity(NOW - 100, last_demand=NOW - 80, last_viewer=NOW - 61),
            60,
            False,
            NO_VIEWERS,
            None,
        ),
        # the last demand keeps it even without a session (a player still retrying)
        (Activity(NOW - 100, last_demand=NOW - 1), 60, True, VIEWER_DEMAND, NOW + 59),
        # idleTimeoutSeconds 0: never stops once started
        (Activity(NOW - 10_000), 0, True, VIEWER_DEMAND, None),
    ],
)
def test_on_demand_verdict(
    activity: Activity, idle: int, run: bool, reason: str, recheck: float | None
) -> None:
    verdict = on_demand_verdict(activity, idle, NOW)

    assert (verdict.run, verdict.reason, verdict.recheck_at) == (run, reason, recheck)
    assert verdict.message


def test_viewer_before_start_does_not_count_as_watched() -> None:
    verdict = on_demand_verdict(Activity(NOW - 5, last_viewer=NOW - 30), 60, NOW)

    assert verdict.reason == VIEWER_DEMAND
