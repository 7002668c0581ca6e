"""The edge's HTTP/1.1 server: LL-HLS answered in protocol callbacks, the rest through ASGI.

Why not uvicorn for everything: at 100 ms parts each viewer makes two requests per part
(a blocking reload, then the part), and every viewer blocked on a part is answered the
moment it lands. Measured here (``bench/edge_hotpath.py``, ``bench/edge_viewers.py``),
uvicorn's per-request machinery (an ASGI scope, a task, three awaits) was most of the
cost. So this server parses with httptools (the parser uvicorn uses) on uvloop and
answers ``GET``/``HEAD /live/...`` inside the callback: a held request is a callback in
its rendition's waiter list, run when the hub applies a new part — no task, no timer
per request. Every other request (player, health, status, metrics, CORS preflight) and
the lifespan go to the FastAPI application through a small ASGI bridge.

HTTP/1.1 only, keep-alive, no pipelining concurrency (a connection's next request is
read after the current one is answered), request bodies up to 1 MB for the ASGI side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

import httptools

from cascade.core.settings import EdgeSettings
from cascade.edge.hub import RenditionFeed
from cascade.edge.live import HttpError, Later, Pending, Reply, Services, decide, error_reply
from cascade.edge.metrics import Metrics

log = logging.getLogger("cascade.edge.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

MAX_BODY = 1 << 20
KEEP_ALIVE_SECONDS = 75.0
_NO_CACHE = b"no-cache"
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Waiters:
    """Held LL-HLS requests of one rendition, answered when a part lands or they expire."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Held] = []

    def wake(self) -> None:
        """The hub applied new entries: answer every held request that can be answered."""
        if self.items:
            self.items = [held for held in self.items if not held.try_answer()]

    def expire(self, now: float) -> None:
        if self.items:
            for held in self.items:
                if held.pending.deadline <= now:
                    held.expire()
            self.items = [held for held in self.items if not held.done]


class Held:
    """One request waiting for its part: a callback, not a task."""

    __slots__ = ("done", "pending", "protocol", "start")

    def __init__(self, protocol: HttpProtocol, pending: Pending, start: float) -> None:
        self.protocol = protocol
        self.pending = pending
        self.start = start
        self.done = False

    def try_answer(self) -> bool:
        """True once answered (now or before)."""
        if self.done:
            return True
        try:
            reply = self.pending.check()
        except HttpError as exc:
            reply = error_reply(exc)
        if reply is None:
            return False
        self._answer(reply)
        return True

    def expire(self) -> None:
        if not self.try_answer():
            self._answer(error_reply(self.pending.expired))

    def _answer(self, reply: Reply) -> None:
        self.done = True
        server = self.protocol.server
        server.metrics.blocked_now.dec()
        self.protocol.finish_live(reply, self.start)


