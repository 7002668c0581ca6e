"""The edge's HTTP/1.1 protocol class without a socket (as uvicorn tests its protocols).

A fake transport records what the protocol writes, closes, pauses and resumes; bytes go in
through ``data_received`` exactly as a client would send them, and the tests compare the
exact bytes written. The LL-HLS windows are in memory (no Redis): a part "lands" when a
test applies it and notifies the feed's subscribers, as the hub does; the server's held
requests are answered through its subscription.
"""

from __future__ import annotations

import asyncio
import gc
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import generate_latest
from redis.asyncio import Redis

from cascade.contract.schema import InitEntry, PartEntry, RenditionInfo, StreamMeta, StreamState
from cascade.contract.settings import EdgeSettings
from cascade.edge.cache import ByteCache
from cascade.edge.hub import Hub, RenditionFeed, StreamView
from cascade.edge.live import Services
from cascade.edge.metrics import Metrics
from cascade.edge.ondemand import OnDemand
from cascade.edge.server import EdgeServer, HttpProtocol
from cascade.edge.sessions import MemorySessionStore, SessionConfig
from cascade.edge.window import RenditionWindow

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

INIT = b"init-360p"
INIT_RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncache-control: public, max-age=30\r\n"
    b"content-length: 9\r\naccess-control-allow-origin: *\r\n\r\n" + INIT
)


def part_response(msn: int, index: int, *, head: bool = False) -> bytes:
    body = f"{msn}.{index};".encode()
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncache-control: public, max-age=30\r\n"
        b"content-length: %d\r\naccess-control-allow-origin: *\r\n\r\n" % len(body)
    ) + (b"" if head else body)


def refusal(status: int, message: str, extra: bytes = b"") -> bytes:
    body = (message + "\n").encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\n%sconnection: close\r\n\r\n%s"
        % (status, HTTPStatus(status).phrase.encode(), len(body), extra, body)
    )


def get(path: str, method: str = "GET", extra: bytes = b"") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: edge\r\n%s\r\n" % (method.encode(), path.encode(), extra)


class FakeTransport(asyncio.Transport):
    """What the protocol did to its connection: bytes written, pauses, half-close, close."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.reading = True
        self.pauses = 0
        self.eof_written = False
        self.closed = asyncio.Event()
        self.ended = asyncio.Event()  # closed, or half-closed after the last answer
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed.is_set(), "write after close"
        self.written += data

    def take(self) -> bytes:
        out = bytes(self.written)
        self.written.clear()
        return out

    def close(self) -> None:
        self.closed.set()
        self.ended.set()

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_aborted(self) -> bool:  # a method: mypy does not narrow it across awaits
        return self.aborted

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True
        self.ended.set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )


async def hello_app(scope: Any, receive: Any, send: Any) -> None:
    """The ASGI side: ``hello <path>`` for every request; unsized, in two parts, for
    ``/stream``."""
    await receive()
    body = b"hello " + scope["path"].encode()
    headers = [(b"content-type", b"text/plain")]
    if scope["path"] != "/stream":
        headers.append((b"content-length", b"%d" % len(body)))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/stream":
        await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
        body = body[6:]
    await send({"type": "http.response.body", "body": body})


@dataclass
class Bench:
    """One edge server (not listening) with an in-memory stream, and its connections."""

    server: EdgeServer
    feed: RenditionFeed
    metrics: Metrics
    transports: list[FakeTransport] = field(default_factory=list)

    def connect(self) -> tuple[HttpProtocol, FakeTransport]:
        protocol = HttpProtocol(self.server)
        transport = FakeTransport()
        protocol.connection_made(transport)
        self.transports.append(transport)
        return protocol, transport

    def land(self, msn: int, index: int) -> None:
        """A part arrives: applied to the window, then the feed's subscribers are told."""
        self.feed.window.apply(_part(msn, index))
        self.feed.notify()

    def limit_hits(self) -> dict[str, float]:
        hits = {}
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "cascade_edge_limit_hits_total":
                    hits[sample.labels["limit"]] = sample.value
        return hits


def _part(msn: int, index: int) -> PartEntry:
    return PartEntry(msn, index, 0.1, index == 0, 1.8e9 + msn * 0.5 + index * 0.1,
                     f"{msn}.{index};".encode())  # fmt: skip


