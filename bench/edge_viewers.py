"""LL-HLS viewers against one edge core, on the stack of ``make run``, beside a reference.

    .venv/bin/python bench/edge_viewers.py [--steps 1000,1500] [--seconds 15]
        [--no-sessions] [--no-skip] [--no-reference] [--synthetic]

``cascade up`` (what ``make run`` runs) with the demo stream: real FFmpeg (libx264, 100 ms
parts), Redis, the transcoder, all on core 0; its edge process moved alone to core 1
(``taskset``). The viewer simulator (``bench/viewersim``, Go) runs on core 0 as hls.js
does in low-latency mode: the multivariant playlist for a session (``hls_ctx``), then a
blocking reload for the next part with a delta update (``_HLS_skip=YES``), then the part.
A part's availability is the time Redis stamped its XADD (the entry ID).

Reference, in the same run on the same core: ``bench/viewersim/reforigin``, a minimal LL-HLS
origin in Go (net/http) that mirrors the edge's stream and serves the same bytes with
blocking reloads and delta updates to the same simulator. Per step: errors, part delay
(received minus available) p50/p99/max, the server's CPU and CPU per request, the
simulator's CPU (it must not be the limit); then the edge-to-reference ratios. A step
passes with zero errors and p99 at most 100 ms. Prints one JSON object. Loopback only;
everything started is stopped. ``--synthetic``: the old setup (a synthetic 5 kB part
publisher and a bare edge), for runs without FFmpeg.
"""

from __future__ import annotations

import argparse
import contextlib
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
    descendants,
    free_tcp_port,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    percentile,
    start_edge,
    start_redis,
    wait_tcp,
)

PY = sys.executable
STREAM, RENDITION = "viewers", "360p"
STACK_STREAM, STACK_RENDITION = "demo", "360p"  # examples/local/demo.yaml
PART_BYTES = 5000
PART_SECONDS = 0.1
PARTS_PER_SEGMENT = 5


