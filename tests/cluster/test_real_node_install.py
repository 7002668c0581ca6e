"""`helm install` with values-local.yaml onto the real node: the pods run for real and a stream
is served through the edge Service.

The chart's operator, edge and Redis run from the images `make images` built (imported into
the node's containerd); a LiveStream with the `test` source and `hardware: cpu` gets a
transcoder pod that runs FFmpeg; `kubectl port-forward svc/...-edge` (from inside the
cluster's namespace, like every client here) then serves the player page, hls.js and an LL-HLS
rendition playlist with parts. The session's operator process (scripts/cluster-operator.sh)
watches every namespace, so it is stopped meanwhile: two operators would fight over the
stream.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, Kubectl, Operator, wait_for
from .test_helm_install import Helm

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

CHART = REPO / "helm" / "cascade"
LOCAL_VALUES = CHART / "values-local.yaml"


@pytest.fixture
def no_session_operator(kubeconfig: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop the session's operator process, if it has one (a cluster brought up with
    CASCADE_CLUSTER_AFTER_UP= has none), and start it again afterwards."""
    if not (kubeconfig.parent / "pids" / "operator.pid").exists():
        yield
        return
    operator: Operator = request.getfixturevalue("operator")
    operator.stop()
    try:
        yield
    finally:
        operator.start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except OSError:
        return None


def test_install_on_the_real_node_serves_a_live_stream_through_the_edge_service(
    kubectl: Kubectl, kubeconfig: Path, no_session_operator: None
) -> None:
    namespace = f"real-{uuid.uuid4().hex[:6]}"
    stream = f"real{uuid.uuid4().hex[:6]}"
    helm = Helm(kubectl.binary.parent / "helm", kubeconfig, namespace)
    ns = kubectl.in_namespace(namespace)
    started = time.monotonic()
    helm.run(
        "install", "local", str(CHART), "--create-namespace", "-f", str(LOCAL_VALUES),
        "--set", f"operator.watchNamespace={namespace}", "--wait", "--timeout", "300s",
    )  # fmt: skip
    install_s = time.monotonic() - started
    forward: subprocess.Popen[bytes] | None = None
    try:
        pods = ns.get("pods")["items"]
        assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods} == {
            "operator", "edge", "redis",
        }  # fmt: skip
        for pod in pods:
            assert pod["spec"]["nodeName"] == "cascade-node"
            assert pod["status"]["phase"] == "Running"
            assert all(c["ready"] for c in pod["status"]["containerStatuses"])

        applied = time.monotonic()
        ns.apply(
            {
                "apiVersion": "cascade.dev/v1alpha1",
                "kind": "LiveStream",
                "metadata": {"name": stream},
                "spec": {
                    "source": {"type": "test", "test": {"width": 640, "height": 360}},
                    "transcode": {
                        "hardware": "cpu",
                        "renditions": [
                            {"name": "360p", "width": 640, "height": 360, "videoBitrateKbps": 400}
                        ],
                    },
                    "delivery": {"segmentDurationMs": 1000, "partDurationMs": 200},
                    "scheduling": {
                        "nodeSelector": {"cascade.dev/node": "real"},
                        "tolerations": [
                            {"key": "cascade.dev/node", "operator": "Equal", "value": "real",
                             "effect": "NoSchedule"}
                        ],
                    },
                },
            }
        )  # fmt: skip
        port = free_port()
        forward = subprocess.Popen(
            [str(kubectl.binary), "--kubeconfig", str(kubeconfig), "-n", namespace,
             "port-forward", "svc/local-cascade-edge", f"{port}:80"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"

        def first_part() -> bytes | None:
            got = fetch(f"{base}/live/{stream}/360p/index.m3u8")
            return got[1] if got and got[0] == 200 and b"#EXT-X-PART:" in got[1] else None

        playlist = wait_for("a rendition playlist with parts", first_part, timeout=180)
        first_part_s = time.monotonic() - applied
        assert b"#EXT-X-PRELOAD-HINT:TYPE=PART" in playlist
        (pod,) = [p for p in ns.get("pods")["items"] if p["metadata"]["name"].startswith(stream)]
        assert pod["spec"]["nodeName"] == "cascade-node"
        ps = ns.run("exec", pod["metadata"]["name"], "--", "sh", "-c", "cat /proc/[0-9]*/comm")
        assert "ffmpeg" in ps.stdout.split()
        wait_for(
            "the LiveStream Live",
            lambda: ns.get("livestream", stream).get("status", {}).get("phase") == "Live",
            timeout=60,
        )
        watch = fetch(f"{base}/watch/{stream}")
        assert watch is not None and watch[0] == 200
        hls = fetch(f"{base}/static/hls.min.js")
        assert hls is not None and hls[0] == 200 and len(hls[1]) > 100_000
        print(f"install -> all Ready {install_s:.1f} s; apply -> first part {first_part_s:.1f} s")
    finally:
        if forward is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(forward.pid, signal.SIGTERM)
            forward.wait(10)
        ns.run("delete", "livestream", stream, "--wait=true", "--timeout=60s", check=False)
        helm.run("uninstall", "local", "--wait", check=False)
        kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)
