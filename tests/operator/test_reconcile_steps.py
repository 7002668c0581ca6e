"""The steps of the reconcile decision, one at a time: each takes what it reads and returns
what it decided. ``test_reconcile.py`` drives the whole ``reconcile()`` through them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cascade.contract.lifecycle import AWAITING_VIEWERS, VIEWER_DEMAND, Verdict
from cascade.contract.manifest import parse_manifest
from cascade.contract.schema import Health, StreamState
from cascade.contract.spec import LiveStream
from cascade.operator.builders import (
    ANNOTATION_SPEC_HASH,
    build_ingest_service,
    build_transcoder_pod,
)
from cascade.operator.capacity import MAX_CONCURRENT_STREAMS, Admitted, Waiting
from cascade.operator.reconcile import (
    ALWAYS,
    CreatePod,
    CreateService,
    DeletePod,
    DeleteService,
    Desired,
    ForgetStream,
    Hold,
    Memory,
    Observed,
    PatchService,
    PodOutcome,
    PodView,
    Refused,
    ServiceView,
    admission_step,
    adopt_step,
    ingesting_condition,
    merge_conditions,
    phase_event,
    pod_step,
    requeue_step,
    scheduled_condition,
    service_step,
    spec_step,
    status_step,
    stop_step,
    validity_step,
)
from cascade.operator.settings import OperatorSettings
from cascade.operator.status import (
    ACTIVE,
    CAPACITY_AVAILABLE,
    INGESTING,
    READY,
    RESTARTING,
    SCHEDULED,
    Condition,
)

SETTINGS = OperatorSettings(restart_backoff_seconds=2, stable_after_seconds=60)
REDIS = "redis://redis:6379/0"
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
T0_TEXT = "2027-01-15T08:00:00Z"

SRT = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: cam1, namespace: studio}
spec:
  source: {type: srt}
"""
ON_DEMAND = Verdict(True, VIEWER_DEMAND, "a viewer asked", recheck_at=T0 + 60)
NOBODY = Verdict(False, AWAITING_VIEWERS, "no transcoder until a viewer asks")
FULL = Waiting(MAX_CONCURRENT_STREAMS, "25 of 25 concurrent streams running")


def stream(**spec: Any) -> LiveStream:
    parsed = parse_manifest(SRT)
    if not spec:
        return parsed
    data = parsed.model_dump(by_alias=True, exclude_none=True)
    data["spec"].update(spec)
    return LiveStream.model_validate(data)


def observed(ls: LiveStream | None = None, **fields: Any) -> Observed:
    values: dict[str, Any] = {
        "stream": ls or stream(),
        "generation": 1,
        "status": {},
        "pod": None,
        "service": None,
        "capacity": Admitted(),
        "now": T0,
    }
    values.update(fields)
    return Observed(**values)


def desired(ls: LiveStream | None = None, generation: int = 1) -> Desired:
    return spec_step(observed(ls, generation=generation), SETTINGS, redis_url=REDIS)


