"""The packager's raw RESP writer: encoding and reply counting (pure), then a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from cascade.transcoder.resp import ReplyReader, RespWriter, encode_command, parse_redis_url


def test_encode_command_is_resp2_bulk_strings() -> None:
    assert encode_command(["SET", "k", b"\x00\r\n", 7]) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n\x00\r\n\r\n$1\r\n7\r\n"
    )


REPLIES = [
    b"+OK\r\n",
    b":12\r\n",
    b"$-1\r\n",
    b"$5\r\nab\r\nc\r\n",
    b"*2\r\n$1\r\na\r\n:1\r\n",
    b"*-1\r\n",
]


@given(st.lists(st.sampled_from(REPLIES), max_size=20), st.integers(1, 7))
def test_reply_reader_counts_replies_whatever_the_chunking(
    replies: list[bytes], chunk: int
) -> None:
    data = b"".join(replies)
    reader = ReplyReader()
    done = sum(reader.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    assert done == reader.replies == len(replies)
    assert reader.errors == []


def test_reply_reader_collects_errors() -> None:
    reader = ReplyReader()
    assert reader.feed(b"+OK\r\n-WRONGTYPE Operation against a key\r\n:1") == 2
    assert reader.errors == ["WRONGTYPE Operation against a key"]
    assert reader.feed(b"\r\n") == 1


def test_reply_reader_refuses_garbage() -> None:
    with pytest.raises(ValueError, match="not a RESP2 reply"):
        ReplyReader().feed(b"?what\r\n")


def test_parse_redis_url() -> None:
    t = parse_redis_url("redis://user:p%40ss@redis.cascade:6380/2")
    assert (t.host, t.port, t.db, t.username, t.password) == (
        "redis.cascade",
        6380,
        2,
        "user",
        "p@ss",
    )
    assert parse_redis_url("redis://127.0.0.1").port == 6379
    with pytest.raises(ValueError, match="redis:// URLs only"):
        parse_redis_url("unix:///tmp/redis.sock")


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_writer_appends_in_order_with_and_without_replies(redis_url: str) -> None:
    writer = RespWriter(redis_url.replace("/0", "/3"))
    await writer.connect()
    check = Redis.from_url(redis_url.replace("/0", "/3"))
    try:
        writer.send(["SET", "init", b"\x00init"])
        for i in range(50):  # the steady state: no replies asked for
            writer.send(["XADD", "parts", "MAXLEN", "~", 1000, "*", "n", i], replies=False)
        writer.send(["HSET", "health", "state", "live"])
        writer.send(["XADD", "parts", "*", "n", "end"], replies=False)
        writer.send(["LPUSH", "health", "x"])  # WRONGTYPE: reported, nothing else lost
        assert await writer.flush(5)
        assert writer.reader.replies == writer.sent
        entries: Any = await check.xrange("parts")
        assert [e[1][b"n"] for e in entries] == [str(i).encode() for i in range(50)] + [b"end"]
        assert await check.get("init") == b"\x00init"
        assert await check.hget("health", "state") == b"live"
    finally:
        await writer.close()
        await check.aclose()
