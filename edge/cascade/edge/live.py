"""LL-HLS requests, without a web framework: the edge's hot path.

``/live/...`` is what thousands of players hit ten times a second each. Measured on this
kind of machine (``bench/edge_hotpath.py``), a FastAPI route with middleware answered a
part at about a twentieth of nginx's rate, a bare ASGI callable at most of it; so these
requests are answered by :func:`handle_live` straight from the raw ASGI entry point
(:mod:`cascade.edge.asgi`), and FastAPI keeps the rest (player, health, status, metrics).

Each handler validates the request, asks the window (pure) what to do, holds the request
when the answer is "block" (woken through the feed's subscription), and renders with
:mod:`cascade.hls.playlist`.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from redis.exceptions import RedisError

from cascade.contract.settings import EdgeSettings
from cascade.contract.spec import is_valid_name
from cascade.edge import caching, cmcd
from cascade.edge.access import Denied, SigningKey, check_session_grant, verify
from cascade.edge.archive import archived_segment
from cascade.edge.cache import ByteCache
from cascade.edge.hub import Hub, RenditionFeed, StreamView
from cascade.edge.metrics import Metrics
from cascade.edge.ondemand import (
    STARTING_CACHE_CONTROL,
    STARTING_HEADERS,
    OnDemand,
    starting_message,
)
from cascade.edge.replies import HttpError, Reply
from cascade.edge.sessions import (
    HLS_CTX,
    SessionStore,
    media_playlist_uri,
    parse_viewer_id,
    session_for_request,
)
from cascade.edge.window import (
    PlaylistContext,
    Wait,
    build_media_playlist,
    rendition_report,
)
from cascade.hls.playlist import Variant, render_media_playlist, render_multivariant_playlist

PLAYLIST_TYPE = b"application/vnd.apple.mpegurl"
MEDIA_TYPE = b"video/mp4"
# Cache-Control of each kind of answer: the policy and its reasons are in caching.
PRIVATE_PLAYLIST_CACHE = caching.PRIVATE
MEDIA_CACHE = caching.MEDIA

_DIGITS = frozenset("0123456789")
# Shared replies of parts, segments and init sections kept at most (RenderCache.media).
MEDIA_REPLIES = 1024
# A request that needs Redis while it does not answer: 503, come back in a second (the
# hub retries every poll interval; an outage that outlasts it is told again).
REDIS_RETRY_AFTER_SECONDS = 1
# Past its deadline, a held request waits this long at a time for the hub to catch up.
CATCH_UP_POLL_SECONDS = 0.05


def redis_unavailable(what: str) -> HttpError:
    """A 503 for a request that needs Redis while it does not answer, with Retry-After.

    The Redis error stays out of the answer (it names internal addresses); the hub logs
    the outage and counts it.
    """
    return HttpError(
        503,
        f"{what} unavailable: Redis is not answering; retry in {REDIS_RETRY_AFTER_SECONDS} s",
        ((b"retry-after", str(REDIS_RETRY_AFTER_SECONDS).encode()),),
    )


def parse_query(query: bytes) -> dict[str, str]:
    """``a=1&b=2`` as a dict; the last value of a repeated name wins (as parse_qsl + dict).

    Hand-rolled: every LL-HLS request has a query (``_HLS_msn``, ``_HLS_part``,
    ``hls_ctx``), and ``urllib.parse.parse_qsl`` was a visible share of the hot path.
    """
    params = {}
    for pair in query.decode("latin-1").split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in pair or "+" in pair:
            name, value = unquote_plus(name), unquote_plus(value)
        params[name] = value
    return params


def _number(text: str, limit: int) -> int | None:
    """A decimal without sign or leading zeros, at most ``limit`` digits; else None."""
    if not text or len(text) > limit or not _DIGITS.issuperset(text):
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    return int(text)


@dataclass(slots=True)
class Hold:
    """A request waiting for its part (or playlist update), with its check and deadline.

    ``check`` returns the reply when ready, None to keep waiting, and raises
    :class:`HttpError` when the request can no longer be satisfied. It is run after each
    change of ``feed`` (both front doors subscribe to it). ``deadline`` is on the event
    loop's clock; once it is past and the hub has applied what Redis held by then
    (:meth:`Hub.expiry_horizon`), the answer is what ``expired()`` makes (a 503): made
    only then, not for every request held.
    """

    feed: RenditionFeed
    check: Callable[[], Reply | None]
    deadline: float
    expired: Callable[[], HttpError]
    # What ``check`` depends on besides the feed: holds of one feed with equal keys get
    # the same answer, so a wake checks each key once, whatever the number held on it.
    key: Hashable = None


class RenderCache:
    """The last media playlist rendered per feed and delta flag, with the versions of every
    window of its stream it was rendered from (rendition reports read the others): when a
    part lands, all the viewers held on it get the same bytes, rendered once, and the same
    :class:`Reply` (whose ``wire`` memo then holds the HTTP/1.1 answer, head and body, made
    once for all of them). Parts, segments and init sections have one shared reply each too
    (:meth:`media`).

    The rendering layer's own (:class:`Services`): the hub holds windows and Redis
    positions, no rendered text. An entry goes when its feed does (the hub dropped or
    recreated the stream): it holds the feed weakly.
    """

    __slots__ = ("_delta", "_full", "_media")

    def __init__(self) -> None:
        self._full: dict[int, _Rendered] = {}  # id(feed) -> its last full playlist
        self._delta: dict[int, _Rendered] = {}  # ... and its last delta update (_HLS_skip)
        self._media: dict[int, Reply] = {}  # id(bytes of a part...) -> its reply

    def get(
        self, feed: RenditionFeed, delta: bool, versions: tuple[int, ...], cache: bytes
    ) -> Reply | None:
        # An entry under id(feed) is this feed's: its weak reference's callback removes it
        # as the feed is freed, before that id can be given to another object.
        entry = (self._delta if delta else self._full).get(id(feed))
        if entry is None or entry.versions != versions:
            return None
        reply = entry.replies.get(cache)
        if reply is None:
            reply = entry.replies[cache] = Reply(
                200, PLAYLIST_TYPE, cache, entry.body, "media_playlist"
            )
        return reply

    def put(self, feed: RenditionFeed, delta: bool, versions: tuple[int, ...], body: bytes) -> None:
        entries = self._delta if delta else self._full
        key = id(feed)
        entries[key] = _Rendered(
            weakref.ref(feed, lambda _: entries.pop(key, None)), versions, body
        )

    def media(self, data: bytes, route: str) -> Reply:
        """The one reply of a part, segment or init section (they never change once
        published). Keyed by the bytes' id: the reply keeps its bytes alive, so that id
        is not reused while the entry is there. At most :data:`MEDIA_REPLIES` entries;
        past that the memo starts again (the live parts are a few per rendition)."""
        media = self._media
        reply = media.get(id(data))
        if reply is None or reply.body is not data or reply.route != route:
            if len(media) >= MEDIA_REPLIES:
                media.clear()
            reply = media[id(data)] = Reply(200, MEDIA_TYPE, MEDIA_CACHE, data, route)
        return reply

    def __len__(self) -> int:
        return len(self._full) + len(self._delta)


class _Rendered:
    # ``feed`` is never read: the weak reference is kept for its callback, which removes
    # the entry as the feed is freed. ``replies``: one per Cache-Control it was sent with.
    __slots__ = ("body", "feed", "replies", "versions")

    def __init__(
        self, feed: weakref.ref[RenditionFeed], versions: tuple[int, ...], body: bytes
    ) -> None:
        self.feed = feed
        self.versions = versions
        self.body = body
        self.replies: dict[bytes, Reply] = {}


@dataclass(slots=True)
class Services:
    """What LL-HLS requests use besides the windows: sessions, signing keys, the cache,
    the on-demand streams, the rendered playlists."""

    hub: Hub
    sessions: SessionStore
    keys: Mapping[str, SigningKey]
    cache: ByteCache
    settings: EdgeSettings
    on_demand: OnDemand
    clock: Callable[[], float] = time.time  # the wall clock: sessions and grants
    renders: RenderCache = field(default_factory=RenderCache)


@dataclass(slots=True)
class Lookup:
    """An answer that needs Redis first (admission, a grant, an archived segment): one
    coroutine, which ends in a reply or a :class:`Hold`. Not a held request: it waits on
    Redis, not on the window."""

    run: Callable[[], Awaitable[Reply | Hold]]


def decide(path: str, query: bytes, services: Services, now: float) -> Reply | Hold | Lookup:
    """Answer ``GET /live/...`` now, say what to wait for, or what to ask Redis first.

    Raises :class:`HttpError` for a request refused at once. ``now`` is the loop's clock.
    """
    parts = path[6:].split("/")  # after "/live/"
    params = parse_query(query) if query else {}
    if len(parts) == 1:
        name = parts[0]
        if not name.endswith(".m3u8"):
            raise HttpError(404, f"not a playlist: /live/{name}")
        view = _view(services, name[:-5])
        return Lookup(lambda: _multivariant(view, params, services))
    if len(parts) != 3:
        raise HttpError(404, "expected /live/{stream}.m3u8 or /live/{stream}/{rendition}/{file}")
    view = _view(services, parts[0])
    feed = _feed(view, parts[1])
    name = parts[2]
    if name == "index.m3u8":
        viewer = parse_viewer_id(params.get(HLS_CTX))
        if view.meta.access == "signed":
            return Lookup(lambda: _signed_media_playlist(view, feed, params, viewer, services, now))
        if (
            viewer is None
            and cmcd.QUERY_PARAM in params
            and services.settings.viewer_sessions == "cmcd"
        ):
            viewer = cmcd.viewer_from_request(params[cmcd.QUERY_PARAM], None)
        if viewer is not None and services.settings.viewer_tracking_enabled:
            services.sessions.touch(viewer, view.name, services.clock())
        return _media_playlist(view, feed, params, services, now)
    return _media_file(view, feed, name, services, now)


async def handle_live(path: str, query: bytes, services: Services, metrics: Metrics) -> Reply:
    """:func:`decide`, waiting through the feed's subscription while the request is held."""
    loop = asyncio.get_running_loop()
    decision = decide(path, query, services, loop.time())
    if isinstance(decision, Lookup):
        decision = await decision.run()
    if isinstance(decision, Reply):
        return decision
    with metrics.blocked():
        while True:
            reply = decision.check()
            if reply is not None:
                return reply
            now = loop.time()
            remaining = decision.deadline - now
            if remaining > 0:
                await changed(decision.feed, remaining)
            elif decision.deadline <= services.hub.expiry_horizon(now):
                raise decision.expired()
            else:
                # Past the deadline, but what Redis held by then is not applied yet (the
                # event loop was paused): the hub's next read may bring the part.
                await changed(decision.feed, CATCH_UP_POLL_SECONDS)


