"""The edge's HTTP surface: LL-HLS playlists and media, the player, health, status, metrics.

``create_app(settings)`` builds everything; nothing is created at import. Routes parse
and validate the request, ask the window (pure) what to do, wait on the hub's signal
when the answer is "block", and render with :mod:`cascade.hls.playlist`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.exceptions import HTTPException as StarletteHTTPException

from cascade.core.schema import StreamState
from cascade.core.settings import EdgeSettings
from cascade.core.spec import is_valid_name
from cascade.edge import assets
from cascade.edge.hub import Hub, RenditionFeed, StreamView
from cascade.edge.metrics import Metrics
from cascade.edge.window import (
    PlaylistContext,
    Position,
    Wait,
    build_media_playlist,
    rendition_report,
)
from cascade.hls.playlist import Variant, render_media_playlist, render_multivariant_playlist

PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
# Playlists change every part: never cached ("no-cache" revalidates every time).
PLAYLIST_HEADERS = {"Cache-Control": "no-cache"}
# Parts and segments never change once published: a CDN may keep them for the window.
MEDIA_HEADERS = {"Cache-Control": "public, max-age=30"}
MEDIA_TYPE = "video/mp4"

_PART_RE = re.compile(r"^(0|[1-9][0-9]{0,17})(?:\.(0|[1-9][0-9]{0,5}))?\.m4s$")
_INIT_RE = re.compile(r"^init(?:-(0|[1-9][0-9]{0,8}))?\.mp4$")
_RENDITION_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(_hub)]


def create_app(settings: EdgeSettings, *, redis: Redis | None = None) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis if redis is not None else Redis.from_url(settings.redis_url)
        hub = Hub(
            client,
            poll_seconds=settings.stream_poll_seconds,
            max_streams=settings.max_concurrent_streams,
        )
        app.state.hub = hub
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()
            if redis is None:
                await client.aclose()

    app = FastAPI(title="Cascade edge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = metrics
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_allow_origins),
        allow_methods=["GET", "HEAD", "OPTIONS"],
        allow_headers=["*"],
        expose_headers=["Age", "Content-Length", "Date"],
        max_age=600,
    )

    @app.exception_handler(HttpError)
    async def _http_error(_: Request, exc: HttpError) -> Response:
        return PlainTextResponse(
            exc.message + "\n", status_code=exc.status, headers={"Cache-Control": "no-cache"}
        )

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(_: Request, exc: StarletteHTTPException) -> Response:
        return PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code)

    @app.middleware("http")
    async def _measure(request: Request, call_next):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        response: Response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        metrics.observe(path, response.status_code, time.perf_counter() - start)
        return response

    # ---- LL-HLS ----------------------------------------------------------------------

    @app.get("/live/{stream}.m3u8")
    async def multivariant(stream: str, hub: HubDep) -> Response:
        view = _view(hub, stream)
        variants = [
            Variant(
                uri=f"{stream}/{r.name}/index.m3u8",
                bandwidth=r.bandwidth,
                codecs=r.codecs,
                width=r.width,
                height=r.height,
                frame_rate=r.frame_rate,
                name=r.name,
            )
            for r in sorted(view.meta.renditions, key=lambda r: r.bandwidth)
        ]
        return Response(
            render_multivariant_playlist(variants),
            media_type=PLAYLIST_TYPE,
            headers=PLAYLIST_HEADERS,
        )

    @app.get("/live/{stream}/{rendition}/index.m3u8")
    async def media_playlist(
        stream: str,
        rendition: str,
        hub: HubDep,
        hls_msn: Annotated[str | None, Query(alias="_HLS_msn")] = None,
        hls_part: Annotated[str | None, Query(alias="_HLS_part")] = None,
        hls_skip: Annotated[str | None, Query(alias="_HLS_skip")] = None,
    ) -> Response:
        view = _view(hub, stream)
        feed = _feed(view, rendition)
        msn = _directive("_HLS_msn", hls_msn)
        part = _directive("_HLS_part", hls_part)
        if part is not None and msn is None:
            # "The _HLS_part directive ... MUST NOT be used without an _HLS_msn" (RFC 8216bis 6.2.5.2)
            raise HttpError(400, "_HLS_part requires _HLS_msn")
        if hls_skip is not None and hls_skip not in ("YES", "v2"):
            raise HttpError(400, "_HLS_skip must be YES or v2")
        if msn is not None:
            await _block_playlist(view, feed, msn, part, settings, metrics)
        elif feed.window.position is None:
            # Not a single part yet (the stream is starting): a playlist without segments
            # and without a preload hint sends hls.js into a reload loop, so wait for the
            # first part like a blocking request does, then answer 503 "starting".
            await _block_playlist(view, feed, 0, 0, settings, metrics, starting=True)
        ctx = PlaylistContext(
            part_target=view.meta.part_target,
            segment_target=view.meta.segment_target,
            reports=tuple(
                rep
                for info in view.meta.renditions
                if info.name != rendition
                for other in [view.feeds.get(info.name)]
                if other is not None
                for rep in [rendition_report(info, other.window)]
                if rep is not None
            ),
        )
        text = render_media_playlist(
            build_media_playlist(feed.window, ctx), skip=hls_skip is not None
        )
        return Response(text, media_type=PLAYLIST_TYPE, headers=PLAYLIST_HEADERS)

    @app.get("/live/{stream}/{rendition}/{name}")
    async def media(stream: str, rendition: str, name: str, hub: HubDep) -> Response:
        view = _view(hub, stream)
        feed = _feed(view, rendition)
        if m := _INIT_RE.match(name):
            data = feed.window.init(int(m.group(1)) if m.group(1) is not None else None)
            if data is None:
                raise HttpError(404, f"no init segment {name} for {stream}/{rendition}")
            return Response(data, media_type=MEDIA_TYPE, headers=MEDIA_HEADERS)
        m = _PART_RE.match(name)
        if m is None:
            raise HttpError(
                404, f"not a media file name: {name!r} (expected N.m4s, N.P.m4s or init.mp4)"
            )
        msn = int(m.group(1))
        if m.group(2) is None:
            seg = feed.window.segment(msn)
            if seg is None or not seg.complete:
                raise HttpError(
                    404, f"segment {msn} of {stream}/{rendition} is not in the live window"
                )
            return Response(seg.data, media_type=MEDIA_TYPE, headers=MEDIA_HEADERS)
        index = int(m.group(2))
        data = await _wait_part(view, feed, msn, index, settings, metrics)
        return Response(data, media_type=MEDIA_TYPE, headers=MEDIA_HEADERS)

    # ---- player ----------------------------------------------------------------------

    @app.get("/watch/{stream}")
    async def watch_one(stream: str) -> Response:
        if not is_valid_name(stream):
            raise HttpError(404, f"no stream named {stream!r}")
        return FileResponse(assets.STATIC_DIR / "watch.html", headers={"Cache-Control": "no-cache"})

    @app.get("/watch")
    async def watch_many(streams: str = "") -> Response:
        names = [s for s in streams.split(",") if s]
        if not names or len(names) > 6 or not all(is_valid_name(n) for n in names):
            raise HttpError(400, "streams must list 1 to 6 stream names, comma separated")
        return FileResponse(assets.STATIC_DIR / "watch.html", headers={"Cache-Control": "no-cache"})

    @app.get("/static/{name}")
    async def static(name: str) -> Response:
        path = assets.static_file(name)
        if path is None:
            raise HttpError(404, f"no static file {name!r}")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=300"})

    # ---- operations ------------------------------------------------------------------

    @app.get("/health")
    async def health(hub: HubDep) -> Response:
        live = sum(1 for v in hub.streams.values() if _state(v) is StreamState.LIVE)
        body = {
            "status": "ok" if hub.connected else "degraded",
            "redis": "connected" if hub.connected else "unreachable",
            "streams": len(hub.streams),
            "streams_live": live,
            "max_concurrent_streams": settings.max_concurrent_streams,
            "capacity_available": max(0, settings.max_concurrent_streams - len(hub.streams)),
        }
        return JSONResponse(body, status_code=200 if hub.connected else 503)

    @app.get("/status")
    async def status(hub: HubDep) -> Response:
        now = time.time()
        streams = {}
        for name, view in sorted(hub.streams.items()):
            h = view.health
            streams[name] = {
                "state": _state(view).value,
                "reason": h.reason if h else "",
                "last_error": h.last_error if h else "",
                "input_bitrate_kbps": h.input_bitrate_kbps if h else 0.0,
                "fps": h.fps if h else 0.0,
                "speed": h.speed if h else 0.0,
                "restarts": h.restarts if h else 0,
                "seconds_since_last_part": round(now - h.last_part_at, 3)
                if h and h.last_part_at
                else None,
                "renditions": {
                    r.name: {
                        "bandwidth": r.bandwidth,
                        "codecs": r.codecs,
                        "resolution": f"{r.width}x{r.height}",
                        "last_msn": p.msn if (p := _pos(view.feeds.get(r.name))) else None,
                        "last_part": p.part if p else None,
                    }
                    for r in view.meta.renditions
                },
            }
        return JSONResponse(
            {"redis": "connected" if hub.connected else "unreachable", "streams": streams}
        )

    @app.get("/metrics")
    async def prometheus(hub: HubDep) -> Response:
        metrics.collect(hub)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _pos(feed: RenditionFeed | None) -> Position | None:
    return feed.window.position if feed is not None else None


def _state(view: StreamView) -> StreamState:
    if view.health is None:
        return (
            StreamState.ENDED
            if all(f.window.ended for f in view.feeds.values())
            else StreamState.STARTING
        )
    return view.health.state


def _view(hub: Hub, stream: str) -> StreamView:
    if not is_valid_name(stream):
        raise HttpError(404, f"no stream named {stream!r}")
    view = hub.streams.get(stream)
    if view is None:
        raise HttpError(404, f"no live stream named {stream!r}")
    return view


def _feed(view: StreamView, rendition: str) -> RenditionFeed:
    feed = view.feeds.get(rendition) if _RENDITION_RE.match(rendition) else None
    if feed is None:
        names = ", ".join(sorted(view.feeds)) or "none yet"
        raise HttpError(
            404, f"stream {view.name!r} has no rendition {rendition!r} (renditions: {names})"
        )
    return feed


def _directive(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 18:
        raise HttpError(400, f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _timeout(view: StreamView, settings: EdgeSettings) -> float:
    # "...the server SHOULD return 503 if the Playlist is not updated within three
    # times the Target Duration" (blocking requests never hang forever).
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
    deadline = asyncio.get_running_loop().time() + _timeout(view, settings)
    with metrics.blocked():
        while True:
            decision = feed.window.playlist_wait(msn, part, view.meta.part_target)
            if decision is Wait.READY:
                return
            if decision is Wait.TOO_FAR:
                raise HttpError(
                    400,
                    f"_HLS_msn={msn} _HLS_part={part} is beyond the advance limit "
                    f"of the playlist (last segment {_describe(feed)})",
                )
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await feed.signal.wait(remaining):
                if starting:
                    raise HttpError(503, f"stream {view.name!r} is starting: no part yet, retry")
                raise HttpError(503, f"segment {msn} part {part} did not arrive in time")


async def _wait_part(
    view: StreamView,
    feed: RenditionFeed,
    msn: int,
    index: int,
    settings: EdgeSettings,
    metrics: Metrics,
) -> bytes:
    deadline = asyncio.get_running_loop().time() + _timeout(view, settings)
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
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await feed.signal.wait(remaining):
                raise HttpError(503, f"part {msn}.{index} did not arrive in time")


def _describe(feed: RenditionFeed) -> str:
    pos = feed.window.position
    return f"{pos.msn}.{pos.part}" if pos else "none yet"
