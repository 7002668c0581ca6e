"""`make cluster-down` leaves nothing behind: no process, mount, network namespace, interface,
iptables rule or cgroup of the cluster, after its real node has run a pod.

A cluster of its own (its own state dir and network namespace, no operator hook) is brought up
beside the session's, given a pod, and taken down; what the machine holds before and after is
compared. The cluster's interfaces and iptables rules exist only inside its network namespace,
so the namespace being gone (no bind mount, no process in it) is what says they are gone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from . import netns
from .conftest import REPO, Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def mounts_mentioning(*texts: str) -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line for line in lines if any(t in line for t in texts)]


def namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


def namespace_of_pid(pid: int) -> str:
    """The /run/netns entry that is the network namespace of process `pid`."""
    inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    (name,) = [n for n in namespaces() if os.stat(f"/run/netns/{n}").st_ino == inode]
    return name


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone since listed
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def net_namespaces_in_use() -> set[int]:
    inodes = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
            except OSError:
                continue
    return inodes


def test_cluster_down_leaves_no_process_mount_namespace_or_cgroup(tmp_path: Path) -> None:
    state = tmp_path / "c"
    env = {**os.environ, "CASCADE_CLUSTER_DIR": str(state), "CASCADE_CLUSTER_AFTER_UP": ""}
    up = subprocess.run(
        [str(REPO / "scripts" / "cluster-up.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    ours: set[str] = set()  # network namespaces: the cluster's and its pod's
    ids: list[str] = []  # the pod's sandbox and container ids (their cgroups are named so)
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        assert up.stdout.strip().splitlines()[-1] == f"KUBECONFIG={state}/kubeconfig"
        ns_path = netns.namespace_of(state)
        ns_inode = os.stat(ns_path).st_ino
        ours.add(ns_path.name)
        kubectl = Kubectl(state / "bin" / "kubectl", state / "kubeconfig", "default")
        kubectl.run(
            "run",
            "sleeper",
            "--image=localhost/cascade/edge:local",
            "--image-pull-policy=Never",
            "--restart=Never",
            "--overrides",
            '{"spec": {"tolerations": [{"key": "cascade.dev/node", "operator": "Exists"}],'
            ' "nodeSelector": {"cascade.dev/node": "real"}}}',
            "--command",
            "--",
            "python",
            "-c",
            "import time; time.sleep(3600)",
        )
        kubectl.run("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=120s")
        crictl = [
            "nsenter",
            f"--net={ns_path}",
            "--",
            str(state / "bin" / "crictl"),
            "--runtime-endpoint",
            f"unix://{state}/node/containerd.sock",
        ]
        (sandbox,) = subprocess.run(
            [*crictl, "pods", "-q", "--name", "sleeper"], capture_output=True, text=True, check=True
        ).stdout.split()
        ids = [
            sandbox,
            *subprocess.run(
                [*crictl, "ps", "-a", "-q", "--pod", sandbox],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split(),
        ]
        info = json.loads(
            subprocess.run(
                [*crictl, "inspectp", sandbox], capture_output=True, text=True, check=True
            ).stdout
        )
        ours.add(namespace_of_pid(info["info"]["pid"]))
        assert mounts_mentioning(str(state)), "the running pod has mounts (rootfs, volumes)"
        assert [p for i in ids for p in Path("/sys/fs/cgroup").glob(f"*/k8s.io/{i}")]
        # kube-proxy's rules are in the cluster's namespace (and go with it).
        inside = subprocess.run(
            ["nsenter", f"--net={ns_path}", "--", "iptables-save"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "KUBE-SERVICES" in inside
    finally:
        down = subprocess.run(
            [str(REPO / "scripts" / "cluster-down.sh")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert down.returncode == 0, down.stderr
    assert not state.exists()
    assert processes_mentioning(str(state)) == []
    assert mounts_mentioning(str(state), *ours) == []
    assert not ours & namespaces()
    assert ns_inode not in net_namespaces_in_use()  # no process keeps it (or its rules) alive
    assert [p for i in ids for p in Path("/sys/fs/cgroup").glob(f"*/k8s.io/{i}")] == []
