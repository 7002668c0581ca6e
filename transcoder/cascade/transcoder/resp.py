"""A lean, pipelined Redis writer for the packager's hot path.

Ten times a second per rendition the packager appends a part (XADD). Through redis-py
each command costs a task switch, a pool checkout, a retry wrapper and a reply parser,
which profiled as most of the packager's CPU; the packager never needs the reply beyond
"it was not an error". So parts go out on one dedicated connection as raw RESP, written
without awaiting (in order, which a connection pool does not promise), and replies are
only counted and checked for errors. Everything else (health, cleanup) uses redis-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import unquote, urlparse

log = logging.getLogger("cascade.transcoder.resp")

Arg = bytes | str | int


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command in RESP2: ``*N`` then each argument as a bulk string. Pure."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n" % len(data))
        out.append(data)
        out.append(b"\r\n")
    return b"".join(out)


class ReplyReader:
    """Counts complete RESP2 replies in a byte stream and collects error replies. Pure."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.replies = 0
        self.errors: list[str] = []

    def feed(self, data: bytes) -> int:
        """Returns how many replies completed with this data."""
        self._buf += data
        done = 0
        pos = 0
        while True:
            end = self._skip(pos)
            if end is None:
                break
            pos = end
            done += 1
        del self._buf[:pos]
        self.replies += done
        return done

    def _skip(self, pos: int) -> int | None:
        """End offset of the reply starting at ``pos``, or None if it is incomplete."""
        buf = self._buf
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return None
        kind, line = bytes(buf[pos : pos + 1]), bytes(buf[pos + 1 : nl])
        after = nl + 2
        if kind in (b"+", b":"):
            return after
        if kind == b"-":
            self.errors.append(line.decode(errors="replace"))
            return after
        if kind == b"$":
            n = int(line)
            if n < 0:
                return after
            return after + n + 2 if len(buf) >= after + n + 2 else None
        if kind == b"*":
            n = int(line)
            for _ in range(max(n, 0)):
                nxt = self._skip(after)
                if nxt is None:
                    return None
                after = nxt
            return after
        raise ValueError(f"not a RESP2 reply: {bytes(buf[pos : pos + 16])!r}")


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    db: int
    username: str | None
    password: str | None


def parse_redis_url(url: str) -> Target:
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        raise ValueError(f"the packager writes to redis:// URLs only, not {parsed.scheme}://")
    db = int(parsed.path.lstrip("/") or 0)
    return Target(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 6379,
        db=db,
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
    )


_REPLY_ON = encode_command(["CLIENT", "REPLY", "ON"])
_REPLY_OFF = encode_command(["CLIENT", "REPLY", "OFF"])


class _Protocol(asyncio.Protocol):
    def __init__(self, reader: ReplyReader, on_lost: Callable[[], None]) -> None:
        self.reader = reader
        self.on_lost = on_lost

    def data_received(self, data: bytes) -> None:
        errors_before = len(self.reader.errors)
        self.reader.feed(data)
        for message in self.reader.errors[errors_before:]:
            log.warning("redis refused a packager command: %s", message)
        del self.reader.errors[:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()


class RespWriter:
    """One connection, commands written in order without waiting; reconnects by itself."""

    def __init__(self, url: str) -> None:
        self.target = parse_redis_url(url)
        self.reader = ReplyReader()
        self._transport: asyncio.BaseTransport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.sent = 0  # commands written that Redis answers, hello commands included
        self._replies_on = True
        self.dropped = 0  # commands not sent while disconnected

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def connect(self) -> None:
        t = self.target
        loop = asyncio.get_running_loop()
        reader = ReplyReader()  # replies of an earlier connection will never come
        protocol = _Protocol(reader, lambda: None)
        transport, _ = await loop.create_connection(lambda: protocol, t.host, t.port)
        protocol.on_lost = lambda: self._lost(transport)
        hello: list[bytes] = []
        if t.password is not None:
            auth: list[Arg] = (
                ["AUTH", t.username, t.password] if t.username else ["AUTH", t.password]
            )
            hello.append(encode_command(auth))
        if t.db:
            hello.append(encode_command(["SELECT", t.db]))
        if hello:
            transport.write(b"".join(hello))
        self.reader, self.sent = reader, len(hello)
        self._replies_on = True
        self._transport = transport

    def _lost(self, transport: asyncio.BaseTransport) -> None:
        if self._transport is transport:
            self._transport = None

    def send(self, *commands: Sequence[Arg], replies: bool = True) -> bool:
        """Write commands now, in order; False (and a reconnect starts) when disconnected.

        ``replies=False`` is for the part appends, ten a second per rendition: Redis is
        told not to answer them (``CLIENT REPLY OFF``), which saves the process a wake-up
        per part. The next command sent with replies turns them back on, so errors still
        surface with every health report.
        """
        if not self.connected:
            self.dropped += len(commands)
            self._reconnect_soon()
            return False
        out = [encode_command(c) for c in commands]
        if replies != self._replies_on:
            if replies:
                out.insert(0, _REPLY_ON)
                self.sent += 1  # "+OK"
            else:
                out.insert(0, _REPLY_OFF)  # answers nothing, not even itself
            self._replies_on = replies
        if replies:
            self.sent += len(commands)
        # uvloop's transports are not asyncio.WriteTransport subclasses, but write alike.
        cast(asyncio.WriteTransport, self._transport).write(b"".join(out))
        return True

    def _reconnect_soon(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            return

        async def again() -> None:
            with contextlib.suppress(OSError):
                await self.connect()

        self._connecting = asyncio.get_running_loop().create_task(again())

    async def flush(self, seconds: float) -> bool:
        """Wait until Redis answered everything sent (True), or ``seconds`` passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.connected and self.reader.replies < self.sent:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return self.connected

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._transport is not None:
            self._transport.close()
            self._transport = None
