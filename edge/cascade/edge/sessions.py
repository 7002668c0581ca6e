"""Anonymous viewer sessions: counts per stream, the multi-view limit, inherited grants.

Privacy first: a session is a random id (``secrets.token_urlsafe(12)``, 16 characters)
and the Unix times of its last requests; nothing else about the viewer (no IP address,
no user agent, no cookie) is stored here, in Redis or in logs.

The id rides as ``hls_ctx`` on the media playlist URIs of the multivariant playlist, and
never on parts or segments (they stay identical for every viewer, so a CDN caches them).
The id is the *viewer* id: a multivariant request that already carries a well-formed
``hls_ctx`` keeps it, so the multi-view page passes one id for all its streams, and each
(viewer, stream) pair is tracked.

Cost: :meth:`SessionStore.touch` is a dict write per playlist request; heartbeats are
coalesced in memory and written by :meth:`SessionStore.flush` every ``flush_interval``
(default 2 s) in one pipeline of ``3 x streams + 6`` commands, whatever the number of
viewers (see :func:`flush_commands`). Counts are ``ZCOUNT`` over the timeout window, so
every replica reports the same numbers, cached ``counts_cache_seconds`` in memory.

Multi-view limit, across replicas: :meth:`SessionStore.admit` runs on the multivariant
request. In Redis it is one Lua script, atomic: it finds the viewer's live streams (the
``cascade:viewed`` streams whose viewer set holds the id with a score inside the timeout
window), adds the streams this edge saw the viewer on but has not flushed yet, decides,
and when admitted writes the pair at once (not at the next flush). Concurrent admissions
on any replicas are serialized by Redis, so the 7th stream is refused whichever replica
answers. What stays inexact, honestly: (1) a pair known only from media playlist requests
(an ``hls_ctx`` reused on a stream never admitted) reaches Redis at the next flush of the
replica that saw it, so other replicas miss it for up to ``flush_interval``; such requests
are counted but never refused: the limit is checked where a stream starts, on the
multivariant request. (2) A stream the viewer closed counts until its session expires
(``timeout``; the refusal carries ``retry_after``). (3) While Redis is unreachable, admission
is decided from what this edge alone knows. The id is chosen by the client, so the limit
is a fairness rule for cooperative players, not a security boundary (signed URLs are the
access control).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cascade.contract import schema
from cascade.contract.settings import EdgeSettings

log = logging.getLogger("cascade.edge.sessions")

HLS_CTX = "hls_ctx"
# Matched with fullmatch: "$" also matches before a final "\n", and a newline in an
# hls_ctx would land in the playlist and in Redis.
_VIEWER_ID_RE = re.compile(r"[A-Za-z0-9_-]{16}")


def new_viewer_id() -> str:
    """A fresh random viewer id: 12 random bytes, 16 URL-safe characters."""
    return secrets.token_urlsafe(12)


def parse_viewer_id(value: str | None) -> str | None:
    """The viewer id of an ``hls_ctx`` parameter, or ``None`` when absent or malformed.

    Only the exact shape of :func:`new_viewer_id` is accepted, so a client cannot put
    anything else (an e-mail address, a long string) into Redis keys or members.
    """
    if value is not None and _VIEWER_ID_RE.fullmatch(value):
        return value
    return None


def session_for_request(
    hls_ctx: str | None,
    *,
    tracking: bool,
    signed: bool,
    new_id: Callable[[], str] = new_viewer_id,
) -> str | None:
    """The viewer id a multivariant request gets: its own ``hls_ctx`` or a new one.

    ``None`` (no session, no ``hls_ctx`` on the URIs) when tracking is off and the stream
    is public; a signed stream always gets a session, which carries its grant.
    """
    if not tracking and not signed:
        return None
    return parse_viewer_id(hls_ctx) or new_id()


def media_playlist_uri(stream: str, rendition: str, viewer: str | None) -> str:
    """A media playlist URI of the multivariant playlist (relative to ``/live/``)."""
    uri = f"{stream}/{rendition}/index.m3u8"
    return f"{uri}?{HLS_CTX}={viewer}" if viewer else uri


@dataclass(frozen=True, slots=True)
class SessionConfig:
    timeout: float = 30.0  # VIEWER_TIMEOUT_SECONDS: a session ends this long after its last request
    flush_interval: float = 2.0  # CASCADE_SESSION_FLUSH_SECONDS
    max_streams_per_viewer: int = 6  # CASCADE_MAX_STREAMS_PER_VIEWER
    counts_cache_seconds: float = 1.0  # CASCADE_VIEWER_COUNTS_CACHE_SECONDS
    tracking: bool = True  # VIEWER_TRACKING_ENABLED

    @classmethod
    def from_settings(cls, settings: EdgeSettings) -> SessionConfig:
        return cls(
            timeout=float(settings.viewer_timeout_seconds),
            flush_interval=settings.session_flush_seconds,
            max_streams_per_viewer=settings.max_streams_per_viewer,
            counts_cache_seconds=settings.viewer_counts_cache_seconds,
            tracking=settings.viewer_tracking_enabled,
        )

    @property
    def key_ttl(self) -> int:
        """TTL of the session keys, refreshed on each write: they vanish when nobody writes."""
        return math.ceil(2 * self.timeout + self.flush_interval)

    def cutoff(self, now: float) -> float:
        """A session is live while its last request is later than this."""
        return now - self.timeout


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a viewer may start a stream (the edge turns a refusal into 429)."""

    allowed: bool
    active: int  # the viewer's live streams, this one included when allowed
    limit: int
    message: str = ""
    retry_after: int = 0  # seconds: when a stream closed now stops counting


