"""A real edge (Cascade's own server) on loopback with a real Redis and a published stream,
and a raw HTTP/1.1 client that writes exactly the bytes a test gives it.

httpx cannot send what these tests send (a 64 MiB header, two requests in one write, an
HTTP/0.9 request line, half a request head), so the tests talk to the socket directly and
parse the answers here. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.schema import Health, PartEntry, RenditionInfo, StreamMeta, StreamState
from cascade.contract.settings import EdgeSettings
from cascade.edge.app import create_server
from cascade.edge.server import EdgeServer

from ..conftest import free_port

STREAM = "cam1"
RENDITION = "360p"
BASE = f"/live/{STREAM}/{RENDITION}"
# Published before the test starts: segments 0-10 (5 parts each) and parts 11.0, 11.1;
# a blocking reload for 11.2 (the preload hint) is held until a test publishes it.
LAST_MSN, LAST_PART = 11, 1
HELD_RELOAD = f"{BASE}/index.m3u8?_HLS_msn=11&_HLS_part=2"
HELD_PART = f"{BASE}/11.2.m4s"
PART_PATH = f"{BASE}/3.0.m4s"
INIT_PATH = f"{BASE}/init.mp4"


def part_body(msn: int, index: int) -> bytes:
    return f"{RENDITION}:{msn}.{index};".encode()


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class LiveEdge:
    port: int
    redis: Redis
    server: EdgeServer

    async def publish_part(self, msn: int, index: int) -> None:
        entry = PartEntry(msn, index, 0.1, index == 0, 1.8e9 + msn * 0.5 + index * 0.1,
                          part_body(msn, index))  # fmt: skip
        await self.redis.xadd(
            schema.parts_key(STREAM, RENDITION),
            schema.encode_entry(entry),  # type: ignore[arg-type]
        )

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        # A large reader limit: responses are read whole, headers included.
        return await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 22)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        reader, writer = await self.connect()
        try:
            yield reader, writer
        finally:
            await close(writer)

    async def get(self, path: str, *, within: float = 5.0) -> Response:
        """One ``GET`` on a fresh connection, as a viewer beside the hostile client."""
        async with self.connection() as (reader, writer):
            writer.write(request(path))
            return await asyncio.wait_for(read_response(reader), within)


def request(path: str, method: str = "GET", headers: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: edge\r\n{headers}\r\n".encode()


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    """One HTTP/1.1 response: Content-Length or chunked bodies (``head``: no body follows)."""
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if head:
        return Response(status, headers, b"")
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
        return Response(status, headers, body)
    return Response(status, headers, await reader.readexactly(int(headers["content-length"])))


async def read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes (an RST after the answer counts as the end)."""
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(1 << 16):
            chunks.append(chunk)
    return b"".join(chunks)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def announce(redis: Redis) -> None:
    info = RenditionInfo(RENDITION, 510_400, "avc1.64001e,mp4a.40.2", 640, 360, 30.0)
    meta = StreamMeta((info,), 0.1, 0.5, 24, StreamState.LIVE, 0)
    await redis.hset(schema.meta_key(STREAM), mapping=meta.encode())  # type: ignore[arg-type]
    health = Health(StreamState.LIVE, input_bitrate_kbps=5000.0, fps=30.0, reason="Ingesting")
    await redis.hset(schema.health_key(STREAM), mapping=health.encode())  # type: ignore[arg-type]
    await redis.set(schema.init_key(STREAM, RENDITION), b"init-" + RENDITION.encode())
    await redis.sadd(schema.STREAMS_SET, STREAM)


@asynccontextmanager
async def live_edge(redis_url: str, **settings: Any) -> AsyncIterator[LiveEdge]:
    """Cascade's server on a free loopback port, following a stream with parts up to 11.1.

    ``settings`` override :class:`EdgeSettings` fields (short limits for the tests).
    """
    redis = Redis.from_url(redis_url)
    await announce(redis)
    config = EdgeSettings(
        redis_url=redis_url,
        port=free_port(),
        stream_poll_seconds=0.05,
        blocking_timeout_factor=0.6,
        **settings,
    )
    server = create_server(config)
    await server.start("127.0.0.1", config.port)
    edge = LiveEdge(config.port, redis, server)
    try:
        for msn in range(LAST_MSN + 1):
            for i in range(5 if msn < LAST_MSN else LAST_PART + 1):
                await edge.publish_part(msn, i)
        await _wait_for(edge, f"{BASE}/{LAST_MSN}.{LAST_PART}.m4s")
        yield edge
    finally:
        await server.stop(grace=1)
        await redis.aclose()


async def _wait_for(edge: LiveEdge, path: str) -> None:
    """The edge follows Redis on its own schedule: wait (bounded) until it serves ``path``."""
    for _ in range(250):
        if (await edge.get(path)).status == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")
