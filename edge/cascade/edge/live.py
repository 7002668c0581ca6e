"""LL-HLS requests, without a web framework: the edge's hot path.

``/live/...`` is what thousands of players hit ten times a second each. Measured on this
kind of machine (``bench/edge_hotpath.py``), a FastAPI route with middleware answered a
part at about a twentieth of nginx's rate, a bare ASGI callable at most of it; so these
requests are answered by :func:`handle_live` straight from the raw ASGI entry point
(:mod:`cascade.edge.asgi`), and FastAPI keeps the rest (player, health, status, metrics).

Each handler validates the request, asks the window (pure) what to do, waits on the
hub's signal when the answer is "block", and renders with :mod:`cascade.hls.playlist`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from cascade.core.settings import EdgeSettings
from cascade.core.spec import is_valid_name
from cascade.edge.hub import Hub, RenditionFeed, StreamView
from cascade.edge.metrics import Metrics
from cascade.edge.window import (
    PlaylistContext,
    Wait,
    build_media_playlist,
    rendition_report,
)
from cascade.hls.playlist import Variant, render_media_playlist, render_multivariant_playlist

PLAYLIST_TYPE = b"application/vnd.apple.mpegurl"
MEDIA_TYPE = b"video/mp4"
TEXT_TYPE = b"text/plain; charset=utf-8"
# Playlists change every part: never cached ("no-cache" revalidates every time).
PLAYLIST_CACHE = b"no-cache"
# Parts and segments never change once published: a CDN may keep them for the window.
MEDIA_CACHE = b"public, max-age=30"

_DIGITS = frozenset("0123456789")


class HttpError(Exception):
    """A request we refuse: the status and a message that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: bytes
    cache_control: bytes
    body: bytes
    route: str


def _number(text: str, limit: int) -> int | None:
    """A decimal without sign or leading zeros, at most ``limit`` digits; else None."""
    if not text or len(text) > limit or not _DIGITS.issuperset(text):
        return None
    if len(text) > 1 and text[0] == "0":
        return None
    return int(text)


@dataclass(slots=True)
class Pending:
    """A request held until its part exists: ``check()`` answers it once it can.

    ``check`` returns the reply when ready, None to keep waiting, and raises
    :class:`HttpError` when the request can no longer be satisfied. ``deadline`` is on the
    event loop's clock; past it the answer is ``expired`` (503).
    """

    feed: RenditionFeed
    check: Callable[[], Reply | None]
    deadline: float
    expired: HttpError


def decide(
    path: str, query: bytes, hub: Hub, settings: EdgeSettings, now: float
) -> Reply | Pending:
    """Answer ``GET /live/...`` now, or say what to wait for; raises :class:`HttpError`."""
    parts = path[6:].split("/")  # after "/live/"
    if len(parts) == 1:
        name = parts[0]
        if not name.endswith(".m3u8"):
            raise HttpError(404, f"not a playlist: /live/{name}")
        return _multivariant(_view(hub, name[:-5]))
    if len(parts) != 3:
        raise HttpError(404, "expected /live/{stream}.m3u8 or /live/{stream}/{rendition}/{file}")
    view = _view(hub, parts[0])
    feed = _feed(view, parts[1])
    name = parts[2]
    if name == "index.m3u8":
        return _media_playlist(view, feed, query, settings, now)
    return _media_file(view, feed, name, settings, now)


async def handle_live(
    path: str, query: bytes, hub: Hub, settings: EdgeSettings, metrics: Metrics
) -> Reply:
    """:func:`decide`, waiting on the hub's signal when the answer is to hold the request."""
    loop = asyncio.get_running_loop()
    decision = decide(path, query, hub, settings, loop.time())
    if isinstance(decision, Reply):
        return decision
    with metrics.blocked():
        while True:
            reply = decision.check()
            if reply is not None:
                return reply
            remaining = decision.deadline - loop.time()
            if remaining <= 0 or not await decision.feed.signal.wait(remaining):
                reply = decision.check()
                if reply is not None:
                    return reply
                raise decision.expired


def _view(hub: Hub, stream: str) -> StreamView:
    if not is_valid_name(stream):
        raise HttpError(404, f"no stream named {stream!r}")
    view = hub.streams.get(stream)
    if view is None:
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