def decide_admission(stream: str, active: Iterable[str], limit: int, timeout: float) -> Admission:
    """The multi-view rule: a stream already watched is fine, a new one needs room."""
    streams = set(active)
    if stream in streams or len(streams) < limit:
        return Admission(True, len(streams | {stream}), limit)
    return Admission(
        False,
        len(streams),
        limit,
        f"viewer already watches {len(streams)} streams (the limit is {limit}): close one first",
        retry_after=math.ceil(timeout),
    )


def flush_commands(streams_touched: int) -> int:
    """Redis commands in one flush: per stream touched ZADD + ZREMRANGEBYSCORE + EXPIRE,
    and the same three for each of the two shared sets (all viewers, viewed streams)."""
    return 3 * streams_touched + 6 if streams_touched else 0


def commands_per_viewer_second(
    *, viewers: int, streams: int, flush_interval: float, replicas: int = 1
) -> float:
    """Steady-state heartbeat cost: every replica flushes every stream it serves."""
    return replicas * flush_commands(streams) / flush_interval / viewers


class SessionStore(Protocol):
    """Viewer sessions of one edge replica; the implementations share the same contract.

    ``now`` is Unix seconds from the caller's clock (injected, so tests run on a fake one).
    """

    config: SessionConfig

    def touch(self, viewer: str, stream: str, now: float) -> None:
        """Record a request of ``viewer`` on ``stream``: in memory, no I/O."""

    async def flush(self, now: float) -> int:
        """Write the pending heartbeats in one batch and drop expired sessions.

        Returns the (viewer, stream) pairs written. On failure the heartbeats stay
        pending for the next flush and the error propagates.
        """

    async def counts(self, now: float) -> dict[str, int]:
        """Live viewers per stream (streams without any are left out), shared by all replicas."""

    async def total(self, now: float) -> int:
        """Distinct live viewers over all streams."""

    async def active_streams(self, viewer: str, now: float) -> set[str]:
        """The streams ``viewer`` watches now, as all replicas together know them."""

    async def admit(self, viewer: str, stream: str, now: float) -> Admission:
        """Apply the multi-view limit; when allowed, the pair counts at once."""

    async def grant(self, viewer: str, stream: str, expires_at: int, now: float) -> None:
        """Store the grant a session inherited from a signed URL (visible to all replicas)."""

    async def grant_expiry(self, viewer: str, stream: str, now: float) -> int | None:
        """The expiry of ``viewer``'s grant for ``stream``, ``None`` when it has none."""


