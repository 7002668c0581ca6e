"""The test control plane itself: fake GPU nodes, controllers, scheduler, garbage collector.

These prove the pieces the operator tests rely on: kwok nodes advertising `nvidia.com/gpu`,
the controller-manager's Deployment/ReplicaSet controllers and garbage collector, the
scheduler's resource fit, and kwok taking bound pods to Running.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

GPU = "nvidia.com/gpu"
# kwok never pulls or runs the image; any name will do.
IMAGE = "registry.invalid/cascade/idle:0"


def gpu_nodes(kubectl: Kubectl) -> set[str]:
    nodes = kubectl.get("nodes", "-l", "nvidia.com/gpu.present=true")["items"]
    return {n["metadata"]["name"] for n in nodes}


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": IMAGE}]},
            },
        },
    }


def pod(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {"name": "main", "image": IMAGE, "resources": {"limits": {GPU: str(gpus)}}}
            ]
        },
    }


def ready(obj: dict[str, Any], kind: str = "Ready") -> bool:
    return any(
        c["type"] == kind and c["status"] == "True" for c in obj["status"].get("conditions", [])
    )


def test_nodes_advertise_gpus(kubectl: Kubectl) -> None:
    nodes = {n["metadata"]["name"]: n for n in kubectl.get("nodes", "-l", "type=kwok")["items"]}

    assert len(nodes) == 3
    assert all(ready(n) for n in nodes.values())
    gpus = {name: n["status"]["allocatable"].get(GPU) for name, n in nodes.items()}
    assert sorted(gpus.values(), key=str) == ["16", "16", None]
    # The real node (tests/cluster/test_node.py) has no GPU either.
    real = kubectl.get("nodes", "-l", "cascade.dev/node=real")["items"]
    assert [n["status"]["allocatable"].get(GPU) for n in real] == [None]
    assert {name for name, count in gpus.items() if count} == gpu_nodes(kubectl)


def test_deployment_becomes_available_on_fake_nodes(namespace: Kubectl) -> None:
    namespace.apply(deployment("web", replicas=2))

    namespace.run("wait", "--for=condition=Available", "deployment/web", "--timeout=60s")
    pods = namespace.get("pods", "-l", "app=web")["items"]
    assert len(pods) == 2
    assert all(p["status"]["phase"] == "Running" and ready(p) for p in pods)
    nodes = {n["metadata"]["name"] for n in namespace.get("nodes", "-l", "type=kwok")["items"]}
    assert {p["spec"]["nodeName"] for p in pods} <= nodes


def test_deleting_a_deployment_collects_its_replicaset_and_pods(namespace: Kubectl) -> None:
    namespace.apply(deployment("gone", replicas=2))
    namespace.run("wait", "--for=condition=Available", "deployment/gone", "--timeout=60s")
    (replica_set,) = namespace.get("replicasets", "-l", "app=gone")["items"]
    assert replica_set["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    assert len(namespace.get("pods", "-l", "app=gone")["items"]) == 2

    # kubectl deletes the Deployment alone: the garbage collector removes the ReplicaSet it
    # owned, then the ReplicaSet's pods (and kwok lets the deleted pods go).
    namespace.run("delete", "deployment", "gone", "--cascade=background", "--wait=false")

    wait_for(
        "the ReplicaSet and pods to be collected",
        lambda: not namespace.get("replicasets,pods", "-l", "app=gone")["items"],
        timeout=60,
    )


def test_a_gpu_pod_lands_on_a_gpu_node(namespace: Kubectl) -> None:
    namespace.apply(pod("one-gpu", gpus=1))

    namespace.run("wait", "--for=condition=Ready", "pod/one-gpu", "--timeout=60s")
    placed = namespace.get("pod", "one-gpu")
    assert placed["status"]["phase"] == "Running"
    assert placed["spec"]["nodeName"] in gpu_nodes(namespace)


def test_a_pod_beyond_gpu_capacity_stays_pending(namespace: Kubectl) -> None:
    namespace.apply(pod("hundred-gpus", gpus=100))

    def failed_scheduling() -> list[Any]:
        events: list[Any] = namespace.get(
            "events",
            "--field-selector",
            "involvedObject.name=hundred-gpus,reason=FailedScheduling",
        )["items"]
        return events

    events = wait_for("a FailedScheduling event", failed_scheduling, timeout=60)
    assert f"Insufficient {GPU}" in events[0]["message"]
    pending = namespace.get("pod", "hundred-gpus")
    assert pending["status"]["phase"] == "Pending"
    assert "nodeName" not in pending["spec"]
    (scheduled,) = [c for c in pending["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
