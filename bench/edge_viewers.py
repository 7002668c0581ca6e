"""LL-HLS viewers against one edge process on one core: how many it sustains.

    .venv/bin/python bench/edge_viewers.py [--steps 250,500,1000,1500] [--seconds 15]

A synthetic transcoder publishes a 100 ms part (5 kB, 400 kbps) every 100 ms to a real
Redis, recording when each became available. The edge runs on core 1; the viewer
simulator (``bench/viewersim``, Go: blocking reload for the next part, then the part, as
hls.js does) runs on core 0 with N viewers per step. For each step: errors, part
delivery delay (received minus available) p50/p99/max, the edge's CPU and the load
generator's CPU (it must not be the bottleneck). A step passes with zero errors and p99
at most 100 ms. Prints one JSON object. Loopback only; everything started is stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO,
    Procs,
    cpu_seconds,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    percentile,
    start_edge,
    start_redis,
)

PY = sys.executable
STREAM, RENDITION = "viewers", "360p"
PART_BYTES = 5000
PART_SECONDS = 0.1
PARTS_PER_SEGMENT = 5


def build_simulator(workdir: Path) -> Path:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise SystemExit("Go is needed to build bench/viewersim")
    cache = Path(os.environ.get("CASCADE_CACHE", Path.home() / ".cache" / "cascade")) / "bin"
    cache.mkdir(parents=True, exist_ok=True)
    exe = cache / "viewersim"
    source = REPO / "bench" / "viewersim" / "main.go"
    if not exe.exists() or exe.stat().st_mtime < source.stat().st_mtime:
        log("viewers: building bench/viewersim (Go, standard library only)")
        subprocess.run(
            [go, "build", "-o", str(exe), "."], cwd=source.parent, check=True, timeout=300
        )
    return exe


class Publisher(threading.Thread):
    """A transcoder's output as the Redis contract has it: one part every 100 ms."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.r = redis.Redis.from_url(redis_url)
        self.available: dict[tuple[int, int], float] = {}
        self.stop = threading.Event()

    def announce(self) -> None:
        from cascade.contract import schema
        from cascade.contract.schema import RenditionInfo, StreamMeta, StreamState

        meta = StreamMeta(
            (RenditionInfo(RENDITION, 510_400, "avc1.64001e,mp4a.40.2", 640, 360, 30.0),),
            PART_SECONDS, PART_SECONDS * PARTS_PER_SEGMENT, 24, StreamState.LIVE, 0,
        )  # fmt: skip
        self.r.hset(schema.meta_key(STREAM), mapping=meta.encode())  # type: ignore[arg-type]
        self.r.set(schema.init_key(STREAM, RENDITION), b"init")
        self.r.sadd(schema.STREAMS_SET, STREAM)

    def run(self) -> None:
        from cascade.contract import schema
        from cascade.contract.schema import PartEntry

        key = schema.parts_key(STREAM, RENDITION)
        data = os.urandom(PART_BYTES)
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            msn, part = divmod(n, PARTS_PER_SEGMENT)
            entry = PartEntry(msn, part, PART_SECONDS, part == 0, time.time(), data)
            self.r.xadd(key, schema.encode_entry(entry), maxlen=2000, approximate=True)  # type: ignore[arg-type]
            self.available[(msn, part)] = time.time()
            n += 1
            next_at += PART_SECONDS
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def blocked_requests(url: str) -> float:
    """The edge's cascade_edge_blocked_requests gauge, read from its /metrics."""
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("cascade_edge_blocked_requests "):
                return float(line.split()[1])
    return 0.0


def redis_calls(r: Any) -> int:
    """Commands Redis has executed since it started (INFO commandstats)."""
    return sum(int(v["calls"]) for v in r.info("commandstats").values())


