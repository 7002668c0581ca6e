"""Viewers through the origin shield (Varnish) in front of one edge: offload, delay, cores.

    .venv/bin/python bench/shield_offload.py [--viewers 1000] [--streams 6] [--seconds 15]
        [--direct-viewers 300] [--plan-viewers 5000] [--plan-streams 6,25]

A synthetic transcoder output (``--streams`` streams, one rendition, 5 kB parts every
100 ms, 5 parts a segment) in a real Redis; one edge (``cascade-edge``, CMCD sessions);
the shield (``varnishd`` with the generated VCL, and ``cascade-shield-sessions``); the
Go viewer simulator (``bench/viewersim``: a blocking reload for the next part with a
delta update, then the part, CMCD sid on every request). Loopback only.

Phases, in one run:

1. ``one``: ``--viewers`` viewers spread over the streams, each watching one;
2. ``six``: the same number of viewers, each watching every stream at once (one
   simulator per stream, the same sids in each: the same viewers);
3. ``direct`` (the reference): ``--direct-viewers`` viewers of one stream straight to
   the edge, no shield: what one edge core serves alone.

Per phase: origin offload = 1 - (requests the edge answered) / (requests the players
sent); part delay (received minus the publisher's XADD time) p50/p99/max; the CPU of
the shield (varnishd's processes), the edge, the session counter, the simulator; viewers
per shield core and per edge core; the viewers /status, /health and /metrics report
against the number simulated. Then a sizing table for ``--plan-viewers`` viewers x 6
streams each, computed from the measured per-core figures. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
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
from bench.edge_viewers import PART_BYTES, PART_SECONDS, PARTS_PER_SEGMENT, redis_calls

PY = sys.executable
RENDITION = "360p"
VIEWER_TIMEOUT = 5  # seconds: sessions of one phase are gone before the next is counted
TARGET_OFFLOAD = 0.99
TARGET_P99_MS = 150.0


class Publisher(threading.Thread):
    """``streams`` streams' parts every 100 ms, as the transcoder writes them."""

    def __init__(self, redis_url: str, streams: list[str]) -> None:
        super().__init__(daemon=True)
        import redis

        self.r = redis.Redis.from_url(redis_url)
        self.streams = streams
        self.available: dict[tuple[str, int, int], float] = {}
        self.stop = threading.Event()

    def announce(self) -> None:
        from cascade.contract import schema
        from cascade.contract.schema import RenditionInfo, StreamMeta, StreamState

        for name in self.streams:
            meta = StreamMeta(
                (RenditionInfo(RENDITION, 510_400, "avc1.64001e,mp4a.40.2", 640, 360, 30.0),),
                PART_SECONDS, PART_SECONDS * PARTS_PER_SEGMENT, 24, StreamState.LIVE, 0,
            )  # fmt: skip
            self.r.hset(schema.meta_key(name), mapping=meta.encode())  # type: ignore[arg-type]
            self.r.set(schema.init_key(name, RENDITION), b"init")
            self.r.sadd(schema.STREAMS_SET, name)

    def run(self) -> None:
        from cascade.contract import schema
        from cascade.contract.schema import PartEntry

        data = os.urandom(PART_BYTES)
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            msn, part = divmod(n, PARTS_PER_SEGMENT)
            pipe = self.r.pipeline(transaction=False)
            for name in self.streams:
                entry = PartEntry(msn, part, PART_SECONDS, part == 0, time.time(), data)
                pipe.xadd(schema.parts_key(name, RENDITION), schema.encode_entry(entry),  # type: ignore[arg-type]
                          maxlen=2000, approximate=True)  # fmt: skip
            pipe.execute()
            now = time.time()
            for name in self.streams:
                self.available[(name, msn, part)] = now
            n += 1
            next_at += PART_SECONDS
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def build_simulator() -> Path:
    """bench/viewersim built into the cache under its source's hash: a tree with another
    version of the simulator (another branch) never overwrites the one this run needs."""
    import hashlib
    import shutil

    go = shutil.which("go") or "/usr/local/go/bin/go"
    source = REPO / "bench" / "viewersim"
    digest = hashlib.sha256()
    for f in [*sorted(source.glob("*.go")), source / "go.mod"]:
        digest.update(f.read_bytes())
    cache = Path(os.environ.get("CASCADE_CACHE", Path.home() / ".cache" / "cascade")) / "bin"
    cache.mkdir(parents=True, exist_ok=True)
    exe = cache / f"viewersim-{digest.hexdigest()[:12]}"
    if not exe.exists():
        log(f"shield: building bench/viewersim into {exe}")
        tmp = exe.with_suffix(".tmp")
        subprocess.run([go, "build", "-o", str(tmp), "."], cwd=source, check=True, timeout=300)
        tmp.rename(exe)
    return exe


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (varnishd: manager and cache child)."""
    return cpu_seconds(pid) + sum(cpu_seconds(st.pid) for st in descendants(pid))


def edge_live_requests(port: int) -> int:
    """LL-HLS requests the edge answered (cascade_edge_requests_total of the LL-HLS
    routes: media_playlist, part, init, error, ...), from its /metrics."""
    total = 0.0
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("cascade_edge_requests_total{"):
                labels, value = line.rsplit(" ", 1)
                route = labels.split('route="', 1)[1].split('"', 1)[0]
                # FastAPI's routes are their paths (/status, /metrics); LL-HLS's are names.
                if not route.startswith("/") and route != "unmatched":
                    total += float(value)
    return int(total)


def viewer_counts(port: int) -> dict[str, Any]:
    """What /status, /health and /metrics say of the viewers (read through ``port``)."""
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(base + "/status", timeout=10) as r:
        status = json.loads(r.read())
    with urllib.request.urlopen(base + "/health", timeout=10) as r:
        health = json.loads(r.read())
    metric = None
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("cascade_edge_viewers_total_current "):
                metric = int(float(line.split()[1]))
    return {
        "status_total": status["viewers"],
        "status_per_stream": {n: s["viewers"] for n, s in status["streams"].items()},
        "health": health["viewers"],
        "metrics": metric,
    }


def run_phase(
    name: str, exe: Path, port: int, plan: list[tuple[str, int, str]], seconds: float,
    pids: dict[str, int], publisher: Publisher, counts_port: int, expected: dict[str, int],
    edge_port: int,
) -> dict[str, Any]:  # fmt: skip
    """One simulator per (stream, viewers, sid prefix) of ``plan``, at once, against ``port``."""
    viewer_streams = sum(n for _, n, _ in plan)
    log(f"shield: phase {name}: {viewer_streams} viewer-streams for {seconds:g} s -> :{port}")
    cpu0 = {k: tree_cpu(p) for k, p in pids.items()}
    client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    edge0, calls0, t0 = edge_live_requests(edge_port), redis_calls(publisher.r), time.monotonic()
    sims = [
        (stream, subprocess.Popen(
            [str(exe), "-base", f"http://127.0.0.1:{port}/live/{stream}/{RENDITION}/",
             "-viewers", str(n), "-duration", f"{seconds}s", "-ramp", "3s", "-warmup", "2s",
             "-skip", "-cmcd-sid-prefix", prefix],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        ))
        for stream, n, prefix in plan
    ]  # fmt: skip
    # The counts, sampled in the steady state: after the ramp, the warm-up and a flush.
    samples = []
    time.sleep(3 + 2 + 3)
    end = t0 + 5 + seconds - 1
    while time.monotonic() < end:
        samples.append(viewer_counts(counts_port))
        time.sleep(1.0)
    outputs = [(stream, *proc.communicate(timeout=seconds + 120)) for stream, proc in sims]
    wall = time.monotonic() - t0
    edge_answered = edge_live_requests(edge_port) - edge0
    calls = redis_calls(publisher.r) - calls0
    client1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = {k: round((tree_cpu(p) - cpu0[k]) / wall, 3) for k, p in pids.items()}
    cpu["simulator"] = round(
        ((client1.ru_utime + client1.ru_stime) - (client0.ru_utime + client0.ru_stime)) / wall, 3
    )
    sent = errors = 0
    delays: list[float] = []
    for stream, out, err in outputs:
        summary = json.loads(err.decode().strip().splitlines()[-1])
        sent += summary["requests"]
        errors += summary["errors"]
        for line in out.decode().splitlines():
            msn, part, at = line.split()
            avail = publisher.available.get((stream, int(msn), int(part)))
            if avail is not None:
                delays.append(int(at) / 1e9 - avail)
    delays.sort()
    offload = 1 - edge_answered / sent if sent else 0.0
    per_core = {
        k: round(viewer_streams / c) if c > 0 else None
        for k, c in cpu.items() if k in ("shield", "edge")
    }  # fmt: skip
    deviations = []
    for s in samples:
        deviations.append(abs(s["status_total"] - expected["total"]) / expected["total"])
        for stream, want in expected.items():
            if stream != "total":
                got = s["status_per_stream"].get(stream, 0)
                deviations.append(abs(got - want) / want)
        for k in ("health", "metrics"):
            deviations.append(abs((s[k] or 0) - expected["total"]) / expected["total"])
    p99 = percentile(delays, 99) * 1000 if delays else None
    return {
        "phase": name,
        "viewer_streams": viewer_streams,
        "viewers_expected": expected["total"],
        "requests_sent": sent,
        "requests_per_second": round(sent / wall, 1),
        "edge_answered": edge_answered,
        "origin_requests_per_second": round(edge_answered / wall, 1),
        "offload": round(offload, 5),
        "errors": errors,
        "parts_received": len(delays),
        "delay_ms": {
            "p50": round(percentile(delays, 50) * 1000, 1) if delays else None,
            "p99": round(p99, 1) if p99 is not None else None,
            "max": round(delays[-1] * 1000, 1) if delays else None,
        },
        "cpu_cores": cpu,
        "viewer_streams_per_core": per_core,
        "redis_commands_per_second": round(calls / wall, 1),
        "counts": samples[-1] if samples else None,
        "counts_max_deviation": round(max(deviations), 4) if deviations else None,
        "counts_within_5_percent": bool(deviations) and max(deviations) <= 0.05,
    }


def sizing(
    result: dict[str, Any], plan_viewers: int, streams_options: list[int]
) -> list[dict[str, Any]]:
    """Cores for ``plan_viewers`` viewers x 6 streams each, from this run's per-core figures.

    Shield cores scale with viewer-streams (each is a player's requests answered by the
    shield); edge cores with the origin requests, which scale with shield replicas x
    distinct streams, not with viewers (one request per object per shield); the edge's
    per-core capacity is the direct phase's requests/s per core. Redis: this run's
    commands/s, scaled by the replicas that write sessions (edges and shields).
    """
    six, direct = result["phases"]["six"], result["phases"]["direct"]
    viewer_streams = plan_viewers * 6
    shield_per_core = six["viewer_streams"] / max(six["cpu_cores"]["shield"], 1e-9)
    shield_cores = math.ceil(viewer_streams / shield_per_core)
    shield_replicas = max(2, math.ceil(shield_cores / 2))  # 2-core pods, two for availability
    edge_rps_per_core = direct["requests_per_second"] / max(direct["cpu_cores"]["edge"], 1e-9)
    origin_per_stream = six["origin_requests_per_second"] / result["streams"]
    rows = []
    for streams in streams_options:
        origin_rps = shield_replicas * streams * origin_per_stream
        edge_cores = max(1, math.ceil(origin_rps / edge_rps_per_core))
        redis = six["redis_commands_per_second"] * (shield_replicas + max(2, edge_cores)) / 2
        rows.append({
            "viewers": plan_viewers,
            "streams_each": 6,
            "distinct_streams": streams,
            "player_requests_per_second": round(viewer_streams * 2 / PART_SECONDS),
            "shield_cores": shield_cores,
            "shield_replicas_2_core": shield_replicas,
            "origin_requests_per_second": round(origin_rps),
            "offload": round(1 - origin_rps / (viewer_streams * 2 / PART_SECONDS), 5),
            "edge_cores": edge_cores,
            "redis_commands_per_second": round(redis),
        })  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--streams", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--direct-viewers", type=int, default=300)
    parser.add_argument("--plan-viewers", type=int, default=5000)
    parser.add_argument("--plan-streams", default="6,25")
    args = parser.parse_args()
    install_sigterm_as_interrupt()
    from cascade.edge.shield import ShieldConfig, render_vcl, varnishd_command

    streams = [f"s{i}" for i in range(args.streams)]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": loadavg(),
        "cpus": os.cpu_count(),
        "setup": "synthetic publisher (5 kB parts / 100 ms) + Redis + one edge (CMCD sessions)"
        " + varnishd (generated VCL) + cascade-shield-sessions; viewersim with -skip",
        "streams": args.streams,
        "phases": {},
    }
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="cascade-shield-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        exe = build_simulator()
        publisher = None
        try:
            redis_url, _ = start_redis(procs, work)
            publisher = Publisher(redis_url, streams)
            publisher.announce()
            publisher.start()
            env = {"CASCADE_VIEWER_SESSIONS": "cmcd", "VIEWER_TIMEOUT_SECONDS": str(VIEWER_TIMEOUT)}
            edge_port, edge = start_edge(procs, redis_url, env=env)
            vcl = work / "shield.vcl"
            vcl.write_text(render_vcl(ShieldConfig(backend_port=edge_port)))
            shield_port = free_tcp_port()
            varnish_dir = str(work / "varnish")
            shield = procs.spawn(
                "varnishd",
                varnishd_command(vcl=str(vcl), workdir=varnish_dir,
                                 listen=f"127.0.0.1:{shield_port}", cache_mib=256),
            )  # fmt: skip
            wait_tcp(shield_port, 20, shield)
            counter = procs.spawn(
                "shield-sessions",
                [PY, "-m", "cascade.edge.shieldsessions", "--varnish-name", varnish_dir],
                env={"REDIS_URL": redis_url, "VIEWER_TIMEOUT_SECONDS": str(VIEWER_TIMEOUT),
                     "CASCADE_LOG_LEVEL": "WARNING"},
            )  # fmt: skip
            time.sleep(2)
            pids = {"shield": shield.pid, "edge": edge.pid, "shield_sessions": counter.pid}
            per = args.viewers // args.streams
            one = [(s, per + (1 if i < args.viewers % args.streams else 0), f"one{i}-")
                   for i, s in enumerate(streams)]  # fmt: skip
            expected_one = {"total": args.viewers, **{s: n for s, n, _ in one}}
            result["phases"]["one"] = run_phase(
                "one", exe, shield_port, one, args.seconds, pids, publisher, shield_port,
                expected_one, edge_port,
            )  # fmt: skip
            log(f"shield: {json.dumps(result['phases']['one'])}")
            time.sleep(VIEWER_TIMEOUT + 3)  # the phase's sessions expire
            six = [(s, args.viewers, "six-") for s in streams]
            expected_six = {"total": args.viewers, **{s: args.viewers for s in streams}}
            result["phases"]["six"] = run_phase(
                "six", exe, shield_port, six, args.seconds, pids, publisher, shield_port,
                expected_six, edge_port,
            )  # fmt: skip
            log(f"shield: {json.dumps(result['phases']['six'])}")
            time.sleep(VIEWER_TIMEOUT + 3)
            direct = [(streams[0], args.direct_viewers, "direct-")]
            result["phases"]["direct"] = run_phase(
                "direct", exe, edge_port, direct, args.seconds, pids, publisher, edge_port,
                {"total": args.direct_viewers, streams[0]: args.direct_viewers}, edge_port,
            )  # fmt: skip
            log(f"shield: {json.dumps(result['phases']['direct'])}")
        finally:
            if publisher is not None:
                publisher.stop.set()
            procs.stop_all()
    phases = result["phases"]
    result["per_core"] = {
        "viewer_streams_per_shield_core": phases["six"]["viewer_streams_per_core"]["shield"],
        "viewer_streams_per_edge_core_behind_shield": phases["six"]["viewer_streams_per_core"]["edge"],
        "viewer_streams_per_edge_core_direct": phases["direct"]["viewer_streams_per_core"]["edge"],
    }  # fmt: skip
    d, s = (
        result["per_core"]["viewer_streams_per_edge_core_direct"],
        result["per_core"]["viewer_streams_per_shield_core"],
    )
    result["per_core"]["shield_to_direct_edge_ratio"] = round(s / d, 2) if s and d else None
    result["sizing"] = sizing(
        result, args.plan_viewers, [int(x) for x in args.plan_streams.split(",")]
    )
    result["targets"] = {
        "offload": TARGET_OFFLOAD,
        "p99_ms": TARGET_P99_MS,
        "offload_met": all(phases[p]["offload"] >= TARGET_OFFLOAD for p in ("one", "six")),
        "p99_met": all((phases[p]["delay_ms"]["p99"] or math.inf) <= TARGET_P99_MS for p in ("one", "six")),
        "counts_within_5_percent": all(phases[p]["counts_within_5_percent"] for p in ("one", "six", "direct")),
    }  # fmt: skip
    result["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