class EdgeServer:
    """Owns the listening socket, the connections, the held requests and the lifespan."""

    def __init__(self, app: ASGIApp, state: Any, settings: EdgeSettings, metrics: Metrics) -> None:
        self.app = app
        self.state = state  # the FastAPI app's state: the services are there once started
        self.settings = settings
        self.metrics = metrics
        self.connections: set[HttpProtocol] = set()
        self.waiters: dict[int, tuple[RenditionFeed, Waiters]] = {}  # id(feed) -> its waiters
        origins = settings.cors_allow_origins
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode() for o in origins)
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._lifespan: _Lifespan | None = None
        self.draining = False

    @property
    def services(self) -> Services:
        services: Services = self.state.live
        return services

    async def start(self, host: str, port: int, *, sock: Any = None) -> None:
        self._lifespan = _Lifespan(self.app)
        await self._lifespan.startup()
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(
                lambda: HttpProtocol(self), sock=sock, backlog=4096
            )
        else:
            self._server = await loop.create_server(
                lambda: HttpProtocol(self), host, port, backlog=4096, reuse_address=True
            )
        self._sweep()

    @property
    def port(self) -> int:
        assert self._server is not None
        server = cast(asyncio.Server, self._server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    def hold(self, feed: RenditionFeed, held: Held) -> None:
        entry = self.waiters.get(id(feed))
        if entry is None:
            waiters = Waiters()
            feed.waiters = waiters  # the hub wakes them when it applies a part
            entry = self.waiters[id(feed)] = (feed, waiters)
        entry[1].items.append(held)

    def _sweep(self) -> None:
        """Expire held requests past their deadline, ten times a second (one timer in all).

        Feeds of streams the hub dropped are swept too, so their requests get their 503.
        """
        loop = asyncio.get_running_loop()
        # Only what the hub has caught up past: after a pause of the loop, the part may be
        # in Redis or in a read's unapplied answer (Hub.expiry_horizon).
        horizon = self.services.hub.expiry_horizon(loop.time())
        for key, (_, waiters) in list(self.waiters.items()):
            waiters.expire(horizon)
            if not waiters.items:
                del self.waiters[key]
        self._sweeper = loop.call_later(0.1, self._sweep)

    async def stop(self, grace: float) -> None:
        """Stop accepting, let held requests finish within ``grace``, then close everything."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for conn in list(self.connections):
            if conn.idle:
                conn.close()
        # Bounded by ``grace``: held LL-HLS requests end within three target durations.
        while any(not c.idle for c in self.connections) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.close()
        if self._lifespan is not None:
            await self._lifespan.shutdown()


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_asgi_task",
        "_body",
        "_disconnected",
        "_headers",
        "_idle_timer",
        "_method",
        "_url",
        "busy",
        "keep_alive",
        "parser",
        "server",
        "transport",
    )  # fmt: skip

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body = b""
        self._method = b"GET"
        self.busy = False
        self.keep_alive = True
        self._idle_timer: asyncio.TimerHandle | None = None
        self._asgi_task: asyncio.Task[None] | None = None
        self._disconnected: asyncio.Event | None = None

    @property
    def idle(self) -> bool:
        return not self.busy

    # ---- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self._disconnected is not None:
            self._disconnected.set()

    def _arm_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = asyncio.get_running_loop().call_later(KEEP_ALIVE_SECONDS, self.close)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._send_simple(400, b"upgrades are not supported\n", close=True)
        except httptools.HttpParserError:
            self._send_simple(400, b"malformed HTTP request\n", close=True)

    # ---- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._body = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        if len(self._body) + len(body) > MAX_BODY:
            self._send_simple(413, b"request body too large\n", close=True)
            return
        self._body += body

    def on_message_complete(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.busy = True
        # One request at a time per connection: read the next once this one is answered.
        self.transport.pause_reading()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self.keep_alive = self.parser.should_keep_alive() and not self.server.draining
        method = self.parser.get_method()
        self._method = method
        url = httptools.parse_url(self._url)
        path = url.path.decode("latin-1")
        query = url.query or b""
        if path.startswith("/live/") and method in (b"GET", b"HEAD"):
            self._live(path, query)
        else:
            self._asgi_task = asyncio.get_running_loop().create_task(
                self._asgi(method, url.path, query)
            )

    # ---- LL-HLS ----------------------------------------------------------------------

    def _live(self, path: str, query: bytes) -> None:
        start = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            decision = decide(path, query, self.server.services, loop.time())
        except HttpError as exc:
            decision = error_reply(exc)
        if isinstance(decision, Later):
            self._asgi_task = loop.create_task(self._later(decision, start))
            return
        self._hold_or_finish(decision, start)

    def _hold_or_finish(self, decision: Reply | Pending, start: float) -> None:
        if isinstance(decision, Reply):
            self.finish_live(decision, start)
            return
        self.server.metrics.blocked_now.inc()
        self.server.hold(decision.feed, Held(self, decision, start))

    async def _later(self, later: Later, start: float) -> None:
        """Requests that ask Redis first (multivariant, signed, archive): one task each."""
        try:
            decision = await later.run()
        except HttpError as exc:
            decision = error_reply(exc)
        except Exception:
            log.exception("LL-HLS request failed")
            decision = error_reply(HttpError(500, "internal error"))
        self._hold_or_finish(decision, start)

    def finish_live(self, reply: Reply, start: float) -> None:
        head = [
            b"HTTP/1.1 %d %s\r\n" % (reply.status, _REASONS.get(reply.status, b"")),
            b"content-type: ", reply.content_type, b"\r\n",
            b"cache-control: ", reply.cache_control, b"\r\n",
            b"content-length: %d\r\n" % len(reply.body),
        ]  # fmt: skip
        for name, value in reply.headers:
            head += [name, b": ", value, b"\r\n"]
        origin = self._origin()
        if origin is not None:
            head += [b"access-control-allow-origin: ", origin, b"\r\n"]
            if origin != b"*":
                head.append(b"vary: Origin\r\n")
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if self._method != b"HEAD":
            head.append(reply.body)
        self._write(b"".join(head))
        self.server.metrics.observe(reply.route, reply.status, time.perf_counter() - start)
        self._done()

    def _origin(self) -> bytes | None:
        if self.server.any_origin:
            return b"*"
        for name, value in self._headers:
            if name == b"origin":
                return value if value in self.server.origins else None
        return None

    # ---- everything else: the ASGI application ---------------------------------------

    async def _asgi(self, method: bytes, raw_path: bytes, query: bytes) -> None:
        start = time.perf_counter()
        transport = self.transport
        assert transport is not None
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method.decode(),
            "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": self._headers,
            "client": (peer[0], peer[1]),
            "server": (local[0], local[1]),
            "state": {},
        }
        body = self._body
        self._disconnected = asyncio.Event()
        sent_body = False
        status = 500
        chunked = False
        started = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            assert self._disconnected is not None
            await self._disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, chunked, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [(k.lower(), v) for k, v in message.get("headers", [])]
                chunked = not any(k == b"content-length" for k, _ in headers)
                lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
                lines += [k + b": " + v + b"\r\n" for k, v in headers]
                if chunked:
                    lines.append(b"transfer-encoding: chunked\r\n")
                if not self.keep_alive:
                    lines.append(b"connection: close\r\n")
                lines.append(b"\r\n")
                self._write(b"".join(lines))
            elif message["type"] == "http.response.body":
                data = message.get("body", b"")
                more = message.get("more_body", False)
                if method == b"HEAD":
                    data = b""
                if chunked:
                    if data:
                        self._write(b"%x\r\n" % len(data) + data + b"\r\n")
                    if not more:
                        self._write(b"0\r\n\r\n")
                elif data:
                    self._write(data)

        try:
            await self.server.app(scope, receive, send)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not started:
                self._send_simple(500, b"internal error\n", close=True)
                return
            self.keep_alive = False
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.server.metrics.observe(route, status, time.perf_counter() - start)
        self._done()

    # ---- writing ---------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _send_simple(self, status: int, body: bytes, *, close: bool) -> None:
        self._write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS.get(status, b""), len(body), body)
        )
        if close:
            self.close()

    def _done(self) -> None:
        self.busy = False
        if not self.keep_alive:
            self.close()
            return
        if self.transport is not None and not self.transport.is_closing():
            self._arm_idle()
            self.transport.resume_reading()


class _Lifespan:
    """The ASGI lifespan protocol: FastAPI's startup and shutdown (Redis, the hub)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()
        self.failure: str | None = None
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await self.inbox.put({"type": "lifespan.startup"})
        await self.started.wait()
        if self.failure is not None:
            raise RuntimeError(f"edge start-up failed: {self.failure}")

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), 10)
        if self.task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self.task, 1)

    async def _run(self) -> None:
        async def receive() -> Message:
            return await self.inbox.get()

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete":
                self.started.set()
            elif kind == "lifespan.startup.failed":
                self.failure = message.get("message", "")
                self.started.set()
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                self.stopped.set()

        try:
            await self.app(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send
            )
        except Exception as exc:
            self.failure = repr(exc)
        finally:
            self.started.set()
            self.stopped.set()
