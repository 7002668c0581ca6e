"""The edge's application: FastAPI for the player, health, status and metrics, behind the
raw ASGI entry point that answers LL-HLS itself (:mod:`cascade.edge.asgi`).

``create_app(settings)`` builds everything; nothing is created at import. The lifespan
owns the Redis client and the hub (the Redis follower and its tasks).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cascade.contract.schema import StreamState
from cascade.contract.settings import EdgeSettings
from cascade.contract.spec import is_valid_name
from cascade.edge import assets
from cascade.edge.access import key_ring
from cascade.edge.asgi import EdgeApp
from cascade.edge.cache import ByteCache, CacheCollector
from cascade.edge.hub import Hub, RenditionFeed, StreamView
from cascade.edge.live import Services
from cascade.edge.metrics import Metrics
from cascade.edge.objectstore import StoreReader
from cascade.edge.ondemand import OnDemand, OnDemandCollector
from cascade.edge.redisclient import redis_client
from cascade.edge.replies import HttpError
from cascade.edge.server import EdgeServer
from cascade.edge.sessions import SessionFlusher, SessionStore, make_session_store
from cascade.edge.vodapi import VodService, vod_router
from cascade.edge.window import Position


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


HubDep = Annotated[Hub, Depends(_hub)]

# /status state of an on-demand stream without a transcoder (not a transcoder's state).
STOPPED = "stopped"


def create_server(settings: EdgeSettings, *, redis: Redis | None = None) -> EdgeServer:
    """The edge as it runs in production: Cascade's HTTP server with the FastAPI app behind."""
    metrics = Metrics()
    app = build_fastapi(settings, metrics, redis=redis)
    return EdgeServer(app, app.state, settings, metrics)


def create_app(settings: EdgeSettings, *, redis: Redis | None = None) -> EdgeApp:
    """The same edge as one ASGI application, for any ASGI server (uvicorn, hypercorn)."""
    metrics = Metrics()
    app = build_fastapi(settings, metrics, redis=redis)
    return EdgeApp(app, settings, metrics, app.state)


