"""The edge's ASGI entry point: LL-HLS straight from the window, the rest through FastAPI.

``GET``/``HEAD`` under ``/live/`` is answered here with precomputed header lists and no
framework in between (see :mod:`cascade.edge.live` for why); every other request, CORS
preflights included, goes to the FastAPI application, and so does the lifespan.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cascade.core.settings import EdgeSettings
from cascade.edge.live import HttpError, Services, error_reply, handle_live
from cascade.edge.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class EdgeApp:
    def __init__(self, app: ASGIApp, settings: EdgeSettings, metrics: Metrics, state: Any) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.state = state  # the FastAPI app's state: the hub lives there once started
        origins = settings.cors_allow_origins
        self._any_origin = "*" in origins
        self._origins = frozenset(o.encode() for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith("/live/")
            and scope["method"] in ("GET", "HEAD")
        ):
            await self._live(scope, send)
        elif scope["type"] == "http":
            await self._other(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(route, status, time.perf_counter() - start)

    async def _live(self, scope: Scope, send: Send) -> None:
        start = time.perf_counter()
        services: Services = self.state.live
        try:
            reply = await handle_live(scope["path"], scope["query_string"], services, self.metrics)
        except HttpError as exc:
            reply = error_reply(exc)
        headers = [
            (b"content-type", reply.content_type),
            (b"cache-control", reply.cache_control),
            (b"content-length", str(len(reply.body)).encode()),
            *reply.headers,
        ]
        origin = self._allowed_origin(scope)
        if origin is not None:
            headers.append((b"access-control-allow-origin", origin))
            if origin != b"*":
                headers.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else reply.body
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe(reply.route, reply.status, time.perf_counter() - start)

    def _allowed_origin(self, scope: Scope) -> bytes | None:
        if self._any_origin:
            return b"*"
        for name, value in scope["headers"]:
            if name == b"origin":
                return value if value in self._origins else None
        return None
