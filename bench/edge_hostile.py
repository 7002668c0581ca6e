"""Hostile clients beside LL-HLS viewers: what they cost the viewers of one edge core.

    .venv/bin/python bench/edge_hostile.py [--viewers 1000] [--seconds 15]
        [--attackers 32] [--slowloris 200]

One edge process on core 1 with its production settings follows a real Redis where a
synthetic transcoder publishes a 5 kB part every 100 ms (as ``bench/edge_viewers.py``).
The viewer simulator (``bench/viewersim``, Go: a blocking reload for the next part, then
the part) runs N viewers on core 0, twice in the same run: alone, then with hostile
clients running all along (this script in ``--role hostile``, a separate process, also on
core 0): ``--attackers`` connections at a time cycling through 64 MiB headers, 100,000
headers, pipelining floods (5,000 requests in one write, read or never read), dropped
connections (half a request, then a reset) and garbage, plus ``--slowloris`` connections
sending a header line a second.

Prints one JSON object: for each step the viewers' errors and part delay (received minus
available) p50/p99/max and the edge's CPU; what the hostile clients did and got; the
edge's limit hits and memory; the ratio hostile/alone of p50 and p99. Passes with zero
viewer errors and p99 at most 150 ms with the hostile clients. Loopback only; every loop
is bounded by ``--seconds``; everything started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Procs,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    memory_bytes,
    start_edge,
    start_redis,
)
from bench.edge_fuzz import limit_hits
from bench.edge_viewers import RENDITION, STREAM, Publisher, build_simulator, run_step

P99_TARGET_MS = 150.0
BASE = f"/live/{STREAM}/{RENDITION}"
WARM_UP = 6.5  # run_step's ramp, warm-up and first sample (the hostile clients start first)


# ---- the hostile clients (--role hostile) -------------------------------------------------


def _request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode()


BIG = b"v" * (1 << 20)  # sent 64 times: a 64 MiB header value
MANY = b"".join(b"X-%d: v\r\n" % i for i in range(100_000))
FLOOD = b"".join(_request(p) for p in [f"{BASE}/init.mp4", f"{BASE}/index.m3u8"] * 2500)


class Attacks:
    """One kind of hostile client each; every wait bounded; what came back is counted."""

    def __init__(self, host: str, port: int, deadline: float) -> None:
        self.host, self.port, self.deadline = host, port, deadline
        self.done: collections.Counter[str] = collections.Counter()
        self.statuses: dict[str, collections.Counter[str]] = collections.defaultdict(
            collections.Counter
        )
        self.errors: collections.Counter[str] = collections.Counter()
        self.rng = random.Random(9)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)

    def _status(self, kind: str, data: bytes) -> None:
        self.statuses[kind][data[9:12].decode("latin-1") if data else "none"] += 1

    async def huge_header(self) -> None:
        reader, writer = await self._open()
        answer = asyncio.ensure_future(self._read(reader, 10))  # read while sending
        try:
            writer.write(b"GET /live/x.m3u8 HTTP/1.1\r\nHost: edge\r\nX-Big: ")
            with contextlib.suppress(ConnectionError, RuntimeError):
                for _ in range(64):  # as fast as the edge lets it, until it closes
                    if answer.done() or writer.transport.is_closing():
                        break
                    writer.write(BIG)
                    await asyncio.wait_for(writer.drain(), 5)
            self._status("huge_header", await answer)
        finally:
            answer.cancel()
            writer.transport.abort()

    async def many_headers(self) -> None:
        reader, writer = await self._open()
        try:
            writer.write(b"GET /live/x.m3u8 HTTP/1.1\r\nHost: edge\r\n" + MANY + b"\r\n")
            self._status("many_headers", await self._read(reader, 5))
        finally:
            writer.transport.abort()

    async def flood_read(self) -> None:
        """5,000 pipelined requests in one write, every answer read."""
        reader, writer = await self._open()
        try:
            writer.write(FLOOD)
            seen = 0
            with contextlib.suppress(TimeoutError, ConnectionError):
                async with asyncio.timeout(15):
                    while seen < 5000 and (chunk := await reader.read(1 << 16)):
                        seen += chunk.count(b"HTTP/1.1 200 OK\r\n")
            self.statuses["flood_read"]["200"] += seen
        finally:
            writer.transport.abort()

    async def flood_noread(self) -> None:
        """5,000 pipelined requests, none of the answers read, then a reset."""
        _, writer = await self._open()
        try:
            writer.write(FLOOD)
            await asyncio.sleep(3)
        finally:
            writer.transport.abort()

    async def dropped(self) -> None:
        _, writer = await self._open()
        writer.write(_request(f"{BASE}/index.m3u8?_HLS_msn=1")[:30])
        await asyncio.sleep(0.01)
        writer.transport.abort()

    async def garbage(self) -> None:
        reader, writer = await self._open()
        try:
            writer.write(bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 4096))))
            self._status("garbage", await self._read(reader, 15))
        finally:
            writer.transport.abort()

    async def slowloris(self) -> None:
        """A header line a second until the edge gives up on the request (its 408)."""
        reader, writer = await self._open()
        try:
            writer.write(f"GET {BASE}/index.m3u8 HTTP/1.1\r\nHost: edge\r\n".encode())
            while time.monotonic() < self.deadline and not reader.at_eof():
                with contextlib.suppress(TimeoutError):
                    data = await asyncio.wait_for(reader.read(1 << 16), 1.0)
                    self._status("slowloris", data)
                    return
                writer.write(b"X-Slow: 1\r\n")
        finally:
            writer.transport.abort()

    async def _read(self, reader: asyncio.StreamReader, seconds: float) -> bytes:
        with contextlib.suppress(TimeoutError, ConnectionError):
            return await asyncio.wait_for(reader.read(1 << 16), seconds)
        return b""

    async def loop(self, pick: Callable[[], Callable[[], Awaitable[None]]]) -> None:
        while time.monotonic() < self.deadline:
            attack = pick()
            try:
                await attack()
                self.done[attack.__name__] += 1
            except (OSError, TimeoutError) as exc:
                self.errors[f"{attack.__name__}: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.05)


async def hostile(port: int, seconds: float, attackers: int, slow: int) -> dict[str, Any]:
    attacks = Attacks("127.0.0.1", port, time.monotonic() + seconds)
    kinds = [attacks.huge_header, attacks.many_headers, attacks.flood_read,
             attacks.flood_noread, attacks.dropped, attacks.garbage]  # fmt: skip
    weights = [2, 2, 2, 1, 3, 2]
    rng = random.Random(9)

    def pick() -> Callable[[], Awaitable[None]]:
        return rng.choices(kinds, weights)[0]

    await asyncio.gather(
        *(attacks.loop(pick) for _ in range(attackers)),
        *(attacks.loop(lambda: attacks.slowloris) for _ in range(slow)),
    )
    return {
        "attacks": dict(attacks.done),
        "answers": {k: dict(v) for k, v in attacks.statuses.items()},
        "client_errors": dict(attacks.errors),
    }


# ---- the run -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured, per step")
    parser.add_argument("--attackers", type=int, default=32)
    parser.add_argument("--slowloris", type=int, default=200)
    parser.add_argument("--role", choices=["run", "hostile"], default="run")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "hostile":
        stats = uvloop.run(hostile(args.port, args.seconds, args.attackers, args.slowloris))
        print(json.dumps(stats))
        return 0
    install_sigterm_as_interrupt()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": loadavg(),
        "viewers": args.viewers,
        "seconds": args.seconds,
        "attackers": args.attackers,
        "slowloris": args.slowloris,
    }
    procs = Procs()
    publisher: Publisher | None = None
    with tempfile.TemporaryDirectory(prefix="cascade-hostile-") as tmp:
        work = Path(tmp)
        exe = build_simulator(work)
        try:
            redis_url, _ = start_redis(procs, work)
            publisher = Publisher(redis_url)
            publisher.announce()
            publisher.start()
            port, edge = start_edge(procs, redis_url, cpu=1)
            time.sleep(1.5)
            base = f"http://127.0.0.1:{port}{BASE}/"
            alone = run_step(exe, base, args.viewers, args.seconds, edge.pid, publisher)
            log(f"hostile: alone {json.dumps(alone)}")
            attackers = procs.spawn(
                "hostile",
                ["taskset", "-c", "0", sys.executable, __file__, "--role", "hostile",
                 "--port", str(port), "--seconds", str(args.seconds + WARM_UP),
                 "--attackers", str(args.attackers), "--slowloris", str(args.slowloris)],
                stdout=subprocess.PIPE,
            )  # fmt: skip
            with_hostile = run_step(exe, base, args.viewers, args.seconds, edge.pid, publisher)
            log(f"hostile: with hostile clients {json.dumps(with_hostile)}")
            out, _ = attackers.communicate(timeout=args.seconds + WARM_UP + 60)
            result["alone"] = alone
            result["with_hostile"] = with_hostile
            result["hostile_clients"] = json.loads(out.decode() or "{}")
            result["edge_limit_hits"] = limit_hits(port)
            result["edge_memory_bytes"] = memory_bytes(edge.pid)
            result["edge_alive"] = edge.poll() is None
        finally:
            if publisher is not None:
                publisher.stop.set()
            procs.stop_all()
    a, h = result.get("alone", {}), result.get("with_hostile", {})
    ratio = {}
    for q in ("p50", "p99"):
        x, y = a.get("delay_ms", {}).get(q), h.get("delay_ms", {}).get(q)
        ratio[q] = round(y / x, 2) if x and y else None
    result["delay_ratio_hostile_over_alone"] = ratio
    p99 = h.get("delay_ms", {}).get("p99")
    result["target"] = f"with hostile clients: 0 viewer errors, p99 <= {P99_TARGET_MS:g} ms"
    result["passed"] = (h.get("errors") == 0 and p99 is not None and p99 <= P99_TARGET_MS) and bool(
        result.get("edge_alive")
    )
    result["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
