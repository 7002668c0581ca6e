"""On-demand streams at the edge: 503 "starting", demand written to Redis, coalesced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.schema import Health, PartEntry, StreamMeta, StreamState
from cascade.contract.settings import EdgeSettings
from cascade.edge.ondemand import DemandBuffer, OnDemand

from ..conftest import free_port
from .test_app_redis import RENDITIONS, _running

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

T0 = 1_700_000_000.0


# ---- the coalescing rule, on a fake clock ---------------------------------------------


def test_first_demand_is_due_at_once_then_at_most_once_a_second() -> None:
    buffer = DemandBuffer(min_interval=1.0)
    buffer.add("od1", T0)
    assert buffer.take_due(T0 + 0.1) == {"od1": T0}
    for i in range(1, 10):  # a burst: nine more requests within the second
        buffer.add("od1", T0 + i / 10)
    assert buffer.take_due(T0 + 0.5) == {}
    assert buffer.pending == 1
    # The next write carries the latest request, a second after the last write.
    assert buffer.take_due(T0 + 1.1) == {"od1": T0 + 0.9}
    assert buffer.take_due(T0 + 5) == {}


def test_streams_are_coalesced_independently() -> None:
    buffer = DemandBuffer(min_interval=1.0)
    buffer.add("a", T0)
    assert buffer.take_due(T0) == {"a": T0}
    buffer.add("a", T0 + 0.2)
    buffer.add("b", T0 + 0.2)
    assert buffer.take_due(T0 + 0.3) == {"b": T0 + 0.2}
    assert buffer.take_due(T0 + 1.0) == {"a": T0 + 0.2}


def test_a_failed_write_is_retried_no_sooner_than_the_interval() -> None:
    buffer = DemandBuffer(min_interval=1.0)
    buffer.add("a", T0)
    taken = buffer.take_due(T0)
    buffer.give_back(taken)
    assert buffer.take_due(T0 + 0.5) == {}
    assert buffer.take_due(T0 + 1.0) == {"a": T0}


def test_an_older_request_does_not_move_the_demand_back() -> None:
    buffer = DemandBuffer()
    buffer.add("a", T0 + 2)
    buffer.add("a", T0 + 1)  # a clock step back, or a failed write given back
    assert buffer.take_due(T0 + 3) == {"a": T0 + 2}


async def test_redis_down_keeps_the_last_set_and_the_demand() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    on_demand = OnDemand(client, poll_seconds=0.01, clock=lambda: T0)
    on_demand.names = frozenset({"od1"})  # read before the outage
    await on_demand.start()  # its first read fails: no exception, the set is kept
    assert on_demand.names == {"od1"}
    assert on_demand.starting("od1", T0)
    assert not on_demand.starting("nope", T0)
    await asyncio.sleep(0.3)  # the poll loop goes on failing, quietly
    await on_demand.stop()
    assert on_demand.names == {"od1"}
    assert on_demand.buffer.pending == 1  # kept for when Redis is back
    assert on_demand.demand_writes == 0
    assert on_demand.redis_errors >= 2
    await client.aclose()


# ---- over HTTP, both entry points -------------------------------------------------------


@dataclass
class Edge:
    redis: Redis
    client: httpx.AsyncClient

    async def demand(self, stream: str) -> float | None:
        score = await self.redis.zscore(schema.DEMAND, stream)
        return None if score is None else float(score)

    async def announce(self, stream: str) -> None:
        """What a transcoder does once started: meta, health, init, parts, then the set."""
        meta = StreamMeta(RENDITIONS, 0.1, 0.5, 24, StreamState.LIVE, 0)
        await self.redis.hset(schema.meta_key(stream), mapping=meta.encode())  # type: ignore[arg-type]
        health = Health(StreamState.LIVE, reason="Ingesting")
        await self.redis.hset(schema.health_key(stream), mapping=health.encode())  # type: ignore[arg-type]
        for r in RENDITIONS:
            await self.redis.set(schema.init_key(stream, r.name), b"init")
            for i in range(3):
                part = PartEntry(0, i, 0.1, i == 0, 1.8e9 + i * 0.1, b"part")
                fields: Any = schema.encode_entry(part)
                await self.redis.xadd(schema.parts_key(stream, r.name), fields)
        await self.redis.sadd(schema.STREAMS_SET, stream)


@pytest.fixture(params=["server", "asgi"])
async def edge(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Edge]:
    redis = Redis.from_url(redis_url)
    await redis.sadd(schema.ON_DEMAND_STREAMS, "od1")
    port = free_port()
    settings = EdgeSettings(
        redis_url=redis_url,
        port=port,
        stream_poll_seconds=0.05,
        on_demand_poll_seconds=0.05,
        blocking_timeout_factor=0.6,
    )
    base = f"http://127.0.0.1:{port}"
    async with (
        _running(request.param, settings),
        httpx.AsyncClient(base_url=base, timeout=5) as client,
    ):
        yield Edge(redis, client)
    await redis.aclose()


async def _eventually(check: Any, what: str, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize(
    "path", ["/live/od1.m3u8", "/live/od1/360p/index.m3u8", "/live/od1/360p/0.1.m4s"]
)
async def test_on_demand_stream_without_transcoder_is_starting(edge: Edge, path: str) -> None:
    asked_at = time.time()
    r = await edge.client.get(path)

    assert r.status_code == 503
    assert r.headers["retry-after"] == "2"
    assert r.headers["x-cascade-stream-state"] == "starting"
    assert r.headers["cache-control"] == "no-store"
    assert "Retry-After" in r.headers["access-control-expose-headers"]
    assert r.text == "stream 'od1' is starting (on demand); retry in 2 s\n"

    async def written() -> bool:
        return await edge.demand("od1") is not None

    await _eventually(written, "the demand in Redis")
    score = await edge.demand("od1")
    assert score is not None and asked_at - 0.01 <= score <= time.time()


async def test_a_burst_of_requests_is_one_demand_write_a_second(edge: Edge) -> None:
    await edge.redis.config_resetstat()
    start = time.monotonic()
    replies = await asyncio.gather(*(edge.client.get("/live/od1.m3u8") for _ in range(100)))
    burst = time.monotonic() - start
    assert {r.status_code for r in replies} == {503}
    await asyncio.sleep(1.5)
    stats = await edge.redis.info("commandstats")
    writes = int(stats["cmdstat_zadd"]["calls"])
    # The first write within a flush tick; what came during the next second, once more
    # (and once more per further second, should the burst itself last that long).
    assert 1 <= writes <= 2 + int(burst), (writes, burst)
    metrics = (await edge.client.get("/metrics")).text
    assert 'cascade_edge_on_demand_requests_total{stream="od1"} 100.0' in metrics
    assert "cascade_edge_on_demand_streams 1.0" in metrics


async def test_a_name_not_on_demand_is_still_404(edge: Edge) -> None:
    r = await edge.client.get("/live/nope.m3u8")
    assert r.status_code == 404
    assert "retry-after" not in r.headers
    assert "x-cascade-stream-state" not in r.headers
    await asyncio.sleep(0.4)  # past a flush tick
    assert await edge.demand("nope") is None


async def test_the_on_demand_set_is_followed(edge: Edge) -> None:
    await edge.redis.sadd(schema.ON_DEMAND_STREAMS, "od2")
    await edge.redis.srem(schema.ON_DEMAND_STREAMS, "od1")

    async def switched() -> bool:
        two = await edge.client.get("/live/od2.m3u8")
        one = await edge.client.get("/live/od1.m3u8")
        return two.status_code == 503 and one.status_code == 404

    await _eventually(switched, "od2 on demand and od1 no longer")


async def test_once_its_transcoder_publishes_the_stream_is_served(edge: Edge) -> None:
    status = (await edge.client.get("/status")).json()["streams"]["od1"]
    assert status["state"] == "stopped" and status["on_demand"] is True
    assert (await edge.client.get("/live/od1.m3u8")).status_code == 503

    await edge.announce("od1")

    async def served() -> bool:
        return (await edge.client.get("/live/od1/360p/0.2.m4s")).status_code == 200

    await _eventually(served, "the stream to be served")
    r = await edge.client.get("/live/od1.m3u8")
    assert r.status_code == 200 and "od1/360p/index.m3u8" in r.text
    r = await edge.client.get("/live/od1/360p/index.m3u8")
    assert r.status_code == 200 and '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="0.3.m4s"' in r.text
    status = (await edge.client.get("/status")).json()["streams"]["od1"]
    assert status["state"] == "live" and status["on_demand"] is True
