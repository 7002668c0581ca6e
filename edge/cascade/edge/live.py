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


async def handle_live(
    path: str, query: bytes, hub: Hub, settings: EdgeSettings, metrics: Metrics
) -> Reply:
    """Answer ``GET /live/...``; raises :class:`HttpError` for anything refused."""
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
        return await _media_playlist(view, feed, query, settings, metrics)
    return await _media_file(view, feed, name, settings, metrics)


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


async def _media_playlist(
    view: StreamView, feed: RenditionFeed, query: bytes, settings: EdgeSettings, metrics: Metrics
) -> Reply:
    params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True)) if query else {}
    msn = _directive("_HLS_msn", params.get("_HLS_msn"))
    part = _directive("_HLS_part", params.get("_HLS_part"))
    skip = params.get("_HLS_skip")
    if part is not None and msn is None:
        # "The _HLS_part directive ... MUST NOT be used without an _HLS_msn" (RFC 8216bis 6.2.5.2)
        raise HttpError(400, "_HLS_part requires _HLS_msn")
    if skip is not None and skip not in ("YES", "v2"):
        raise HttpError(400, "_HLS_skip must be YES or v2")
    if msn is not None:
        await _block_playlist(view, feed, msn, part, settings, metrics)
    elif feed.window.position is None:
        # Not a single part yet (the stream is starting): a playlist without segments and
        # without a preload hint sends hls.js into a reload loop, so wait for the first
        # part like a blocking request does, then answer 503 "starting".
        await _block_playlist(view, feed, 0, 0, settings, metrics, starting=True)
    versions = tuple(f.window.version for f in view.feeds.values())
    delta = skip is not None
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


async def _media_file(
    view: StreamView, feed: RenditionFeed, name: str, settings: EdgeSettings, metrics: Metrics
) -> Reply:
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
    data = await _wait_part(view, feed, msn, index, settings, metrics)
    return Reply(200, MEDIA_TYPE, MEDIA_CACHE, data, "part")


def _timeout(view: StreamView, settings: EdgeSettings) -> float:
    # "...the server SHOULD return 503 if the Playlist is not updated within three times
    # the Target Duration" (blocking requests never hang forever).
    return settings.blocking_timeout_factor * max(1.0, view.meta.segment_target)


async def _block_playlist(
    view: StreamView,
    feed: RenditionFeed,
    msn: int,
    part: int | None,
    settings: EdgeSettings,
    metrics: Metrics,
    *,
    starting: bool = False,
) -> None:
    decision = feed.window.playlist_wait(msn, part, view.meta.part_target)
    if decision is Wait.READY:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _timeout(view, settings)
    with metrics.blocked():
        while True:
            if decision is Wait.READY:
                return
            if decision is Wait.TOO_FAR:
                raise HttpError(
                    400,
                    f"_HLS_msn={msn} _HLS_part={part} is beyond the advance limit "
                    f"of the playlist (last segment {_describe(feed)})",
                )
            remaining = deadline - loop.time()
            if remaining <= 0 or not await feed.signal.wait(remaining):
                if starting:
                    raise HttpError(503, f"stream {view.name!r} is starting: no part yet, retry")
                raise HttpError(503, f"segment {msn} part {part} did not arrive in time")
            decision = feed.window.playlist_wait(msn, part, view.meta.part_target)


async def _wait_part(
    view: StreamView,
    feed: RenditionFeed,
    msn: int,
    index: int,
    settings: EdgeSettings,
    metrics: Metrics,
) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _timeout(view, settings)
    with metrics.blocked():
        while True:
            decision = feed.window.part_wait(msn, index)
            if decision is Wait.READY:
                part = feed.window.part(msn, index)
                if part is not None:
                    return part.data
                raise HttpError(404, f"part {msn}.{index} does not exist")
            if decision is not Wait.BLOCK:
                raise HttpError(
                    404,
                    f"part {msn}.{index} is not in the live window (last part {_describe(feed)})",
                )
            remaining = deadline - loop.time()
            if remaining <= 0 or not await feed.signal.wait(remaining):
                raise HttpError(503, f"part {msn}.{index} did not arrive in time")


def _describe(feed: RenditionFeed) -> str:
    pos = feed.window.position
    return f"{pos.msn}.{pos.part}" if pos else "none yet"
