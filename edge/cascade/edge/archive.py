"""Segments older than the live window: read from Redis through the byte cache.

The packager keeps each complete segment at ``cascade:stream:{s}:r:{r}:seg:{msn}`` for
``archive_ttl_seconds`` (see :mod:`cascade.contract.schema`); the edge serves requests for
segments that slid out of its in-memory window from there, one Redis ``GET`` per segment
per cache TTL whatever the number of viewers asking (single flight).
"""

from __future__ import annotations

from typing import cast

from redis.asyncio import Redis

from cascade.contract import schema
from cascade.edge.cache import ByteCache, Loader, MediaKey


def segment_loader(redis: Redis, stream: str, rendition: str, msn: int) -> Loader:
    """A loader for :meth:`ByteCache.get_or_load`: the archived bytes, ``None`` if absent."""
    key = schema.archive_segment_key(stream, rendition, msn)

    async def load() -> bytes | None:
        return cast(bytes | None, await redis.get(key))

    return load


async def archived_segment(
    cache: ByteCache, redis: Redis, stream: str, rendition: str, msn: int
) -> bytes | None:
    """The bytes of an archived segment from the cache or Redis; ``None`` when gone.

    Redis errors propagate (the edge answers 503 and counts a Redis error).
    """
    return await cache.get_or_load(
        MediaKey(stream, rendition, msn), segment_loader(redis, stream, rendition, msn)
    )