def _bench(**settings: Any) -> Bench:
    config = EdgeSettings(blocking_timeout_factor=0.6, **settings)
    window = RenditionWindow("360p", max_segments=24)
    window.apply(InitEntry(INIT, 0))
    for msn in range(12):
        for i in range(5 if msn < 11 else 2):
            window.apply(_part(msn, i))
    feed = RenditionFeed(window=window, key="cascade:parts:cam1:360p")
    info = RenditionInfo("360p", 510_400, "avc1.64001e,mp4a.40.2", 640, 360, 30.0)
    meta = StreamMeta((info,), 0.1, 0.5, 24, StreamState.LIVE, 0)
    no_redis = cast(Redis, None)  # nothing here reaches Redis: the window is in memory
    hub = Hub(no_redis)
    hub.streams["cam1"] = StreamView("cam1", meta, {"360p": feed})
    services = Services(
        hub=hub,
        sessions=MemorySessionStore(SessionConfig()),
        keys={},
        cache=ByteCache(capacity_bytes=0),
        settings=config,
        on_demand=OnDemand(no_redis),
    )
    metrics = Metrics()
    server = EdgeServer(hello_app, SimpleNamespace(live=services), config, metrics)
    return Bench(server, feed, metrics)


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    b = _bench()
    yield b
    for protocol in list(b.server.connections):
        protocol.connection_lost(None)
    await asyncio.sleep(0)  # ASGI tasks of the test end here


@pytest.fixture
def gc_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def closed(transport: FakeTransport, within: float = 2.0) -> None:
    """The protocol closes the connection (by its own timer) within ``within`` seconds."""
    await asyncio.wait_for(transport.closed.wait(), within)


async def ended(transport: FakeTransport, within: float = 2.0) -> None:
    """The protocol ends the connection (FIN after its answer, or close) within ``within``."""
    await asyncio.wait_for(transport.ended.wait(), within)


# ---- answered in request order (RFC 9112 9.3.2) ----------------------------------------


async def test_pipelined_responses_come_back_in_request_order(bench: Bench) -> None:
    protocol, transport = bench.connect()
    # A blocking reload for a part that is not there yet, then an init segment.
    protocol.data_received(
        get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=2") + get("/live/cam1/360p/init.mp4")
    )
    assert transport.take() == b"", "the init segment must wait for the playlist before it"
    bench.land(11, 2)
    written = transport.take()
    playlist, _, rest = written.partition(b"\r\n\r\n#EXTM3U")
    assert playlist.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.apple.mpegurl")
    assert rest.endswith(INIT_RESPONSE)
    assert b'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="11.3.m4s"' in rest


async def test_an_asgi_answer_waits_for_the_held_request_before_it(bench: Bench) -> None:
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/11.2.m4s") + get("/health"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.take() == b""
    bench.land(11, 2)
    for _ in range(5):
        await asyncio.sleep(0)
    written = transport.take()
    assert written.startswith(part_response(11, 2))
    assert written.endswith(b"\r\n\r\nhello /health")


