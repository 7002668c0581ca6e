"""The edge's Redis follower: keeps every live stream's window in memory.

One task discovers streams (the ``cascade:streams`` set and each stream's meta and
health); one task ``XREAD BLOCK``s every rendition's part stream at once, applies new
entries to the windows and tells each feed's subscribers. Requests never read
Redis for live parts: a new part reaches each edge once, whatever the viewer count.

Redis going away and coming back never makes a live stream vanish:

* Briefly unreachable (same server, its ``run_id`` unchanged): reading goes on from the
  last stream ids; nothing is rebuilt. Parts lost meanwhile show as a msn jump, which the
  window handles (it starts afresh with a discontinuity, see ``window``).
* Restarted (a new ``run_id``: empty, from a dump, or a promoted replica): a feed whose
  last entry the new server still holds goes on from there; the others are read again
  from the start, into the same window, which keeps what it has and ignores the entries
  it already applied (by msn). A stream missing from the new server is kept for
  ``restart_grace_seconds``: its transcoder puts it back within a health interval.
* New and recreated streams are built off to the side and swapped in in one step: a
  request never sees a stream without its renditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cascade.contract import schema
from cascade.contract.schema import Health, SchemaError, StreamMeta
from cascade.edge.window import RenditionWindow

log = logging.getLogger("cascade.edge.hub")

XREAD_BLOCK_MS = 500
XREAD_COUNT = 500
# After a Redis restart, a stream missing from it is kept this long (seconds): transcoders
# re-announce their streams with every health report (one a second by default).
RESTART_GRACE_SECONDS = 10.0
# A read normally comes back within its block time; later than this (seconds), it may be
# hanging: see :func:`expiry_horizon`.
READ_STALL_SECONDS = XREAD_BLOCK_MS / 1000 + 1.0
# How long a read may look hung, while the event loop runs, before held requests are
# expired by their deadline alone.
STALL_GRACE_SECONDS = 1.0


class Subscription:
    """One subscriber of a feed: ``callback`` runs each time the hub has applied new entries.

    Returned by :meth:`RenditionFeed.subscribe`; give it back to
    :meth:`RenditionFeed.unsubscribe`. The hub knows nothing of what the callback does (the
    edge's server answers held requests in it; the ASGI path resolves a future).
    """

    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], object]) -> None:
        self.callback = callback


@dataclass(slots=True, eq=False, weakref_slot=True)
class RenditionFeed:
    """One rendition followed from Redis: its window, where reading goes on, and who is
    told when new entries are applied. The hub's own: callers read the window and
    subscribe; they never write here."""

    window: RenditionWindow
    key: str
    last_id: bytes = b"0-0"
    _subscriptions: dict[Subscription, None] = field(default_factory=dict, init=False, repr=False)

    def subscribe(self, callback: Callable[[], object]) -> Subscription:
        """Call ``callback()`` after every batch of entries the hub applies to this feed,
        until :meth:`unsubscribe`. A change before this call is not told: check the window
        first, then subscribe, with no await in between."""
        subscription = Subscription(callback)
        self._subscriptions[subscription] = None
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """No more calls for ``subscription``; a subscription already gone is ignored."""
        self._subscriptions.pop(subscription, None)

    def notify(self) -> None:
        """Run every subscriber's callback: the hub calls this after applying entries.

        A callback that raises is logged and the others still run: a subscriber's bug
        must not stop the hub from following Redis.
        """
        subscriptions = self._subscriptions
        if not subscriptions:
            return
        for subscription in list(subscriptions):  # a callback may (un)subscribe
            if subscription not in subscriptions:
                continue  # unsubscribed by a callback before it
            try:
                subscription.callback()
            except Exception:
                log.exception("%s: a subscriber failed", self.key)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)


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
        restart_grace_seconds: float = RESTART_GRACE_SECONDS,
        on_stream_reset: Callable[[str], object] | None = None,
    ) -> None:
        self.redis = redis
        self.poll_seconds = poll_seconds
        self.max_streams = max_streams
        self.clock = clock  # the wall clock: the restart grace, last-part ages
        self.restart_grace_seconds = restart_grace_seconds
        self.streams: dict[str, StreamView] = {}
        self.connected = False
        self.redis_errors = 0
        self.run_id: str | None = None  # INFO server run_id of the Redis last seen
        self.restarts = 0  # Redis restarts seen (run_id changes)
        self.replays = 0  # feeds read again from the start after a restart
        # Event-loop time up to which everything published to Redis has been applied: the
        # send time of the last read that came back with data and left nothing pending
        # (Redis answers with what it holds when the command arrives, or later), or of an
        # empty read, its block time later. The edge's server expires a held request only
        # once its deadline is at or before this (see :meth:`expiry_horizon`), so a pause
        # of the event loop never turns a part already in Redis into a 503.
        self.caught_up_at = -math.inf
        self._last_read_at = -math.inf  # event-loop time the last read came back
        self._overdue_since: float | None = None
        self._epoch = 0  # raised when feeds are re-read: reads sent before are dropped
        self._grace_until = -math.inf  # wall clock: streams missing from Redis kept until
        self._keys_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        # Called with a stream's name when its windows are dropped (deleted, or created
        # again): caches of its older segments must go too. A Redis restart keeps them.
        self.on_stream_reset = on_stream_reset

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        self.caught_up_at = self._last_read_at = asyncio.get_running_loop().time()
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
            # Last, on the same connection: a restart before any of the reads above shows
            # here, so a stream missing from those reads is judged with the grace on.
            pipe.info("server")
            raw = await pipe.execute(raise_on_error=False)
            run_id = _run_id(raw.pop())
            for item in raw:
                if isinstance(item, Exception):
                    raise item
            if self.run_id is not None and run_id != self.run_id:
                await self._restarted(run_id)
            self.run_id = run_id
            self.connected = True
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
        except (RedisError, OSError) as exc:
            self._redis_failed(exc)
            return
        if self.clock() < self._grace_until:
            return  # Redis restarted: missing streams are on their way back
        for gone in set(self.streams) - seen:
            del self.streams[gone]
            self._reset(gone)
            self._keys_changed.set()

    async def _restarted(self, run_id: str) -> None:
        """A different Redis server answers: keep every window, find where to read on.

        A feed whose last entry the new server holds (a restart from a dump that has it,
        a replica that had it) goes on from there. The others are read again from the
        start: stream ids of an emptied or older server say nothing about ours, and the
        window ignores the entries it already has. Raises RedisError like any read (then
        the restart is found again on the next refresh).
        """
        feeds = [f for f in self._feeds().values() if f.last_id != b"0-0"]
        pipe = self.redis.pipeline(transaction=False)
        for feed in feeds:
            pipe.xrange(feed.key, feed.last_id, feed.last_id, count=1)
        held = await pipe.execute() if feeds else []
        lost = [f for f, entries in zip(feeds, held, strict=True) if not entries]
        log.warning(
            "redis restarted (run_id %s, was %s): %d of %d feeds read again from the start",
            run_id,
            self.run_id,
            len(lost),
            len(feeds),
        )
        self.restarts += 1
        self._grace_until = self.clock() + self.restart_grace_seconds
        if lost:
            self._epoch += 1  # a read out now carries the old ids: its answer is dropped
            for feed in lost:
                feed.last_id = b"0-0"
            self.replays += len(lost)
            self._keys_changed.set()

    def _reset(self, name: str) -> None:
        if self.on_stream_reset is not None:
            self.on_stream_reset(name)

    async def _update_stream(self, name: str, meta: StreamMeta, health: Health | None) -> None:
        view = self.streams.get(name)
        if view is None or meta.generation < view.meta.generation:
            # New, or deleted and created again under the same name (start afresh). Built
            # off to the side and swapped in at once: a request sees the old view or the
            # whole new one, never a stream without its renditions.
            fresh = StreamView(name=name, meta=meta, feeds={}, health=health)
            for info in meta.renditions:
                fresh.feeds[info.name] = await self._new_feed(name, meta, info.name)
            self.streams[name] = fresh
            if view is not None:
                self._reset(name)
            self._keys_changed.set()
            return
        view.meta, view.health = meta, health
        for info in meta.renditions:
            if info.name not in view.feeds:
                view.feeds[info.name] = await self._new_feed(name, meta, info.name)
                self._keys_changed.set()

    async def _new_feed(self, stream: str, meta: StreamMeta, rendition: str) -> RenditionFeed:
        feed = RenditionFeed(
            window=RenditionWindow(rendition, max_segments=meta.window_segments),
            key=schema.parts_key(stream, rendition),
        )
        await self._bootstrap(stream, rendition, feed)
        return feed

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
        loop = asyncio.get_running_loop()
        while not self._stopping:
            feeds = self._feeds()
            self._keys_changed.clear()
            if not feeds:
                self.caught_up_at = self._last_read_at = loop.time()  # nothing to follow
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._keys_changed.wait(), self.poll_seconds)
                continue
            epoch, sent_at = self._epoch, loop.time()
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
            if epoch != self._epoch:
                continue  # sent with ids a restart made meaningless: read again
            pending = False
            for key, items in result or []:
                feed = feeds.get(key.decode())
                if feed is None:
                    continue
                pending = pending or len(items) >= XREAD_COUNT
                for entry_id, fields in items:
                    feed.last_id = entry_id
                    try:
                        feed.window.apply(schema.decode_entry(fields))
                    except SchemaError as exc:
                        log.warning("%s: %s", feed.key, exc)
                feed.notify()
            now = self._last_read_at = loop.time()
            if not pending:
                # An empty answer means nothing came for the whole block time.
                caught_up = sent_at if result else min(now, sent_at + XREAD_BLOCK_MS / 1000)
                self.caught_up_at = max(self.caught_up_at, caught_up)

    def expiry_horizon(self, now: float) -> float:
        """Held requests with a deadline at or before this may be answered 503 now.

        ``now`` is the event loop's clock. See :func:`expiry_horizon`.
        """
        horizon, self._overdue_since = expiry_horizon(
            now,
            connected=self.connected and not self._stopping,
            caught_up_at=self.caught_up_at,
            last_read_at=self._last_read_at,
            overdue_since=self._overdue_since,
        )
        return horizon

    # ---- for requests ----------------------------------------------------------------

    def feed(self, stream: str, rendition: str) -> RenditionFeed | None:
        view = self.streams.get(stream)
        return view.feeds.get(rendition) if view is not None else None


def _run_id(info: object) -> str:
    """The server's ``run_id`` from ``INFO server``; "" when a server does not say (a
    Redis-compatible server, INFO renamed away): restarts then go unnoticed, and reading
    on from the last ids is what is left (new stream ids are later ones anyway)."""
    if isinstance(info, dict):
        return str(info.get("run_id", ""))
    return ""


def expiry_horizon(
    now: float,
    *,
    connected: bool,
    caught_up_at: float,
    last_read_at: float,
    overdue_since: float | None,
) -> tuple[float, float | None]:
    """Up to when held requests may expire, and the new ``overdue_since``. Pure.

    While Redis is reachable, a request waits until the hub has applied everything
    published up to its deadline (``caught_up_at``): after a pause of the event loop the
    part may be sitting in a read's answer, unapplied. While Redis is down, deadlines
    alone decide, so nothing hangs. So does a read that has not come back for
    ``READ_STALL_SECONDS`` once ``STALL_GRACE_SECONDS`` of running event loop have passed
    (``overdue_since``: when that was first seen), so a Redis that hangs without an error
    cannot hold requests forever either; the grace is what lets a paused loop apply the
    answer that has been waiting in the socket.
    """
    if not connected:
        return now, None
    if now - last_read_at <= READ_STALL_SECONDS:
        return min(now, caught_up_at), None
    since = now if overdue_since is None else overdue_since
    if now - since < STALL_GRACE_SECONDS:
        return min(now, caught_up_at), since
    return now, since
