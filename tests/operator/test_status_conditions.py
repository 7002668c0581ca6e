"""Conditions and the phase derived from them: a table, plus lastTransitionTime rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cascade.contract.schema import Health, StreamState
from cascade.operator.status import (
    ACTIVE,
    CAPACITY_AVAILABLE,
    INGESTING,
    READY,
    RESTARTING,
    SCHEDULED,
    Condition,
    Status,
    derive_phase,
    health_conditions,
    set_condition,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2025, 1, 1, 12, 5, 0, tzinfo=UTC)


def c(type_: str, status: Status, reason: str = "Because") -> Condition:
    return Condition(type_, status, reason)


@pytest.mark.parametrize(
    ("conditions", "phase"),
    [
        ([], "Pending"),
        ([c(CAPACITY_AVAILABLE, "False", "MaxConcurrentStreams")], "Pending"),
        ([c(CAPACITY_AVAILABLE, "True"), c(SCHEDULED, "False", "Unschedulable")], "Pending"),
        ([c(CAPACITY_AVAILABLE, "True"), c(SCHEDULED, "True")], "Starting"),
        ([c(SCHEDULED, "True"), c(INGESTING, "Unknown", "NoHealthReport")], "Starting"),
        ([c(SCHEDULED, "True"), c(INGESTING, "False", "TranscoderStarting")], "Starting"),
        ([c(SCHEDULED, "True"), c(INGESTING, "True", "PartsFlowing")], "Live"),
        ([c(SCHEDULED, "True"), c(INGESTING, "False", "InputReconnecting")], "Reconnecting"),
        ([c(SCHEDULED, "True"), c(INGESTING, "False", "InputIdle")], "Idle"),
        ([c(SCHEDULED, "True"), c(INGESTING, "False", "StreamEnded")], "Ended"),
        (
            [
                c(SCHEDULED, "True"),
                c(INGESTING, "True", "PartsFlowing"),
                c(READY, "False", "TranscoderFailed"),
            ],
            "Failed",
        ),
        ([c(CAPACITY_AVAILABLE, "False"), c(READY, "False", "InvalidSpec")], "Failed"),
        # an on-demand stream nobody watches has no transcoder and no capacity claim
        ([c(ACTIVE, "False", "AwaitingViewers"), c(SCHEDULED, "False", "NoPod")], "Idle"),
        (
            [c(ACTIVE, "True"), c(SCHEDULED, "False", "NoPod"), c(READY, "False", RESTARTING)],
            "Restarting",
        ),
    ],
)
def test_phase_table(conditions: list[Condition], phase: str) -> None:
    assert derive_phase(conditions) == phase


def test_set_condition_keeps_transition_time_when_status_is_unchanged() -> None:
    first = set_condition([], c(SCHEDULED, "False", "Unschedulable"), T0)
    assert first[0].last_transition_time == "2025-01-01T12:00:00Z"
    same = set_condition(first, Condition(SCHEDULED, "False", "Other", "new message"), T1)
    assert same[0].last_transition_time == "2025-01-01T12:00:00Z"
    assert same[0].reason == "Other"
    moved = set_condition(same, c(SCHEDULED, "True", "PodScheduled"), T1)
    assert moved[0].last_transition_time == "2025-01-01T12:05:00Z"


def test_set_condition_replaces_only_its_type_and_keeps_order() -> None:
    start = set_condition(
        set_condition([], c(CAPACITY_AVAILABLE, "True"), T0), c(SCHEDULED, "True"), T0
    )
    result = set_condition(start, c(CAPACITY_AVAILABLE, "False", "MaxConcurrentStreams"), T1)
    assert [x.type for x in result] == [CAPACITY_AVAILABLE, SCHEDULED]
    assert result[1] == start[1]
    assert start[0].status == "True"  # the input is not changed


def test_condition_dict_round_trip() -> None:
    cond = Condition(READY, "True", "Running", "ok", "2025-01-01T12:00:00Z", 4)
    assert cond.to_dict()["observedGeneration"] == 4
    assert Condition.from_dict(cond.to_dict()) == cond


def test_health_missing_is_unknown() -> None:
    [cond] = health_conditions(None, T0)
    assert (cond.type, cond.status, cond.reason) == (INGESTING, "Unknown", "NoHealthReport")


@pytest.mark.parametrize(
    ("state", "status", "reason"),
    [
        (StreamState.STARTING, "False", "TranscoderStarting"),
        (StreamState.LIVE, "True", "PartsFlowing"),
        (StreamState.RECONNECTING, "False", "InputReconnecting"),
        (StreamState.IDLE, "False", "InputIdle"),
        (StreamState.ENDED, "False", "StreamEnded"),
    ],
)
def test_health_state_maps_to_ingesting(state: StreamState, status: str, reason: str) -> None:
    health = Health(
        state=state, updated_at=T0.timestamp() - 2, reason="InputSilent", last_error="boom"
    )
    [cond] = health_conditions(health, T0, observed_generation=2)
    assert (cond.status, cond.reason, cond.observed_generation) == (status, reason, 2)
    assert "InputSilent" in cond.message
    assert "boom" in cond.message


def test_stale_health_is_unknown() -> None:
    health = Health(state=StreamState.LIVE, updated_at=T0.timestamp() - 120)
    [cond] = health_conditions(health, T0)
    assert (cond.status, cond.reason) == ("Unknown", "HealthStale")
