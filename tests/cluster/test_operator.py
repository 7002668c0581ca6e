"""The operator on the real control plane: LiveStreams become pods, Services and status.

The operator runs as a process (scripts/cluster-operator.sh, as `make cluster-up` starts it)
against the session's API server and a real Redis. kwok stands in for kubelets, so pods
reach Running but nothing runs in them: where a test needs the transcoder's side of the
contract (health, viewers, keys), it writes it into Redis as the transcoder and edges do.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from cascade.contract import schema
from cascade.contract.schema import Health, StreamState

from .conftest import Kubectl, Operator, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
GPU = "nvidia.com/gpu"


@pytest.fixture
def ns(namespace: Kubectl, operator: Operator) -> Iterator[Kubectl]:
    """A namespace whose LiveStreams are deleted (and their finalizers run) after the test."""
    yield namespace
    namespace.run("delete", "livestreams", "--all", "--wait=false", check=False)


@pytest.fixture
def store(operator: Operator) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(operator.redis_url, decode_responses=True)
    yield client
    client.close()


def livestream(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"source": {"type": "test", "test": {}}}
    body.update(spec)
    return {
        "apiVersion": "cascade.dev/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": name},
        "spec": body,
    }


def gpu_stream(name: str) -> dict[str, Any]:
    return livestream(name, transcode={"hardware": "nvenc"}, scheduling={"gpus": 1})


def status(ns: Kubectl, name: str) -> dict[str, Any]:
    found: dict[str, Any] = ns.get("livestream", name).get("status") or {}
    return found


def condition(ns: Kubectl, name: str, kind: str) -> dict[str, Any]:
    for cond in status(ns, name).get("conditions", []):
        if cond["type"] == kind:
            return dict(cond)
    return {}


def phase_is(ns: Kubectl, name: str, phase: str) -> bool:
    return status(ns, name).get("phase") == phase


def running_pod(ns: Kubectl, name: str) -> dict[str, Any] | None:
    pods = ns.get("pods", "-l", f"cascade.dev/livestream={name}")["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    if live and live[0]["status"].get("phase") == "Running":
        return dict(live[0])
    return None


def events(ns: Kubectl, name: str, reason: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ns.get(
        "events", "--field-selector", f"involvedObject.name={name},reason={reason}"
    )["items"]
    return found


def publish_health(store: redis.Redis, stream: str, kbps: float) -> None:
    health = Health(StreamState.LIVE, input_bitrate_kbps=kbps, fps=30.0, updated_at=time.time())
    store.hset(schema.health_key(stream), mapping=health.encode())  # type: ignore[arg-type]


def test_operator_is_live_and_exports_metrics(operator: Operator) -> None:
    assert operator.get("OPERATOR_LIVENESS_URL")[0] == 200
    code, text = operator.get("OPERATOR_METRICS_URL")
    assert code == 200
    assert 'cascade_operator_streams{phase="Live"}' in text
    assert "cascade_operator_reconciles_total" in text


def test_a_stream_gets_its_pod_service_status_and_columns(ns: Kubectl, store: redis.Redis) -> None:
    manifest = yaml.safe_load((REPO / "examples/srt-hevc-gpu.yaml").read_text())
    ns.apply(manifest)
    name = manifest["metadata"]["name"]

    pod = wait_for("the transcoder pod Running", lambda: running_pod(ns, name), timeout=60)
    wait_for("phase Starting", lambda: phase_is(ns, name, "Starting"), timeout=30)

    # The pod: on a GPU node, owned by the LiveStream, NVENC wiring, hardened.
    assert pod["spec"]["nodeName"].startswith("gpu-node-")
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("LiveStream", name, True)
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"][GPU] == "1"
    assert {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility,video"} in container[
        "env"
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    # The Service: UDP for an SRT listener, owned too.
    (svc,) = ns.get("services", "-l", f"cascade.dev/livestream={name}")["items"]
    assert [(p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [(9000, "UDP")]
    assert svc["metadata"]["ownerReferences"][0]["name"] == name
    # The status: every condition with an owner's reason and this generation.
    now = status(ns, name)
    assert now["observedGeneration"] == 1
    reasons = {c["type"]: (c["status"], c["reason"]) for c in now["conditions"]}
    assert reasons["Ready"] == ("True", "TranscoderRunning")
    assert reasons["Scheduled"] == ("True", "PodScheduled")
    assert reasons["CapacityAvailable"] == ("True", "WithinLimits")
    assert reasons["Ingesting"] == ("Unknown", "NoHealthReport")
    assert (
        now["ingestURL"] == f"srt://{svc['metadata']['name']}.{ns.namespace}.svc:9000?mode=caller"
    )
    assert now["playbackURL"].endswith(f"/live/{name}.m3u8")

    # The transcoder reports health and two viewers watch: Live, with the figures.
    publish_health(store, name, 20123.4)
    store.zadd(schema.viewers_key(name), {"viewer-a": time.time(), "viewer-b": time.time()})
    wait_for("phase Live", lambda: phase_is(ns, name, "Live"), timeout=30)
    live = status(ns, name)
    assert (live["viewers"], live["inputBitrateKbps"]) == (2, 20123)
    table = ns.run("get", "livestreams", name).stdout.split()
    assert table[:5] == ["NAME", "PHASE", "VIEWERS", "BITRATE", "INGEST"]
    assert table[6:10] == [name, "Live", "2", "20123"]
    assert events(ns, name, "CreatedPod")
    assert events(ns, name, "Live")


def test_a_deleted_pod_comes_back_and_restarts_rise(ns: Kubectl) -> None:
    ns.apply(livestream("phoenix"))
    first = wait_for("the first pod", lambda: running_pod(ns, "phoenix"), timeout=60)
    wait_for("status", lambda: status(ns, "phoenix").get("restarts") == 0, timeout=30)

    ns.run("delete", "pod", first["metadata"]["name"], "--wait=false")

    def replaced() -> dict[str, Any] | None:
        pod = running_pod(ns, "phoenix")
        return pod if pod and pod["metadata"]["uid"] != first["metadata"]["uid"] else None

    second = wait_for("a new pod", replaced, timeout=60)
    wait_for("restarts 1", lambda: status(ns, "phoenix").get("restarts") == 1, timeout=30)
    assert second["metadata"]["name"] == first["metadata"]["name"]
    assert events(ns, "phoenix", "TranscoderLost")
    wait_for("Ready again", lambda: condition(ns, "phoenix", "Ready").get("status") == "True", 30)


def test_a_spec_change_rolls_the_pod_without_a_restart(ns: Kubectl) -> None:
    manifest = livestream("roll")
    ns.apply(manifest)
    first = wait_for("the first pod", lambda: running_pod(ns, "roll"), timeout=60)

    changed = copy.deepcopy(manifest)
    changed["spec"]["transcode"] = {"renditions": [{"name": "540p", "width": 960, "height": 540}]}
    ns.apply(changed)

    def rolled() -> dict[str, Any] | None:
        pod = running_pod(ns, "roll")
        return pod if pod and pod["metadata"]["uid"] != first["metadata"]["uid"] else None

    second = wait_for("the rolled pod", rolled, timeout=60)
    assert "540p" in second["spec"]["containers"][0]["env"][0]["value"]
    wait_for("generation 2 observed", lambda: status(ns, "roll").get("observedGeneration") == 2, 30)
    assert status(ns, "roll")["restarts"] == 0
    assert events(ns, "roll", "SpecChanged")


def test_deletion_collects_children_and_removes_redis_keys(ns: Kubectl, store: redis.Redis) -> None:
    ns.apply(livestream("gone", source={"type": "rtmp", "rtmp": {}}))
    wait_for("the pod", lambda: running_pod(ns, "gone"), timeout=60)
    assert ns.get("services", "-l", "cascade.dev/livestream=gone")["items"]
    # What the transcoder and the edges leave in Redis for the stream.
    store.hset(schema.meta_key("gone"), "state", "live")
    store.xadd(schema.parts_key("gone", "360p"), {"kind": "part"})
    store.zadd(schema.viewers_key("gone"), {"v": time.time()})
    store.sadd(schema.STREAMS_SET, "gone")
    store.hset(schema.meta_key("kept"), "state", "live")  # another stream's key stays

    ns.run("delete", "livestream", "gone", "--timeout=60s")

    wait_for(
        "pod and Service collected",
        lambda: not ns.get("pods,services", "-l", "cascade.dev/livestream=gone")["items"],
        timeout=60,
    )
    assert not store.keys("cascade:stream:gone:*")
    assert not store.exists(schema.viewers_key("gone"))
    assert not store.sismember(schema.STREAMS_SET, "gone")
    assert store.exists(schema.meta_key("kept"))
    store.delete(schema.meta_key("kept"))


def test_a_refused_pod_shows_failed_with_the_reason(ns: Kubectl) -> None:
    ns.apply(livestream("norc", scheduling={"runtimeClassName": "no-such-runtime"}))

    wait_for("phase Failed", lambda: phase_is(ns, "norc", "Failed"), timeout=30)
    ready = condition(ns, "norc", "Ready")
    assert ready["reason"] == "PodRejected"
    assert "no-such-runtime" in ready["message"]


def test_on_demand_starts_for_a_viewer_and_stops_when_nobody_watches(
    ns: Kubectl, store: redis.Redis
) -> None:
    ns.apply(livestream("pulled", activation="OnDemand", idleTimeoutSeconds=4))

    wait_for("phase Idle", lambda: phase_is(ns, "pulled", "Idle"), timeout=30)
    # NoViewers while it stops, then AwaitingViewers once it is gone and forgotten.
    wait_for(
        "Active=False AwaitingViewers",
        lambda: condition(ns, "pulled", "Active").get("reason") == "AwaitingViewers",
        timeout=15,
    )
    assert store.sismember(schema.ON_DEMAND_STREAMS, "pulled")
    assert running_pod(ns, "pulled") is None

    # An edge records a viewer's request for it (what GET /live/pulled.m3u8 does).
    store.zadd(schema.DEMAND, {"pulled": time.time()})
    wait_for("a transcoder pod", lambda: running_pod(ns, "pulled"), timeout=30)
    assert condition(ns, "pulled", "Active")["status"] == "True"

    # Nobody watches: stopped after idleTimeoutSeconds, with its live keys removed.
    store.hset(schema.meta_key("pulled"), "state", "live")
    wait_for("phase Idle again", lambda: phase_is(ns, "pulled", "Idle"), timeout=30)
    wait_for(
        "no pod", lambda: not ns.get("pods", "-l", "cascade.dev/livestream=pulled")["items"], 30
    )
    # NoViewers while it stops, then AwaitingViewers once it is gone and forgotten.
    wait_for(
        "Active=False AwaitingViewers",
        lambda: condition(ns, "pulled", "Active").get("reason") == "AwaitingViewers",
        timeout=15,
    )
    assert "no viewer for" in events(ns, "pulled", "StoppedOnDemand")[0]["message"]
    wait_for("live keys removed", lambda: not store.exists(schema.meta_key("pulled")), timeout=10)
    # The request that started it is still in Redis: it does not start it again.
    time.sleep(2)
    assert running_pod(ns, "pulled") is None


def no_other_streams(kubectl: Kubectl) -> None:
    """Capacity is cluster-wide: wait for other tests' streams to be gone."""
    wait_for(
        "no other LiveStreams",
        lambda: not kubectl.get("livestreams", "--all-namespaces")["items"],
        timeout=90,
    )


