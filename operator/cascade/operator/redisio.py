"""The operator's Redis reads and cleanup: health, viewers, demand; keys of a deleted stream.

Reads are one pipeline per stream per status interval. Every call is bounded by the client's
socket timeouts, so a Redis outage slows nothing but the status it would have filled in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from cascade.contract import schema
from cascade.contract.redisurl import SentinelUrl, parse_redis_url
from cascade.contract.schema import Health


class _SentinelManagedRedis(aioredis.Redis):
    """A client of the Sentinel-named primary that also closes its sentinel connections."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def redis_client(url: str, **options: Any) -> aioredis.Redis:
    """A redis-py client for ``REDIS_URL``: ``Redis.from_url`` as before, or, for
    ``redis+sentinel://``, a client whose every new connection asks the sentinels for the
    current primary (redis-py drops a connection that finds a demoted one, READONLY)."""
    location = parse_redis_url(url)
    if not isinstance(location, SentinelUrl):
        return aioredis.Redis.from_url(url, **options)
    # Sentinels answer at once or not at all: limits (the caller's, else 2 s) keep an
    # unreachable one from holding up discovery; the next one is asked.
    limits: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    limits.update((k, v) for k, v in options.items() if k.startswith("socket_"))
    sentinel = Sentinel(location.sentinels, sentinel_kwargs={**limits, **location.sentinel_auth()})
    connection: dict[str, Any] = {**location.master_auth(), **options}
    client = sentinel.master_for(
        location.master, redis_class=_SentinelManagedRedis, check_connection=True, **connection
    )
    return cast(aioredis.Redis, client)


@dataclass(frozen=True, slots=True)
class StreamReadings:
    health: Health | None
    viewers: int
    last_viewer: float
    last_demand: float


async def read_stream(
    client: aioredis.Redis, stream: str, *, now: float, viewer_timeout: float, on_demand: bool
) -> StreamReadings:
    """One round trip: the readings, and ``cascade:ondemand`` kept in step with the spec
    (the edges answer "starting" from it)."""
    pipe = client.pipeline(transaction=False)
    if on_demand:
        pipe.sadd(schema.ON_DEMAND_STREAMS, stream)
    else:
        pipe.srem(schema.ON_DEMAND_STREAMS, stream)
    pipe.hgetall(schema.health_key(stream))
    pipe.zcount(schema.viewers_key(stream), now - viewer_timeout, "+inf")
    pipe.zrevrange(schema.viewers_key(stream), 0, 0, withscores=True)
    pipe.zscore(schema.DEMAND, stream)
    _, raw_health, viewers, newest, demand = await pipe.execute()
    try:
        health = Health.decode(raw_health) if raw_health else None
    except (ValueError, KeyError):
        health = None  # a half-written or foreign hash: no report rather than a crash
    return StreamReadings(
        health=health,
        viewers=int(viewers),
        last_viewer=float(newest[0][1]) if newest else 0.0,
        last_demand=float(demand or 0.0),
    )


async def forget_live_state(client: aioredis.Redis, stream: str) -> int:
    """Remove the stream's live keys (parts, init, meta, health, archive); keep its demand."""
    removed = 0
    batch: list[str | bytes] = []
    async for key in client.scan_iter(match=schema.stream_key_pattern(stream), count=500):
        batch.append(key)
        if len(batch) >= 500:
            removed += int(await client.unlink(*batch))
            batch.clear()
    if batch:
        removed += int(await client.unlink(*batch))
    await client.srem(schema.STREAMS_SET, stream)
    return removed


async def remove_stream(client: aioredis.Redis, stream: str) -> int:
    """Everything of a deleted LiveStream: live state, on-demand registration, demand, viewers."""
    removed = await forget_live_state(client, stream)
    pipe = client.pipeline(transaction=False)
    pipe.srem(schema.ON_DEMAND_STREAMS, stream)
    pipe.zrem(schema.DEMAND, stream)
    pipe.zrem(schema.VIEWED_STREAMS, stream)
    pipe.unlink(schema.viewers_key(stream))
    await pipe.execute()
    return removed