def _multivariant(view: StreamView) -> Reply:
    variants = [
        Variant(
            uri=f"{view.name}/{r.name}/index.m3u8",
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
    return Reply(200, PLAYLIST_TYPE, PLAYLIST_CACHE, text.encode(), "multivariant")


def _directive(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    number = _number(value, 18)
    if number is None:
        raise HttpError(400, f"{name} must be a non-negative integer, got {value!r}")
    return number


def _media_playlist(
    view: StreamView, feed: RenditionFeed, query: bytes, settings: EdgeSettings, now: float
) -> Reply | Pending:
    params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
    msn = _directive("_HLS_msn", params.get("_HLS_msn"))
    part = _directive("_HLS_part", params.get("_HLS_part"))
    skip = params.get("_HLS_skip")
    if part is not None and msn is None:
        # "The _HLS_part directive ... MUST NOT be used without an _HLS_msn" (RFC 8216bis 6.2.5.2)
        raise HttpError(400, "_HLS_part requires _HLS_msn")
    if skip is not None and skip not in ("YES", "v2"):
        raise HttpError(400, "_HLS_skip must be YES or v2")
    delta = skip is not None
    if msn is None and feed.window.position is not None:
        return _render(view, feed, delta)
    starting = msn is None
    # No part at all yet (the stream is starting): a playlist without segments and
    # without a preload hint sends hls.js into a reload loop, so wait for the first part
    # like a blocking request does, then answer 503 "starting".
    want_msn, want_part = (0, 0) if starting else (msn, part)
    assert want_msn is not None

    def check() -> Reply | None:
        if starting:
            return _render(view, feed, delta) if feed.window.position is not None else None
        decision = feed.window.playlist_wait(want_msn, want_part, view.meta.part_target)
        if decision is Wait.READY:
            return _render(view, feed, delta)
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
    expired = (
        HttpError(503, f"stream {view.name!r} is starting: no part yet, retry")
        if starting
        else HttpError(503, f"segment {want_msn} part {want_part} did not arrive in time")
    )
    return Pending(feed, check, now + _timeout(view, settings), expired)


def _render(view: StreamView, feed: RenditionFeed, delta: bool) -> Reply:
    versions = tuple(f.window.version for f in view.feeds.values())
    cached = feed.rendered.get(delta)
    if cached is not None and cached[0] == versions:
        return Reply(200, PLAYLIST_TYPE, PLAYLIST_CACHE, cached[1], "media_playlist")
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
    feed.rendered[delta] = (versions, body)
    return Reply(200, PLAYLIST_TYPE, PLAYLIST_CACHE, body, "media_playlist")


def _media_file(
    view: StreamView, feed: RenditionFeed, name: str, settings: EdgeSettings, now: float
) -> Reply | Pending:
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
        return Reply(200, MEDIA_TYPE, MEDIA_CACHE, data, "init")
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
        seg = window.segment(msn)
        if seg is None or not seg.complete:
            raise HttpError(
                404, f"segment {msn} of {view.name}/{window.name} is not in the live window"
            )
        return Reply(200, MEDIA_TYPE, MEDIA_CACHE, seg.data, "segment")
    part = window.part(msn, index)
    if part is not None:  # the common case: answer at once
        return Reply(200, MEDIA_TYPE, MEDIA_CACHE, part.data, "part")

    def check() -> Reply | None:
        decision = window.part_wait(msn, index)
        if decision is Wait.READY:
            found = window.part(msn, index)
            if found is None:
                raise HttpError(404, f"part {msn}.{index} does not exist")
            return Reply(200, MEDIA_TYPE, MEDIA_CACHE, found.data, "part")
        if decision is not Wait.BLOCK:
            raise HttpError(
                404, f"part {msn}.{index} is not in the live window (last part {_describe(feed)})"
            )
        return None

    reply = check()  # raises for a part that will never come
    if reply is not None:
        return reply
    expired = HttpError(503, f"part {msn}.{index} did not arrive in time")
    return Pending(feed, check, now + _timeout(view, settings), expired)


def _timeout(view: StreamView, settings: EdgeSettings) -> float:
    # "...the server SHOULD return 503 if the Playlist is not updated within three times
    # the Target Duration" (blocking requests never hang forever).
    return settings.blocking_timeout_factor * max(1.0, view.meta.segment_target)


def _describe(feed: RenditionFeed) -> str:
    pos = feed.window.position
    return f"{pos.msn}.{pos.part}" if pos else "none yet"
