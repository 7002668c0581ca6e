"""The edge's ASGI entry point: LL-HLS straight from the window, the rest through FastAPI.

``GET``/``HEAD`` under ``/live/`` is answered here with no framework in between (see
:mod:`cascade.edge.live` for why), its head encoded as the edge's own server encodes it
(:mod:`cascade.edge.replies`); every other request, CORS preflights included, goes to the
FastAPI application, and so does the lifespan.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cascade.contract.settings import EdgeSettings
from cascade.edge.live import Services, handle_live
from cascade.edge.metrics import Metrics
from cascade.edge.replies import AllowedOrigins, HttpError, error_reply, field_pairs, reply_fields

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
        self.origins = AllowedOrigins(settings.cors_allow_origins)

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
        origin = self.origins.allow(None if self.origins.any else _origin(scope))
        headers = field_pairs(reply_fields(reply, origin))
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        body = b"" if scope["method"] == "HEAD" else reply.body
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe(reply.route, reply.status, time.perf_counter() - start)


def _origin(scope: Scope) -> bytes | None:
    """The request's Origin, if it sent one (ASGI header names are lowercase)."""
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    for name, value in headers:
        if name == b"origin":
            return value
    return None
