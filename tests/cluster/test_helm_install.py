"""`helm install` of the chart into the real test control plane, then upgrade and uninstall.

kwok runs the chart's pods (nothing executes in them), so Deployments become available
and the operator's least-privilege RBAC is proved by running the operator program itself,
as a process, with the token of the ServiceAccount the chart made.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Kubectl, Operator, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cascade"
RELEASE = "cascade"


class Helm:
    def __init__(self, binary: Path, kubeconfig: Path, namespace: str) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig), "-n", self.namespace]
        proc = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc


@pytest.fixture(scope="module")
def release(kubectl: Kubectl, kubeconfig: Path) -> Iterator[tuple[Helm, Kubectl]]:
    namespace = f"cascade-{uuid.uuid4().hex[:6]}"
    helm = Helm(kubectl.binary.parent / "helm", kubeconfig, namespace)
    installed = helm.run(
        "install",
        RELEASE,
        str(CHART),
        "--create-namespace",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        "edge.autoscaling.minReplicas=2",
    )
    assert "STATUS: deployed" in installed.stdout
    assert "kubectl apply -f -" in installed.stdout  # NOTES.txt: how to start a stream
    yield helm, kubectl.in_namespace(namespace)
    helm.run("uninstall", RELEASE, "--wait", check=False)
    kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


def deployments(ns: Kubectl) -> dict[str, dict[str, Any]]:
    items = ns.get("deployments", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in items}


def pod_uids(ns: Kubectl, component: str) -> set[str]:
    pods = ns.get("pods", "-l", f"app.kubernetes.io/component={component}")["items"]
    return {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def test_install_makes_the_operator_edges_and_redis_available(
    release: tuple[Helm, Kubectl],
) -> None:
    _, ns = release

    found = deployments(ns)
    assert set(found) == {"operator", "edge"}
    for deployment in found.values():
        available = {c["type"]: c["status"] for c in deployment["status"]["conditions"]}
        assert available["Available"] == "True"
    (redis,) = ns.get("statefulsets")["items"]
    assert redis["status"].get("readyReplicas") == 1
    (hpa,) = ns.get("hpa")["items"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == found["edge"]["metadata"]["name"]
    assert ns.get("pdb")["items"]
    assert ns.get("crd", "livestreams.cascade.dev")["spec"]["names"]["kind"] == "LiveStream"


def test_a_livestream_applied_after_install_gets_its_pod(release: tuple[Helm, Kubectl]) -> None:
    _, ns = release
    ns.apply(
        {
            "apiVersion": "cascade.dev/v1alpha1",
            "kind": "LiveStream",
            "metadata": {"name": "first"},
            "spec": {"source": {"type": "test", "test": {}}},
        }
    )

    def running() -> bool:
        pods = ns.get("pods", "-l", "cascade.dev/livestream=first")["items"]
        return bool(pods) and pods[0]["status"].get("phase") == "Running"

    wait_for("the stream's transcoder pod", running, timeout=60)
    ns.run("delete", "livestream", "first", "--timeout=60s")


def test_upgrade_rolls_what_changed_and_nothing_else(release: tuple[Helm, Kubectl]) -> None:
    helm, ns = release
    operator_before, edge_before = pod_uids(ns, "operator"), pod_uids(ns, "edge")

    helm.run(
        "upgrade",
        RELEASE,
        str(CHART),
        "--reuse-values",
        "--wait",
        "--timeout",
        "180s",
        "--set",
        "operator.statusIntervalSeconds=3",
    )

    wait_for("the new operator pod", lambda: pod_uids(ns, "operator") - operator_before, 60)
    wait_for("one operator pod", lambda: len(pod_uids(ns, "operator")) == 1, 60)
    assert pod_uids(ns, "edge") == edge_before  # the edges' settings did not change
    (operator,) = [d for c, d in deployments(ns).items() if c == "operator"]
    env = {
        e["name"]: e.get("value")
        for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CASCADE_STATUS_INTERVAL_SECONDS"] == "3"


def test_the_operators_rbac_is_enough_to_run_it(
    release: tuple[Helm, Kubectl],
    kubectl: Kubectl,
    kubeconfig: Path,
    operator: Operator,
    tmp_path: Path,
) -> None:
    """The operator program, as a process, with the chart's ServiceAccount token only."""
    _, ns = release
    token = ns.run("create", "token", f"{RELEASE}-operator", "--duration=20m").stdout.strip()
    admin = yaml.safe_load(kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    restricted = tmp_path / "operator.kubeconfig"
    restricted.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "operator"}}],
                "current-context": "c",
            }
        )
    )
    assert base64.b64decode(cluster["certificate-authority-data"])
    streams = kubectl.in_namespace(f"{ns.namespace}-streams")
    kubectl.run("create", "namespace", streams.namespace or "")
    log = tmp_path / "operator.log"
    operator.stop()  # one operator at a time
    env = {
        **os.environ,
        "KUBECONFIG": str(restricted),
        "REDIS_URL": operator.redis_url,
        "CASCADE_LIVENESS_PORT": "0",
        "CASCADE_METRICS_PORT": "0",
        "CASCADE_STATUS_INTERVAL_SECONDS": "1",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "cascade-operator")], env=env, stdout=out, stderr=out
        )
    try:
        streams.apply(
            {
                "apiVersion": "cascade.dev/v1alpha1",
                "kind": "LiveStream",
                "metadata": {"name": "rbac"},
                "spec": {"source": {"type": "srt"}},
            }
        )

        def started() -> bool:
            status = streams.get("livestream", "rbac").get("status") or {}
            return status.get("phase") in ("Starting", "Live")

        wait_for("the stream reconciled by the restricted operator", started, timeout=60)
        assert streams.get("services", "-l", "cascade.dev/livestream=rbac")["items"]
        streams.run("delete", "livestream", "rbac", "--timeout=60s")  # the finalizer, too
        time.sleep(1)
        # An RBAC denial reads 'forbidden: User "system:serviceaccount:..." cannot <verb>'.
        # (Other 403s happen for reasons of their own: events into a namespace another
        # test is deleting are refused with NamespaceTerminating.)
        denials = [
            line for line in log.read_text().splitlines() if "system:serviceaccount:" in line
        ]
        assert denials == [], "\n".join(denials[:5])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        kubectl.run("delete", "namespace", streams.namespace or "", "--wait=false", check=False)
        operator.start()


