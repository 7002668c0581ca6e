"""The operator's Redis reads and cleanup, against a real Redis."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.schema import Health, StreamState
from cascade.operator import redisio

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]


async def test_read_stream_gives_health_viewers_and_demand(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    now = time.time()
    try:
        await redis.hset(schema.health_key("cam"), mapping=Health(StreamState.LIVE, 812.0).encode())  # type: ignore[arg-type]
        await redis.zadd(schema.viewers_key("cam"), {"a": now - 5, "b": now - 1, "old": now - 600})
        await redis.zadd(schema.DEMAND, {"cam": now - 2})

        readings = await redisio.read_stream(
            redis, "cam", now=now, viewer_timeout=30, on_demand=True
        )
        empty = await redisio.read_stream(
            redis, "none", now=now, viewer_timeout=30, on_demand=False
        )

        assert readings.health is not None and readings.health.input_bitrate_kbps == 812.0
        assert (readings.viewers, readings.last_viewer, readings.last_demand) == (
            2,
            now - 1,
            now - 2,
        )
        assert await redis.sismember(schema.ON_DEMAND_STREAMS, "cam")
        assert (empty.health, empty.viewers, empty.last_viewer, empty.last_demand) == (
            None,
            0,
            0.0,
            0.0,
        )
        await redisio.read_stream(redis, "cam", now=now, viewer_timeout=30, on_demand=False)
        assert not await redis.sismember(schema.ON_DEMAND_STREAMS, "cam")
    finally:
        await redis.aclose()


async def test_a_garbled_health_hash_reads_as_no_report(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await redis.hset(schema.health_key("cam"), mapping={"state": "exploded"})

        readings = await redisio.read_stream(
            redis, "cam", now=time.time(), viewer_timeout=30, on_demand=False
        )

        assert readings.health is None
    finally:
        await redis.aclose()


async def test_forget_keeps_the_registration_remove_takes_everything(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    try:
        for name in ("cam", "camera"):  # "camera" shares the prefix: it must stay
            await redis.hset(schema.meta_key(name), "state", "live")
            for i in range(600):  # more than one UNLINK batch
                await redis.set(schema.archive_segment_key(name, "360p", i), b"x")
            await redis.sadd(schema.STREAMS_SET, name)
        await redis.sadd(schema.ON_DEMAND_STREAMS, "cam")
        await redis.zadd(schema.DEMAND, {"cam": 1.0})
        await redis.zadd(schema.viewers_key("cam"), {"v": 1.0})

        removed = await redisio.forget_live_state(redis, "cam")

        assert removed == 601
        assert not await redis.keys("cascade:stream:cam:*")
        assert not await redis.sismember(schema.STREAMS_SET, "cam")
        assert await redis.sismember(schema.ON_DEMAND_STREAMS, "cam")  # still on demand
        assert await redis.zscore(schema.DEMAND, "cam") == 1.0

        await redisio.remove_stream(redis, "cam")

        assert not await redis.sismember(schema.ON_DEMAND_STREAMS, "cam")
        assert await redis.zscore(schema.DEMAND, "cam") is None
        assert not await redis.exists(schema.viewers_key("cam"))
        assert len(await redis.keys("cascade:stream:camera:*")) == 601
    finally:
        await redis.aclose()
