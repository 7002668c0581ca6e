"""The operator on the test control plane: apply-to-Running time, 100 LiveStreams, memory.

Starts a control plane of its own (scripts/cluster-up.sh with the operator hook, in a temp
state dir; the binaries come from the cache, built once), then measures:

* ``apply_to_running_s``: from the create request of one LiveStream to its transcoder pod
  Running (kwok makes a bound pod Running at once, so this is the operator + API server +
  scheduler path), and to the status showing it (phase Starting), over ``--single`` streams
  applied one after another;
* ``reconcile_100``: 100 LiveStreams created at once, time until every one has a Running pod
  and a written status (MAX_CONCURRENT_STREAMS raised so none waits);
* the operator's memory (VmRSS, VmHWM) idle and with 100 streams, and its CPU over the run.

The reference in the same run is the control plane's own cost: how long the API server takes
to create a bare Pod and have kwok run it (``bare_pod_to_running_s``).

    .venv/bin/python bench/operator_scale.py [--single 10] [--streams 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, log

from cascade.operator.kube import Kube, load_config

GROUP_PATH = "/apis/cascade.dev/v1alpha1/namespaces/{ns}/livestreams"


def livestream(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "cascade.dev/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": name},
        "spec": {"source": {"type": "test", "test": {}}},
    }


def proc_status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024  # MiB
    return fields


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


async def pods_running(kube: Kube, ns: str) -> dict[str, str]:
    pods = await kube.request("GET", f"/api/v1/namespaces/{ns}/pods")
    return {
        p["metadata"]["name"]: p["status"].get("phase", "")
        for p in pods.get("items", [])
        if p["status"].get("phase") == "Running"
    }


async def phases(kube: Kube, ns: str) -> dict[str, str]:
    items = await kube.request("GET", GROUP_PATH.format(ns=ns))
    return {
        s["metadata"]["name"]: (s.get("status") or {}).get("phase", "")
        for s in items.get("items", [])
    }


async def until(probe: Any, limit: float = 300.0, interval: float = 0.02) -> float:
    start = time.perf_counter()
    while not await probe():
        if time.perf_counter() - start > limit:
            raise TimeoutError("gave up waiting")
        await asyncio.sleep(interval)
    return time.perf_counter() - start


async def measure(kube: Kube, operator_pid: int, singles: int, many: int) -> dict[str, Any]:
    await kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
    await until(lambda: _has_default_sa(kube), limit=60)
    result: dict[str, Any] = {"operator_idle_mib": proc_status(operator_pid)}

    bare: list[float] = []
    for i in range(singles):
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"bare-{i}", "namespace": "bench"},
            "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:0"}]},
        }
        start = time.perf_counter()
        await kube.create(pod)
        await until(lambda n=f"bare-{i}": _running(kube, n))
        bare.append(time.perf_counter() - start)
    await kube.request("DELETE", "/api/v1/namespaces/bench/pods")

    to_pod: list[float] = []
    to_status: list[float] = []
    for i in range(singles):
        name = f"one-{i}"
        start = time.perf_counter()
        await kube.request("POST", GROUP_PATH.format(ns="bench"), livestream(name))
        await until(lambda n=name: _running(kube, f"{n}-transcoder"))
        to_pod.append(time.perf_counter() - start)
        await until(lambda n=name: _phase(kube, n, "Starting"))
        to_status.append(time.perf_counter() - start)
    await kube.request("DELETE", GROUP_PATH.format(ns="bench"))
    await until(lambda: _empty(kube), limit=120)

    cpu0 = cpu_seconds(operator_pid)
    start = time.perf_counter()
    await asyncio.gather(
        *(
            kube.request("POST", GROUP_PATH.format(ns="bench"), livestream(f"many-{i:03d}"))
            for i in range(many)
        )
    )
    created = time.perf_counter() - start
    all_pods = await until(lambda: _count_running(kube, many), limit=600, interval=0.2)
    all_status = await until(lambda: _all_phase(kube, many, "Starting"), limit=600, interval=0.2)
    result.update(
        bare_pod_to_running_s=_summary(bare),
        apply_to_running_s=_summary(to_pod),
        apply_to_status_s=_summary(to_status),
        reconcile_100={
            "streams": many,
            "create_requests_s": round(created, 2),
            "all_pods_running_s": round(all_pods, 2),
            "all_status_written_s": round(all_status, 2),
            "operator_cpu_s": round(cpu_seconds(operator_pid) - cpu0, 2),
        },
    )
    await asyncio.sleep(10)  # steady state: status refreshes only
    cpu1 = cpu_seconds(operator_pid)
    await asyncio.sleep(20)
    result["steady_100"] = {
        "operator_cpu_percent": round((cpu_seconds(operator_pid) - cpu1) / 20 * 100, 1),
        **proc_status(operator_pid),
    }
    return result


async def _has_default_sa(kube: Kube) -> bool:
    try:
        await kube.request("GET", "/api/v1/namespaces/bench/serviceaccounts/default")
    except Exception:
        return False
    return True


async def _running(kube: Kube, name: str) -> bool:
    return name in await pods_running(kube, "bench")


async def _phase(kube: Kube, name: str, phase: str) -> bool:
    return (await phases(kube, "bench")).get(name) == phase


async def _empty(kube: Kube) -> bool:
    return not await phases(kube, "bench") and not await pods_running(kube, "bench")


async def _count_running(kube: Kube, count: int) -> bool:
    return len(await pods_running(kube, "bench")) >= count


async def _all_phase(kube: Kube, count: int, phase: str) -> bool:
    found = await phases(kube, "bench")
    return sum(1 for p in found.values() if p == phase) >= count


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--single", type=int, default=10)
    parser.add_argument("--streams", type=int, default=100)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="cascade-bench-cluster-"))
    env = {
        **os.environ,
        "CASCADE_CLUSTER_DIR": str(state),
        "CASCADE_CLUSTER_AFTER_UP": "scripts/cluster-operator.sh",
        "MAX_CONCURRENT_STREAMS": str(max(25, args.streams * 2)),
        # The fake nodes have 80 CPUs in all: a small request lets 100 pods fit.
        "CASCADE_TRANSCODER_CPU_REQUEST": "100m",
        "CASCADE_LOG_FORMAT": "json",
    }
    log("starting a control plane with the operator in", state)
    start = time.perf_counter()
    up = subprocess.run(
        [str(REPO / "scripts/cluster-up.sh")], env=env, capture_output=True, text=True, check=False
    )
    if up.returncode != 0:
        sys.exit(f"cluster-up failed:\n{up.stderr[-3000:]}")
    up_s = time.perf_counter() - start
    try:
        os.environ["KUBECONFIG"] = str(state / "kubeconfig")
        kube = Kube(load_config())
        pid = int((state / "pids/operator.pid").read_text().split()[0])
        result = asyncio.run(measure(kube, pid, args.single, args.streams))
        result["cluster_up_with_operator_s"] = round(up_s, 1)
        print(json.dumps(result, indent=2))
    finally:
        subprocess.run(
            [str(REPO / "scripts/cluster-down.sh")], env=env, capture_output=True, check=False
        )


if __name__ == "__main__":
    main()