async def test_viewers_given_the_same_answer_are_written_one_shared_buffer(bench: Bench) -> None:
    # A part, and a held reload released by a landing part: one buffer for every viewer
    # (head and body made once); a HEAD and a last answer (connection: close) have their
    # own bytes and leave the shared one as it was.
    written: list[bytes] = []
    connections = [bench.connect() for _ in range(3)]
    for protocol, transport in connections:
        transport.write = written.append  # type: ignore[method-assign,assignment]
        protocol.data_received(get("/live/cam1/360p/11.0.m4s"))
    assert written[0] == part_response(11, 0)
    assert written[1] is written[0] and written[2] is written[0]
    written.clear()
    for protocol, _ in connections:
        protocol.data_received(get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=2"))
    assert written == []
    bench.land(11, 2)
    assert len(written) == 3 and b"#EXTM3U" in written[0]
    assert written[1] is written[0] and written[2] is written[0]
    written.clear()
    protocol, _ = connections[0]
    protocol.data_received(get("/live/cam1/360p/11.0.m4s", "HEAD"))
    protocol.data_received(get("/live/cam1/360p/11.0.m4s", extra=b"Connection: close\r\n"))
    assert written[0] == part_response(11, 0, head=True)
    assert written[1].endswith(b"connection: close\r\n\r\n11.0;")
    connections[1][0].data_received(get("/live/cam1/360p/11.0.m4s"))
    assert written[2] == part_response(11, 0)


async def test_requests_held_for_the_same_part_are_checked_once_per_wake(
    bench: Bench, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[tuple[int, int | None]] = []
    real = RenditionWindow.playlist_wait

    def counted(window: RenditionWindow, msn: int, part: int | None, target: float) -> Any:
        checks.append((msn, part))
        return real(window, msn, part, target)

    monkeypatch.setattr(RenditionWindow, "playlist_wait", counted)
    viewers = [bench.connect() for _ in range(4)]
    for protocol, _ in viewers:
        protocol.data_received(get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=2"))
    later, later_transport = bench.connect()
    later.data_received(get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=3"))
    checks.clear()
    bench.land(11, 2)
    assert sorted(checks) == [(11, 2), (11, 3)], "one check per kind of wait, not per viewer"
    answers = [transport.take() for _, transport in viewers]
    assert answers[0].startswith(b"HTTP/1.1 200 OK") and answers.count(answers[0]) == 4
    assert later_transport.take() == b"", "the one waiting for 11.3 still waits"
    bench.land(11, 3)
    assert later_transport.take().startswith(b"HTTP/1.1 200 OK")


async def test_a_held_head_reply_has_no_body_whatever_came_after(bench: Bench) -> None:
    protocol, transport = bench.connect()
    protocol.data_received(
        get("/live/cam1/360p/11.2.m4s", "HEAD") + get("/live/cam1/360p/init.mp4")
    )
    bench.land(11, 2)
    assert transport.take() == part_response(11, 2, head=True) + INIT_RESPONSE


async def test_a_head_answer_from_the_app_has_no_body_not_even_a_last_chunk(
    bench: Bench,
) -> None:
    protocol, transport = bench.connect()
    protocol.data_received(get("/stream", "HEAD") + get("/live/cam1/360p/init.mp4"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.take() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        + INIT_RESPONSE
    )


async def test_an_unsized_answer_to_http_10_is_not_chunked_and_ends_the_connection(
    bench: Bench,
) -> None:
    # "A server MUST NOT send a response containing Transfer-Encoding unless the
    # corresponding request indicates HTTP/1.1" (RFC 9112 6.1).
    protocol, transport = bench.connect()
    protocol.data_received(b"GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    await ended(transport)
    assert transport.take() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nhello /stream"
    )


async def test_requests_after_connection_close_are_not_processed(bench: Bench) -> None:
    # "The server MUST NOT process any further requests received on that connection"
    # (RFC 9112 9.6) -- and the first one is answered, not refused as malformed.
    protocol, transport = bench.connect()
    protocol.data_received(
        get("/health", extra=b"Connection: close\r\n") + get("/live/cam1/360p/3.0.m4s")
    )
    await ended(transport)
    assert transport.take() == (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n"
        b"connection: close\r\n\r\nhello /health"
    )


# ---- held requests: answered through the feed's subscription ---------------------------


async def test_held_requests_are_answered_through_one_subscription_to_their_feed(
    bench: Bench,
) -> None:
    part, part_t = bench.connect()
    reload, reload_t = bench.connect()
    part.data_received(get("/live/cam1/360p/11.2.m4s"))
    reload.data_received(get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=2"))
    assert part_t.take() == reload_t.take() == b""
    # The server's, however many requests it holds there: no task, no timer per request.
    assert bench.feed.subscribers == 1
    assert bench.metrics.registry.get_sample_value("cascade_edge_blocked_requests") == 2
    bench.land(11, 2)  # applied to the window, then the hub notifies the subscribers
    assert part_t.take() == part_response(11, 2)
    playlist = reload_t.take()
    assert playlist.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: application/vnd.apple.mpegurl")
    assert b'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="11.3.m4s"' in playlist
    assert bench.metrics.registry.get_sample_value("cascade_edge_blocked_requests") == 0
    bench.server.expire(-math.inf)  # the sweep: nothing held any more
    assert bench.feed.subscribers == 0, "the subscription is given back"


async def test_a_held_request_past_its_deadline_gets_503_from_the_sweep(bench: Bench) -> None:
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/11.2.m4s"))
    bench.server.expire(-math.inf)  # no deadline is that early: still held
    assert transport.take() == b"" and bench.feed.subscribers == 1
    bench.server.expire(math.inf)
    body = b"part 11.2 did not arrive in time\n"
    assert transport.take() == (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"cache-control: no-store\r\ncontent-length: %d\r\naccess-control-allow-origin: *\r\n"
        b"\r\n%s" % (len(body), body)
    )
    assert bench.feed.subscribers == 0
    bench.land(11, 2)  # answered already: nothing more is written
    assert transport.take() == b""


# ---- limits: refused before the work grows ---------------------------------------------


async def test_a_url_over_the_request_line_limit_gets_414() -> None:
    bench = _bench(limit_request_line_bytes=1024)
    protocol, transport = bench.connect()
    protocol.data_received(b"GET /live/cam1/" + b"a" * 1100)  # not even finished
    assert transport.take() == refusal(414, "request target longer than 1024 bytes")
    assert transport.eof_written
    assert bench.limit_hits() == {"request_line": 1.0}
    protocol.data_received(b"b" * 100_000 + b" HTTP/1.1\r\n\r\n")  # discarded, not parsed
    assert transport.take() == b""
    assert not transport.closed.is_set()  # lingering: the client reads its 414 first
    protocol.data_received(b"b" * (1 << 20))  # ... but it does not get to upload for long:
    assert not transport.reading  # reading stops (TCP's window holds the client back);
    assert not transport.closed.is_set()  # closing now would reset away the unread 414
    protocol.connection_lost(None)


async def test_a_header_section_over_its_limit_gets_431_before_it_ends() -> None:
    bench = _bench(limit_request_header_bytes=4096)
    protocol, transport = bench.connect()
    protocol.data_received(b"GET /live/cam1.m3u8 HTTP/1.1\r\nHost: edge\r\nX-Big: ")
    # 64 MiB would follow; the answer comes at the first read past the bound.
    protocol.data_received(b"v" * (256 << 10))
    assert transport.take() == refusal(431, "request header section larger than 4096 bytes")
    assert bench.limit_hits() == {"header_bytes": 1.0}
    protocol.connection_lost(None)


async def test_a_complete_header_over_the_limit_gets_431() -> None:
    bench = _bench(limit_request_header_bytes=4096)
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1.m3u8", extra=b"X-Big: " + b"v" * 5000 + b"\r\n"))
    assert transport.take() == refusal(431, "request header section larger than 4096 bytes")
    protocol.connection_lost(None)


async def test_too_many_header_fields_get_431() -> None:
    bench = _bench(limit_request_fields=10)
    protocol, transport = bench.connect()
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(100_000))
    protocol.data_received(b"GET /live/cam1.m3u8 HTTP/1.1\r\n" + fields + b"\r\n")
    assert transport.take() == refusal(431, "more than 10 request header fields")
    assert bench.limit_hits() == {"header_fields": 1.0}
    protocol.connection_lost(None)


async def test_many_small_header_fields_within_the_limits_are_served(bench: Bench) -> None:
    protocol, transport = bench.connect()
    fields = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 100) for i in range(90))
    protocol.data_received(get("/live/cam1/360p/init.mp4", extra=fields))
    assert transport.take() == INIT_RESPONSE


async def test_an_http_09_request_line_gets_400_and_the_connection_closes(bench: Bench) -> None:
    protocol, transport = bench.connect()
    protocol.data_received(b"GET /\r\n\r\n")
    assert transport.take() == refusal(400, "HTTP/0.9 is not supported: send HTTP/1.1")
    assert transport.eof_written


async def test_a_malformed_request_after_a_held_one_is_refused_in_its_turn(bench: Bench) -> None:
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/11.2.m4s") + b"GET / HTTP/9.9\r\n\r\n")
    assert transport.take() == b""
    bench.land(11, 2)
    written = transport.take()
    assert written.startswith(part_response(11, 2))
    assert written.endswith(refusal(400, "malformed HTTP request"))


# ---- time limits (the loop's clock, short limits) ----------------------------------------


async def test_an_unfinished_request_head_gets_408_then_close() -> None:
    bench = _bench(header_timeout_seconds=0.05)
    protocol, transport = bench.connect()
    protocol.data_received(b"GET /live/cam1.m3u8 HTTP/1.1\r\nHost: ed")
    await ended(transport)
    assert transport.take() == refusal(408, "request head not received within 0.05 seconds")
    assert bench.limit_hits() == {"header_timeout": 1.0}
    protocol.connection_lost(None)


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout() -> None:
    bench = _bench(header_timeout_seconds=0.05)
    protocol, transport = bench.connect()
    await closed(transport)
    assert transport.take() == b"", "nothing was asked: nothing to answer"
    protocol.connection_lost(None)


async def test_an_idle_keep_alive_connection_is_closed_after_its_timeout() -> None:
    bench = _bench(keep_alive_timeout_seconds=0.05, header_timeout_seconds=10)
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/init.mp4"))
    assert transport.take() == INIT_RESPONSE
    await closed(transport)
    assert transport.take() == b""
    assert bench.limit_hits() == {"keep_alive_timeout": 1.0}
    protocol.connection_lost(None)


async def test_a_client_that_reads_none_of_its_answers_is_cut_after_the_keep_alive_timeout() -> (
    None
):
    bench = _bench(keep_alive_timeout_seconds=0.05)
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/init.mp4"))
    protocol.pause_writing()  # the transport's buffer is over its high-water mark
    await closed(transport)
    assert bench.limit_hits() == {"write_stalled": 1.0}
    protocol.connection_lost(None)


async def test_a_closed_connection_whose_client_never_reads_is_aborted() -> None:
    # transport.close() waits to flush what is buffered; a client that reads nothing
    # would keep the socket (and its place under the connection limit) for ever.
    bench = _bench(keep_alive_timeout_seconds=0.05)
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/init.mp4"))
    await closed(transport)  # idle: closed by the keep-alive timeout ...
    assert not transport.is_aborted()
    for _ in range(100):  # ... but connection_lost never comes: aborted a timeout later
        if transport.is_aborted():
            break
        await asyncio.sleep(0.01)
    assert transport.is_aborted()
    protocol.connection_lost(None)


async def test_a_held_request_is_not_cut_by_the_keep_alive_timeout() -> None:
    bench = _bench(keep_alive_timeout_seconds=0.05)
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/11.2.m4s"))
    await asyncio.sleep(0.15)  # three keep-alive timeouts while held: still open
    assert not transport.closed.is_set()
    bench.land(11, 2)
    assert transport.take() == part_response(11, 2)
    protocol.connection_lost(None)


# ---- pipelining: bounded, in order, and the loop is shared -------------------------------


async def test_reading_pauses_while_the_pipeline_is_full_and_resumes_after() -> None:
    bench = _bench(limit_pipelined_requests=2)
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/11.2.m4s") + get("/live/cam1/360p/11.2.m4s"))
    assert not transport.is_reading()
    bench.land(11, 2)
    assert transport.take() == part_response(11, 2) * 2
    assert transport.is_reading()
    protocol.connection_lost(None)


async def test_the_header_timeout_does_not_run_while_the_edge_holds_the_bytes() -> None:
    # Found by the fuzz: a pipeline filled by two held requests, the next request's head
    # cut by the parser's slice. Its rest was received, just not parsed (the queue was
    # full): the edge's own wait must not become the client's 408.
    bench = _bench(limit_pipelined_requests=2, header_timeout_seconds=0.05)
    protocol, transport = bench.connect()
    held = get("/live/cam1/360p/11.2.m4s")
    pad = 4096 - 2 * len(held) - 10 - len("X-Pad: \r\n")
    first = get("/live/cam1/360p/11.2.m4s", extra=b"X-Pad: " + b"p" * pad + b"\r\n")
    assert len(first + held) == 4096 - 10  # the third head starts 10 bytes before the cut
    protocol.data_received(first + held + get("/live/cam1/360p/init.mp4"))
    await asyncio.sleep(0.2)  # four header timeouts
    assert transport.take() == b"" and not transport.ended.is_set()
    bench.land(11, 2)
    assert transport.take() == part_response(11, 2) * 2 + INIT_RESPONSE
    protocol.connection_lost(None)


async def test_a_long_pipeline_is_answered_in_order_a_batch_per_loop_turn() -> None:
    bench = _bench(limit_pipelined_requests=4)
    protocol, transport = bench.connect()
    protocol.data_received(get("/live/cam1/360p/3.0.m4s") * 5000)  # one read
    # One batch now, the rest in later turns of the loop: a viewer's reload in between
    # waits for one batch, not for 5,000 answers.
    assert transport.take() == part_response(3, 0) * 4
    assert not transport.is_reading()
    answered = 4
    for _ in range(5000):
        answered += transport.take().count(b"HTTP/1.1 200 OK\r\n")
        if answered == 5000:
            break
        await asyncio.sleep(0)
    assert answered == 5000
    assert transport.is_reading() and not transport.eof_written
    assert bench.limit_hits()["pipeline"] >= 1
    protocol.connection_lost(None)


async def test_pipelines_share_one_batch_per_loop_iteration_whatever_their_number() -> None:
    # Ten flooding connections must not take ten batches of each iteration from the
    # viewers: after their first batch (in their own read), one of them goes on per turn.
    bench = _bench(limit_pipelined_requests=4)
    pairs = [bench.connect() for _ in range(10)]
    for protocol, _ in pairs:
        protocol.data_received(get("/live/cam1/360p/3.0.m4s") * 100)

    def answered() -> int:
        return sum(t.written.count(b"HTTP/1.1 200 OK\r\n") for _, t in pairs)

    assert answered() == 10 * 4
    for turn in range(1, 6):
        await asyncio.sleep(0)  # one iteration of the loop
        assert answered() == 10 * 4 + turn * 4
    for protocol, _ in pairs:
        protocol.connection_lost(None)
    await asyncio.sleep(0)  # the backlog lets go of closed connections


# ---- connections -------------------------------------------------------------------------


async def test_a_connection_over_the_limit_gets_503_and_is_closed() -> None:
    bench = _bench(limit_connections=2)
    first, _ = bench.connect()
    second, _ = bench.connect()
    third, transport = bench.connect()
    assert transport.take() == refusal(
        503, "this edge is at its limit of 2 connections: retry", b"retry-after: 1\r\n"
    )
    assert transport.eof_written
    assert bench.limit_hits() == {"connections": 1.0}
    for protocol in (first, second, third):
        protocol.connection_lost(None)


async def test_a_dropped_connection_frees_its_protocol_without_a_gc_pass(
    bench: Bench, gc_off: None
) -> None:
    def alive() -> int:
        return sum(isinstance(o, HttpProtocol) for o in gc.get_objects())

    before = alive()
    protocol, _ = bench.connect()
    fields = b"".join(b"X-%d: 1\r\n" % i for i in range(50))
    protocol.data_received(get("/live/cam1/360p/init.mp4", extra=fields))
    protocol.connection_lost(None)
    del protocol
    # Freed by its reference count: a cycle (protocol <-> parser) would wait for a full
    # GC, and 100,000 headers each held 11 MB until then.
    assert alive() == before, "the protocol is kept alive by a reference cycle"


async def test_a_dropped_connection_gives_up_its_held_requests(bench: Bench) -> None:
    protocol, _ = bench.connect()
    protocol.data_received(get("/live/cam1/360p/11.2.m4s"))
    assert bench.metrics.registry.get_sample_value("cascade_edge_blocked_requests") == 1
    protocol.connection_lost(None)
    assert bench.metrics.registry.get_sample_value("cascade_edge_blocked_requests") == 0
    bench.land(11, 2)  # nothing to answer, nothing to write


async def test_limit_hits_are_exported(bench: Bench) -> None:
    protocol, _ = bench.connect()
    protocol.data_received(b"GET /\r\n\r\n")
    text = generate_latest(bench.metrics.registry).decode()
    assert "# TYPE cascade_edge_limit_hits_total counter" in text
    assert 'cascade_edge_limit_hits_total{limit="malformed"} 1.0' in text