async def changed(feed: RenditionFeed, seconds: float) -> None:
    """Until the hub applies new entries to ``feed``, or ``seconds`` pass: one future and
    one timer, through the feed's subscription (no task, no event per change)."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    timer = loop.call_later(seconds, _resolve, woken)
    subscription = feed.subscribe(lambda: _resolve(woken))
    try:
        await woken
    finally:
        timer.cancel()
        feed.unsubscribe(subscription)


def _resolve(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)


def _view(services: Services, stream: str) -> StreamView:
    # The hub follows only streams of valid names: a name it has needs no check.
    view = services.hub.streams.get(stream)
    if view is None:
        if not is_valid_name(stream):
            raise HttpError(404, f"no stream named {stream!r}")
        if services.on_demand.starting(stream, services.clock()):
            # No transcoder yet: the demand just noted starts one. A 503 with Retry-After
            # (not 404) tells the player to come back; the header tells it why.
            raise HttpError(503, starting_message(stream), STARTING_HEADERS, STARTING_CACHE_CONTROL)
        raise HttpError(404, f"no live stream named {stream!r}")
    return view


def _feed(view: StreamView, rendition: str) -> RenditionFeed:
    feed = view.feeds.get(rendition)
    if feed is None:
        names = ", ".join(sorted(view.feeds)) or "none yet"
        raise HttpError(
            404, f"stream {view.name!r} has no rendition {rendition!r} (renditions: {names})"
        )
    return feed


async def _multivariant(view: StreamView, params: Mapping[str, str], services: Services) -> Reply:
    """The entry playlist: access check, the viewer's session, the multi-view limit."""
    now = services.clock()
    signed = view.meta.access == "signed"
    grant = None
    if signed:
        checked = verify(view.name, params, services.keys, now)
        if isinstance(checked, Denied):
            raise HttpError(403, checked.message)
        grant = checked
    tracking = services.settings.viewer_tracking_enabled
    # Behind a cache (viewer_sessions=cmcd), a public stream's session is the player's CMCD
    # sid and the URIs carry none: every viewer gets the same URLs, which a cache shares.
    # A signed stream keeps hls_ctx: it carries the grant (caching module docstring).
    shared = None
    if services.settings.viewer_sessions == "cmcd" and not signed:
        shared = cmcd.viewer_from_request(params.get(cmcd.QUERY_PARAM), None)
    viewer = shared or session_for_request(params.get(HLS_CTX), tracking=tracking, signed=signed)
    if viewer is not None:
        try:
            # Admission decides from this edge's own knowledge when Redis fails; the grant
            # cannot: the media playlist requests that follow may reach any replica.
            admission = await services.sessions.admit(viewer, view.name, now)
            if admission.allowed and grant is not None:
                await services.sessions.grant(viewer, view.name, grant.expires_at, now)
        except (RedisError, OSError) as exc:
            raise redis_unavailable("session store") from exc
        if not admission.allowed:
            retry = str(max(1, math.ceil(admission.retry_after or 1))).encode()
            raise HttpError(429, admission.message, ((b"retry-after", retry),))
        if services.settings.viewer_tracking_enabled:
            services.sessions.touch(viewer, view.name, now)
    variants = [
        Variant(
            uri=media_playlist_uri(view.name, r.name, None if shared else viewer),
            bandwidth=r.bandwidth,
            codecs=r.codecs,
            width=r.width,
            height=r.height,
            frame_rate=r.frame_rate,
            name=r.name,
        )
        for r in sorted(view.meta.renditions, key=lambda r: r.bandwidth)
    ]
    text = render_multivariant_playlist(variants)
    # With a session in it the playlist is this viewer's own: no shared cache may keep it.
    cache = caching.SHARED_MULTIVARIANT if shared or viewer is None else caching.PRIVATE
    return Reply(200, PLAYLIST_TYPE, cache, text.encode(), "multivariant")