def run_step(exe: Path, base: str, viewers: int, seconds: float, edge_pid: int,
             publisher: Publisher, *, sessions: bool = False) -> dict[str, Any]:  # fmt: skip
    log(f"viewers: {viewers} viewers for {seconds:g} s" + (" with sessions" if sessions else ""))
    e0, t0 = cpu_seconds(edge_pid), time.monotonic()
    proc = subprocess.Popen(
        ["taskset", "-c", "0", str(exe), "-base", base, "-viewers", str(viewers),
         "-duration", f"{seconds}s", "-ramp", "2s", "-warmup", "2s",
         *(["-sessions"] if sessions else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    # Steady state: after the ramp and warm-up, over the measured seconds.
    time.sleep(4.5)
    calls0, c0 = redis_calls(publisher.r), time.monotonic()
    # The HPA's optional delivery metric, sampled over the steady state: requests held open.
    held: list[float] = []
    metrics_url = base.split("/live/", 1)[0] + "/metrics"
    end = c0 + max(1.0, seconds - 1.5)
    while time.monotonic() < end:
        held.append(blocked_requests(metrics_url))
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    calls1, c1 = redis_calls(publisher.r), time.monotonic()
    out, err = proc.communicate(timeout=seconds + 60)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - t0
    edge_cpu = (cpu_seconds(edge_pid) - e0) / wall
    summary = json.loads(err.decode().strip().splitlines()[-1])
    delays = []
    for line in out.decode().splitlines():
        msn, part, at = line.split()
        avail = publisher.available.get((int(msn), int(part)))
        if avail is not None:
            delays.append(int(at) / 1e9 - avail)
    delays.sort()
    p99 = percentile(delays, 99) * 1000 if delays else None
    return {
        "viewers": viewers,
        "errors": summary["errors"],
        "requests": summary["requests"],
        "requests_per_second": round(summary["requests"] / summary["seconds"], 1),
        "parts_received": len(delays),
        "delay_ms": {
            "p50": round(percentile(delays, 50) * 1000, 1) if delays else None,
            "p99": round(p99, 1) if p99 is not None else None,
            "max": round(delays[-1] * 1000, 1) if delays else None,
        },
        "edge_cpu_cores": round(edge_cpu, 2),
        # cascade_edge_blocked_requests (the HPA's delivery metric) per viewer, mean.
        "blocked_requests_per_viewer": round(statistics.fmean(held) / viewers, 2) if held else None,
        "sessions": sessions,
        "redis_commands_per_second": round((calls1 - calls0) / (c1 - c0), 1),
        "client_cpu_seconds_total": round(usage.ru_utime + usage.ru_stime, 2),
        "passed": summary["errors"] == 0 and p99 is not None and p99 <= 100,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="250,500,1000,1500")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--session-viewers",
        type=int,
        default=1000,
        help="viewers of the session-cost step (with and without hls_ctx)",
    )
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s]
    install_sigterm_as_interrupt()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": loadavg(),
    }
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="cascade-viewers-") as tmp:
        work = Path(tmp)
        exe = build_simulator(work)
        publisher: Publisher | None = None
        try:
            redis_url, _ = start_redis(procs, work)
            publisher = Publisher(redis_url)
            publisher.announce()
            publisher.start()
            port, edge = start_edge(procs, redis_url, cpu=1)
            time.sleep(1.5)
            base = f"http://127.0.0.1:{port}/live/{STREAM}/{RENDITION}/"
            result["steps"] = []
            prev_client = 0.0
            for viewers in steps:
                step = run_step(exe, base, viewers, args.seconds, edge.pid, publisher)
                # RUSAGE_CHILDREN accumulates over every waited child: take the difference.
                total = step.pop("client_cpu_seconds_total")
                step["client_cpu_cores"] = round((total - prev_client) / (args.seconds + 4), 2)
                prev_client = total
                result["steps"].append(step)
                log(f"viewers: {json.dumps(step)}")
            # Session cost: the same load with anonymous sessions (hls_ctx), minus without.
            n = args.session_viewers
            if n > 0:  # 0: no session-cost step
                without = next((s for s in result["steps"] if s["viewers"] == n), None)
                if without is None:
                    without = run_step(exe, base, n, args.seconds, edge.pid, publisher)
                    total = without.pop("client_cpu_seconds_total")
                    without["client_cpu_cores"] = round(
                        (total - prev_client) / (args.seconds + 4), 2
                    )
                    prev_client = total
                    result["steps"].append(without)
                with_sessions = run_step(
                    exe, base, n, args.seconds, edge.pid, publisher, sessions=True
                )
                total = with_sessions.pop("client_cpu_seconds_total")
                with_sessions["client_cpu_cores"] = round(
                    (total - prev_client) / (args.seconds + 4), 2
                )
                result["steps"].append(with_sessions)
                log(f"viewers: {json.dumps(with_sessions)}")
                extra = (
                    with_sessions["redis_commands_per_second"]
                    - without["redis_commands_per_second"]
                )
                result["session_cost"] = {
                    "viewers": n,
                    "redis_commands_per_second_without_sessions": without[
                        "redis_commands_per_second"
                    ],
                    "redis_commands_per_second_with_sessions": with_sessions[
                        "redis_commands_per_second"
                    ],
                    "redis_commands_per_viewer_per_second": round(max(0.0, extra) / n, 4),
                    "target": 0.2,
                }
        finally:
            if publisher is not None:
                publisher.stop.set()
            procs.stop_all()
    passed = [s["viewers"] for s in result["steps"] if s["passed"] and not s["sessions"]]
    result["max_viewers_sustained"] = max(passed) if passed else 0
    result["target"] = "1000 viewers per edge core, zero errors, p99 <= 100 ms"
    result["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
