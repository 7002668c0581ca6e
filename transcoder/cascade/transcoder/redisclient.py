"""The transcoder's redis-py client (stream set, final health): one server or Sentinel.

The parts do not go through it: :mod:`cascade.transcoder.resp` resolves the primary
itself. The edge and the operator have the same few lines (sibling packages cannot share
a module above the pure core, which may not import redis); the parsing they share is
:func:`cascade.contract.redisurl.parse_redis_url`.
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from cascade.contract.redisurl import SentinelUrl, parse_redis_url


class _SentinelManagedRedis(Redis):
    """A client of the Sentinel-named primary that also closes its sentinel connections."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def redis_client(url: str, **options: Any) -> Redis:
    """A redis-py client for ``REDIS_URL``: ``Redis.from_url`` as before, or, for
    ``redis+sentinel://``, a client whose every new connection asks the sentinels for the
    current primary (redis-py drops a connection that finds a demoted one, READONLY)."""
    location = parse_redis_url(url)
    if not isinstance(location, SentinelUrl):
        return Redis.from_url(url, **options)
    # Sentinels answer at once or not at all: limits (the caller's, else 2 s) keep an
    # unreachable one from holding up discovery; the next one is asked.
    limits: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    limits.update((k, v) for k, v in options.items() if k.startswith("socket_"))
    sentinel = Sentinel(location.sentinels, sentinel_kwargs={**limits, **location.sentinel_auth()})
    connection: dict[str, Any] = {**location.master_auth(), **options}
    client = sentinel.master_for(
        location.master, redis_class=_SentinelManagedRedis, check_connection=True, **connection
    )
    return cast(Redis, client)
