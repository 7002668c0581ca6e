"""The edge's Redis follower: keeps every live stream's window in memory.

One task discovers streams (the ``cascade:streams`` set and each stream's meta and
health); one task ``XREAD BLOCK``s every rendition's part stream at once, applies new
entries to the windows and wakes the requests waiting on them. Requests never read
Redis for live parts: a new part reaches each edge once, whatever the viewer count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cascade.core import schema
from cascade.core.schema import Health, SchemaError, StreamMeta
from cascade.edge.window import RenditionWindow

log = logging.getLogger("cascade.edge.hub")

XREAD_BLOCK_MS = 500
XREAD_COUNT = 500


class Wakeable(Protocol):
    def wake(self) -> None: ...


class Signal:
    """Wakes every waiter on the next change: one event per change, swapped on ``notify``."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> bool:
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), seconds)
        except TimeoutError:
            return False
        return True


@dataclass(slots=True)
class RenditionFeed:
    window: RenditionWindow
    key: str
    last_id: bytes = b"0-0"
    signal: Signal = field(default_factory=Signal)
    # The last rendered media playlist per delta flag, keyed by the versions of every
    # window it shows (rendition reports read the others): when a part lands, all the
    # viewers blocked on it get the same bytes, rendered once.
    rendered: dict[bool, tuple[tuple[int, ...], bytes]] = field(default_factory=dict)
    # Requests held by the edge's server until a part lands (``server.Waiters``).
    waiters: Wakeable | None = None


@dataclass(slots=True)
class StreamView:
    name: str
    meta: StreamMeta
    feeds: dict[str, RenditionFeed]
    health: Health | None = None


class Hub:
    def __init__(
        self,
        redis: Redis,
        *,
        poll_seconds: float = 0.5,
        max_streams: int = 25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.poll_seconds = poll_seconds
        self.max_streams = max_streams
        self.clock = clock
        self.streams: dict[str, StreamView] = {}
        self.connected = False
        self.redis_errors = 0
        self._keys_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Called with a stream's name when its windows are dropped (deleted, recreated,
        # Redis restarted): caches of its older segments must go too.
        self.on_stream_reset: Callable[[str], object] | None = None

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        self._tasks = [
            asyncio.create_task(self._discover_loop(), name="hub:discover"),
            asyncio.create_task(self._read_loop(), name="hub:read"),
        ]

    async def stop(self) -> None:
        # redis-py can swallow a CancelledError that lands inside a command, and the loop
        # then goes on; the flag ends the loops whatever happened to the cancellation.
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            while not task.done():
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 1)
                task.cancel()
        self._tasks = []

    # ---- discovery -------------------------------------------------------------------

    async def _discover_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.poll_seconds)
            await self.refresh()

    async def refresh(self) -> None:
        """Streams, meta and health from Redis; new renditions are loaded with XRANGE."""
        try:
            members = cast(set[bytes], await self.redis.smembers(schema.STREAMS_SET))
            names = sorted(n.decode() for n in members)
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(schema.meta_key(name))
                pipe.hgetall(schema.health_key(name))
            raw = await pipe.execute()
            if not self.connected and self.streams:
                # Back after an outage: Redis may have restarted empty, with stream ids
                # starting again below ours. Rebuild every window from what is there now.
                log.warning("redis reachable again: reloading %d streams", len(self.streams))
                self.streams.clear()
                self._keys_changed.set()
            self.connected = True
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            return
        seen = set()
        for i, name in enumerate(names[: self.max_streams]):
            meta_raw, health_raw = raw[2 * i], raw[2 * i + 1]
            if not meta_raw:
                continue  # announced but no init yet: not playable
            try:
                meta = StreamMeta.decode(meta_raw)
                health = Health.decode(health_raw) if health_raw else None
            except (SchemaError, KeyError, ValueError) as exc:
                log.warning("stream %s: unreadable meta or health: %s", name, exc)
                continue
            seen.add(name)
            await self._update_stream(name, meta, health)
        for gone in set(self.streams) - seen:
            del self.streams[gone]
            self._reset(gone)
            self._keys_changed.set()

    def _reset(self, name: str) -> None:
        if self.on_stream_reset is not None:
            self.on_stream_reset(name)

    async def _update_stream(self, name: str, meta: StreamMeta, health: Health | None) -> None:
        view = self.streams.get(name)
        if view is not None and meta.generation < view.meta.generation:
            # The stream was deleted and created again under the same name: start afresh.
            del self.streams[name]
            self._reset(name)
            view = None
        if view is None:
            view = StreamView(name=name, meta=meta, feeds={}, health=health)
            self.streams[name] = view
        view.meta, view.health = meta, health
        for info in meta.renditions:
            if info.name in view.feeds:
                continue
            feed = RenditionFeed(
                window=RenditionWindow(info.name, max_segments=meta.window_segments),
                key=schema.parts_key(name, info.name),
            )
            await self._bootstrap(name, info.name, feed)
            view.feeds[info.name] = feed
            self._keys_changed.set()

    async def _bootstrap(self, stream: str, rendition: str, feed: RenditionFeed) -> None:
        """The init segment, then the whole stream so far: the live window at once."""
        init = cast(bytes | None, await self.redis.get(schema.init_key(stream, rendition)))
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await self.redis.xrange(feed.key))
        first_gen = None
        for entry_id, fields in entries:
            try:
                entry = schema.decode_entry(fields)
            except SchemaError as exc:
                log.warning("%s: %s", feed.key, exc)
                continue
            if first_gen is None:
                first_gen = entry.generation
                if init is not None and not isinstance(entry, schema.InitEntry):
                    # The init entry was trimmed away: the stored init is the current one.
                    feed.window.apply(schema.InitEntry(data=init, generation=first_gen))
            feed.window.apply(entry)
            feed.last_id = entry_id
        if first_gen is None and init is not None:
            feed.window.apply(schema.InitEntry(data=init, generation=0))

    def _redis_failed(self, exc: BaseException) -> None:
        if self.connected:
            log.warning("redis unreachable: %s", exc)
        self.connected = False
        self.redis_errors += 1

    # ---- following -------------------------------------------------------------------

    def _feeds(self) -> dict[str, RenditionFeed]:
        return {f.key: f for v in self.streams.values() for f in v.feeds.values()}

    async def _read_loop(self) -> None:
        while not self._stopping:
            feeds = self._feeds()
            self._keys_changed.clear()
            if not feeds:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._keys_changed.wait(), self.poll_seconds)
                continue
            try:
                streams: dict[Any, Any] = {k: f.last_id for k, f in feeds.items()}
                result = cast(
                    list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None,
                    await self.redis.xread(streams, count=XREAD_COUNT, block=XREAD_BLOCK_MS),
                )
            except (RedisError, OSError) as exc:
                self._redis_failed(exc)
                await asyncio.sleep(self.poll_seconds)
                continue
            for key, items in result or []:
                feed = feeds.get(key.decode())
                if feed is None:
                    continue
                for entry_id, fields in items:
                    feed.last_id = entry_id
                    try:
                        feed.window.apply(schema.decode_entry(fields))
                    except SchemaError as exc:
                        log.warning("%s: %s", feed.key, exc)
                feed.signal.notify()
                if feed.waiters is not None:
                    feed.waiters.wake()

    # ---- for requests ----------------------------------------------------------------

    def feed(self, stream: str, rendition: str) -> RenditionFeed | None:
        view = self.streams.get(stream)
        return view.feeds.get(rendition) if view is not None else None
