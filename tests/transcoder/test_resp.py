"""The packager's raw RESP writer: encoding and reply parsing (pure), then a real Redis:
order, confirmations, a connection killed mid-stream, Redis restarted, Redis frozen."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from cascade.transcoder.resp import (
    ErrorReply,
    ReplyReader,
    RespWriter,
    encode_command,
    parse_reply,
)

from ..conftest import RedisServer


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


VALUES: list[tuple[bytes, Any]] = [
    (b"+OK\r\n", b"OK"),
    (b":12\r\n", 12),
    (b"$-1\r\n", None),
    (b"$5\r\nab\r\nc\r\n", b"ab\r\nc"),
    (b"*2\r\n$1\r\na\r\n:1\r\n", [b"a", 1]),
    (b"*-1\r\n", None),
    (b"-LOADING Redis is loading\r\n", ErrorReply("LOADING Redis is loading")),
    (b"*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n$1\r\nv\r\n", [[b"1-0", [b"k", b"v"]]]),
]


@given(st.lists(st.sampled_from(VALUES), max_size=12), st.integers(1, 9))
def test_parse_reply_reads_values_whatever_the_chunking(
    replies: list[tuple[bytes, Any]], chunk: int
) -> None:
    data = b"".join(r for r, _ in replies)
    buf, got = bytearray(), []
    for i in range(0, len(data), chunk):
        buf += data[i : i + chunk]
        while (one := parse_reply(buf)) is not None:
            value, end = one
            del buf[:end]
            got.append(value)
    assert got == [v for _, v in replies]
    assert buf == b""


def test_the_writer_refuses_tls_urls() -> None:
    with pytest.raises(ValueError, match="redis:// or redis\\+sentinel://"):
        RespWriter("rediss://redis.example.net:6380/0")


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_writer_appends_in_order_with_and_without_replies(redis_url: str) -> None:
    writer = RespWriter(redis_url.replace("/0", "/3"))
    await writer.connect()
    check = Redis.from_url(redis_url.replace("/0", "/3"))
    try:
        writer.publish([(["SET", "init", b"\x00init"], None)])
        for i in range(50):  # the steady state: no replies asked for
            writer.publish([(xadd(i), ("r", i // 5))], replies=False)
        writer.send_state(["HSET", "health", "state", "live"])
        writer.publish([(["XADD", "parts", "*", "n", "end"], None)], replies=False)
        writer.send_state(["LPUSH", "health", "x"])  # WRONGTYPE: reported, nothing else lost
        assert await writer.flush(5)
        assert writer.reader.replies == writer.sent
        assert writer.outbox.settled
        entries: Any = await check.xrange("parts")
        assert [e[1][b"n"] for e in entries] == [str(i).encode() for i in range(50)] + [b"end"]
        assert await check.get("init") == b"\x00init"
        assert await check.hget("health", "state") == b"live"
    finally:
        await writer.close()
        await check.aclose()


def xadd(i: int, size: int = 16) -> list[Any]:
    return ["XADD", "parts", "MAXLEN", "~", 100_000, "*", "n", i, "data", b"x" * size]


async def numbers(client: Redis) -> list[int]:
    entries: Any = await client.xrange("parts")
    return [int(e[1][b"n"]) for e in entries]


async def produce(
    writer: RespWriter, count: int, *, every: float, size: int = 16, health_every: int = 10
) -> None:
    """Parts at a steady pace as the packager makes them, with a health report now and then
    (its reply is what confirms the parts before it)."""
    for i in range(count):
        writer.publish([(xadd(i, size), ("r", i // 5))], replies=False)
        if i % health_every == 0:
            writer.send_state(["HSET", "health", "n", i])
        await asyncio.sleep(every)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_a_killed_connection_loses_nothing_and_replays_no_duplicate(redis_url: str) -> None:
    writer = RespWriter(redis_url, replay_seconds=5)
    await writer.connect()
    admin = Redis.from_url(redis_url)
    try:
        task = asyncio.create_task(produce(writer, 150, every=0.002))
        await asyncio.sleep(0.15)
        # Parts written with replies off just before the kill are in Redis, unconfirmed:
        # after the reconnect the stream's tail says so, and they are not sent twice.
        assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1
        await task
        assert await writer.flush(10)
        assert await numbers(admin) == list(range(150))
        assert writer.outages == 1
        assert writer.outbox.skipped_items > 0  # the ones the tail showed were there
    finally:
        await writer.close()
        await admin.aclose()


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
@pytest.mark.parametrize("restart", ["with its dump", "empty"])
async def test_redis_restarted_gets_every_part_in_order(tmp_path: Path, restart: str) -> None:
    server = RedisServer(tmp_path)  # its own data dir: a dump here reaches no other test
    server.start()
    writer = RespWriter(server.url, replay_seconds=30)
    await writer.connect()
    try:
        task = asyncio.create_task(produce(writer, 300, every=0.01))
        await asyncio.sleep(1.0)
        assert server.proc is not None
        if restart == "empty":
            server.stop()
        else:
            sync_redis.Redis(port=server.port).shutdown(save=True)
            server.proc.wait(10)
            server.proc = None
        await asyncio.sleep(1.0)  # Redis away: parts wait in the outbox
        assert writer.outbox.pending_items > 0
        server.start()
        await task
        assert await writer.flush(10)
        check = Redis.from_url(server.url)
        try:
            # Empty: the replay tail (30 s here) re-sends even what the lost data held.
            assert await numbers(check) == list(range(300))
        finally:
            await check.aclose()
        assert writer.outbox.lost_segments == 0
    finally:
        await writer.close()
        server.stop()


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_a_frozen_redis_bounds_the_write_buffer_and_loses_nothing(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    high = 512 * 1024
    writer = RespWriter(server.url, stall_seconds=1.0, write_buffer_high=high)
    await writer.connect()
    try:
        task = asyncio.create_task(produce(writer, 200, every=0.01, size=64 * 1024, health_every=5))
        await asyncio.sleep(0.3)
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGSTOP)  # takes connections, reads nothing
        try:
            await asyncio.sleep(2.5)
            assert writer.outbox.pending_items > 0
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        await task
        assert await writer.flush(15)
        check = Redis.from_url(server.url)
        try:
            assert await numbers(check) == list(range(200))
        finally:
            await check.aclose()
        # The socket's buffer stopped at the limit, plus what the write that passed it held
        # (a part, or a replay chunk of a quarter of the limit).
        assert 0 < writer.max_write_buffer <= high + high // 4 + 64 * 1024
        assert writer.outages >= 1  # no answer for 1 s: dropped and made again
    finally:
        await writer.close()
        server.stop()


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_a_sentinel_naming_a_replica_is_not_believed(tmp_path: Path) -> None:
    """A sentinel's answer can be stale mid-failover: ROLE is checked before any write."""
    server = RedisServer(tmp_path)
    server.start()
    admin = sync_redis.Redis(port=server.port)
    admin.replicaof("127.0.0.1", 1)  # a replica (of nothing reachable)
    admin.close()

    async def sentinel(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Whatever is asked, it names the replica as the primary.
        await reader.read(1024)
        port = str(server.port).encode()
        writer.write(b"*2\r\n$9\r\n127.0.0.1\r\n$%d\r\n%s\r\n" % (len(port), port))
        await writer.drain()
        writer.close()

    fake = await asyncio.start_server(sentinel, "127.0.0.1", 0)
    writer = RespWriter(f"redis+sentinel://127.0.0.1:{fake.sockets[0].getsockname()[1]}/m/0")
    try:
        with pytest.raises(ConnectionError, match="is not the primary"):
            await writer.connect()
        assert not writer.connected
        assert writer.publish([(xadd(0), ("r", 0))]) is False  # held, for the real primary
        assert writer.outbox.pending_items == 1
    finally:
        await writer.close()
        fake.close()
        await fake.wait_closed()
        server.stop()


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_an_acl_user_without_info_or_client_id_still_writes(redis_url: str) -> None:
    admin = Redis.from_url(redis_url)
    await admin.acl_setuser(
        "packager",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        commands=["+@all", "-info", "-client|id", "-client|kill"],
    )
    writer = RespWriter(redis_url.replace("redis://", "redis://packager:pw@"))
    try:
        await writer.connect()
        writer.publish([(xadd(1), ("r", 0))], replies=False)
        assert await writer.flush(5)
        assert await numbers(admin) == [1]
    finally:
        await writer.close()
        await admin.acl_deluser("packager")
        await admin.aclose()
