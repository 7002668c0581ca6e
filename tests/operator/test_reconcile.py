"""The reconcile decision, step by step: each test feeds the status one step returned into
the next, as the operator does, and checks actions, conditions, phase and events."""

from __future__ import annotations

from typing import Any

import pytest

from cascade.contract.crd import status_schema
from cascade.contract.lifecycle import AWAITING_VIEWERS, NO_VIEWERS, VIEWER_DEMAND, Verdict
from cascade.contract.manifest import parse_manifest
from cascade.contract.schema import Health, StreamState
from cascade.contract.spec import LiveStream
from cascade.operator.builders import ANNOTATION_SPEC_HASH, build_transcoder_pod
from cascade.operator.capacity import MAX_CONCURRENT_STREAMS, Admitted, Waiting
from cascade.operator.reconcile import (
    ALWAYS,
    CreateService,
    DeletePod,
    ForgetStream,
    Memory,
    Observed,
    PatchService,
    Plan,
    PodView,
    ServiceView,
    backoff_seconds,
    failed_status,
    ingest_url,
    reconcile,
    status_patch,
)
from cascade.operator.settings import OperatorSettings

SETTINGS = OperatorSettings(restart_backoff_seconds=2, stable_after_seconds=60)
REDIS = "redis://redis:6379/0"
T0 = 1_800_000_000.0

SRT = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: cam1, namespace: studio}
spec:
  source: {type: srt}
