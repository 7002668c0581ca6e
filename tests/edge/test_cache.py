"""The byte cache: TTL, LRU by bytes, item limit, invalidation, single flight, stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.edge.archive import archived_segment
from cascade.edge.cache import ByteCache, CacheCollector, MediaKey

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(msn: int, stream: str = "cam1", part: int | None = None) -> MediaKey:
    return MediaKey(stream, "720p", msn, part)


def make(
    capacity: int = 100, *, ttl: float = 30.0, max_item: int = 1000
) -> tuple[ByteCache, Clock]:
    clock = Clock()
    return ByteCache(capacity_bytes=capacity, ttl=ttl, max_item_bytes=max_item, clock=clock), clock


def test_a_put_is_served_until_its_ttl() -> None:
    cache, clock = make()
    assert cache.put(key(1), b"abc")
    clock.now += 29.9
    assert cache.get(key(1)) == b"abc"
    clock.now += 0.1
    assert cache.get(key(1)) is None
    s = cache.stats()
    assert (s.hits, s.misses, s.expirations, s.bytes, s.items) == (1, 1, 1, 0, 0)


def test_the_ttl_counts_from_the_put_not_the_last_hit() -> None:
    cache, clock = make()
    cache.put(key(1), b"a")
    for _ in range(5):
        clock.now += 10
        cache.get(key(1))
    assert cache.get(key(1)) is None


def test_least_recently_used_bytes_go_first() -> None:
    cache, _ = make(capacity=10)
    cache.put(key(1), b"1111")
    cache.put(key(2), b"2222")
    assert cache.get(key(1)) == b"1111"  # 2 is now the least recently used
    cache.put(key(3), b"333")  # 11 bytes would not fit: 2 goes
    assert cache.get(key(2)) is None
    assert cache.get(key(1)) == b"1111" and cache.get(key(3)) == b"333"
    cache.put(key(4), b"4444444444")  # the whole capacity: everything else goes
    s = cache.stats()
    assert (s.evictions, s.bytes, s.items) == (3, 10, 1)


def test_replacing_an_entry_counts_its_bytes_once() -> None:
    cache, _ = make(capacity=10)
    cache.put(key(1), b"12345678")
    cache.put(key(1), b"1234")
    assert cache.stats().bytes == 4
    assert cache.stats().evictions == 0


def test_an_item_over_the_limit_is_not_kept() -> None:
    cache, _ = make(capacity=100, max_item=10)
    cache.put(key(1), b"small")
    assert not cache.put(key(2), b"x" * 11)
    assert not cache.put(key(3), b"x" * 101)
    assert cache.get(key(2)) is None
    assert cache.get(key(1)) == b"small"  # nothing was evicted for it
    assert cache.stats().too_large == 2


def test_capacity_zero_keeps_nothing() -> None:
    cache, _ = make(capacity=0)
    assert not cache.put(key(1), b"a")
    assert cache.stats().items == 0


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="ttl > 0"):
        ByteCache(capacity_bytes=1, ttl=0)


def test_invalidate_one_stream() -> None:
    cache, _ = make()
    cache.put(key(1), b"a")
    cache.put(key(2, part=0), b"b")
    cache.put(key(1, stream="cam2"), b"c")
    assert cache.invalidate_stream("cam1") == 2
    assert cache.get(key(1)) is None and cache.get(key(2, part=0)) is None
    assert cache.get(key(1, stream="cam2")) == b"c"
    assert cache.stats().bytes == 1
    assert cache.invalidate_stream("nothing") == 0


async def test_a_hundred_concurrent_misses_make_one_load() -> None:
    cache, _ = make()
    calls = 0
    gate = asyncio.Event()

    async def loader() -> bytes | None:
        nonlocal calls
        calls += 1
        await gate.wait()
        return b"segment"

    waiters = [asyncio.create_task(cache.get_or_load(key(1), loader)) for _ in range(100)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiters) == [b"segment"] * 100
    assert calls == 1
    assert await cache.get_or_load(key(1), loader) == b"segment"  # now a hit
    s = cache.stats()
    assert (s.loads, s.misses, s.hits, s.items) == (1, 100, 1, 1)


async def test_a_failing_load_fails_every_waiter_and_caches_nothing() -> None:
    cache, _ = make()
    gate = asyncio.Event()

    async def loader() -> bytes | None:
        await gate.wait()
        raise ConnectionError("redis went away")

    waiters = [asyncio.create_task(cache.get_or_load(key(1), loader)) for _ in range(10)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert cache.stats().load_errors == 1 and cache.stats().items == 0

    async def good() -> bytes | None:
        return b"ok"

    assert await cache.get_or_load(key(1), good) == b"ok"  # the next miss loads again


async def test_a_missing_object_is_not_cached() -> None:
    cache, _ = make()
    calls = 0

    async def loader() -> bytes | None:
        nonlocal calls
        calls += 1
        return None

    assert await cache.get_or_load(key(1), loader) is None
    assert await cache.get_or_load(key(1), loader) is None
    assert calls == 2


async def test_a_waiter_going_away_does_not_cancel_the_load_for_the_others() -> None:
    cache, _ = make()
    gate = asyncio.Event()

    async def loader() -> bytes | None:
        await gate.wait()
        return b"data"

    first = asyncio.create_task(cache.get_or_load(key(1), loader))
    second = asyncio.create_task(cache.get_or_load(key(1), loader))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == b"data"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert cache.get(key(1)) == b"data"


async def test_a_load_running_across_an_invalidation_is_not_kept() -> None:
    cache, _ = make()
    gate = asyncio.Event()

    async def loader() -> bytes | None:
        await gate.wait()
        return b"old generation"

    waiter = asyncio.create_task(cache.get_or_load(key(1), loader))
    await asyncio.sleep(0)
    cache.invalidate_stream("cam1")
    gate.set()
    assert await waiter == b"old generation"  # the waiter still gets an answer
    assert cache.stats().items == 0


async def test_a_miss_after_an_invalidation_does_not_join_the_older_load() -> None:
    cache, _ = make()
    old_gate = asyncio.Event()

    async def old() -> bytes | None:
        await old_gate.wait()
        return b"old"

    async def new() -> bytes | None:
        return b"new"

    before = asyncio.create_task(cache.get_or_load(key(1), old))
    await asyncio.sleep(0)
    cache.invalidate_stream("cam1")
    assert await cache.get_or_load(key(1), new) == b"new"
    old_gate.set()
    assert await before == b"old"
    assert cache.get(key(1)) == b"new"


async def test_aclose_cancels_running_loads() -> None:
    cache, _ = make()

    async def loader() -> bytes | None:
        await asyncio.Event().wait()
        return None

    waiter = asyncio.create_task(cache.get_or_load(key(1), loader))
    await asyncio.sleep(0)
    await cache.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter


def test_prometheus_collector() -> None:
    cache, _ = make()
    cache.put(key(1), b"abc")
    cache.get(key(1))
    cache.get(key(2))
    registry = CollectorRegistry()
    registry.register(CacheCollector(cache))
    text = generate_latest(registry).decode()
    assert "cascade_edge_cache_hits_total 1.0" in text
    assert "cascade_edge_cache_misses_total 1.0" in text
    assert "cascade_edge_cache_evictions_total 0.0" in text
    assert "cascade_edge_cache_bytes 3.0" in text
    assert "cascade_edge_cache_items 1.0" in text


# ---- archived segments in Redis ---------------------------------------------------------


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_archived_segments_are_read_once_through_the_cache(redis: Redis) -> None:
    await redis.set(schema.archive_segment_key("cam1", "720p", 7), b"seg7", ex=60)
    cache, _ = make()
    await redis.config_resetstat()
    results = await asyncio.gather(
        *(archived_segment(cache, redis, "cam1", "720p", 7) for _ in range(50))
    )
    assert results == [b"seg7"] * 50
    stats = await redis.info("commandstats")
    assert stats["cmdstat_get"]["calls"] == 1
    assert await archived_segment(cache, redis, "cam1", "720p", 8) is None


def test_archive_key_and_ttl() -> None:
    assert schema.archive_segment_key("cam1", "720p", 7) == "cascade:stream:cam1:r:720p:seg:7"
    # Cleanup of a stream's keys finds the archive too.
    assert schema.archive_segment_key("cam1", "720p", 7).startswith(
        schema.stream_key_pattern("cam1")[:-1]
    )
    assert schema.archive_ttl_seconds(120, 0.5, 24) == 132
    assert schema.archive_ttl_seconds(0, 0.1, 3) == 1