def build_go(program: str) -> Path:
    """``bench/viewersim`` (the simulator) or ``bench/viewersim/reforigin`` (the reference
    origin), built into the cache once per source change (Go, standard library only)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise SystemExit("Go is needed to build bench/viewersim")
    cache = Path(os.environ.get("CASCADE_CACHE", Path.home() / ".cache" / "cascade")) / "bin"
    cache.mkdir(parents=True, exist_ok=True)
    source = REPO / "bench" / "viewersim" / ("" if program == "viewersim" else program)
    exe = cache / program
    newest = max(f.stat().st_mtime for f in source.glob("*.go"))
    if not exe.exists() or exe.stat().st_mtime < newest:
        log(f"viewers: building {source.relative_to(REPO)} (Go, standard library only)")
        subprocess.run([go, "build", "-o", str(exe), "."], cwd=source, check=True, timeout=300)
    return exe


def build_simulator(workdir: Path) -> Path:
    return build_go("viewersim")


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


class Arrivals(threading.Thread):
    """When each part of the real stack's stream became available: the millisecond Redis
    stamped its XADD with (the stream entry's ID), read as the parts arrive."""

    def __init__(self, redis_url: str, stream: str, rendition: str) -> None:
        super().__init__(daemon=True)
        import redis

        self.r = redis.Redis.from_url(redis_url)
        self._reader = redis.Redis.from_url(redis_url)
        self.key = f"cascade:stream:{stream}:r:{rendition}:parts"
        self.available: dict[tuple[int, int], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        last: Any = "$"
        while not self.stop.is_set():
            answer: Any = self._reader.xread({self.key: last}, block=500)
            for _key, entries in answer or ():
                for entry_id, fields in entries:
                    last = entry_id
                    if fields.get(b"k") == b"part":
                        ms = int(entry_id.split(b"-")[0])
                        self.available[(int(fields[b"msn"]), int(fields[b"part"]))] = ms / 1000


Source = Publisher | Arrivals


def run_step(exe: Path, base: str, viewers: int, seconds: float, server_pid: int | list[int],
             source: Source, *, sessions: bool = False, skip: bool = False,
             also: dict[str, int] | None = None, client_cpus: str = "0") -> dict[str, Any]:  # fmt: skip
    """N simulated viewers (on core 0) against ``base`` for ``seconds`` after a 2 s ramp
    and 2 s warm-up. ``server_pid`` is the server measured (several: an edge pod's
    processes, summed and each reported); ``also`` names other processes whose CPU over
    the step is reported beside it; ``client_cpus`` the simulator's cores (taskset)."""
    pids = server_pid if isinstance(server_pid, list) else [server_pid]
    what = " with sessions" if sessions else ""
    what += " and delta updates" if skip else ""
    log(f"viewers: {viewers} viewers for {seconds:g} s{what} -> {base}")
    others = {name: cpu_seconds(pid) for name, pid in (also or {}).items()}
    each0 = [cpu_seconds(pid) for pid in pids]
    t0 = time.monotonic()
    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        ["taskset", "-c", client_cpus, str(exe), "-base", base, "-viewers", str(viewers),
         "-duration", f"{seconds}s", "-ramp", "2s", "-warmup", "2s",
         *(["-sessions"] if sessions else []), *(["-skip"] if skip else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "GOGC": "400"},  # the simulator's GC: less of its core
    )  # fmt: skip
    # Steady state: after the ramp and warm-up, over the measured seconds.
    time.sleep(4.5)
    calls0, c0 = redis_calls(source.r), time.monotonic()
    # The HPA's optional delivery metric, sampled over the steady state: requests held open.
    held: list[float] = []
    metrics_url = base.split("/live/", 1)[0] + "/metrics"
    end = c0 + max(1.0, seconds - 1.5)
    while time.monotonic() < end:
        if also is None:  # the edge itself is measured: it has the metric
            held.append(blocked_requests(metrics_url))
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    calls1, c1 = redis_calls(source.r), time.monotonic()
    out, err = proc.communicate(timeout=seconds + 60)
    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.monotonic() - t0
    each = [cpu_seconds(pid) - before for pid, before in zip(pids, each0, strict=True)]
    server_cpu = sum(each)
    summary = json.loads(err.decode().strip().splitlines()[-1])
    delays = []
    for line in out.decode().splitlines():
        msn, part, at = line.split()
        avail = source.available.get((int(msn), int(part)))
        if avail is not None:
            delays.append(int(at) / 1e9 - avail)
    delays.sort()
    p99 = percentile(delays, 99) * 1000 if delays else None
    client_cpu = (client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)
    step = {
        "viewers": viewers,
        "errors": summary["errors"],
        "requests": summary["requests"],
        "requests_per_second": round(summary["requests"] / summary["seconds"], 1),
        "delta_playlists": summary.get("delta_playlists", 0),
        "parts_received": len(delays),
        "delay_ms": {
            "p50": round(percentile(delays, 50) * 1000, 1) if delays else None,
            "p99": round(p99, 1) if p99 is not None else None,
            "max": round(delays[-1] * 1000, 1) if delays else None,
        },
        "server_cpu_cores": round(server_cpu / wall, 3),
        **({"server_cpu_cores_each": [round(c / wall, 3) for c in each]} if len(pids) > 1 else {}),
        # Over the simulator's whole run (ramp included), idle work of the server too.
        "server_cpu_us_per_request": round(server_cpu / max(1, summary["requests"]) * 1e6, 1),
        # cascade_edge_blocked_requests (the HPA's delivery metric) per viewer, mean.
        "blocked_requests_per_viewer": round(statistics.fmean(held) / viewers, 2) if held else None,
        "sessions": sessions,
        "delta_updates": skip,
        "redis_commands_per_second": round((calls1 - calls0) / (c1 - c0), 1),
        "client_cpu_cores": round(client_cpu / wall, 3),
        "passed": summary["errors"] == 0 and p99 is not None and p99 <= 100,
    }
    for name, before in others.items():
        with contextlib.suppress(ProcessLookupError):
            step[f"{name}_cpu_cores"] = round((cpu_seconds((also or {})[name]) - before) / wall, 3)
    return step


def start_stack(procs: Procs, work: Path, processes: int = 1) -> tuple[int, list[int], str]:
    """``cascade up`` (what ``make run`` runs) with the demo stream only, on free ports,
    pinned to core 0; its edge process then moved alone to core 1. Returns the edge's
    port, its pids and the Redis URL, once the demo serves parts. ``processes`` > 1: the
    edge is that many processes on one port (CASCADE_EDGE_PROCESSES), process i on core
    i (mod the cores)."""
    streams = work / "streams"
    streams.mkdir()
    shutil.copy(REPO / "examples" / "local" / "demo.yaml", streams / "demo.yaml")
    port, redis_port = free_tcp_port(), free_tcp_port()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(CASCADE_REDIS_PORT=str(redis_port), CASCADE_LOG_LEVEL="WARNING",
               CASCADE_EDGE_PROCESSES=str(processes))  # fmt: skip
    os.environ.pop("REDIS_URL", None)
    cascade = procs.spawn(
        "cascade up",
        ["taskset", "-c", "0", PY, "-m", "cascade.cli.main", "up", "--streams-dir",
         str(streams), "--port", str(port)],
        env=env, cwd=work,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    edge_pid = None
    while edge_pid is None:
        if cascade.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench: cascade up did not start its edge")
        for st in descendants(cascade.pid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{st.pid}/cmdline").read_bytes()
                if b"cascade.edge.main" in cmdline:
                    edge_pid = st.pid
        time.sleep(0.1)
    pids = [edge_pid]
    if processes > 1:  # the supervisor's processes serve; it only waits
        while len(pids := [st.pid for st in descendants(edge_pid)]) < processes:
            if time.monotonic() > deadline:
                raise SystemExit("bench: the edge's processes did not start")
            time.sleep(0.1)
    # Every thread of the edge, alone on core 1; Redis, the transcoder, FFmpeg stay on 0.
    cores = os.cpu_count() or 1
    for i, pid in enumerate(pids):
        core = "1" if processes == 1 else str(i % cores)
        subprocess.run(["taskset", "-a", "-p", "-c", core, str(pid)], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/live/{STACK_STREAM}/{STACK_RENDITION}/index.m3u8"
    while True:
        if cascade.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench: the demo stream did not start within 60 s")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if b"#EXT-X-PRELOAD-HINT" in response.read():
                break
        time.sleep(0.2)
    return port, pids, f"redis://127.0.0.1:{redis_port}/0"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", default="1000,1500")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--synthetic", action="store_true",
        help="a synthetic publisher (5 kB parts) and a bare edge instead of cascade up",
    )  # fmt: skip
    parser.add_argument("--sessions", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--skip", action=argparse.BooleanOptionalAction, default=True,
                        help="delta updates (_HLS_skip=YES), as hls.js asks for them")  # fmt: skip
    parser.add_argument(
        "--reference", action=argparse.BooleanOptionalAction, default=True,
        help="the same steps against the Go reference origin (bench/viewersim/reforigin)",
    )  # fmt: skip
    parser.add_argument(
        "--processes", type=int, default=1,
        help="edge processes on one port (CASCADE_EDGE_PROCESSES), process i on core i",
    )  # fmt: skip
    parser.add_argument("--client-cpus", default="0", help="the simulator's cores (taskset -c)")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",") if s]
    install_sigterm_as_interrupt()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": loadavg(),
        "setup": "synthetic publisher + edge" if args.synthetic else
                 "cascade up (make run): demo stream, real FFmpeg, Redis, transcoder on core 0",
        "sessions": args.sessions, "delta_updates": args.skip,
        "edge_processes": args.processes, "client_cpus": args.client_cpus,
    }  # fmt: skip
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="cascade-viewers-") as tmp:
        work = Path(tmp)
        exe = build_go("viewersim")
        ref_exe = build_go("reforigin") if args.reference else None
        source: Source | None = None
        try:
            if args.synthetic:
                redis_url, _ = start_redis(procs, work)
                publisher = Publisher(redis_url)
                publisher.announce()
                publisher.start()
                source = publisher
                port, edge = start_edge(procs, redis_url, cpu=1)
                edge_pids = [edge.pid]
                stream, rendition = STREAM, RENDITION
                time.sleep(1.5)
            else:
                port, edge_pids, redis_url = start_stack(procs, work, args.processes)
                stream, rendition = STACK_STREAM, STACK_RENDITION
                source = Arrivals(redis_url, stream, rendition)
                source.start()
            base = f"http://127.0.0.1:{port}/live/{stream}/{rendition}/"
            options: dict[str, Any] = {"sessions": args.sessions, "skip": args.skip,
                                       "client_cpus": args.client_cpus}  # fmt: skip
            result["edge"] = []
            for viewers in steps:
                step = run_step(exe, base, viewers, args.seconds, edge_pids, source, **options)
                result["edge"].append(step)
                log(f"viewers: {json.dumps(step)}")
            if ref_exe is not None:
                ref_port = free_tcp_port()
                ref = procs.spawn(
                    "reforigin",
                    ["taskset", "-c", "1", str(ref_exe), "-listen", f"127.0.0.1:{ref_port}",
                     "-upstream", base],
                    env={"GOMAXPROCS": "1"},
                )  # fmt: skip
                wait_tcp(ref_port, 20, ref)
                ref_base = f"http://127.0.0.1:{ref_port}/live/{stream}/{rendition}/"
                result["reference"] = []
                for viewers in steps:
                    step = run_step(exe, ref_base, viewers, args.seconds, ref.pid, source,
                                    also={"edge": edge_pids[0]}, **options)  # fmt: skip
                    result["reference"].append(step)
                    log(f"viewers (reference): {json.dumps(step)}")
                result["ratios"] = [
                    {
                        "viewers": e["viewers"],
                        "edge_to_reference_cpu_per_request": round(
                            e["server_cpu_us_per_request"] / r["server_cpu_us_per_request"], 2
                        ),
                        "edge_to_reference_p99": round(
                            e["delay_ms"]["p99"] / r["delay_ms"]["p99"], 2
                        ) if e["delay_ms"]["p99"] and r["delay_ms"]["p99"] else None,
                    }
                    for e, r in zip(result["edge"], result["reference"], strict=True)
                ]  # fmt: skip
        finally:
            if source is not None:
                source.stop.set()
            procs.stop_all()
    passed = [s["viewers"] for s in result["edge"] if s["passed"]]
    result["max_viewers_sustained"] = max(passed) if passed else 0
    result["target"] = "1500 viewers per edge core, zero errors, p99 <= 100 ms"
    result["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