"""


def stream(text: str = SRT, **spec: Any) -> LiveStream:
    parsed = parse_manifest(text)
    if spec:
        data = parsed.model_dump(by_alias=True, exclude_none=True)
        data["spec"].update(spec)
        return LiveStream.model_validate(data)
    return parsed


def desired_hash(ls: LiveStream, generation: int = 1) -> str:
    pod = build_transcoder_pod(ls, SETTINGS, generation=generation, redis_url=REDIS)
    return str(pod["metadata"]["annotations"][ANNOTATION_SPEC_HASH])


def running_pod(ls: LiveStream, uid: str = "uid-1", **fields: Any) -> PodView:
    values: dict[str, Any] = {
        "name": f"{ls.name}-transcoder",
        "uid": uid,
        "spec_hash": desired_hash(ls),
        "phase": "Running",
        "node": "gpu-node-0",
        "scheduled": ("True", "", ""),
        "ready": True,
        "started_at": T0,
    }
    values.update(fields)
    return PodView(**values)


def service(ls: LiveStream) -> ServiceView:
    plan = step(ls, {}, pod=None, service=None)
    created = next(a for a in plan.actions if isinstance(a, CreateService))
    return ServiceView(
        created.manifest["metadata"]["name"],
        created.manifest["metadata"]["annotations"][ANNOTATION_SPEC_HASH],
    )


def step(
    ls: LiveStream,
    status: dict[str, Any],
    *,
    pod: PodView | None,
    service: ServiceView | None = None,
    now: float = T0,
    capacity: Admitted | Waiting | None = None,
    lifecycle: Verdict | None = None,
    health: Health | None = None,
    **extra: Any,
) -> Plan:
    observed = Observed(
        stream=ls,
        generation=extra.pop("generation", 1),
        status=status,
        pod=pod,
        service=service,
        capacity=capacity or Admitted(),
        now=now,
        lifecycle=lifecycle or ALWAYS,
        health=health,
        **extra,
    )
    return reconcile(observed, SETTINGS, redis_url=REDIS)


def conditions(plan: Plan) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def kinds(plan: Plan) -> list[str]:
    return [type(a).__name__ for a in plan.actions]


def test_a_new_stream_gets_its_pod_and_service() -> None:
    ls = stream()

    plan = step(ls, {}, pod=None)

    assert kinds(plan) == ["CreateService", "CreatePod"]
    assert plan.status["phase"] == "Pending"
    assert conditions(plan)["Ready"] == ("False", "WaitingForPod")
    assert conditions(plan)["Scheduled"] == ("False", "NoPod")
    assert plan.status["transcoder"] == {
        "pod": "cam1-transcoder",
        "podUID": "",
        "startedAt": "2027-01-15T08:00:00Z",
        "recreations": 0,
        "consecutiveFailures": 0,
    }
    assert plan.status["ingestURL"] == "srt://cam1-ingest.studio.svc:9000?mode=caller"
    assert plan.status["playbackURL"] == "http://cascade-edge/live/cam1.m3u8"
    assert [e.reason for e in plan.events] == ["CreatedPod", "Pending"]
    assert all(c["observedGeneration"] == 1 for c in plan.status["conditions"])


def test_running_pod_then_live_health_and_nothing_more_to_do() -> None:
    ls = stream()
    created = step(ls, {}, pod=None)
    pod = running_pod(ls)

    running = step(ls, created.status, pod=pod, service=service(ls), now=T0 + 1)
    health = Health(StreamState.LIVE, input_bitrate_kbps=4012.4, fps=30, updated_at=T0 + 2)
    live = step(
        ls, running.status, pod=pod, service=service(ls), now=T0 + 3, health=health, viewers=7
    )
    again = step(
        ls, live.status, pod=pod, service=service(ls), now=T0 + 3, health=health, viewers=7
    )

    assert running.actions == []
    assert running.status["transcoder"]["podUID"] == "uid-1"
    assert running.status["phase"] == "Starting"
    assert conditions(running)["Scheduled"] == ("True", "PodScheduled")
    assert live.status["phase"] == "Live"
    assert (live.status["viewers"], live.status["inputBitrateKbps"]) == (7, 4012)
    assert conditions(live)["Ingesting"] == ("True", "PartsFlowing")
    assert [e.reason for e in live.events] == ["Live"]
    # Level-based: the same world gives the same status and nothing to do.
    assert (again.actions, again.status, again.events) == ([], live.status, [])


def test_a_lost_pod_is_counted_and_recreated_after_a_backoff() -> None:
    ls = stream()
    status = step(ls, {}, pod=None).status
    status = step(ls, status, pod=running_pod(ls), service=service(ls)).status

    lost = step(ls, status, pod=None, service=service(ls), now=T0 + 10)
    early = step(ls, lost.status, pod=None, service=service(ls), now=T0 + 11)
    due = step(ls, lost.status, pod=None, service=service(ls), now=T0 + 12)

    assert lost.actions == []
    assert [e.reason for e in lost.events] == ["TranscoderLost", "Restarting"]
    assert lost.status["restarts"] == 1
    assert lost.status["phase"] == "Restarting"
    assert lost.requeue_after == pytest.approx(2.0)
    assert early.actions == []
    assert kinds(due) == ["CreatePod"]
    assert due.status["restarts"] == 1


def test_a_failed_pod_is_deleted_and_the_backoff_doubles() -> None:
    ls = stream()
    status = step(ls, {}, pod=None).status
    status = step(ls, status, pod=running_pod(ls), service=service(ls)).status
    failed = running_pod(ls, phase="Failed", ready=False, failure="Error container exited 1")

    first = step(ls, status, pod=failed, service=service(ls), now=T0 + 5)
    status = step(ls, first.status, pod=None, service=service(ls), now=T0 + 7).status
    status = step(ls, status, pod=running_pod(ls, "uid-2"), service=service(ls), now=T0 + 8).status
    second = step(
        ls, status, pod=running_pod(ls, "uid-2", phase="Failed"), service=service(ls), now=T0 + 9
    )

    assert kinds(first) == ["DeletePod"]
    assert first.actions[0] == DeletePod("cam1-transcoder", "uid-1")
    assert "container exited 1" in first.events[0].message
    assert second.status["restarts"] == 2
    assert second.status["transcoder"]["consecutiveFailures"] == 2
    assert second.requeue_after == pytest.approx(4.0)


def test_backoff_is_capped() -> None:
    assert [backoff_seconds(n, SETTINGS) for n in (0, 1, 2, 3)] == [0, 2, 4, 8]
    assert backoff_seconds(40, SETTINGS) == SETTINGS.restart_backoff_max_seconds


def test_a_pod_that_stays_up_resets_the_backoff() -> None:
    ls = stream()
    memory = Memory(
        pod="cam1-transcoder",
        pod_uid="uid-1",
        started_at=T0,
        recreations=3,
        consecutive_failures=3,
        last_failure=T0 - 100,
    )
    status = {"transcoder": memory.to_status()}

    young = step(ls, status, pod=running_pod(ls), service=service(ls), now=T0 + 30)
    stable = step(ls, status, pod=running_pod(ls), service=service(ls), now=T0 + 61)

    assert young.status["transcoder"]["consecutiveFailures"] == 3
    assert young.requeue_after == pytest.approx(30)
    assert stable.status["transcoder"]["consecutiveFailures"] == 0
    assert stable.status["restarts"] == 3


def test_a_spec_change_rolls_the_pod_without_counting_a_restart() -> None:
    ls = stream()
    status = step(ls, {}, pod=None).status
    status = step(ls, status, pod=running_pod(ls), service=service(ls)).status
    changed = stream(transcode={"renditions": [{"name": "720p", "width": 1280, "height": 720}]})

    roll = step(changed, status, pod=running_pod(ls), service=service(ls), generation=2)
    waiting = step(
        changed, roll.status, pod=running_pod(ls, deleting=True), service=service(ls), generation=2
    )
    recreate = step(changed, waiting.status, pod=None, service=service(ls), generation=2)

    assert kinds(roll) == ["DeletePod"]
    assert roll.events[0].reason == "SpecChanged"
    assert waiting.actions == []
    assert waiting.requeue_after == 1.0
    assert kinds(recreate) == ["CreatePod"]
    assert recreate.status["restarts"] == 0
    assert recreate.status["observedGeneration"] == 2


def test_beyond_capacity_the_stream_waits_with_the_reason() -> None:
    ls = stream()
    waiting = Waiting(MAX_CONCURRENT_STREAMS, "25 of 25 concurrent streams running")

    plan = step(ls, {}, pod=None, capacity=waiting)

    assert kinds(plan) == ["CreateService"]  # the ingest address exists from the start
    assert plan.status["phase"] == "Pending"
    assert conditions(plan)["CapacityAvailable"] == ("False", MAX_CONCURRENT_STREAMS)
    assert conditions(plan)["Ready"] == ("False", "WaitingForCapacity")
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert "25 of 25" in ready["message"]


def test_on_demand_starts_on_demand_and_stops_when_nobody_watches() -> None:
    ls = stream(activation="OnDemand")
    waiting = Verdict(False, AWAITING_VIEWERS, "no transcoder until a viewer asks")
    demand = Verdict(True, VIEWER_DEMAND, "a viewer asked", recheck_at=T0 + 60)
    idle = Verdict(False, NO_VIEWERS, "stopped: no viewer for 60s")

    asleep = step(ls, {}, pod=None, lifecycle=waiting)
    start = step(ls, asleep.status, pod=None, service=service(ls), lifecycle=demand)
    up = step(ls, start.status, pod=running_pod(ls), service=service(ls), lifecycle=demand)
    stop = step(ls, up.status, pod=running_pod(ls), service=service(ls), lifecycle=idle)
    gone = step(ls, stop.status, pod=None, service=service(ls), lifecycle=idle)
    quiet = step(ls, gone.status, pod=None, service=service(ls), lifecycle=idle)

    assert kinds(asleep) == ["CreateService"]
    assert asleep.status["phase"] == "Idle"
    assert conditions(asleep)["Active"] == ("False", AWAITING_VIEWERS)
    assert conditions(asleep)["CapacityAvailable"] == ("True", "NotNeeded")
    assert kinds(start) == ["CreatePod"]
    assert up.requeue_after == pytest.approx(60)
    assert kinds(stop) == ["DeletePod"]
    assert "StoppedOnDemand" in [e.reason for e in stop.events]
    assert stop.status["restarts"] == 0
    assert stop.status["transcoder"]["stoppedAt"] == "2027-01-15T08:00:00Z"
    assert gone.actions == [ForgetStream()]
    assert "startedAt" not in gone.status["transcoder"]
    assert quiet.actions == []


def test_image_pull_failure_shows_failed() -> None:
    ls = stream()
    pod = running_pod(
        ls,
        phase="Pending",
        ready=False,
        waiting_reason="ImagePullBackOff",
        waiting_message="Back-off pulling image",
    )

    plan = step(ls, {}, pod=pod, service=service(ls))

    assert plan.status["phase"] == "Failed"
    assert conditions(plan)["Ready"] == ("False", "ImagePullFailed")


def test_unschedulable_pod_shows_the_schedulers_reason() -> None:
    ls = stream()
    pod = running_pod(
        ls,
        phase="Pending",
        ready=False,
        node="",
        scheduled=(
            "False",
            "Unschedulable",
            "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        ),
    )

    plan = step(ls, {}, pod=pod, service=service(ls))

    assert plan.status["phase"] == "Pending"
    assert conditions(plan)["Scheduled"] == ("False", "Unschedulable")
    assert plan.actions == []


def test_changed_ports_patch_the_service() -> None:
    ls = stream()
    old = service(ls)
    moved = stream(source={"type": "srt", "srt": {"port": 9100}})

    plan = step(moved, {}, pod=running_pod(moved), service=old)

    patch = next(a for a in plan.actions if isinstance(a, PatchService))
    assert patch.patch["spec"]["ports"][0]["port"] == 9100


def test_a_test_source_needs_no_service_and_an_old_one_is_removed() -> None:
    ls = stream(source={"type": "test"})

    plan = step(ls, {}, pod=None, service=ServiceView("cam1-ingest", "x"))

    assert kinds(plan) == ["DeleteService", "CreatePod"]
    assert ingest_url(ls).startswith("test pattern")


def test_redis_down_is_a_reason_not_a_crash() -> None:
    ls = stream()

    plan = step(ls, {}, pod=running_pod(ls), service=service(ls), redis_error="connection refused")

    assert conditions(plan)["Ingesting"] == ("Unknown", "RedisUnavailable")
    assert plan.status["phase"] == "Starting"


def test_pod_view_reads_a_real_pod_body() -> None:
    body = {
        "metadata": {
            "name": "cam1-transcoder",
            "uid": "u",
            "annotations": {ANNOTATION_SPEC_HASH: "h"},
        },
        "spec": {"nodeName": "gpu-node-1"},
        "status": {
            "phase": "Running",
            "startTime": "2027-01-15T08:00:00Z",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
            "containerStatuses": [
                {
                    "restartCount": 2,
                    "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                }
            ],
        },
    }

    pod = PodView.from_body(body)

    assert (pod.name, pod.uid, pod.spec_hash, pod.node) == (
        "cam1-transcoder",
        "u",
        "h",
        "gpu-node-1",
    )
    assert (pod.ready, pod.container_restarts, pod.started_at) == (True, 2, T0)
    assert pod.failure == "container exited 137 (OOMKilled)"


def test_status_patch_is_a_merge_patch() -> None:
    old = {
        "phase": "Live",
        "viewers": 3,
        "transcoder": {"pod": "p", "podUID": "u", "recreations": 0},
    }
    new = {"phase": "Live", "viewers": 4, "transcoder": {"pod": "p", "recreations": 0}}

    assert status_patch(old, new) == {"viewers": 4, "transcoder": {"podUID": None}}
    assert status_patch(new, new) == {}


def test_an_invalid_stored_spec_fails_with_the_field() -> None:
    status = failed_status({}, 3, "InvalidSpec", "spec.delivery.partDurationMs: must divide", T0)

    assert status["phase"] == "Failed"
    assert status["observedGeneration"] == 3
    assert status["conditions"][0]["reason"] == "InvalidSpec"
    assert "partDurationMs" in status["conditions"][0]["message"]


def test_every_status_field_written_is_in_the_crd_schema() -> None:
    """The API server prunes unknown status fields silently: the memory would be lost."""
    schema = status_schema()["properties"]
    memory = Memory("p", "u", T0, 1, 1, T0, T0).to_status()
    plan = step(
        stream(), {"transcoder": memory}, pod=running_pod(stream()), service=service(stream())
    )

    assert set(plan.status) <= set(schema)
    assert set(plan.status["transcoder"]) == set(memory)
    assert set(memory) <= set(schema["transcoder"]["properties"])