class _StoreBase:
    """What every store does in memory: pending heartbeats and the counts cache."""

    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self._pending: dict[str, dict[str, float]] = {}  # stream -> viewer -> last request
        self._counts: tuple[float, dict[str, int], int] | None = None

    def touch(self, viewer: str, stream: str, now: float) -> None:
        if not self.config.tracking:
            return
        viewers = self._pending.get(stream)
        if viewers is None:
            viewers = self._pending[stream] = {}
        viewers[viewer] = now

    @property
    def pending(self) -> int:
        """(viewer, stream) pairs waiting for the next flush."""
        return sum(len(v) for v in self._pending.values())

    def _take_pending(self) -> dict[str, dict[str, float]]:
        taken, self._pending = self._pending, {}
        return taken

    def _restore_pending(self, taken: Mapping[str, Mapping[str, float]]) -> None:
        for stream, viewers in taken.items():
            mine = self._pending.setdefault(stream, {})
            for viewer, seen in viewers.items():
                mine[viewer] = max(seen, mine.get(viewer, seen))

    def _local_streams(self, viewer: str, now: float) -> set[str]:
        cutoff = self.config.cutoff(now)
        return {s for s, vs in self._pending.items() if vs.get(viewer, cutoff) > cutoff}

    async def counts(self, now: float) -> dict[str, int]:
        return dict((await self._cached_counts(now))[0])

    async def total(self, now: float) -> int:
        return (await self._cached_counts(now))[1]

    async def _cached_counts(self, now: float) -> tuple[dict[str, int], int]:
        if not self.config.tracking:
            return {}, 0
        cached = self._counts
        if cached is None or not (cached[0] <= now < cached[0] + self.config.counts_cache_seconds):
            per_stream, total = await self._read_counts(now)
            cached = self._counts = (now, per_stream, total)
        return cached[1], cached[2]

    async def _read_counts(self, now: float) -> tuple[dict[str, int], int]:
        raise NotImplementedError


# ---- in memory ------------------------------------------------------------------------


@dataclass
class MemoryBackend:
    """What Redis holds, in one process: several stores sharing one act as replicas."""

    viewers: dict[str, dict[str, float]]  # stream -> viewer -> last request
    grants: dict[tuple[str, str], int]  # (viewer, stream) -> expiry

    @classmethod
    def empty(cls) -> MemoryBackend:
        return cls({}, {})


class MemorySessionStore(_StoreBase):
    """For unit tests and a single process: the same contract, no Redis."""

    def __init__(self, config: SessionConfig, backend: MemoryBackend | None = None) -> None:
        super().__init__(config)
        self.backend = backend if backend is not None else MemoryBackend.empty()

    async def flush(self, now: float) -> int:
        taken = self._take_pending()
        cutoff = self.config.cutoff(now)
        for stream, pending in taken.items():
            stored = self.backend.viewers.setdefault(stream, {})
            for viewer, seen in pending.items():
                stored[viewer] = max(seen, stored.get(viewer, seen))
        for stream, stored in list(self.backend.viewers.items()):
            for viewer in [v for v, seen in stored.items() if seen <= cutoff]:
                del stored[viewer]
            if not stored:
                del self.backend.viewers[stream]
        for pair in [p for p, exp in self.backend.grants.items() if exp <= now]:
            del self.backend.grants[pair]
        return sum(len(v) for v in taken.values())

    async def _read_counts(self, now: float) -> tuple[dict[str, int], int]:
        cutoff = self.config.cutoff(now)
        per_stream: dict[str, int] = {}
        everyone: set[str] = set()
        for stream, stored in self.backend.viewers.items():
            live = {v for v, seen in stored.items() if seen > cutoff}
            if live:
                per_stream[stream] = len(live)
                everyone |= live
        return per_stream, len(everyone)

    async def active_streams(self, viewer: str, now: float) -> set[str]:
        if not self.config.tracking:
            return set()
        return self._stored_streams(viewer, now) | self._local_streams(viewer, now)

    def _stored_streams(self, viewer: str, now: float) -> set[str]:
        cutoff = self.config.cutoff(now)
        return {s for s, vs in self.backend.viewers.items() if vs.get(viewer, cutoff) > cutoff}

    async def admit(self, viewer: str, stream: str, now: float) -> Admission:
        limit = self.config.max_streams_per_viewer
        if not self.config.tracking:
            return Admission(True, 0, limit)
        active = await self.active_streams(viewer, now)
        decision = decide_admission(stream, active, limit, self.config.timeout)
        if decision.allowed:
            stored = self.backend.viewers.setdefault(stream, {})
            stored[viewer] = max(now, stored.get(viewer, now))
        return decision

    async def grant(self, viewer: str, stream: str, expires_at: int, now: float) -> None:
        if expires_at > now:
            self.backend.grants[(viewer, stream)] = expires_at

    async def grant_expiry(self, viewer: str, stream: str, now: float) -> int | None:
        return self.backend.grants.get((viewer, stream))


