"""The edge's HTTP/1.1 server: LL-HLS answered in protocol callbacks, the rest through ASGI.

Why not uvicorn for everything: at 100 ms parts each viewer makes two requests per part
(a blocking reload, then the part), and every viewer blocked on a part is answered the
moment it lands. Measured here (``bench/edge_hotpath.py``, ``bench/edge_viewers.py``),
uvicorn's per-request machinery (an ASGI scope, a task, three awaits) was most of the
cost. So this server parses with httptools (the parser uvicorn uses) on uvloop and
answers ``GET``/``HEAD /live/...`` inside the callback: a held request (a
:class:`~cascade.edge.live.Hold`) waits in its feed's :class:`FeedHolds`, which the hub
wakes through the feed's one subscription when it applies a new part — no task, no timer
per request. Every other request (player, health, status, metrics, CORS preflight) and
the lifespan go to the FastAPI application through a small ASGI bridge.

HTTP/1.1 with keep-alive and pipelining. "A server MUST send its responses to those
requests in the same order that the requests were received" (RFC 9112 9.3.2), and a held
LL-HLS request may be answered long after the next one is ready: each connection keeps
its requests in a queue and writes an answer only once those before it are written. A
HEAD's answer never has a body, whatever came after it. ASGI requests run one at a time,
when they reach the head of their connection's queue; request bodies up to 1 MB.

A hostile client must cost that client, never the viewers beside it (issue 9). Every
resource a client can make the server hold is bounded, with the bounds of gunicorn
(``limit_request_line``, ``limit_request_fields``), uvicorn (``limit_concurrency``,
``timeout_keep_alive``) and nginx (``large_client_header_buffers``,
``client_header_timeout``, ``keepalive_timeout``); each is an :class:`EdgeSettings` field
and each hit is counted in ``cascade_edge_limit_hits_total{limit}``:

* request target over ``limit_request_line_bytes``: 414; header section over
  ``limit_request_header_bytes`` or more than ``limit_request_fields`` fields: 431. Checked
  as the bytes arrive, before the work grows with them: the parser is fed
  :data:`FEED_BYTES` at a time and the counts are checked between slices and in its
  callbacks, so a 64 MiB header costs a few slices, not a quadratic join;
* a request not received within ``header_timeout_seconds`` of its first byte: 408 (and a
  new connection that sends nothing is closed after it); an idle keep-alive connection is
  closed after ``keep_alive_timeout_seconds``, and so is one whose client reads none of
  its answers that long (reading its requests stops as soon as answers pile up);
* at most ``limit_pipelined_requests`` requests of one connection in flight: the edge stops
  reading that connection while its queue is full, and starts at most that many of its
  requests per turn; pipelines wanting more take turns, one connection per loop iteration
  (:meth:`EdgeServer.defer`), so pipelines of thousands cannot hold the loop;
* at most ``limit_connections`` connections: one more gets 503 with Retry-After, at once.

A refused request gets its 4xx in its turn (after the answers of the requests before it),
then the connection ends with a lingering close (see :data:`LINGER_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, MutableMapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, NoReturn, cast
from urllib.parse import unquote

import httptools

from cascade.contract.settings import EdgeSettings
from cascade.edge.hub import RenditionFeed
from cascade.edge.live import Hold, Lookup, Services, decide
from cascade.edge.metrics import Metrics
from cascade.edge.replies import (
    AllowedOrigins,
    Headers,
    HttpError,
    Reply,
    error_reply,
    reply_fields,
)

log = logging.getLogger("cascade.edge.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

MAX_BODY = 1 << 20
# Bytes handed to the parser at once. httptools joins the pieces of a header value with
# ``bytes +=`` until the value ends, so a 256 KiB read of a 64 MiB value fed whole would be
# joined whole, again and again: feeding slices lets the limits be checked between them,
# before the parser's work grows. A player's request (well under 1 KiB) is one slice.
FEED_BYTES = 4096
# After a refusal (or the last answer of a connection that asked to close): send FIN,
# then read and drop what the client still sends for at most this long, then close.
# Closing a socket with unread data makes the kernel send a reset, which can destroy the
# answer before the client reads it (nginx's lingering_close; its lingering_timeout is 5 s).
# Bounded in bytes too: an uploader must not make the edge read at loopback speed all that
# time (a client that stopped sending has at most a socket buffer's worth in flight); past
# the bound the edge stops reading and closes when the time is up.
LINGER_SECONDS = 2.0
LINGER_BYTES = 1 << 20
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_RETRY_AFTER: Headers = ((b"retry-after", b"1"),)


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may make the server hold (see :class:`EdgeSettings` for each)."""

    request_line_bytes: int
    header_bytes: int
    header_fields: int
    header_timeout: float
    keep_alive: float
    pipeline: int
    connections: int

    @classmethod
    def from_settings(cls, settings: EdgeSettings) -> Limits:
        return cls(
            request_line_bytes=settings.limit_request_line_bytes,
            header_bytes=settings.limit_request_header_bytes,
            header_fields=settings.limit_request_fields,
            header_timeout=settings.header_timeout_seconds,
            keep_alive=settings.keep_alive_timeout_seconds,
            pipeline=settings.limit_pipelined_requests,
            connections=settings.limit_connections,
        )

    @property
    def head_bytes_bound(self) -> int:
        """Bytes of an unfinished request head past which it cannot be within the limits.

        The exact counts (target, fields) are checked as the parser reports them; this
        catches a head whose last field never ends (the parser reports a field once it
        ends). Bytes are counted by whole slices, so the slice a head began in counts in
        full: one slice of slack, and 1 KiB for the method, version, separators and spaces.
        """
        return self.request_line_bytes + self.header_bytes + FEED_BYTES + 1024