def held_then_started(ns: Kubectl, late: str, reason: str, says: str, freed: str) -> None:
    """``late`` waits in Pending for capacity with ``reason``, and starts once ``freed`` goes."""
    wait_for(
        f"{late} held by capacity",
        lambda: condition(ns, late, "CapacityAvailable").get("status") == "False",
        timeout=30,
    )
    held = condition(ns, late, "CapacityAvailable")
    assert held["reason"] == reason
    assert says in held["message"]
    assert status(ns, late)["phase"] == "Pending"
    assert running_pod(ns, late) is None

    ns.run("delete", "livestream", freed, "--wait=false")

    wait_for(f"{late} starts", lambda: running_pod(ns, late), timeout=60)
    wait_for(
        "its capacity condition clears",
        lambda: condition(ns, late, "CapacityAvailable").get("status") == "True",
        timeout=30,
    )


def test_the_nvenc_session_budget_holds_a_stream_with_the_reason(
    ns: Kubectl, kubectl: Kubectl
) -> None:
    no_other_streams(kubectl)
    ladder = [{"name": f"r{i}", "width": 640, "height": 360} for i in range(8)]

    def big(name: str) -> dict[str, Any]:
        stream = gpu_stream(name)
        stream["spec"]["transcode"]["renditions"] = ladder  # 8 NVENC sessions
        return stream

    # 2 nodes x 16 GPUs x 1 session per GPU (the test operator's setting) = 32 sessions.
    ns.run("apply", "-f", "-", stdin=yaml.safe_dump_all([big(f"ladder-{i}") for i in range(4)]))
    wait_for("4 ladders Running", lambda: len(ns.get("pods")["items"]) == 4, timeout=60)
    time.sleep(1.1)  # a later creationTimestamp
    ns.apply(big("ladder-late"))

    held_then_started(
        ns, "ladder-late", "NvencSessionBudget", "needs 8 NVENC sessions, 0 of 32 free", "ladder-1"
    )


