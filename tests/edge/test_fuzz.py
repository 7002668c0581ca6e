"""A fixed-seed fuzz of the edge's HTTP server against a real edge, a few seconds long.

Hostile and broken clients (mutated LL-HLS URLs, malformed request lines, huge and
numerous headers, pipelines, split writes, half-closed and dropped connections) on many
connections at once, beside a viewer playing the stream as hls.js does while a publisher
adds a part every 100 ms. Real Redis, real loopback sockets, uvloop as in production.

The cases come from ``random.Random`` seeded per worker, so a failure names a case that
replays; how many run depends on the machine's speed (the time budget is fixed). The
long version, for before a release: ``bench/edge_fuzz.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import time
from typing import Any

import pytest

from .http_fuzz import Outcome, ViewerLog, case_bound, make_case, run_case, viewer, violations
from .live_edge import BASE, LAST_MSN, LAST_PART, RENDITION, LiveEdge, live_edge, part_body

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

# The number; CASCADE_FUZZ_SEED=N explores another sequence (the suite keeps 9).
SEED = int(os.environ.get("CASCADE_FUZZ_SEED", "9"))
BUDGET_SECONDS = 2.5
WORKERS = 12
HEADER_TIMEOUT = KEEP_ALIVE = 0.3
BLOCKING = 0.6 * 0.5  # blocking_timeout_factor x segment target (live_edge's settings)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"use_uvloop": True})


async def _publish(edge: LiveEdge, stop: asyncio.Event) -> None:
    """The transcoder: a part every 100 ms after 11.1, five to a segment (bounded)."""
    n = LAST_MSN * 5 + LAST_PART + 1
    for _ in range(200):
        if stop.is_set():
            return
        await edge.publish_part(*divmod(n, 5))
        n += 1
        await asyncio.sleep(0.1)


def _expected(method: str, target: str) -> bytes | None:
    """The body a valid request must get, when the published stream fixes it."""
    if method != "GET" or not target.startswith(BASE + "/"):
        return None
    name = target[len(BASE) + 1 :]
    if name in ("init.mp4", "init-0.mp4"):
        return b"init-" + RENDITION.encode()
    if m := re.fullmatch(r"(\d+)\.(\d+)\.m4s", name):
        msn, part = int(m[1]), int(m[2])
        return part_body(msn, part) if (msn, part) <= (LAST_MSN, LAST_PART) else None
    if m := re.fullmatch(r"(\d+)\.m4s", name):
        return b"".join(part_body(int(m[1]), i) for i in range(5)) if int(m[1]) < LAST_MSN else None
    return None


async def _worker(edge: LiveEdge, index: int, deadline: float, outcomes: list[Outcome]) -> None:
    rng = random.Random(f"{SEED}-{index}")
    bound = case_bound(header_timeout=HEADER_TIMEOUT, keep_alive=KEEP_ALIVE, blocking=BLOCKING)
    while time.monotonic() < deadline:
        case = make_case(rng, LAST_MSN, LAST_PART, max_header_bytes=1 << 20, expected=_expected)
        outcomes.append(await run_case("127.0.0.1", edge.port, case, wait=bound + 1.0))


async def test_hostile_clients_get_no_5xx_no_hang_and_the_viewer_is_served(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bound = case_bound(header_timeout=HEADER_TIMEOUT, keep_alive=KEEP_ALIVE, blocking=BLOCKING)
    outcomes: list[Outcome] = []
    watched = ViewerLog()
    async with live_edge(
        redis_url, header_timeout_seconds=HEADER_TIMEOUT, keep_alive_timeout_seconds=KEEP_ALIVE
    ) as edge:
        published, watching = asyncio.Event(), asyncio.Event()
        publisher = asyncio.ensure_future(_publish(edge, published))
        player = asyncio.ensure_future(
            viewer("127.0.0.1", edge.port, watching, lambda m, p, b: b == part_body(m, p), watched)
        )
        deadline = time.monotonic() + BUDGET_SECONDS
        try:
            await asyncio.gather(*(_worker(edge, i, deadline, outcomes) for i in range(WORKERS)))
        finally:
            watching.set()  # the viewer first: its last blocking reload needs the next part
            await player
            published.set()
            await publisher
        # Every fuzz connection is gone on the edge's side too (dropped ones included).
        for _ in range(300):
            if not edge.server.connections:
                break
            await asyncio.sleep(0.01)
        left = len(edge.server.connections)
        blocked = edge.server.metrics.registry.get_sample_value("cascade_edge_blocked_requests")
    problems = [(o.case, p) for o in outcomes for p in violations(o, bound=bound)]
    assert problems == [], "\n".join(f"{c.kind} {c.ending}: {p}" for c, p in problems)
    assert len(outcomes) >= 50, "the fuzz ran too few cases to mean anything"
    assert sum(bool(o.case.expect) for o in outcomes) >= 10, "too few cases check the order"
    assert sum(len(o.answers) for o in outcomes) >= 100
    assert watched.errors == []
    assert len(watched.part_latencies) >= 5 and max(watched.part_latencies) < 0.5
    assert left == 0 and blocked == 0
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