class RequestError(Exception):
    """A request the server will not serve: the status, the limit it hit, and why."""

    def __init__(self, status: int, limit: str, message: str, headers: Headers = ()) -> None:
        super().__init__(message)
        self.status = status
        self.limit = limit
        self.message = message
        self.headers = headers


class _StopParsingError(Exception):
    """Raised in a parser callback to stop parsing this connection (nothing is wrong)."""


def simple_response(status: int, message: str, headers: Headers = ()) -> bytes:
    """A plain-text answer after which the connection ends: refusals and errors."""
    body = (message + "\n").encode()
    extra = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\n%sconnection: close\r\n\r\n%s"
        % (status, _REASONS.get(status, b""), len(body), extra, body)
    )


def live_response(reply: Reply, *, head_only: bool, origin: bytes | None, close: bool) -> bytes:
    """The bytes of an LL-HLS answer: its fields (:func:`reply_fields`, as the ASGI door
    sends them) in an HTTP/1.1 head. A HEAD's has the GET's headers, Content-Length
    included, and no body: "the server MUST NOT send content in the response" (RFC 9110
    9.3.2). A keep-alive GET's bytes are made once per reply and origin (``reply.wire``):
    every viewer given the same part or playlist is written the same buffer."""
    if not (head_only or close):
        wire = reply.wire
        if wire is not None and reply.wire_origin == origin:
            return wire
    fields = reply_fields(reply, origin)
    n = len(fields)
    data = b"".join(
        (
            _STATUS_LINES.get(reply.status) or _status_line(reply.status),
            (_FIELD_LINES.get(n) or _field_lines(n)) % tuple(fields),
            b"connection: close\r\n\r\n" if close else b"\r\n",
            b"" if head_only else reply.body,
        )
    )
    if not (head_only or close):
        reply.wire, reply.wire_origin = data, origin
    return data


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))