def test_twenty_five_gpu_streams_run_and_the_twenty_sixth_waits(
    ns: Kubectl, kubectl: Kubectl
) -> None:
    no_other_streams(kubectl)
    names = [f"cam-{i:02d}" for i in range(25)]
    ns.run("apply", "-f", "-", stdin=yaml.safe_dump_all([gpu_stream(n) for n in names]))

    def all_running() -> bool:
        pods = ns.get("pods")["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return len(running) == 25

    wait_for("25 transcoder pods Running", all_running, timeout=120)
    pods = ns.get("pods")["items"]
    assert {p["spec"]["nodeName"] for p in pods} <= {"gpu-node-0", "gpu-node-1"}

    ns.apply(gpu_stream("cam-late"))
    held_then_started(ns, "cam-late", "MaxConcurrentStreams", "25 of 25", "cam-07")


def test_restarting_the_operator_changes_nothing_that_was_right(
    ns: Kubectl, operator: Operator
) -> None:
    ns.apply(livestream("steady", source={"type": "srt"}))
    wait_for("the pod", lambda: running_pod(ns, "steady"), timeout=60)
    wait_for("Ready", lambda: condition(ns, "steady", "Ready").get("status") == "True", timeout=30)
    before_pod = running_pod(ns, "steady")
    assert before_pod is not None
    (before_svc,) = ns.get("services")["items"]
    before = status(ns, "steady")
    created = len(events(ns, "steady", "CreatedPod"))

    old_pid = operator.pid()
    operator.stop()
    operator.start()
    assert operator.pid() != old_pid
    time.sleep(4)  # several status intervals of the new operator

    after_pod = running_pod(ns, "steady")
    assert after_pod is not None
    assert after_pod["metadata"]["uid"] == before_pod["metadata"]["uid"]
    assert after_pod["metadata"]["resourceVersion"] == before_pod["metadata"]["resourceVersion"]
    (after_svc,) = ns.get("services")["items"]
    assert after_svc["metadata"]["resourceVersion"] == before_svc["metadata"]["resourceVersion"]
    after = status(ns, "steady")
    assert after["transcoder"] == before["transcoder"]
    assert after["conditions"] == before["conditions"]
    assert len(events(ns, "steady", "CreatedPod")) == created
    assert not events(ns, "steady", "TranscoderLost")


def test_deletion_is_not_stuck_when_redis_is_down(ns: Kubectl, operator: Operator) -> None:
    ns.apply(livestream("orphan"))
    wait_for("the pod", lambda: running_pod(ns, "orphan"), timeout=60)

    operator.stop("redis")
    try:
        ns.run("delete", "livestream", "orphan", "--wait=false")
        wait_for(
            "the LiveStream released",
            lambda: ns.run("get", "livestream", "orphan", check=False).returncode != 0,
            timeout=60,
        )
        assert events(ns, "orphan", "RedisCleanupSkipped")
    finally:
        operator.start()  # Redis again, same port; the operator reconnects by itself


def test_a_stream_name_taken_in_another_namespace_is_refused(ns: Kubectl, kubectl: Kubectl) -> None:
    ns.apply(livestream("twin"))
    wait_for("the first twin's pod", lambda: running_pod(ns, "twin"), timeout=60)
    other = f"{ns.namespace}-b"
    kubectl.run("create", "namespace", other)
    second = kubectl.in_namespace(other)
    try:
        time.sleep(1.1)  # a later creationTimestamp (whole seconds)
        second.apply(livestream("twin"))

        wait_for("the second twin Failed", lambda: phase_is(second, "twin", "Failed"), timeout=30)
        ready = condition(second, "twin", "Ready")
        assert ready["reason"] == "NameConflict"
        assert ns.namespace in ready["message"]
        assert not second.get("pods")["items"]
        second.run("delete", "livestream", "twin", "--timeout=60s")
        # Deleting the second one left the first one's stream alone.
        assert running_pod(ns, "twin") is not None
        assert phase_is(ns, "twin", "Starting")
    finally:
        kubectl.run("delete", "namespace", other, "--wait=false", check=False)