# ---- Redis -------------------------------------------------------------------------------

# KEYS: 1 viewed streams, 2 this stream's viewers, 3 all viewers.
# ARGV: 1 viewer, 2 stream, 3 now, 4 cutoff, 5 limit (0: only report), 6 key TTL,
#       7 prefix of the per-stream viewer keys, 8.. streams this edge has not flushed yet.
# The other streams' keys are built here from the prefix: fine on one Redis server (the
# architecture's), not on Redis Cluster.
_ADMIT_LUA = """
local viewer, stream, now, cutoff = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local limit, ttl, prefix = tonumber(ARGV[5]), ARGV[6], ARGV[7]
local seen, active = {}, {}
local function add(s)
  if not seen[s] then seen[s] = true; active[#active + 1] = s end
end
for i = 8, #ARGV do add(ARGV[i]) end
for _, s in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[4], '+inf')) do
  if not seen[s] then
    local score = redis.call('ZSCORE', prefix .. s, viewer)
    if score and tonumber(score) > cutoff then add(s) end
  end
end
if limit > 0 and (seen[stream] or #active < limit) then
  redis.call('ZADD', KEYS[2], 'GT', now, viewer)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('ZADD', KEYS[3], 'GT', now, viewer)
  redis.call('EXPIRE', KEYS[3], ttl)
  redis.call('ZADD', KEYS[1], 'GT', now, stream)
  redis.call('EXPIRE', KEYS[1], ttl)
  return {1, active}
end
return {0, active}
"""


@dataclass(slots=True)
class _LocalGrant:
    expires_at: int
    last_used: float