def test_uninstall_leaves_only_what_the_user_keeps(kubectl: Kubectl, kubeconfig: Path) -> None:
    namespace = f"cascade-{uuid.uuid4().hex[:6]}"
    helm = Helm(kubectl.binary.parent / "helm", kubeconfig, namespace)
    # No --wait: the fake nodes have no volume provisioner, so Redis's claim stays Pending.
    helm.run(
        "install",
        "gone",
        str(CHART),
        "--create-namespace",
        "--set",
        "redis.persistence.enabled=true",
    )
    ns = kubectl.in_namespace(namespace)
    wait_for("Redis's volume claim", lambda: ns.get("pvc")["items"], timeout=60)

    helm.run("uninstall", "gone", "--wait", "--timeout", "120s")

    selector = "app.kubernetes.io/instance=gone"
    kinds = "all,serviceaccounts,configmaps,pdb,hpa,networkpolicies"
    wait_for(
        "every object of the release gone (pods go with the garbage collector)",
        lambda: not ns.get(kinds, "-l", selector)["items"],
        timeout=60,
    )
    cluster_wide = kubectl.get("clusterroles,clusterrolebindings", "-l", selector)["items"]
    assert cluster_wide == []
    # Kept on purpose: the CRD (deleting it deletes every LiveStream) and Redis's volume.
    assert kubectl.get("crd", "livestreams.cascade.dev")
    assert ns.get("pvc")["items"]
    kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
