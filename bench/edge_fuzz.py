"""The edge's HTTP server under a long fuzz, for before a release.

    .venv/bin/python bench/edge_fuzz.py [--seconds 60] [--workers 32] [--seed 9] [--huge-mib 64]

The cases, client and invariants of ``tests/edge/test_fuzz.py`` (``tests/edge/http_fuzz.py``)
run for ``--seconds`` instead of 2.5, against one edge *process* as production runs it
(``cascade.edge.main`` on uvloop, taskset to core 1) following a real Redis, while a
synthetic transcoder publishes a 5 kB part every 100 ms. Headers go up to
``--huge-mib`` MiB. The edge runs with its production limits except two timeouts made
short (header 1 s, keep-alive 1 s) so a case ends within seconds; this process (the
fuzz workers, four viewers playing the stream, the publisher) runs on core 0.

Prints one JSON object: cases run (by kind), answers by status, violations (the first 20,
with the worker and case index that replay them), the viewers' part delay and errors,
the edge's CPU, memory (now and peak) and limit hits. Exit code 1 on any violation.
Loopback only; every load loop is bounded by ``--seconds``; everything started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Procs,
    cpu_seconds,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    memory_bytes,
    start_edge,
    start_redis,
    summary_ms,
)
from bench.edge_viewers import PART_BYTES, PARTS_PER_SEGMENT, STREAM, Publisher
from tests.edge.http_fuzz import (
    Outcome,
    ViewerLog,
    case_bound,
    make_case,
    run_case,
    viewer,
    violations,
)

HEADER_TIMEOUT = KEEP_ALIVE = 1.0
BLOCKING = 3 * 0.5  # the default blocking_timeout_factor x the publisher's segment target
EDGE_ENV = {
    "CASCADE_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
    "CASCADE_KEEP_ALIVE_TIMEOUT_SECONDS": str(KEEP_ALIVE),
}
VIEWERS = 4


def limit_hits(port: int) -> dict[str, float]:
    """The edge's cascade_edge_limit_hits_total by limit, from its /metrics."""
    hits = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("cascade_edge_limit_hits_total{"):
                labels, value = line.rsplit(" ", 1)
                hits[labels.split('"')[1]] = float(value)
    return hits


async def fuzz(
    port: int, publisher: Publisher, seconds: float, workers: int, seed: int, huge: int
) -> dict[str, Any]:
    bound = case_bound(header_timeout=HEADER_TIMEOUT, keep_alive=KEEP_ALIVE, blocking=BLOCKING)
    outcomes: list[tuple[int, int, Outcome]] = []
    deadline = time.monotonic() + seconds

    async def worker(index: int) -> None:
        rng = random.Random(f"{seed}-{index}")
        n = 0
        while time.monotonic() < deadline:
            # The live edge moves on: the URLs are built around the newest part published
            # (the cases of a worker replay with the same seed; their numbers shift).
            msn, part = divmod(max(0, len(publisher.available) - 1), PARTS_PER_SEGMENT)
            case = make_case(rng, msn, part, max_header_bytes=huge, stream=STREAM)
            outcomes.append((index, n, await run_case("127.0.0.1", port, case, wait=bound + 2)))
            n += 1

    stop = asyncio.Event()
    logs = [ViewerLog() for _ in range(VIEWERS)]
    players = [
        asyncio.ensure_future(
            viewer("127.0.0.1", port, stop, lambda m, p, b: len(b) == PART_BYTES, v, stream=STREAM)
        )
        for v in logs
    ]
    try:
        await asyncio.gather(*(worker(i) for i in range(workers)))
    finally:
        stop.set()
        await asyncio.gather(*players, return_exceptions=True)
    problems = [
        {"worker": w, "case_index": n, "kind": o.case.kind, "ending": o.case.ending, "problem": p}
        for w, n, o in outcomes
        for p in violations(o, bound=bound)
    ]
    statuses = collections.Counter(a.status for _, _, o in outcomes for a in o.answers)
    kinds = collections.Counter(
        k for _, _, o in outcomes for k in o.case.kind.split(" ")[0].split("+")
    )
    latencies = [s for v in logs for s in v.part_latencies]
    return {
        "cases": len(outcomes),
        "answers": sum(statuses.values()),
        "answers_by_status": dict(sorted(statuses.items())),
        "cases_by_kind": dict(kinds.most_common()),
        "longest_case_seconds": round(max((o.seconds for _, _, o in outcomes), default=0.0), 3),
        "case_bound_seconds": bound,
        "violations": len(problems),
        "first_violations": problems[:20],
        "viewer_part_ms": summary_ms(latencies),
        "viewer_errors": [e for v in logs for e in v.errors][:20],
        # Idle keep-alive connections the edge closed (CASCADE_KEEP_ALIVE_TIMEOUT_SECONDS
        # is 1 s here) while a viewer's loop was starved by the fuzzers; it asked again.
        "viewer_reconnects": sum(v.reconnects for v in logs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=32, help="fuzz connections at a time")
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--huge-mib", type=int, default=64, help="largest header sent, MiB")
    args = parser.parse_args()
    install_sigterm_as_interrupt()
    os.sched_setaffinity(0, {0})  # the clients on core 0, the edge alone on core 1
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": loadavg(),
        "seconds": args.seconds,
        "workers": args.workers,
        "seed": args.seed,
        "edge_settings": EDGE_ENV,
    }
    procs = Procs()
    publisher: Publisher | None = None
    with tempfile.TemporaryDirectory(prefix="cascade-fuzz-") as tmp:
        try:
            redis_url, _ = start_redis(procs, Path(tmp))
            publisher = Publisher(redis_url)
            publisher.announce()
            publisher.start()
            port, edge = start_edge(procs, redis_url, cpu=1, env=EDGE_ENV)
            time.sleep(3.0)  # the stream's first segments
            cpu0, t0 = cpu_seconds(edge.pid), time.monotonic()
            log(f"fuzz: {args.workers} connections for {args.seconds:g} s, seed {args.seed}")
            result.update(
                uvloop.run(
                    fuzz(
                        port, publisher, args.seconds, args.workers, args.seed, args.huge_mib << 20
                    )
                )
            )
            result["edge_cpu_cores"] = round(
                (cpu_seconds(edge.pid) - cpu0) / (time.monotonic() - t0), 2
            )
            result["edge_memory_bytes"] = memory_bytes(edge.pid)
            result["edge_limit_hits"] = limit_hits(port)
            result["edge_alive"] = edge.poll() is None
        finally:
            if publisher is not None:
                publisher.stop.set()
            procs.stop_all()
    result["loadavg_at_end"] = loadavg()
    result["passed"] = (
        result.get("violations") == 0
        and not result.get("viewer_errors")
        and bool(result.get("edge_alive"))
    )
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