def pod(**fields: Any) -> PodView:
    """The pod of the desired spec, running and ready, unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "name": "cam1-transcoder",
        "uid": "uid-1",
        "spec_hash": desired().pod_hash,
        "phase": "Running",
        "node": "gpu-node-0",
        "scheduled": ("True", "", ""),
        "ready": True,
        "started_at": T0,
    }
    values.update(fields)
    return PodView(**values)


RECORDED = Memory(pod="cam1-transcoder", pod_uid="uid-1", started_at=T0 - 100)


def brief(cond: Condition) -> tuple[str, str, str]:
    return (cond.type, cond.status, cond.reason)


def kinds(actions: list[Any]) -> list[str]:
    return [type(a).__name__ for a in actions]


# ---- validity ---------------------------------------------------------------------------


def body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cascade.dev/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": "cam1", "namespace": "studio", "uid": "u", "generation": 4},
        "spec": {"source": {"type": "srt"}, **spec},
    }


def test_validity_a_valid_body_gives_its_stream() -> None:
    checked = validity_step(body(), name_holder=None)

    assert isinstance(checked, LiveStream)
    assert (checked.name, checked.metadata.namespace) == ("cam1", "studio")
    assert checked == stream()


def test_validity_an_invalid_spec_is_refused_with_the_field() -> None:
    checked = validity_step(body(delivery={"partDurationMs": -5}), name_holder=None)

    assert isinstance(checked, Refused)
    assert checked.reason == "InvalidSpec"
    assert checked.message.startswith("spec.delivery.partDurationMs: Input should be greater than")


def test_validity_a_name_held_elsewhere_is_a_conflict() -> None:
    checked = validity_step(body(), name_holder="newsroom")

    assert checked == Refused(
        "NameConflict",
        "the stream name 'cam1' is taken by the older LiveStream in namespace 'newsroom' "
        "(stream names are global: Redis keys and edge URLs); rename this one",
    )


def test_validity_an_invalid_spec_is_reported_before_a_name_conflict() -> None:
    checked = validity_step(body(delivery={"partDurationMs": -5}), name_holder="newsroom")

    assert isinstance(checked, Refused)
    assert checked.reason == "InvalidSpec"


# ---- spec -------------------------------------------------------------------------------


def test_spec_step_builds_the_desired_children() -> None:
    ls = stream()

    want = spec_step(observed(ls, generation=3), SETTINGS, redis_url=REDIS)

    assert want.pod == build_transcoder_pod(ls, SETTINGS, generation=3, redis_url=REDIS)
    assert want.service == build_ingest_service(ls, SETTINGS)
    assert want.pod_hash == want.pod["metadata"]["annotations"][ANNOTATION_SPEC_HASH]


def test_spec_step_a_test_source_wants_no_service() -> None:
    assert desired(stream(source={"type": "test"})).service is None


def test_spec_step_the_hash_follows_the_spec() -> None:
    wider = stream(transcode={"renditions": [{"name": "720p", "width": 1280, "height": 720}]})

    assert desired(wider).pod_hash != desired().pod_hash


# ---- admission --------------------------------------------------------------------------


def test_admission_runs_an_admitted_stream_the_lifecycle_wants() -> None:
    admission = admission_step(observed(lifecycle=ALWAYS))

    assert admission.hold is None
    assert brief(admission.active) == (ACTIVE, "True", "AlwaysOn")
    assert brief(admission.capacity) == (CAPACITY_AVAILABLE, "True", "WithinLimits")


def test_admission_holds_a_stream_nobody_watches_without_asking_for_capacity() -> None:
    admission = admission_step(observed(lifecycle=NOBODY, capacity=FULL))

    assert brief(admission.active) == (ACTIVE, "False", AWAITING_VIEWERS)
    assert admission.capacity == Condition(
        CAPACITY_AVAILABLE, "True", "NotNeeded", "no transcoder wanted now"
    )
    assert admission.hold == Hold(
        by_lifecycle=True,
        ready=Condition(READY, "False", "NotActive", NOBODY.message),
        why_no_pod=f"no transcoder: {NOBODY.message}",
    )


def test_admission_holds_a_stream_beyond_capacity_with_the_planners_reason() -> None:
    admission = admission_step(observed(lifecycle=ON_DEMAND, capacity=FULL))

    assert brief(admission.active) == (ACTIVE, "True", VIEWER_DEMAND)
    assert admission.capacity == Condition(
        CAPACITY_AVAILABLE, "False", MAX_CONCURRENT_STREAMS, FULL.message
    )
    assert admission.hold == Hold(
        by_lifecycle=False,
        ready=Condition(READY, "False", "WaitingForCapacity", FULL.message),
        why_no_pod=f"waiting for capacity: {FULL.message}",
    )


# ---- adoption ---------------------------------------------------------------------------


def test_adopt_takes_an_unrecorded_pod_with_its_start_time() -> None:
    memory = adopt_step(Memory(), pod(uid="uid-9", started_at=T0 - 7), T0)

    assert memory == Memory(pod="cam1-transcoder", pod_uid="uid-9", started_at=T0 - 7)


def test_adopt_keeps_an_earlier_start_and_counts_nothing() -> None:
    memory = adopt_step(replace(RECORDED, pod_uid="uid-0"), pod(started_at=None), T0)

    assert memory == RECORDED
    assert (memory.recreations, memory.consecutive_failures) == (0, 0)


def test_adopt_dates_a_pod_without_a_start_time_now() -> None:
    assert adopt_step(Memory(), pod(started_at=None), T0).started_at == T0


@pytest.mark.parametrize(
    "seen", [None, pod(deleting=True, uid="uid-9"), pod()], ids=["none", "deleting", "recorded"]
)
def test_adopt_leaves_the_memory_alone(seen: PodView | None) -> None:
    assert adopt_step(RECORDED, seen, T0) is RECORDED


# ---- stop (the on-demand lifecycle) -----------------------------------------------------


def hold(*, by_lifecycle: bool = True) -> Hold:
    admission = admission_step(
        observed(lifecycle=NOBODY if by_lifecycle else ON_DEMAND, capacity=FULL)
    )
    assert admission.hold is not None
    return admission.hold


def test_stop_deletes_the_pod_of_a_stream_nobody_watches() -> None:
    outcome = stop_step(observed(pod=pod(), now=T0 + 5), RECORDED, hold())

    assert outcome.actions == [DeletePod("cam1-transcoder", "uid-1")]
    assert [(e.type, e.reason) for e in outcome.events] == [("Normal", "StoppedOnDemand")]
    assert outcome.memory.pod_uid is None
    assert outcome.memory.stopped_at == T0 + 5
    assert outcome.memory.recreations == 0
    assert outcome.ready == hold().ready
    # The pod still exists: Scheduled describes it, not the hold.
    assert brief(outcome.scheduled) == (SCHEDULED, "True", "PodScheduled")
    assert outcome.live_pod is None


def test_stop_for_capacity_is_no_on_demand_stop() -> None:
    outcome = stop_step(observed(pod=pod()), RECORDED, hold(by_lifecycle=False))

    assert kinds(outcome.actions) == ["DeletePod"]
    assert outcome.events[0].reason == "CapacityRevoked"
    assert outcome.memory.stopped_at is None


def test_stop_waits_for_a_terminating_pod() -> None:
    memory = Memory(pod="cam1-transcoder", pod_uid=None, started_at=T0 - 100)

    outcome = stop_step(observed(pod=pod(deleting=True)), memory, hold())

    assert (outcome.actions, outcome.events, outcome.memory) == ([], [], memory)
    assert outcome.requeue == 1.0


def test_stop_forgets_the_live_keys_once_the_pod_is_gone() -> None:
    memory = Memory(pod="cam1-transcoder", pod_uid=None, started_at=T0 - 100, stopped_at=T0)

    gone = stop_step(observed(), memory, hold())
    quiet = stop_step(observed(), gone.memory, hold())

    assert gone.actions == [ForgetStream()]
    assert gone.memory == Memory(pod="cam1-transcoder", stopped_at=T0)
    assert quiet.actions == []
    assert gone.scheduled == Condition(SCHEDULED, "False", "NoPod", hold().why_no_pod)


def test_stop_for_capacity_keeps_the_live_keys() -> None:
    outcome = stop_step(observed(), RECORDED, hold(by_lifecycle=False))

    assert outcome.actions == []
    assert outcome.memory.started_at is None


# ---- pod --------------------------------------------------------------------------------


def test_pod_step_creates_the_desired_pod() -> None:
    want = desired()

    outcome = pod_step(observed(), Memory(), want, SETTINGS)

    assert outcome.actions == [CreatePod(want.pod)]
    assert [e.reason for e in outcome.events] == ["CreatedPod"]
    assert outcome.memory == Memory(pod="cam1-transcoder", pod_uid="", started_at=T0)
    assert brief(outcome.ready) == (READY, "False", "WaitingForPod")
    assert outcome.scheduled == Condition(
        SCHEDULED, "False", "NoPod", "creating pod cam1-transcoder"
    )
    assert outcome.requeue == 1.0


def test_pod_step_a_pod_created_but_not_seen_yet_is_not_lost() -> None:
    memory = Memory(pod="cam1-transcoder", pod_uid="", started_at=T0)

    outcome = pod_step(observed(), memory, desired(), SETTINGS)

    assert kinds(outcome.actions) == ["CreatePod"]
    assert outcome.memory.recreations == 0


def test_pod_step_a_lost_pod_is_counted_and_waits_out_the_backoff() -> None:
    outcome = pod_step(observed(now=T0 + 10), RECORDED, desired(), SETTINGS)

    assert outcome.actions == []
    assert [(e.type, e.reason) for e in outcome.events] == [("Warning", "TranscoderLost")]
    assert "restart 1" in outcome.events[0].message
    assert (outcome.memory.recreations, outcome.memory.consecutive_failures) == (1, 1)
    assert (outcome.memory.pod_uid, outcome.memory.last_failure) == (None, T0 + 10)
    assert outcome.ready == Condition(
        READY, "False", RESTARTING, "1 consecutive failures; next attempt in 2s"
    )
    assert outcome.scheduled.message == "restarting after a failure in 2s"
    assert outcome.requeue == pytest.approx(2.0)


def test_pod_step_recreates_once_the_backoff_is_over() -> None:
    lost = pod_step(observed(now=T0 + 10), RECORDED, desired(), SETTINGS).memory

    early = pod_step(observed(now=T0 + 11), lost, desired(), SETTINGS)
    due = pod_step(observed(now=T0 + 12), lost, desired(), SETTINGS)

    assert (early.actions, early.events) == ([], [])
    assert early.requeue == pytest.approx(1.0)
    assert kinds(due.actions) == ["CreatePod"]
    assert due.memory.started_at == RECORDED.started_at  # a restart keeps the first start


def test_pod_step_waits_for_a_terminating_pod() -> None:
    outcome = pod_step(observed(pod=pod(deleting=True)), RECORDED, desired(), SETTINGS)

    assert (outcome.actions, outcome.memory) == ([], RECORDED)
    assert outcome.scheduled == Condition(
        SCHEDULED, "False", "NoPod", "old pod cam1-transcoder is terminating"
    )
    assert outcome.requeue == 1.0


def test_pod_step_rolls_a_pod_of_an_older_spec_without_counting_a_restart() -> None:
    outcome = pod_step(
        observed(pod=pod(spec_hash="old"), generation=2), RECORDED, desired(), SETTINGS
    )

    assert outcome.actions == [DeletePod("cam1-transcoder", "uid-1")]
    assert outcome.events[0].reason == "SpecChanged"
    assert "generation 2" in outcome.events[0].message
    assert outcome.memory == Memory(pod="cam1-transcoder", pod_uid=None, started_at=T0 - 100)
    assert brief(outcome.ready) == (READY, "False", "Updating")
    assert outcome.requeue == 1.0


@pytest.mark.parametrize("phase", ["Failed", "Succeeded"])
def test_pod_step_a_pod_that_ended_is_deleted_and_backs_off(phase: str) -> None:
    ended = pod(phase=phase, ready=False, failure="container exited 1")
    memory = Memory(pod="cam1-transcoder", pod_uid="uid-1", consecutive_failures=1)

    outcome = pod_step(observed(pod=ended, now=T0 + 5), memory, desired(), SETTINGS)

    assert outcome.actions == [DeletePod("cam1-transcoder", "uid-1")]
    message = f"pod cam1-transcoder {phase.lower()}: container exited 1"
    assert [(e.type, e.reason, e.message) for e in outcome.events] == [
        ("Warning", "TranscoderFailed", f"{message}; recreating in 4s")
    ]
    assert outcome.ready == Condition(READY, "False", RESTARTING, f"{message}; next attempt in 4s")
    assert outcome.memory.consecutive_failures == 2
    assert outcome.requeue == pytest.approx(4.0)


def test_pod_step_an_image_pull_failure_needs_the_user() -> None:
    pulling = pod(phase="Pending", ready=False, waiting_reason="ErrImagePull")

    outcome = pod_step(observed(pod=pulling), RECORDED, desired(), SETTINGS)

    assert outcome.ready == Condition(
        READY, "False", "ImagePullFailed", f"ErrImagePull: {SETTINGS.transcoder_image}"
    )
    assert (outcome.actions, outcome.live_pod, outcome.requeue) == ([], None, None)


def test_pod_step_a_ready_pod_runs_and_its_health_counts() -> None:
    outcome = pod_step(observed(pod=pod()), RECORDED, desired(), SETTINGS)

    assert outcome.ready == Condition(
        READY, "True", "TranscoderRunning", "pod cam1-transcoder on gpu-node-0"
    )
    assert outcome.scheduled == Condition(
        SCHEDULED, "True", "PodScheduled", "pod cam1-transcoder on node gpu-node-0"
    )
    assert outcome.live_pod == pod()
    assert (outcome.actions, outcome.events, outcome.memory) == ([], [], RECORDED)


def test_pod_step_a_pod_up_long_enough_resets_the_failures() -> None:
    memory = Memory(pod="cam1-transcoder", pod_uid="uid-1", recreations=3, consecutive_failures=3)

    young = pod_step(observed(pod=pod(), now=T0 + 30), memory, desired(), SETTINGS)
    stable = pod_step(observed(pod=pod(), now=T0 + 60), memory, desired(), SETTINGS)

    assert young.memory.consecutive_failures == 3
    assert young.requeue == pytest.approx(30.0)
    assert stable.memory.consecutive_failures == 0
    assert stable.memory.recreations == 3
    assert stable.requeue is None


@pytest.mark.parametrize(
    ("phase", "live"), [("Running", True), ("Pending", False)], ids=["running", "pending"]
)
def test_pod_step_a_pod_not_ready_yet_is_waited_for(phase: str, live: bool) -> None:
    starting = pod(phase=phase, ready=False, waiting_reason="ContainerCreating")

    outcome = pod_step(observed(pod=starting), RECORDED, desired(), SETTINGS)

    assert outcome.ready == Condition(
        READY, "False", "WaitingForPod", f"pod cam1-transcoder is {phase}: ContainerCreating"
    )
    assert (outcome.live_pod is not None) is live
    assert outcome.actions == []


@pytest.mark.parametrize(
    ("scheduled", "expected"),
    [
        (None, (SCHEDULED, "False", "WaitingForScheduler")),
        (("True", "", ""), (SCHEDULED, "True", "PodScheduled")),
        (("False", "Unschedulable", "0/3 nodes"), (SCHEDULED, "False", "Unschedulable")),
        (("False", "", "0/3 nodes"), (SCHEDULED, "False", "Unschedulable")),
    ],
)
def test_scheduled_condition_follows_the_pods_scheduled_condition(
    scheduled: tuple[str, str, str] | None, expected: tuple[str, str, str]
) -> None:
    assert brief(scheduled_condition(pod(scheduled=scheduled), "ignored")) == expected


# ---- Service ----------------------------------------------------------------------------


def current(want: dict[str, Any] | None = None, **fields: Any) -> ServiceView:
    manifest = want or desired().service
    assert manifest is not None
    values: dict[str, Any] = {
        "name": manifest["metadata"]["name"],
        "spec_hash": manifest["metadata"]["annotations"][ANNOTATION_SPEC_HASH],
    }
    values.update(fields)
    return ServiceView(**values)


def test_service_step_creates_a_missing_service() -> None:
    want = desired().service
    assert want is not None

    assert service_step(None, want) == [CreateService(want)]


def test_service_step_patches_changed_ports_only() -> None:
    moved = desired(stream(source={"type": "srt", "srt": {"port": 9100}})).service
    assert moved is not None

    actions = service_step(current(), moved)

    new_hash = moved["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    assert actions == [
        PatchService(
            "cam1-ingest",
            {
                "metadata": {"annotations": {ANNOTATION_SPEC_HASH: new_hash}},
                "spec": {"type": moved["spec"]["type"], "ports": moved["spec"]["ports"]},
            },
        )
    ]
    assert moved["spec"]["ports"][0]["port"] == 9100


@pytest.mark.parametrize(
    ("seen", "wanted", "expected"),
    [
        (None, False, []),
        (ServiceView("cam1-ingest", "x"), False, [DeleteService("cam1-ingest")]),
        (ServiceView("cam1-ingest", "x", deleting=True), False, []),
        (current(), True, []),
        (current(spec_hash="old", deleting=True), True, []),
    ],
    ids=["none-wanted", "unwanted", "unwanted-deleting", "up-to-date", "stale-but-deleting"],
)
def test_service_step_deletes_an_unwanted_service_and_leaves_the_rest(
    seen: ServiceView | None, wanted: bool, expected: list[Any]
) -> None:
    assert service_step(seen, desired().service if wanted else None) == expected


# ---- status and conditions --------------------------------------------------------------


LIVE = Health(StreamState.LIVE, input_bitrate_kbps=4012.4, fps=30, updated_at=T0 - 2)


def test_ingesting_needs_a_running_transcoder_and_redis() -> None:
    assert brief(ingesting_condition(observed(health=LIVE), None)) == (
        INGESTING,
        "Unknown",
        "NoTranscoder",
    )
    down = ingesting_condition(observed(health=LIVE, redis_error="Redis unavailable: x"), pod())
    assert down == Condition(INGESTING, "Unknown", "RedisUnavailable", "Redis unavailable: x")
    assert brief(ingesting_condition(observed(health=LIVE), pod())) == (
        INGESTING,
        "True",
        "PartsFlowing",
    )
    assert brief(ingesting_condition(observed(), pod())) == (INGESTING, "Unknown", "NoHealthReport")


def test_merge_conditions_sets_the_generation_keeps_transitions_and_orders() -> None:
    old = [
        Condition("Custom", "True", "Other", last_transition_time="2020-01-01T00:00:00Z"),
        Condition(SCHEDULED, "True", "PodScheduled", last_transition_time="2020-01-01T00:00:00Z"),
        Condition(READY, "False", "WaitingForPod", last_transition_time="2020-01-01T00:00:00Z"),
    ]
    fresh = [
        Condition(READY, "True", "TranscoderRunning"),
        Condition(SCHEDULED, "True", "PodScheduled", "on node n1"),
        Condition(ACTIVE, "True", "AlwaysOn"),
    ]

    merged = merge_conditions(old, fresh, generation=7, now=T0)

    assert [c.type for c in merged] == [READY, ACTIVE, SCHEDULED, "Custom"]
    by_type = {c.type: c for c in merged}
    assert by_type[READY].last_transition_time == T0_TEXT  # False -> True
    assert by_type[SCHEDULED].last_transition_time == "2020-01-01T00:00:00Z"  # still True
    assert by_type[SCHEDULED].message == "on node n1"
    assert by_type[ACTIVE].last_transition_time == T0_TEXT  # new
    assert {c.type for c in merged if c.observed_generation == 7} == {READY, ACTIVE, SCHEDULED}
    assert by_type["Custom"] == old[0]


def test_phase_event_only_on_a_change_warning_for_trouble() -> None:
    waiting = Condition(READY, "False", "WaitingForPod", "creating pod p")
    running = Condition(READY, "True", "TranscoderRunning", "pod p on n")
    ingesting = Condition(INGESTING, "True", "PartsFlowing", "transcoder live")

    assert phase_event("Live", "Live", running, ingesting) is None
    first = phase_event(None, "Pending", waiting, ingesting)
    assert first is not None
    assert (first.type, first.reason, first.message) == (
        "Normal",
        "Pending",
        "phase none -> Pending: creating pod p",
    )
    live = phase_event("Starting", "Live", running, ingesting)
    assert live is not None
    assert live.message == "phase Starting -> Live: transcoder live"
    for trouble in ("Failed", "Restarting"):
        event = phase_event("Live", trouble, waiting, ingesting)
        assert event is not None
        assert event.type == "Warning"


def running_outcome(**fields: Any) -> PodOutcome:
    values: dict[str, Any] = {
        "memory": Memory(pod="cam1-transcoder", pod_uid="uid-1", started_at=T0, recreations=2),
        "ready": Condition(READY, "True", "TranscoderRunning", "pod cam1-transcoder on n"),
        "scheduled": Condition(SCHEDULED, "True", "PodScheduled", "on n"),
        "live_pod": pod(container_restarts=3),
    }
    values.update(fields)
    return PodOutcome(**values)


def test_status_step_writes_the_whole_status() -> None:
    seen = observed(health=LIVE, viewers=7, generation=2, status={"phase": "Starting"})

    outcome = status_step(seen, SETTINGS, admission_step(seen), running_outcome())

    status = outcome.status
    assert status["phase"] == "Live"
    assert status["observedGeneration"] == 2
    assert [c["type"] for c in status["conditions"]] == [
        READY,
        ACTIVE,
        CAPACITY_AVAILABLE,
        SCHEDULED,
        INGESTING,
    ]
    assert (status["viewers"], status["inputBitrateKbps"], status["restarts"]) == (7, 4012, 5)
    assert status["ingestURL"] == "srt://cam1-ingest.studio.svc:9000?mode=caller"
    assert status["playbackURL"] == "http://cascade-edge/live/cam1.m3u8"
    assert status["transcoder"] == {
        "pod": "cam1-transcoder",
        "podUID": "uid-1",
        "startedAt": T0_TEXT,
        "recreations": 2,
        "consecutiveFailures": 0,
    }
    assert [(e.reason, e.message) for e in outcome.events] == [
        ("Live", f"phase Starting -> Live: {status['conditions'][4]['message']}")
    ]


def test_status_step_without_a_live_transcoder_reports_no_bitrate() -> None:
    seen = observed(health=LIVE, viewers=-1, status={"phase": "Pending"})
    stopped = running_outcome(
        ready=Condition(READY, "False", "WaitingForPod", "creating"),
        scheduled=Condition(SCHEDULED, "False", "NoPod", "creating"),
        live_pod=None,
    )

    outcome = status_step(seen, SETTINGS, admission_step(seen), stopped)

    assert outcome.status["phase"] == "Pending"
    assert (outcome.status["viewers"], outcome.status["inputBitrateKbps"]) == (0, 0)
    assert outcome.status["restarts"] == 2  # the pod's own restarts count only while it runs
    assert outcome.events == []


def test_requeue_step_looks_again_when_an_on_demand_verdict_may_change() -> None:
    on_demand = stream(activation="OnDemand")

    assert requeue_step(observed(lifecycle=ALWAYS), 5.0) == 5.0
    assert requeue_step(observed(lifecycle=ON_DEMAND), None) is None  # not an OnDemand stream
    assert requeue_step(observed(on_demand, lifecycle=ON_DEMAND), None) == pytest.approx(60.0)
    assert requeue_step(observed(on_demand, lifecycle=ON_DEMAND), 1.0) == 1.0
    assert requeue_step(observed(on_demand, lifecycle=ON_DEMAND, now=T0 + 90), 5.0) == 0.0
    assert requeue_step(observed(on_demand, lifecycle=NOBODY), 5.0) == 5.0


def test_recording_status_from_the_transcoders_health() -> None:
    from cascade.contract.schema import Health, StreamState
    from cascade.operator.reconcile import recording_status

    health = Health(
        state=StreamState.LIVE,
        recording=True,
        recording_bytes=1234,
        recording_backlog_bytes=56,
        recording_lost_segments=0,
        recording_oldest=1733356800.0,
        recording_newest=1733360400.5,
    )
    assert recording_status(health) == {
        "bytes": 1234,
        "backlogBytes": 56,
        "lostSegments": 0,
        "oldest": "2024-12-05T00:00:00Z",
        "newest": "2024-12-05T01:00:00Z",
    }
