"""The cluster tier: a real cluster for the tests of this directory.

`scripts/cluster-up.sh` builds the binaries and images when the caches lack them (once per
machine), starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (the
fake GPU and CPU nodes) and the real node (containerd, kubelet, kube-proxy, CoreDNS,
metrics-server) in a network namespace and state dir of this session's own (so a developer's
`make cluster-up` is left alone), runs the same hook as `make cluster-up`
(scripts/cluster-operator.sh: the CRD, a Redis and the operator, here with short intervals),
and `scripts/cluster-down.sh` stops it all after the last test here. While they run, the
tests' thread is inside the cluster's network namespace (tests/cluster/netns.py): they are
its clients, as kubectl and helm are.

Set CASCADE_TEST_KUBECONFIG to the kubeconfig of a cluster that is already up (the last line
of `make cluster-up`) to run the tests against it instead; it is then neither started nor
stopped here (its operator runs with the settings it was started with). Each test works in
a namespace of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from . import netns

REPO = Path(__file__).resolve().parents[2]
# A cold build of the binaries takes a while on two cores; later sessions start in seconds.
UP_TIMEOUT_S = 3600
T = TypeVar("T")
# The operator of the test cluster: the defaults, but with short timers so tests are quick.
OPERATOR_ENV = {
    "CASCADE_CLUSTER_AFTER_UP": "scripts/cluster-operator.sh",
    "CASCADE_STATUS_INTERVAL_SECONDS": "1",
    "CASCADE_RESTART_BACKOFF_SECONDS": "1",
    "CASCADE_CLEANUP_ATTEMPTS": "3",
    # One NVENC session per GPU: the 32 fake GPUs give a budget of 32 sessions, small
    # enough for a test to exhaust (the 25 one-rendition streams of another test fit).
    "CASCADE_NVENC_SESSIONS_PER_GPU": "1",
    "CASCADE_LOG_FORMAT": "json",
}


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll `probe` until it returns something truthy, and return that; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


class Kubectl:
    """The cluster's kubectl (built with it), always with the session's kubeconfig."""

    def __init__(self, binary: Path, kubeconfig: Path, namespace: str | None = None) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def in_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.binary, self.kubeconfig, namespace)

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "--kubeconfig", str(self.kubeconfig)]
        if self.namespace is not None:
            argv += ["--namespace", self.namespace]
        proc = subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, timeout=120
        )
        if check and proc.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def apply(self, manifest: dict[str, Any]) -> None:
        self.run("apply", "-f", "-", stdin=json.dumps(manifest))

    def get(self, *args: str) -> Any:
        return json.loads(self.run("get", *args, "-o", "json").stdout)


@pytest.fixture(scope="package")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The cluster's kubeconfig; this thread is inside the cluster's namespace meanwhile."""
    given = os.environ.get("CASCADE_TEST_KUBECONFIG")
    if given:
        with netns.entered(netns.namespace_of(Path(given).parent)):
            yield Path(given)
        return
    env = {
        **os.environ,
        **OPERATOR_ENV,
        "CASCADE_CLUSTER_DIR": str(tmp_path_factory.mktemp("cluster")),
    }
    down = [str(REPO / "scripts" / "cluster-down.sh")]
    try:
        up = subprocess.run(
            [str(REPO / "scripts" / "cluster-up.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        subprocess.run(down, env=env, capture_output=True, timeout=120)
        raise
    lines = up.stdout.strip().splitlines()
    if up.returncode != 0 or not lines or not lines[-1].startswith("KUBECONFIG="):
        subprocess.run(down, env=env, capture_output=True, timeout=120)
        pytest.fail(f"cluster-up failed ({up.returncode}):\n{up.stderr[-4000:]}")
    path = Path(lines[-1].removeprefix("KUBECONFIG="))
    try:
        with netns.entered(netns.namespace_of(path.parent)):
            yield path
    finally:
        subprocess.run(down, env=env, capture_output=True, timeout=120, check=True)


@pytest.fixture(scope="package")
def kubectl(kubeconfig: Path) -> Kubectl:
    bin_dir = subprocess.run(
        [str(REPO / "scripts" / "cluster-build.sh"), "--print"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Kubectl(Path(bin_dir) / "kubectl", kubeconfig)


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[Kubectl]:
    """kubectl bound to a fresh namespace, deleted (without waiting) after the test."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    # Pods need the namespace's `default` service account, made by the controller-manager.
    wait_for(
        f"service account default in {name}",
        lambda: (
            kubectl.run("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0
        ),
        timeout=30,
    )
    yield kubectl.in_namespace(name)
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


class Operator:
    """The operator process of the test cluster and its Redis (scripts/cluster-operator.sh)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.state = kubeconfig.parent  # cluster-up.sh writes the kubeconfig into its state dir
        self.kubeconfig = kubeconfig
        self.env = dict(
            line.split("=", 1)
            for line in (self.state / "operator.env").read_text().splitlines()
            if "=" in line
        )

    @property
    def redis_url(self) -> str:
        return self.env["REDIS_URL"]

    def pid(self) -> int:
        return int((self.state / "pids" / "operator.pid").read_text().split()[0])

    def get(self, url_key: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.env[url_key], timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self, name: str = "operator") -> None:
        """SIGTERM the recorded process group (operator or redis) and wait for it to end."""
        pid = int((self.state / "pids" / f"{name}.pid").read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        wait_for(f"{name} to exit", lambda: not _alive(pid), timeout=30)

    def start(self) -> None:
        """Run the hook again: it starts what is not running (same ports, same settings)."""
        bin_dir = self.state / "bin"
        env = {
            **os.environ,
            **OPERATOR_ENV,
            "KUBECONFIG": str(self.kubeconfig),
            "CASCADE_CLUSTER_DIR": str(self.state),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
        }
        proc = subprocess.run(
            [str(REPO / "scripts" / "cluster-operator.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(f"cluster-operator.sh failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="package")
def operator(kubeconfig: Path) -> Operator:
    return Operator(kubeconfig)