def build_fastapi(
    settings: EdgeSettings, metrics: Metrics, *, redis: Redis | None = None
) -> FastAPI:
    """Player, health, status, metrics, CORS preflights; the lifespan owns Redis and the hub."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = redis if redis is not None else redis_client(settings.redis_url)
        cache = ByteCache(
            capacity_bytes=settings.cache_capacity_bytes,
            ttl=settings.cache_ttl_seconds,
            max_item_bytes=settings.cache_max_item_bytes,
        )
        hub = Hub(
            client,
            poll_seconds=settings.stream_poll_seconds,
            max_streams=settings.max_concurrent_streams,
            on_stream_reset=cache.invalidate_stream,
        )
        sessions = make_session_store(settings, client)
        flusher = SessionFlusher(sessions)
        collector = CacheCollector(cache)
        metrics.registry.register(collector)
        on_demand = OnDemand(client, poll_seconds=settings.on_demand_poll_seconds)
        on_demand_collector = OnDemandCollector(on_demand)
        metrics.registry.register(on_demand_collector)
        app.state.hub = hub
        app.state.sessions = sessions
        app.state.on_demand = on_demand
        app.state.live = Services(
            hub=hub,
            sessions=sessions,
            keys=key_ring(settings.signing_key_ring()),
            cache=cache,
            settings=settings,
            on_demand=on_demand,
        )
        await hub.start()
        await on_demand.start()
        await flusher.start()
        try:
            yield
        finally:
            await flusher.stop()
            await on_demand.stop()
            await hub.stop()
            await cache.aclose()
            if vod is not None:
                await vod.aclose()
            metrics.registry.unregister(on_demand_collector)
            metrics.registry.unregister(collector)
            if redis is None:
                await client.aclose()

    # Replay of recordings (/vod): only with an object store.
    vod = VodService(settings, StoreReader.from_settings(settings)) if settings.s3_enabled else None
    docs = settings.api_docs_enabled
    app = FastAPI(
        title="Cascade edge",
        lifespan=lifespan,
        # Off unless asked for (CASCADE_API_DOCS): the schema is not for viewers.
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
        # Starlette answers "/metrics/" with a redirect to an absolute URL built from the
        # Host header: anyone could make the edge send a viewer to their own host. A
        # trailing slash is simply not found.
        redirect_slashes=False,
    )
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
        headers = {k.decode(): v.decode() for k, v in exc.headers}
        headers["Cache-Control"] = exc.cache_control.decode()
        return PlainTextResponse(exc.message + "\n", status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(_: Request, exc: StarletteHTTPException) -> Response:
        return PlainTextResponse(f"{exc.detail}\n", status_code=exc.status_code)

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

    app.include_router(vod_router(vod))

    # ---- operations ------------------------------------------------------------------

    @app.get("/livez")
    async def livez() -> Response:
        """Liveness: the process answers. Never depends on Redis (a Redis outage must not
        make Kubernetes restart every edge at once)."""
        return JSONResponse({"status": "alive"})

    @app.get("/readyz")
    async def readyz(hub: HubDep) -> Response:
        """Readiness: false while Redis is unreachable, so the Service stops sending
        viewers to an edge that cannot see new parts."""
        ready = hub.connected
        return JSONResponse(
            {"ready": ready, "redis": "connected" if ready else "unreachable"},
            status_code=200 if ready else 503,
        )

    @app.get("/health")
    async def health(hub: HubDep, request: Request) -> Response:
        live = sum(1 for v in hub.streams.values() if _state(v) is StreamState.LIVE)
        viewers = await _viewers(request)
        body = {
            "status": "ok" if hub.connected else "degraded",
            "redis": "connected" if hub.connected else "unreachable",
            "streams": len(hub.streams),
            "streams_live": live,
            "max_concurrent_streams": settings.max_concurrent_streams,
            "capacity_available": max(0, settings.max_concurrent_streams - len(hub.streams)),
            "viewers": viewers[1],
        }
        return JSONResponse(body, status_code=200 if hub.connected else 503)

    @app.get("/status")
    async def status(hub: HubDep, request: Request) -> Response:
        now = time.time()
        per_stream, total = await _viewers(request)
        on_demand: frozenset[str] = request.app.state.on_demand.names
        streams: dict[str, dict[str, object]] = {}
        for name in on_demand - hub.streams.keys():
            # On demand and no transcoder (or one whose first parts are not here yet).
            streams[name] = {
                "state": STOPPED,
                "on_demand": True,
                "viewers": per_stream.get(name, 0),
                "reason": "OnDemand",
                "last_error": "",
                "input_bitrate_kbps": 0.0,
                "fps": 0.0,
                "speed": 0.0,
                "restarts": 0,
                "lost_segments": 0,
                "redis_backlog_bytes": 0,
                "seconds_since_last_part": None,
                "renditions": {},
            }
        for name, view in hub.streams.items():
            h = view.health
            streams[name] = {
                "state": _state(view).value,
                "on_demand": name in on_demand,
                "viewers": per_stream.get(name, 0),
                "reason": h.reason if h else "",
                "last_error": h.last_error if h else "",
                "input_bitrate_kbps": h.input_bitrate_kbps if h else 0.0,
                "fps": h.fps if h else 0.0,
                "speed": h.speed if h else 0.0,
                "restarts": h.restarts if h else 0,
                # What the transcoder had to drop, or still holds, after a Redis outage.
                "lost_segments": h.lost_segments if h else 0,
                "redis_backlog_bytes": h.redis_backlog_bytes if h else 0,
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
            {
                "redis": "connected" if hub.connected else "unreachable",
                "viewers": total,
                "streams": dict(sorted(streams.items())),
            }
        )

    @app.get("/metrics")
    async def prometheus(hub: HubDep, request: Request) -> Response:
        per_stream, total = await _viewers(request)
        metrics.collect(hub, per_stream, total)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _viewers(request: Request) -> tuple[dict[str, int], int]:
    """Viewers per stream and in all, the same whichever replica answers (from Redis)."""
    sessions: SessionStore = request.app.state.sessions
    now = time.time()
    try:
        return await sessions.counts(now), await sessions.total(now)
    except (RedisError, OSError):
        return {}, 0


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