async def _signed_media_playlist(
    view: StreamView,
    feed: RenditionFeed,
    params: Mapping[str, str],
    viewer: str | None,
    services: Services,
    now: float,
) -> Reply | Hold:
    """A media playlist of a signed stream: the session's inherited grant, or a token."""
    wall = services.clock()
    try:
        if viewer is not None:
            expiry = await services.sessions.grant_expiry(viewer, view.name, wall)
            checked = check_session_grant(view.name, expiry, wall)
        else:
            checked = verify(view.name, params, services.keys, wall)
    except (RedisError, OSError) as exc:
        raise redis_unavailable("session store") from exc
    if isinstance(checked, Denied):
        raise HttpError(403, checked.message)
    if viewer is not None:
        services.sessions.touch(viewer, view.name, wall)
    return _media_playlist(view, feed, params, services, now)


def _directive(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    number = _number(value, 18)
    if number is None:
        raise HttpError(400, f"{name} must be a non-negative integer, got {value!r}")
    return number


def _media_playlist(
    view: StreamView,
    feed: RenditionFeed,
    params: Mapping[str, str],
    services: Services,
    now: float,
) -> Reply | Hold:
    renders = services.renders
    msn = _directive("_HLS_msn", params.get("_HLS_msn"))
    part = _directive("_HLS_part", params.get("_HLS_part"))
    skip = params.get("_HLS_skip")
    if part is not None and msn is None:
        # "The _HLS_part directive ... MUST NOT be used without an _HLS_msn" (RFC 8216bis 6.2.5.2)
        raise HttpError(400, "_HLS_part requires _HLS_msn")
    if skip is not None and skip not in ("YES", "v2"):
        raise HttpError(400, "_HLS_skip must be YES or v2")
    delta = skip is not None
    if view.meta.access == "signed":
        cache = caching.PRIVATE  # answered after the grant check: never shared
    elif msn is None:
        cache = caching.PLAIN_PLAYLIST
    else:
        cache = _BLOCKING_CACHE.get(view.meta.segment_target) or _blocking_cache(
            view.meta.segment_target
        )
    if msn is None and feed.window.position is not None:
        return _render(view, feed, delta, renders, cache)
    starting = msn is None
    # No part at all yet (the stream is starting): a playlist without segments and
    # without a preload hint sends hls.js into a reload loop, so wait for the first part
    # like a blocking request does, then answer 503 "starting".
    want_msn, want_part = (0, 0) if starting else (msn, part)
    assert want_msn is not None

    def check() -> Reply | None:
        if starting:
            if feed.window.position is None:
                return None
            return _render(view, feed, delta, renders, cache)
        decision = feed.window.playlist_wait(want_msn, want_part, view.meta.part_target)
        if decision is Wait.READY:
            return _render(view, feed, delta, renders, cache)
        if decision is Wait.TOO_FAR:
            raise HttpError(
                400,
                f"_HLS_msn={want_msn} _HLS_part={want_part} is beyond the advance limit "
                f"of the playlist (last segment {_describe(feed)})",
            )
        return None

    reply = check()
    if reply is not None:
        return reply

    def expired() -> HttpError:
        if starting:
            return HttpError(503, f"stream {view.name!r} is starting: no part yet, retry")
        return HttpError(503, f"segment {want_msn} part {want_part} did not arrive in time")

    key = ("playlist", starting, want_msn, want_part, delta, cache)
    return Hold(feed, check, now + _timeout(view, services.settings), expired, key)


_BLOCKING_CACHE: dict[float, bytes] = {}  # segment target -> Cache-Control, made once


def _blocking_cache(segment_target: float) -> bytes:
    value = _BLOCKING_CACHE[segment_target] = caching.blocking_playlist(segment_target)
    return value


def _render(
    view: StreamView, feed: RenditionFeed, delta: bool, renders: RenderCache, cache: bytes
) -> Reply:
    versions = tuple(f.window.version for f in view.feeds.values())
    cached = renders.get(feed, delta, versions, cache)
    if cached is not None:
        return cached
    reports = []
    for info in view.meta.renditions:
        other = view.feeds.get(info.name)
        if info.name != feed.window.name and other is not None:
            report = rendition_report(info, other.window)
            if report is not None:
                reports.append(report)
    ctx = PlaylistContext(
        part_target=view.meta.part_target,
        segment_target=view.meta.segment_target,
        reports=tuple(reports),
    )
    body = render_media_playlist(build_media_playlist(feed.window, ctx), skip=delta).encode()
    renders.put(feed, delta, versions, body)
    reply = renders.get(feed, delta, versions, cache)
    assert reply is not None  # just put
    return reply


def _media_file(
    view: StreamView, feed: RenditionFeed, name: str, services: Services, now: float
) -> Reply | Hold | Lookup:
    settings = services.settings
    window = feed.window
    if name.startswith("init") and name.endswith(".mp4"):
        middle = name[4:-4]
        generation = None
        if middle:
            generation = _number(middle[1:], 9) if middle[0] == "-" else None
            if generation is None:
                raise HttpError(404, f"not an init segment name: {name!r}")
        data = window.init(generation)
        if data is None:
            raise HttpError(404, f"no init segment {name} for {view.name}/{window.name}")
        return services.renders.media(data, "init")
    if not name.endswith(".m4s"):
        raise HttpError(
            404, f"not a media file name: {name!r} (expected N.m4s, N.P.m4s or init.mp4)"
        )
    numbers = name[:-4].split(".")
    msn = _number(numbers[0], 18)
    index = _number(numbers[1], 6) if len(numbers) == 2 else None
    if msn is None or len(numbers) > 2 or (len(numbers) == 2 and index is None):
        raise HttpError(
            404, f"not a media file name: {name!r} (expected N.m4s, N.P.m4s or init.mp4)"
        )
    if index is None:
        seg = window.servable_segment(msn)
        if seg is not None:
            return services.renders.media(seg.data, "segment")
        if window.segments and msn < window.segments[0].msn:
            # Older than the live window (a slow client, a DVR-style request): the
            # archive in Redis, through the edge's bounded cache.
            return Lookup(lambda: _archived(view, window.name, msn, services))
        raise HttpError(
            404, f"segment {msn} of {view.name}/{window.name} is not in the live window"
        )
    part = window.part(msn, index)
    if part is not None:  # the common case: answer at once
        return services.renders.media(part.data, "part")

    def check() -> Reply | None:
        decision = window.part_wait(msn, index)
        if decision is Wait.READY:
            found = window.part(msn, index)
            if found is None:
                raise HttpError(404, f"part {msn}.{index} does not exist")
            return services.renders.media(found.data, "part")
        if decision is not Wait.BLOCK:
            raise HttpError(
                404, f"part {msn}.{index} is not in the live window (last part {_describe(feed)})"
            )
        return None

    reply = check()  # raises for a part that will never come
    if reply is not None:
        return reply

    def expired() -> HttpError:
        return HttpError(503, f"part {msn}.{index} did not arrive in time")

    return Hold(feed, check, now + _timeout(view, settings), expired, ("part", msn, index))


async def _archived(view: StreamView, rendition: str, msn: int, services: Services) -> Reply:
    try:
        data = await archived_segment(services.cache, services.hub.redis, view.name, rendition, msn)
    except (RedisError, OSError) as exc:
        services.hub.redis_errors += 1
        raise redis_unavailable("segment archive") from exc
    if data is None:
        raise HttpError(404, f"segment {msn} of {view.name}/{rendition} is no longer kept")
    return Reply(200, MEDIA_TYPE, MEDIA_CACHE, data, "segment_archive")


def _timeout(view: StreamView, settings: EdgeSettings) -> float:
    # "...the server SHOULD return 503 if the Playlist is not updated within three times
    # the Target Duration" (blocking requests never hang forever).
    return settings.blocking_timeout_factor * max(1.0, view.meta.segment_target)


def _describe(feed: RenditionFeed) -> str:
    pos = feed.window.position
    return f"{pos.msn}.{pos.part}" if pos else "none yet"
