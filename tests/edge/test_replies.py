"""One encoder of an LL-HLS answer's head for both front doors: the fields, CORS, and the
same head written by the edge's own server and sent by the ASGI application."""

from __future__ import annotations

import pytest

from cascade.edge.asgi import EdgeApp, Message
from cascade.edge.metrics import Metrics
from cascade.edge.replies import AllowedOrigins, Reply, field_pairs, reply_fields

from .test_server import _bench, get, hello_app

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

PART = Reply(200, b"video/mp4", b"public, max-age=30", b"12345", "part")
PLAYER = b"https://player.example"


def test_a_part_for_any_origin() -> None:
    assert field_pairs(reply_fields(PART, b"*")) == [
        (b"content-type", b"video/mp4"),
        (b"cache-control", b"public, max-age=30"),
        (b"content-length", b"5"),
        (b"access-control-allow-origin", b"*"),
    ]


def test_an_answer_naming_its_origin_varies_by_origin() -> None:
    # A shared cache must not give one page's answer to another page's request.
    assert field_pairs(reply_fields(PART, PLAYER))[-2:] == [
        (b"access-control-allow-origin", PLAYER),
        (b"vary", b"Origin"),
    ]


def test_without_an_allowed_origin_there_is_no_cors_field() -> None:
    assert [name for name, _ in field_pairs(reply_fields(PART, None))] == [
        b"content-type",
        b"cache-control",
        b"content-length",
    ]


def test_the_reply_own_fields_come_after_the_common_ones_and_before_cors() -> None:
    reply = Reply(503, b"text/plain; charset=utf-8", b"no-cache", b"retry\n", "error",
                  ((b"retry-after", b"1"), (b"x-cascade-stream-state", b"starting")))  # fmt: skip
    assert [name for name, _ in field_pairs(reply_fields(reply, b"*"))] == [
        b"content-type",
        b"cache-control",
        b"content-length",
        b"retry-after",
        b"x-cascade-stream-state",
        b"access-control-allow-origin",
    ]


def test_allowed_origins() -> None:
    listed = AllowedOrigins(["https://player.example", "https://other.example"])
    assert not listed.any
    assert listed.allow(PLAYER) == PLAYER
    assert listed.allow(b"https://evil.example") is None
    assert listed.allow(None) is None
    anyone = AllowedOrigins(["*"])
    assert anyone.any and anyone.allow(None) == b"*" and anyone.allow(PLAYER) == b"*"


# ---- both front doors, the same head ----------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    ("allowed", "origin"),
    [(("*",), None), (("https://player.example",), PLAYER), (("https://player.example",), None)],
    ids=["any-origin", "listed-origin", "no-origin"],
)
async def test_both_front_doors_send_the_same_head(
    method: str, allowed: tuple[str, ...], origin: bytes | None
) -> None:
    bench = _bench(cors_allow_origins=allowed)
    path = "/live/cam1/360p/3.0.m4s"
    extra = b"Origin: %s\r\n" % origin if origin is not None else b""

    protocol, transport = bench.connect()
    protocol.data_received(get(path, method, extra))
    head, _, body = transport.take().partition(b"\r\n\r\n")
    protocol.connection_lost(None)
    status_line, *lines = head.split(b"\r\n")
    written = [tuple(line.split(b": ", 1)) for line in lines]

    app = EdgeApp(hello_app, bench.server.settings, Metrics(), bench.server.state)
    sent: list[Message] = []
    scope = {
        "type": "http", "method": method, "path": path, "query_string": b"",
        "headers": [(b"origin", origin)] if origin is not None else [],
    }  # fmt: skip

    async def receive() -> Message:
        raise AssertionError("an LL-HLS request has no body to read")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, end = sent
    assert status_line == b"HTTP/1.1 %d OK" % start["status"]
    assert written == start["headers"]
    assert body == end["body"] == (b"" if method == "HEAD" else b"3.0;")
