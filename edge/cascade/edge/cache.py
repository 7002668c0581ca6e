"""A byte cache for media older than the live window: TTL + LRU, bounded in bytes.

Parts and segments of the live window are served from the window itself; anything older
(a slow client, a request just behind the window) is read from Redis
(``cascade:stream:{s}:r:{r}:seg:{msn}``) through this cache, so N viewers asking for the
same old segment cost one Redis read:

* every entry lives at most ``ttl`` seconds (default 30), then is read again;
* the bytes held never exceed ``capacity_bytes``: the least recently used go first;
* an item larger than ``max_item_bytes`` (default 100 MB, the original design's limit)
  or than the whole capacity is served but never kept;
* ``get_or_load`` is single-flight: concurrent misses of one key share one loader call;
  a failing loader fails every waiter and caches nothing; a loader answering ``None``
  (not in Redis) caches nothing either;
* ``invalidate_stream`` drops a stream's entries; loads already running for it answer
  their waiters but put nothing back, and later misses start a new load.

The clock is injected; asyncio is used only for the single-flight loads.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

DEFAULT_TTL_SECONDS = 30.0
DEFAULT_MAX_ITEM_BYTES = 100 * 1000 * 1000

Loader = Callable[[], Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True)
class MediaKey:
    """One cached object: a segment (``part is None``) or a part of a rendition."""

    stream: str
    rendition: str
    msn: int
    part: int | None = None


@dataclass(frozen=True, slots=True)
class ObjectKey:
    """One object of the object store (a recorded segment or init), by its key."""

    stream: str
    key: str


CacheKey = MediaKey | ObjectKey


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int  # dropped to make room (LRU); expired and invalidated ones are not counted
    expirations: int
    loads: int  # loader calls (one per single-flight group)
    load_errors: int
    too_large: int  # items served but not kept (over max_item_bytes or the capacity)
    bytes: int
    items: int
    capacity_bytes: int


@dataclass(slots=True)
class _Entry:
    data: bytes
    expires_at: float


class ByteCache:
    def __init__(
        self,
        *,
        capacity_bytes: int,
        ttl: float = DEFAULT_TTL_SECONDS,
        max_item_bytes: int = DEFAULT_MAX_ITEM_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity_bytes < 0 or ttl <= 0 or max_item_bytes <= 0:
            raise ValueError("capacity_bytes >= 0, ttl > 0 and max_item_bytes > 0 are required")
        self.capacity_bytes = capacity_bytes
        self.ttl = ttl
        self.max_item_bytes = max_item_bytes
        self.clock = clock
        # Least recently used first. The TTL is the same for every entry, so insertion
        # order is expiry order: ``_by_age`` (oldest put first) finds the expired in O(1).
        self._lru: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._by_age: OrderedDict[CacheKey, None] = OrderedDict()
        self._by_stream: dict[str, set[CacheKey]] = {}
        self._epoch: dict[str, int] = {}  # raised by invalidate_stream
        self._inflight: dict[CacheKey, asyncio.Task[bytes | None]] = {}
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._expirations = 0
        self._loads = self._load_errors = self._too_large = 0

    # ---- pure part -------------------------------------------------------------------

    def get(self, key: CacheKey) -> bytes | None:
        """The cached bytes, or ``None`` (counted as a miss)."""
        self._expire(self.clock())
        entry = self._lru.get(key)
        if entry is None:
            self._misses += 1
            return None
        self._lru.move_to_end(key)
        self._hits += 1
        return entry.data

    def put(self, key: CacheKey, data: bytes) -> bool:
        """Keep ``data`` for ``ttl`` seconds; ``False`` when it is too large to keep."""
        now = self.clock()
        self._expire(now)
        self._remove(key)
        size = len(data)
        if size > self.max_item_bytes or size > self.capacity_bytes:
            self._too_large += 1
            return False
        while self._bytes + size > self.capacity_bytes:
            oldest = next(iter(self._lru))
            self._remove(oldest)
            self._evictions += 1
        self._lru[key] = _Entry(data, now + self.ttl)
        self._by_age[key] = None
        self._by_stream.setdefault(key.stream, set()).add(key)
        self._bytes += size
        return True

    def invalidate_stream(self, stream: str) -> int:
        """Drop every entry of ``stream`` (it restarted or ended); returns how many."""
        self._epoch[stream] = self._epoch.get(stream, 0) + 1
        for loading in [k for k in self._inflight if k.stream == stream]:
            del self._inflight[loading]  # its waiters get its answer; new misses load anew
        keys = self._by_stream.pop(stream, set())
        for key in keys:
            self._remove(key)
        return len(keys)

    def stats(self) -> CacheStats:
        return CacheStats(
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
            expirations=self._expirations,
            loads=self._loads,
            load_errors=self._load_errors,
            too_large=self._too_large,
            bytes=self._bytes,
            items=len(self._lru),
            capacity_bytes=self.capacity_bytes,
        )

    def _expire(self, now: float) -> None:
        while self._by_age:
            key = next(iter(self._by_age))
            if self._lru[key].expires_at > now:
                return
            self._remove(key)
            self._expirations += 1

    def _remove(self, key: CacheKey) -> None:
        entry = self._lru.pop(key, None)
        if entry is None:
            return
        del self._by_age[key]
        self._bytes -= len(entry.data)
        keys = self._by_stream.get(key.stream)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_stream[key.stream]

    # ---- single-flight loads -----------------------------------------------------------

    async def get_or_load(self, key: CacheKey, loader: Loader) -> bytes | None:
        """The cached bytes, or the loader's, with one loader call per concurrent miss.

        The load runs in its own task, so a waiter that goes away (the client closed the
        connection) neither cancels it for the others nor leaves it half done.
        """
        data = self.get(key)
        if data is not None:
            return data
        task = self._inflight.get(key)
        if task is None:
            epoch = self._epoch.get(key.stream, 0)  # what an invalidation from now on raises
            task = asyncio.create_task(self._load(key, loader, epoch), name=f"cache-load:{key}")
            task.add_done_callback(_consume)
            self._inflight[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: CacheKey, loader: Loader, epoch: int) -> bytes | None:
        self._loads += 1
        try:
            data = await loader()
        except BaseException:
            self._load_errors += 1
            raise
        finally:
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]
        if data is not None and self._epoch.get(key.stream, 0) == epoch:
            self.put(key, data)
        return data

    async def aclose(self) -> None:
        """Cancel the loads still running (for a clean shutdown)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _consume(task: asyncio.Task[bytes | None]) -> None:
    # Every waiter may have gone: mark the exception as retrieved so asyncio does not log it.
    if not task.cancelled():
        task.exception()


class CacheCollector(Collector):
    """Prometheus view of a :class:`ByteCache` (register with ``registry.register``)."""

    def __init__(self, cache: ByteCache, *, prefix: str = "cascade_edge_cache") -> None:
        self.cache = cache
        self.prefix = prefix

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        s = self.cache.stats()
        p = self.prefix
        yield CounterMetricFamily(f"{p}_hits", "Cache lookups answered from memory", s.hits)
        yield CounterMetricFamily(f"{p}_misses", "Cache lookups not in memory", s.misses)
        yield CounterMetricFamily(f"{p}_evictions", "Entries dropped to make room", s.evictions)
        yield CounterMetricFamily(f"{p}_expirations", "Entries dropped at their TTL", s.expirations)
        yield CounterMetricFamily(f"{p}_loads", "Loader calls (one per single flight)", s.loads)
        yield CounterMetricFamily(f"{p}_load_errors", "Loader calls that failed", s.load_errors)
        yield GaugeMetricFamily(f"{p}_bytes", "Bytes held", s.bytes)
        yield GaugeMetricFamily(f"{p}_items", "Entries held", s.items)
        yield GaugeMetricFamily(f"{p}_capacity_bytes", "Byte capacity", s.capacity_bytes)