def _field_lines(n_fields: int) -> bytes:
    """``n_fields`` flat fields as lines of an HTTP/1.1 head: a ``%`` format of (name,
    value, ...), so an answer's head is one formatting. Made once per count."""
    lines = _FIELD_LINES[n_fields] = b"%s: %s\r\n" * (n_fields // 2)
    return lines


_STATUS_LINES = {status: _status_line(status) for status in _REASONS}
_FIELD_LINES: dict[int, bytes] = {}


def version_refusal(version: str) -> RequestError | None:
    """HTTP/1.0 and HTTP/1.1 are served; anything else the parser lets through is refused.

    An HTTP/0.9 request line (``GET /``) has no headers and expects a bare body back: it is
    refused, with a 400 it may not even parse, rather than served half-way.
    """
    if version in ("1.1", "1.0"):
        return None
    return RequestError(400, "malformed", f"HTTP/{version} is not supported: send HTTP/1.1")


class FeedHolds:
    """The requests held on one feed, answered when a part lands or they expire.

    Woken through one subscription to the feed (the hub calls :meth:`wake` after applying
    entries), whatever the number held; expired by the server's sweep. The server gives
    the subscription back once nothing is held there any more.
    """

    __slots__ = ("exchanges", "feed", "subscription")

    def __init__(self, feed: RenditionFeed) -> None:
        self.feed = feed
        self.exchanges: list[Exchange] = []
        self.subscription = feed.subscribe(self.wake)

    def close(self) -> None:
        self.feed.unsubscribe(self.subscription)

    def wake(self) -> None:
        """The hub applied new entries: answer every held request that can be answered."""
        if self.exchanges:
            checked: dict[Hashable, Reply | HttpError | None] = {}
            self.exchanges = [e for e in self.exchanges if not e.try_release(checked)]

    def expire(self, horizon: float) -> None:
        """Answer 503 to the requests whose deadline is at or before ``horizon``."""
        if self.exchanges:
            for exchange in self.exchanges:
                hold = exchange.hold
                if hold is not None and hold.deadline <= horizon:
                    exchange.expire()
            self.exchanges = [e for e in self.exchanges if e.hold is not None]


class EdgeServer:
    """Owns the listening socket, the connections, the held requests and the lifespan."""

    def __init__(self, app: ASGIApp, state: Any, settings: EdgeSettings, metrics: Metrics) -> None:
        self.app = app
        self.state = state  # the FastAPI app's state: the services are there once started
        self.settings = settings
        self.limits = Limits.from_settings(settings)
        self.metrics = metrics
        self.connections: set[HttpProtocol] = set()
        metrics.connections.set_function(lambda: len(self.connections))
        self.holds: dict[int, FeedHolds] = {}  # id(feed) -> the requests held on it
        self.origins = AllowedOrigins(settings.cors_allow_origins)
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._backlog: deque[HttpProtocol] = deque()  # connections waiting for a turn
        self._backlog_turn: asyncio.Handle | None = None
        self._lifespan: _Lifespan | None = None
        self.draining = False
        self._services: Services | None = None

    @property
    def services(self) -> Services:
        # Read once it is there (after start-up): starlette's State.__getattr__ per
        # request was a visible share of the hot path.
        services = self._services
        if services is None:
            services = self._services = self.state.live
        return services

    async def start(
        self, host: str, port: int, *, sock: Any = None, reuse_port: bool = False
    ) -> None:
        """Serve on ``host:port`` (or ``sock``). ``reuse_port``: beside the pod's other edge
        processes on the same port (SO_REUSEPORT; see :mod:`cascade.edge.main`)."""
        self._lifespan = _Lifespan(self.app)
        await self._lifespan.startup()
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(
                lambda: HttpProtocol(self), sock=sock, backlog=4096
            )
        else:
            self._server = await loop.create_server(
                lambda: HttpProtocol(self), host, port, backlog=4096, reuse_address=True,
                reuse_port=reuse_port,
            )  # fmt: skip
        self._sweep()

    @property
    def port(self) -> int:
        assert self._server is not None
        server = cast(asyncio.Server, self._server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    def hold(self, exchange: Exchange, feed: RenditionFeed) -> None:
        """Keep a held request with the others on its feed (see :class:`FeedHolds`)."""
        holds = self.holds.get(id(feed))
        if holds is None:
            holds = self.holds[id(feed)] = FeedHolds(feed)
        holds.exchanges.append(exchange)

    def defer(self, conn: HttpProtocol) -> None:
        """``conn`` has more pipelined requests than one turn may start: it waits for
        another. One waiting connection is served per loop iteration, whatever their
        number, so pipelines together take a bounded share of each iteration beside the
        viewers' requests (one each, answered in their own callbacks)."""
        self._backlog.append(conn)
        if self._backlog_turn is None:
            self._backlog_turn = asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._backlog_turn = None
        if self._backlog:
            self._backlog.popleft().resume()  # a closed one returns at once
        if self._backlog and self._backlog_turn is None:  # (resume may have deferred again)
            self._backlog_turn = asyncio.get_running_loop().call_soon(self._next_turn)

    def _sweep(self) -> None:
        """Expire held requests past their deadline, ten times a second (one timer in all)."""
        loop = asyncio.get_running_loop()
        # Only what the hub has caught up past: after a pause of the loop, the part may be
        # in Redis or in a read's unapplied answer (Hub.expiry_horizon).
        self.expire(self.services.hub.expiry_horizon(loop.time()))
        self._sweeper = loop.call_later(0.1, self._sweep)

    def expire(self, horizon: float) -> None:
        """Answer 503 to the held requests whose deadline is at or before ``horizon``, and
        give back the subscription of each feed nothing is held on any more.

        Feeds of streams the hub dropped are swept too, so their requests get their 503.
        """
        for key, holds in list(self.holds.items()):
            holds.expire(horizon)
            if not holds.exchanges:
                holds.close()
                del self.holds[key]

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
        if self._backlog_turn is not None:
            self._backlog_turn.cancel()
        for conn in list(self.connections):
            conn.close()
        if self._lifespan is not None:
            await self._lifespan.shutdown()


class Exchange:
    """One request of a connection, from parsed to answered (in its connection's order).

    LL-HLS requests are started (decided, held) as soon as they are parsed; an ASGI
    request runs when it reaches the head of the queue; a refusal has its bytes at once.
    A held request is its exchange with a :class:`Hold`: a callback in its feed's
    :class:`FeedHolds`, not a task.
    """

    __slots__ = (
        "asgi", "body", "close", "head_only", "headers", "hold", "method", "origin", "path",
        "protocol", "query", "raw_path", "reply", "start", "task", "version", "wire",
    )  # fmt: skip

    def __init__(self, *, start: float, close: bool) -> None:
        self.start = start  # perf_counter when parsed: the request's latency
        self.close = close  # the connection ends after this answer
        self.asgi = False
        self.method = b"GET"
        self.head_only = False
        self.path = ""
        self.raw_path = b"/"
        self.query = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.origin: bytes | None = None  # the Access-Control-Allow-Origin to send
        self.reply: Reply | None = None  # an LL-HLS answer, once there
        self.wire: bytes | None = None  # a refusal, as written
        self.hold: Hold | None = None  # while held: what it waits for
        self.protocol: HttpProtocol | None = None  # while held: whom to answer through
        self.task: asyncio.Task[None] | None = None

    def try_release(self, checked: dict[Hashable, Reply | HttpError | None] | None = None) -> bool:
        """A held request: answered if its hold's check says so. True once it is no
        longer held (answered now or before, or its connection is gone). ``checked``: the
        outcomes of this wake's checks by hold key (the same key, the same outcome)."""
        hold = self.hold
        if hold is None:
            return True
        key = hold.key
        if checked is not None and key is not None and key in checked:
            outcome = checked[key]
        else:
            try:
                outcome = hold.check()
            except HttpError as exc:
                outcome = exc
            if checked is not None and key is not None:
                checked[key] = outcome
        if outcome is None:
            return False
        self._release(error_reply(outcome) if isinstance(outcome, HttpError) else outcome)
        return True

    def expire(self) -> None:
        """Past its deadline: answered if it can be, else 503."""
        hold = self.hold
        if hold is not None and not self.try_release():
            self._release(error_reply(hold.expired()))

    def _release(self, reply: Reply) -> None:
        protocol = self.protocol
        assert protocol is not None  # set with the hold
        self.hold = self.protocol = None
        protocol.server.metrics.held -= 1
        protocol.answer(self, reply)


class HttpProtocol(asyncio.Protocol):
    __slots__ = (
        "_body", "_body_len", "_deferred", "_disconnected", "_dropped", "_eof", "_halt",
        "_head_fed", "_header_bytes", "_headers", "_idle_at", "_in_head", "_in_message",
        "_lingering", "_loop", "_message_at", "_origin", "_paused_at", "_queue", "_reading",
        "_served", "_stopped", "_timer", "_timer_at", "_unfed", "_unstarted", "_url",
        "_url_len", "_write_paused", "limits", "parser", "server", "transport",
    )  # fmt: skip

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.limits = server.limits
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: deque[Exchange] = deque()  # parsed, not yet answered, in order
        self._unstarted: deque[Exchange] = deque()  # LL-HLS requests parsed, not decided
        self._unfed = b""  # received, not parsed yet (the pipeline was full)
        # The request being parsed: pieces in lists with running lengths (never ``+=``).
        self._url: list[bytes] = []
        self._url_len = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._origin: bytes | None = None
        self._body: list[bytes] = []
        self._body_len = 0
        self._in_message = False  # between its first byte and its end
        self._in_head = False  # ... and before its headers end
        self._head_fed = 0  # bytes fed while in this head (by whole slices: a bound)
        self._message_at = -1.0  # loop time the unfinished request was first seen
        self._idle_at = 0.0  # loop time the connection last had nothing to answer
        self._served = False  # answered a request: the idle limit is the keep-alive one
        self._reading = True
        self._write_paused = False
        self._paused_at = 0.0  # loop time writing was paused (the client stopped reading)
        self._stopped = False  # nothing more is parsed on this connection
        self._lingering = False
        self._dropped = 0  # bytes read and dropped while lingering
        self._eof = False
        self._halt: RequestError | None = None  # why a callback stopped the parser
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._deferred = False  # waiting in the server's backlog for another turn
        self._disconnected: asyncio.Event | None = None

    @property
    def idle(self) -> bool:
        return not self._queue

    # ---- connection ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        now = self._loop.time()
        self._idle_at = now
        full = len(server.connections) >= self.limits.connections
        server.connections.add(self)
        if full:
            # uvicorn's limit_concurrency answers 503 too; refused at once, before any work.
            server.metrics.limit_hit("connections")
            message = f"this edge is at its limit of {self.limits.connections} connections: retry"
            self._write(simple_response(503, message, _RETRY_AFTER))
            self._linger()
            self._settle()
            return
        # A new connection must start its request within the header timeout (nginx's
        # client_header_timeout applies from the accept).
        self._arm(now + self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for exchange in self._queue:
            if exchange.hold is not None:
                # No longer held: its feed's holds drop it at the next wake or sweep.
                exchange.hold = exchange.protocol = None
                self.server.metrics.held -= 1
        self._queue.clear()
        self._unstarted.clear()
        self._unfed = b""
        self._url, self._headers, self._body = [], [], []
        # The parser holds this protocol's bound methods: a reference cycle, so without
        # this the protocol and all it parsed waited for a full GC (100,000 headers held
        # 11 MB each until then).
        self.parser = None
        if self._disconnected is not None:
            self._disconnected.set()

    def eof_received(self) -> bool:
        """The client sends nothing more (a half-close): answer what it asked, then close."""
        self._eof = True
        return not self._lingering and bool(self._queue or self._unfed)

    def pause_writing(self) -> None:
        # The client does not read its answers: read no more of its requests until it
        # does (uvicorn's flow control), so answers cannot pile up without bound. If it
        # reads nothing for the keep-alive timeout, it is cut (nginx's send_timeout).
        self._write_paused = True
        self._paused_at = now = self._loop.time()
        due = now + self.limits.keep_alive
        if due < self._timer_at:
            self._arm(due)
        self._settle()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._pump()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            # Refused or ending: what still comes is read and dropped, up to a bound.
            self._dropped += len(data)
            if self._dropped > LINGER_BYTES:
                # Enough read for nothing: stop reading (TCP's window then holds the client
                # back) rather than close now, which would reset the connection over
                # unread data and destroy the answer before the client reads it. The
                # linger timer closes it.
                self._settle()
            return
        self._unfed = self._unfed + data if self._unfed else data
        self._pump()

    # ---- the pipeline ----------------------------------------------------------------

    def _pump(self) -> None:
        """Move this connection on: start the requests parsed, write the answers that are
        due (in order), parse more of what was received. At most ``limits.pipeline``
        requests are started per call; the rest wait for another turn (EdgeServer.defer),
        so no pipeline keeps the loop from the viewers' answers."""
        if self.transport is None:
            return
        budget = self.limits.pipeline
        while True:
            while self._unstarted and budget:
                self._start(self._unstarted.popleft())
                budget -= 1
            self._flush()
            if not budget or self._unstarted or not self._may_parse():
                break
            self._parse()
            if not self._unstarted:
                self._flush()  # a refusal or an ASGI request may be due
                break
        if not budget and not self._deferred and (self._unstarted or self._may_parse()):
            self._deferred = True
            self.server.defer(self)
        self._settle()

    def resume(self) -> None:
        """Another turn for the rest of this connection's pipeline (see EdgeServer.defer)."""
        self._deferred = False
        self._pump()

    def _may_parse(self) -> bool:
        return (
            bool(self._unfed)
            and not self._stopped
            and not self._write_paused
            and len(self._queue) < self.limits.pipeline
        )

    def _settle(self) -> None:
        """Read from the socket only while there is room for what it brings."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._eof and not self._lingering and not self._queue and not self._unfed:
            self._close()
            return
        full = len(self._queue) >= self.limits.pipeline
        draining = self._lingering and self._dropped <= LINGER_BYTES
        want = draining or not (self._stopped or self._write_paused or self._unfed or full)
        if want is self._reading:
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()
            if full and not self._stopped:
                self.server.metrics.limit_hit("pipeline")

    def _parse(self) -> None:
        """Feed what was received to the parser, a slice at a time, while there is room."""
        parser = self.parser
        if parser is None:
            return
        data, self._unfed = self._unfed, b""
        size = len(data)
        view = memoryview(data) if size > FEED_BYTES else None
        limits = self.limits
        pos = 0
        try:
            while pos < size and len(self._queue) < limits.pipeline:
                end = min(pos + FEED_BYTES, size)
                parser.feed_data(data if view is None else view[pos:end])
                if self._in_head:
                    self._head_fed += end - pos
                    if self._head_fed > limits.head_bytes_bound:
                        raise self._header_bytes_refusal()
                pos = end
        except RequestError as refused:
            self._refuse(refused)
            return
        except httptools.HttpParserUpgrade:
            self._upgrade_asked()
            return
        except httptools.HttpParserCallbackError:
            halt, self._halt = self._halt, None
            if halt is not None:
                self._refuse(halt)
            elif not self._stopped:
                log.exception("HTTP parser callback failed")
                self._refuse(RequestError(500, "", "internal error"))
            return
        except httptools.HttpParserError:
            self._refuse(RequestError(400, "malformed", "malformed HTTP request"))
            return
        if pos < size:
            self._unfed = data[pos:]
        if self._in_message and self._message_at < 0:
            # A request not received whole: its time limit starts (a timer only for these).
            self._message_at = now = self._loop.time()
            due = now + limits.header_timeout
            if due < self._timer_at:
                self._arm(due)

    def _upgrade_asked(self) -> None:
        # "A server MAY ignore a received Upgrade header field" (RFC 9110 7.8): the request
        # is answered over HTTP/1.1, but what follows it is in the other protocol, so the
        # connection ends after the answer.
        if self._queue and self._queue[-1].wire is None:
            self._queue[-1].close = True
            self._stop_reading()
        else:
            self._refuse(RequestError(400, "malformed", "upgrades are not supported"))

    def _stop_reading(self) -> None:
        self._stopped = True
        self._unfed = b""
        self._in_message = self._in_head = False
        self.parser = None

    def _refuse(self, refused: RequestError) -> None:
        """Answer a request we will not serve, in its turn, and end the connection."""
        if refused.limit:
            self.server.metrics.limit_hit(refused.limit)
        self._stop_reading()
        exchange = Exchange(start=time.perf_counter(), close=True)
        exchange.wire = simple_response(refused.status, refused.message, refused.headers)
        self._queue.append(exchange)

    def _header_bytes_refusal(self) -> RequestError:
        limit = self.limits.header_bytes
        return RequestError(
            431, "header_bytes", f"request header section larger than {limit} bytes"
        )

    def _stop_parsing(self, refused: RequestError) -> NoReturn:
        """In a parser callback: refuse this request and stop parsing at once."""
        self._halt = refused
        raise refused

    # ---- httptools callbacks ---------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._head_fed = 0
        self._message_at = -1.0
        self._url = []
        self._url_len = 0
        self._headers = []
        self._header_bytes = 0
        self._origin = None
        self._body = []
        self._body_len = 0

    def on_url(self, url: bytes) -> None:
        self._url_len += len(url)
        if self._url_len > self.limits.request_line_bytes:
            limit = self.limits.request_line_bytes
            self._stop_parsing(
                RequestError(414, "request_line", f"request target longer than {limit} bytes")
            )
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.limits
        if len(self._headers) >= limits.header_fields:
            self._stop_parsing(
                RequestError(
                    431, "header_fields", f"more than {limits.header_fields} request header fields"
                )
            )
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_bytes > limits.header_bytes:
            self._stop_parsing(self._header_bytes_refusal())
        name = name.lower()
        if name == b"origin":
            self._origin = value
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        refused = version_refusal(cast(httptools.HttpRequestParser, self.parser).get_http_version())
        if refused is not None:
            self._stop_parsing(refused)

    def on_body(self, body: bytes) -> None:
        self._body_len += len(body)
        if self._body_len > MAX_BODY:
            self._stop_parsing(RequestError(413, "body_bytes", "request body too large"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = cast(httptools.HttpRequestParser, self.parser)
        self._in_message = False
        keep_alive = parser.should_keep_alive() and not self.server.draining
        raw = self._url[0] if len(self._url) == 1 else b"".join(self._url)
        try:
            url = httptools.parse_url(raw)
        except httptools.HttpParserInvalidURLError:
            self._stop_parsing(RequestError(400, "malformed", "malformed request target"))
        exchange = Exchange(start=time.perf_counter(), close=not keep_alive)
        method = parser.get_method()
        exchange.method = method
        exchange.head_only = method == b"HEAD"
        exchange.raw_path = url.path or b"/"
        exchange.path = exchange.raw_path.decode("latin-1")
        exchange.query = url.query or b""
        self._queue.append(exchange)
        if exchange.path.startswith("/live/") and (method == b"GET" or exchange.head_only):
            exchange.origin = self.server.origins.allow(self._origin)
            self._unstarted.append(exchange)
        else:
            exchange.asgi = True
            exchange.version = parser.get_http_version()
            exchange.headers = self._headers
            exchange.body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        if not keep_alive:
            # "The server MUST NOT process any further requests received on that
            # connection" (RFC 9112 9.6): answer this one, read no more.
            self._stop_reading()
            raise _StopParsingError

    # ---- answers, in order -----------------------------------------------------------

    def _flush(self) -> None:
        """Write every answer that is due, in request order; run the ASGI one at the head."""
        queue = self._queue
        wrote = False
        while queue:
            exchange = queue[0]
            if exchange.asgi:
                if exchange.task is None:
                    exchange.task = self._loop.create_task(self._asgi(exchange))
                break
            data = exchange.wire
            reply = exchange.reply
            if data is None:
                if reply is None:
                    break  # held, or asking Redis: the ones after it wait
                if self.server.draining and len(queue) == 1:
                    exchange.close = True
                data = live_response(
                    reply, head_only=exchange.head_only, origin=exchange.origin,
                    close=exchange.close,
                )  # fmt: skip
                self.server.metrics.observe(
                    reply.route, reply.status, time.perf_counter() - exchange.start
                )
            queue.popleft()
            self._write(data)
            wrote = True
            if exchange.close:
                self._linger()
                return
        if wrote and not queue:
            self._became_idle()

    def answer(self, exchange: Exchange, reply: Reply) -> None:
        """An LL-HLS answer is ready (now or later): written once those before it are."""
        exchange.reply = reply
        if self._queue and self._queue[0] is exchange:
            self._pump()

    def _became_idle(self) -> None:
        self._served = True
        self._idle_at = now = self._loop.time()
        due = now + self.limits.keep_alive
        if due < self._timer_at:  # rarely: the timer is lazy (see _on_timer)
            self._arm(due)

    # ---- LL-HLS ----------------------------------------------------------------------

    def _start(self, exchange: Exchange) -> None:
        try:
            decision = decide(
                exchange.path, exchange.query, self.server.services, self._loop.time()
            )
        except HttpError as exc:
            decision = error_reply(exc)
        except Exception:
            log.exception("LL-HLS request failed: %s", exchange.path[:200])
            decision = error_reply(HttpError(500, "internal error"))
        if isinstance(decision, Lookup):
            exchange.task = self._loop.create_task(self._lookup(exchange, decision))
        elif isinstance(decision, Reply):
            exchange.reply = decision
        else:
            self._hold(exchange, decision)

    def _hold(self, exchange: Exchange, hold: Hold) -> None:
        self.server.metrics.held += 1
        exchange.hold = hold
        exchange.protocol = self
        self.server.hold(exchange, hold.feed)

    async def _lookup(self, exchange: Exchange, lookup: Lookup) -> None:
        """Requests that ask Redis first (multivariant, signed, archive): one task each."""
        try:
            decision = await lookup.run()
        except HttpError as exc:
            decision = error_reply(exc)
        except Exception:
            log.exception("LL-HLS request failed")
            decision = error_reply(HttpError(500, "internal error"))
        if self.transport is None:
            return  # the viewer is gone
        if isinstance(decision, Reply):
            self.answer(exchange, decision)
        else:
            self._hold(exchange, decision)

    # ---- everything else: the ASGI application ---------------------------------------

    async def _asgi(self, exchange: Exchange) -> None:
        """Run at the head of the queue: what it sends is written as it comes."""
        start = time.perf_counter()
        transport = self.transport
        if transport is None:
            return  # the client left before its request's turn came
        method = exchange.method
        peer = transport.get_extra_info("peername") or ("", 0)
        local = transport.get_extra_info("sockname") or ("", 0)
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": exchange.version,
            "method": method.decode(),
            "scheme": "http",
            "path": unquote(exchange.path),
            "raw_path": exchange.raw_path,
            "query_string": exchange.query,
            "root_path": "",
            "headers": exchange.headers,
            "client": (peer[0], peer[1]),
            "server": (local[0], local[1]),
            "state": {},
        }
        body = exchange.body
        if self._disconnected is None:
            self._disconnected = asyncio.Event()
        disconnected = self._disconnected
        sent_body = False
        status = 500
        chunked = False
        started = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, chunked, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                headers = [(k.lower(), v) for k, v in message.get("headers", [])]
                sized = any(k == b"content-length" for k, _ in headers)
                # "A server MUST NOT send a response containing Transfer-Encoding unless
                # the corresponding request indicates HTTP/1.1" (RFC 9112 6.1): to an
                # HTTP/1.0 client an unsized body ends with the connection.
                chunked = not sized and exchange.version == "1.1"
                if (self.server.draining and len(self._queue) == 1) or not (sized or chunked):
                    exchange.close = True
                lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))]
                lines += [k + b": " + v + b"\r\n" for k, v in headers]
                if chunked:
                    lines.append(b"transfer-encoding: chunked\r\n")
                if exchange.close:
                    lines.append(b"connection: close\r\n")
                lines.append(b"\r\n")
                self._write(b"".join(lines))
            elif message["type"] == "http.response.body" and not exchange.head_only:
                # A HEAD's answer has no body, not even a chunked one's last chunk.
                data = message.get("body", b"")
                if chunked:
                    if data:
                        self._write(b"%x\r\n" % len(data) + data + b"\r\n")
                    if not message.get("more_body", False):
                        self._write(b"0\r\n\r\n")
                elif data:
                    self._write(data)

        try:
            await self.server.app(scope, receive, send)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"][:200])
            if not started:
                self._write(simple_response(500, "internal error"))
            exchange.close = True
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.server.metrics.observe(route, status, time.perf_counter() - start)
        if self._queue and self._queue[0] is exchange:
            self._queue.popleft()
            if exchange.close:
                self._linger()
            elif not self._queue:
                self._became_idle()
        self._pump()

    # ---- writing and ending ----------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        """Close once what is buffered is sent; abort if that has not happened within the
        keep-alive timeout (a client that reads nothing must not keep its socket)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        self._arm(self._loop.time() + self.limits.keep_alive)

    def _linger(self) -> None:
        """End the connection after the answer just written (see :data:`LINGER_SECONDS`)."""
        self._stop_reading()
        transport = self.transport
        if transport is None or transport.is_closing() or self._lingering:
            return
        if self._eof or not transport.can_write_eof():
            self._close()  # nothing more will come from the client
            return
        self._lingering = True
        transport.write_eof()  # after what is buffered: the client reads it, then EOF
        self._arm(self._loop.time() + LINGER_SECONDS)

    # ---- time limits: one timer per connection, re-armed lazily ----------------------

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        """Whichever limit applies now: lingering, the request's, the idle connection's.

        The idle deadline moves with every answer, so it is checked when the timer fires
        rather than re-armed per request.
        """
        self._timer = None
        self._timer_at = math.inf
        transport = self.transport
        if transport is None:
            return
        if transport.is_closing():
            # Closed a keep-alive timeout ago and still not gone: its client reads none of
            # what is buffered for it (the transport would wait for that forever).
            transport.abort()
            return
        if self._lingering:
            self._close()
            return
        now = self._loop.time()
        limits = self.limits
        if self._write_paused:
            # The client reads none of its answers: the edge waits on it, not the reverse.
            due = self._paused_at + limits.keep_alive
            if now >= due:
                self.server.metrics.limit_hit("write_stalled")
                transport.abort()  # what is buffered for it will never be read
                return
        elif self._in_message and (self._unfed or not self._reading):
            # The rest of the request is here (or in the socket) but not parsed: the
            # pipeline is full and it is the edge that waits, not the client. The clock
            # starts again when parsing does (see _parse).
            self._message_at = -1.0
            due = now + limits.header_timeout
        elif self._in_message:
            due = (self._message_at if self._message_at >= 0 else now) + limits.header_timeout
            if now >= due:
                what = "head" if self._in_head else "body"
                self._refuse(
                    RequestError(
                        408, "header_timeout",
                        f"request {what} not received within {limits.header_timeout:g} seconds",
                    )
                )  # fmt: skip
                self._pump()
                return
        elif not self._queue:
            due = self._idle_at + (limits.keep_alive if self._served else limits.header_timeout)
            if now >= due:
                self.server.metrics.limit_hit(
                    "keep_alive_timeout" if self._served else "header_timeout"
                )
                self._close()
                return
        else:
            # Requests in flight: held ones end by their own deadline. Look again later.
            due = now + limits.keep_alive
        self._arm(due)


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