class RedisSessionStore(_StoreBase):
    """Sessions shared by every edge replica through Redis (see the module docstring)."""

    def __init__(self, redis: Redis, config: SessionConfig) -> None:
        super().__init__(config)
        self.redis = redis
        self.redis_errors = 0
        self._grants: dict[tuple[str, str], _LocalGrant] = {}
        self._admit_script = redis.register_script(_ADMIT_LUA)

    async def flush(self, now: float) -> int:
        taken = self._take_pending()
        self._prune_grants(now)
        if not taken:
            return 0
        cutoff = self.config.cutoff(now)
        ttl = self.config.key_ttl
        last_by_viewer: dict[str, float] = {}
        last_by_stream: dict[str, float] = {}
        pipe = self.redis.pipeline(transaction=False)
        for stream, viewers in taken.items():
            key = schema.viewers_key(stream)
            pipe.zadd(key, cast(Mapping[Any, float], viewers), gt=True)
            pipe.zremrangebyscore(key, "-inf", cutoff)
            pipe.expire(key, ttl)
            last_by_stream[stream] = max(viewers.values())
            for viewer, seen in viewers.items():
                if seen > last_by_viewer.get(viewer, -math.inf):
                    last_by_viewer[viewer] = seen
        for key, members in (
            (schema.VIEWERS_ALL, last_by_viewer),
            (schema.VIEWED_STREAMS, last_by_stream),
        ):
            pipe.zadd(key, cast(Mapping[Any, float], members), gt=True)
            pipe.zremrangebyscore(key, "-inf", cutoff)
            pipe.expire(key, ttl)
        try:
            await pipe.execute()
        except (RedisError, OSError):
            self.redis_errors += 1
            self._restore_pending(taken)
            raise
        return sum(len(v) for v in taken.values())

    async def _read_counts(self, now: float) -> tuple[dict[str, int], int]:
        window = f"({self.config.cutoff(now)!r}"
        try:
            raw = await self.redis.zrangebyscore(schema.VIEWED_STREAMS, window, "+inf")
            streams = sorted(_text(s) for s in cast(list[bytes | str], raw))
            pipe = self.redis.pipeline(transaction=False)
            for stream in streams:
                pipe.zcount(schema.viewers_key(stream), window, "+inf")
            pipe.zcount(schema.VIEWERS_ALL, window, "+inf")
            numbers = cast(list[int], await pipe.execute())
        except (RedisError, OSError):
            self.redis_errors += 1
            raise
        per_stream = {s: int(n) for s, n in zip(streams, numbers, strict=False) if n}
        return per_stream, int(numbers[-1])

    async def _run_admit(self, viewer: str, stream: str, now: float, limit: int) -> set[str]:
        """The Lua script: the viewer's live streams, and the pair written when admitted."""
        args: list[str | float | int] = [
            viewer,
            stream,
            repr(now),
            repr(self.config.cutoff(now)),
            limit,
            self.config.key_ttl,
            schema.VIEWERS_PREFIX,
            *sorted(self._local_streams(viewer, now)),
        ]
        keys = [schema.VIEWED_STREAMS, schema.viewers_key(stream), schema.VIEWERS_ALL]
        try:
            _, active = cast(list[Any], await self._admit_script(keys=keys, args=args))
        except (RedisError, OSError):
            self.redis_errors += 1
            raise
        return {_text(s) for s in cast(list[bytes | str], active)}

    async def active_streams(self, viewer: str, now: float) -> set[str]:
        if not self.config.tracking:
            return set()
        return await self._run_admit(viewer, "", now, limit=0)

    async def admit(self, viewer: str, stream: str, now: float) -> Admission:
        """Atomic in Redis (see the module docstring for what stays inexact).

        While Redis is unreachable the limit is applied to what this edge knows and the
        stream is counted at the next flush: playback does not depend on Redis answering.
        """
        limit = self.config.max_streams_per_viewer
        if not self.config.tracking:
            return Admission(True, 0, limit)
        try:
            active = await self._run_admit(viewer, stream, now, limit)
        except (RedisError, OSError) as exc:
            log.warning("viewer limit checked locally, redis failed: %s", exc)
            decision = decide_admission(
                stream, self._local_streams(viewer, now), limit, self.config.timeout
            )
            if decision.allowed:
                self.touch(viewer, stream, now)
            return decision
        return decide_admission(stream, active, limit, self.config.timeout)

    async def grant(self, viewer: str, stream: str, expires_at: int, now: float) -> None:
        """Written at once, not at the next flush: the media playlist request that follows
        within milliseconds may reach another replica."""
        if expires_at <= now:
            return
        self._grants[(viewer, stream)] = _LocalGrant(expires_at, now)
        try:
            await self.redis.set(
                schema.viewer_grant_key(viewer, stream),
                str(expires_at),
                ex=max(1, math.ceil(expires_at - now)),
            )
        except (RedisError, OSError):
            self.redis_errors += 1
            raise

    async def grant_expiry(self, viewer: str, stream: str, now: float) -> int | None:
        """From memory when this replica knows the grant, else one ``GET`` (then remembered).

        Unknown ids are not remembered: each request with a forged ``hls_ctx`` on a signed
        stream costs one ``GET``.
        """
        local = self._grants.get((viewer, stream))
        if local is not None:
            local.last_used = now
            return local.expires_at
        try:
            raw = await self.redis.get(schema.viewer_grant_key(viewer, stream))
        except (RedisError, OSError):
            self.redis_errors += 1
            raise
        if raw is None:
            return None
        expires_at = int(_text(raw))
        self._grants[(viewer, stream)] = _LocalGrant(expires_at, now)
        return expires_at

    def _prune_grants(self, now: float) -> None:
        cutoff = self.config.cutoff(now)
        for pair in [
            p for p, g in self._grants.items() if g.expires_at <= now or g.last_used <= cutoff
        ]:
            del self._grants[pair]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def make_session_store(settings: EdgeSettings, redis: Redis) -> RedisSessionStore:
    return RedisSessionStore(redis, SessionConfig.from_settings(settings))


# ---- the flush task --------------------------------------------------------------------------


class SessionFlusher:
    """Flushes a store every ``flush_interval``; owned by the edge's lifespan."""

    def __init__(self, store: SessionStore, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None and self.store.config.tracking:
            self._task = asyncio.create_task(self._loop(), name="sessions:flush")

    async def stop(self) -> None:
        """Stop, then write what is pending (best effort: a rolling update loses nothing)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            await self.flush_once()

    async def flush_once(self) -> None:
        try:
            await self.store.flush(self.clock())
        except (RedisError, OSError) as exc:
            self.failures += 1
            log.warning("viewer heartbeats kept for the next flush, redis failed: %s", exc)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.store.config.flush_interval)
            await self.flush_once()
