"""A lean, pipelined Redis writer for the packager's hot path.

Ten times a second per rendition the packager appends a part (XADD). Through redis-py
each command costs a task switch, a pool checkout, a retry wrapper and a reply parser,
which profiled as most of the packager's CPU; the packager never needs the reply beyond
"it was not an error". So parts go out on one dedicated connection as raw RESP, written
without awaiting (in order, which a connection pool does not promise), and replies are
only counted and checked for errors. Everything else (health, cleanup) uses redis-py.

Nothing is lost when Redis goes away (issue 9). Ordered commands (parts, inits, archived
segments) go through an :class:`~cascade.transcoder.outbox.Outbox`: written at once
while connected, held in order while Redis is unreachable or too slow (the socket's write
buffer passed ``WRITE_BUFFER_HIGH``), and replayed after a reconnect, without duplicating
what Redis has (see the outbox). State commands (health, meta, the re-asserted stream set)
are not held: only their latest value matters, and the health loop sends it again every
interval. A connection is (re)made to the address the URL gives, or, for
``redis+sentinel://``, to the primary the sentinels name at that moment, checked with
``ROLE`` before anything is written to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from cascade.contract.redisurl import RedisServerUrl, SentinelUrl, parse_redis_url
from cascade.transcoder.outbox import Arg, Outbox, Segment

log = logging.getLogger("cascade.transcoder.resp")

__all__ = [
    "Arg",
    "ErrorReply",
    "RedisReplyError",
    "ReplyReader",
    "RespWriter",
    "Segment",
    "encode_command",
    "parse_reply",
]

# The socket's write buffer may hold this much before new parts wait in the outbox: a slow
# Redis costs bounded memory and a part that waits is still dropped by whole segments.
# Above an archived segment's size (a few MB at 20 Mbit/s), so that is not a pause.
WRITE_BUFFER_HIGH = 16 * 1024 * 1024
# A replay is written in chunks of at most this size (and a quarter of the write buffer's
# limit), so flow control can pause it between them: the buffer never passes limit + chunk.
DRAIN_CHUNK_BYTES = 1024 * 1024
# Connect and handshake limits, and the retry delay (doubling up to the last) after a
# failed attempt: a failover is found within the last delay of the primary's promotion.
CONNECT_TIMEOUT_SECONDS = 2.0
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.25)
# Answers that mean "this server takes no writes now": the connection is dropped and made
# again (to the promoted replica, or once loading is done) before anything is confirmed.
_NOT_WRITABLE = ("READONLY", "LOADING", "MASTERDOWN")


def encode_command(args: Sequence[Arg]) -> bytes:
    """One command in RESP2: ``*N`` then each argument as a bulk string. Pure."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        # Inlined, not arg_bytes(): a call per argument is a third of the hot path's cost.
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
class ErrorReply:
    message: str


Reply = bytes | int | None | ErrorReply | list["Reply"]


def parse_reply(buf: bytes | bytearray, pos: int = 0) -> tuple[Reply, int] | None:
    """The RESP2 reply starting at ``pos`` and where it ends, or None if incomplete. Pure.

    Only the handshake reads values (ROLE, a sentinel's answer, a stream's last entry);
    the hot path counts replies with :class:`ReplyReader` and builds nothing.
    """
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    kind, line = buf[pos : pos + 1], bytes(buf[pos + 1 : nl])
    after = nl + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return ErrorReply(line.decode(errors="replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        n = int(line)
        if n < 0:
            return None, after
        if len(buf) < after + n + 2:
            return None
        return bytes(buf[after : after + n]), after + n + 2
    if kind == b"*":
        n = int(line)
        if n < 0:
            return None, after
        items: list[Reply] = []
        for _ in range(n):
            got = parse_reply(buf, after)
            if got is None:
                return None
            value, after = got
            items.append(value)
        return items, after
    raise ValueError(f"not a RESP2 reply: {bytes(buf[pos : pos + 16])!r}")


class RedisReplyError(ConnectionError):
    """A handshake step was refused (wrong password, not the primary, still loading)."""


_REPLY_ON = encode_command(["CLIENT", "REPLY", "ON"])
_REPLY_OFF = encode_command(["CLIENT", "REPLY", "OFF"])


class _Protocol(asyncio.Protocol):
    """One connection: parses values during the handshake, then only counts replies."""

    def __init__(self, on_replies: Callable[[_Protocol, list[str]], None]) -> None:
        self.on_replies = on_replies
        self.on_lost: Callable[[], None] = lambda: None
        self.on_pause: Callable[[bool], None] = lambda paused: None
        self.reader = ReplyReader()
        # Handshake mode: parsed values for call(); None once the connection carries parts.
        self.values: list[Reply] | None = []
        self._buf = bytearray()
        self._want = 0
        self._waiter: asyncio.Future[None] | None = None
        self.lost = False

    def data_received(self, data: bytes) -> None:
        if self.values is not None:
            self._buf += data
            while (got := parse_reply(self._buf)) is not None:
                value, end = got
                del self._buf[:end]
                self.values.append(value)
            waiter = self._waiter
            if waiter is not None and len(self.values) >= self._want and not waiter.done():
                waiter.set_result(None)
            return
        errors_before = len(self.reader.errors)
        self.reader.feed(data)
        errors = self.reader.errors[errors_before:]
        del self.reader.errors[:]
        self.on_replies(self, errors)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("redis closed the connection"))
        self.on_lost()

    def pause_writing(self) -> None:
        self.on_pause(True)

    def resume_writing(self) -> None:
        self.on_pause(False)

    async def call(
        self, transport: asyncio.Transport, commands: Sequence[Sequence[Arg]], within: float
    ) -> list[Reply]:
        """Send commands and wait for all their replies (handshake mode only)."""
        assert self.values is not None
        start = len(self.values)
        self._want = start + len(commands)
        self._waiter = asyncio.get_running_loop().create_future()
        transport.write(b"".join(encode_command(c) for c in commands))
        if len(self.values) < self._want:
            await asyncio.wait_for(self._waiter, within)
        self._waiter = None
        return self.values[start : self._want]


async def _open(host: str, port: int, protocol: _Protocol, within: float) -> asyncio.Transport:
    loop = asyncio.get_running_loop()
    transport, _ = await asyncio.wait_for(
        loop.create_connection(lambda: protocol, host, port), within
    )
    # With uvloop this is not an asyncio.Transport subclass, but it behaves alike.
    return transport


def _auth(username: str | None, password: str | None) -> list[list[Arg]]:
    if password is None:
        return []
    return [["AUTH", username, password] if username else ["AUTH", password]]


def _run_id(info: Reply) -> str:
    """The server process's ``run_id`` from ``INFO server`` (changes on every restart)."""
    if isinstance(info, bytes):
        for line in info.decode(errors="replace").splitlines():
            if line.startswith("run_id:"):
                return line[len("run_id:") :].strip()
    return ""


def _stream_tail(reply: Reply) -> list[bytes] | None:
    """The fields of the one entry ``XREVRANGE key + - COUNT 1`` returned, if any."""
    if not isinstance(reply, list) or not reply:
        return None
    entry = reply[0]
    if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
        return None
    return [f for f in entry[1] if isinstance(f, bytes)]


class RespWriter:
    """One connection, commands written in order without waiting; reconnects by itself."""

    def __init__(
        self,
        url: str,
        *,
        buffer_seconds: float = 30.0,
        buffer_bytes: int = 128 * 1024 * 1024,
        replay_seconds: float = 5.0,
        stall_seconds: float = 10.0,
        write_buffer_high: int = WRITE_BUFFER_HIGH,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        location = parse_redis_url(url)
        if isinstance(location, RedisServerUrl) and location.tls:
            raise ValueError("the packager writes to redis:// or redis+sentinel:// URLs only")
        self.location = location
        self._sentinels = list(location.sentinels) if isinstance(location, SentinelUrl) else []
        self.outbox = Outbox(
            max_bytes=buffer_bytes, max_seconds=buffer_seconds, retain_seconds=replay_seconds
        )
        self.stall_seconds = stall_seconds
        self.write_buffer_high = write_buffer_high
        self.clock = clock
        self.name = name
        self.reader = ReplyReader()
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False
        self._up = asyncio.Event()  # set while a connection carries parts
        self._paused = False
        self._paused_at = 0.0
        self.sent = 0  # replies due on this connection
        self._replies_on = True
        # (replies due when it is answered, last item seq it confirms, when it was written)
        self._marks: deque[tuple[int, int, float]] = deque()
        self.skipped_state = 0  # state commands not sent (not connected, or parts waiting)
        self.address: tuple[str, int] | None = None  # where the connection goes
        # (host, port, server run_id, client id) of the last connection that carried parts
        self._client: tuple[str, int, str, int] | None = None
        self.down_since: float | None = None  # when the last connection was lost
        self.outages = 0
        self.max_write_buffer = 0  # the largest write buffer seen (a test reads it)

    @property
    def connected(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    # ---- connecting ---------------------------------------------------------------------

    async def start(self, wait: float = CONNECT_TIMEOUT_SECONDS) -> bool:
        """Connect in the background (retrying until closed); True if up within ``wait``."""
        self._reconnect_soon()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), wait)
        return self.connected

    async def connect(self) -> None:
        """One attempt: find the primary, handshake, sync with what Redis has, drain."""
        if self._transport is not None:
            return
        host, port = await self._resolve()
        loc = self.location
        protocol = _Protocol(self._on_replies)
        transport = await _open(host, port, protocol, CONNECT_TIMEOUT_SECONDS)
        try:
            hello: list[list[Arg]] = _auth(loc.username, loc.password)
            if loc.db:
                hello.append(["SELECT", loc.db])
            # ROLE: the sentinels' answer may be stale (a failover under way). PING: a
            # restarted Redis still loading its dump refuses writes with -LOADING, which
            # replies-off appends would never show.
            sentinel = isinstance(loc, SentinelUrl)
            checks: list[list[Arg]] = [["PING"], ["ROLE"]] if sentinel else [["PING"]]
            # Who this connection is (to close it from the next one): optional, so an ACL
            # user without CLIENT ID or INFO still writes.
            checks += [["CLIENT", "ID"], ["INFO", "server"]]
            replies = await protocol.call(transport, [*hello, *checks], CONNECT_TIMEOUT_SECONDS)
            for reply in replies[: len(hello) + 1]:  # AUTH, SELECT, PING: must succeed
                if isinstance(reply, ErrorReply):
                    raise RedisReplyError(f"{host}:{port}: {reply.message}")
            if sentinel:
                role = replies[len(hello) + 1]
                if isinstance(role, ErrorReply) and role.message.startswith("NOPERM"):
                    # Unverifiable for this ACL user: a demoted server still answers
                    # READONLY to the first health report, which drops the connection.
                    log.debug("%sROLE not permitted: %s", self._prefix(), role.message)
                elif not isinstance(role, list) or not role or role[0] != b"master":
                    what = role[0] if isinstance(role, list) and role else role
                    raise RedisReplyError(f"{host}:{port} is not the primary (ROLE {what!r})")
            client_id, info = replies[-2], replies[-1]
            here = (host, port, _run_id(info), client_id if isinstance(client_id, int) else -1)
            sync: list[list[Arg]] = []
            previous = self._client
            if previous is not None and previous[3] >= 0 and previous[:3] == here[:3] and here[2]:
                # The same server process as the connection given up on (it stopped
                # answering, or refused writes): its unread commands could still run after
                # the tails below were read, adding entries twice. Closed first, it cannot.
                sync.append(["CLIENT", "KILL", "ID", previous[3]])
            kills = len(sync)
            streams = self.outbox.streams_to_check()
            sync += [["XREVRANGE", s, "+", "-", "COUNT", 1] for s in streams]
            replies = await protocol.call(transport, sync, CONNECT_TIMEOUT_SECONDS)
            for reply in replies[kills:]:  # a refused CLIENT KILL only loses the guard
                if isinstance(reply, ErrorReply):
                    raise RedisReplyError(f"{host}:{port}: {reply.message}")
            found = {
                s: _stream_tail(r)
                for s, r in zip(streams, replies[len(replies) - len(streams) :], strict=True)
            }
            if protocol.lost or self._closed:
                raise ConnectionError(f"{host}:{port}: closed during the handshake")
        except BaseException:
            transport.abort()
            raise
        if self.connected:  # another attempt got there first
            transport.abort()
            return
        skipped = self.outbox.skip_delivered(found)
        protocol.values = None  # from here on, replies are only counted
        protocol.on_lost = lambda: self._lost(transport)
        protocol.on_pause = lambda paused: self._on_pause(transport, paused)
        transport.set_write_buffer_limits(
            high=self.write_buffer_high, low=self.write_buffer_high // 4
        )
        self.reader, self.sent, self._replies_on = protocol.reader, 0, True
        self._marks.clear()
        self._paused = False
        self._transport = transport
        self._client = here
        self._up.set()
        self.address = (host, port)
        if self.down_since is not None:
            log.warning(
                "%sredis back at %s:%d after %.1f s: %d commands (%d bytes) to write, "
                "%d already there; %d segments lost so far",
                self._prefix(),
                host,
                port,
                self.clock() - self.down_since,
                self.outbox.pending_items,
                self.outbox.pending_bytes,
                skipped,
                self.outbox.lost_segments,
            )
            self.down_since = None
        self._drain()

    async def _resolve(self) -> tuple[str, int]:
        """The address to write to: fixed, or the primary the sentinels name now."""
        loc = self.location
        if isinstance(loc, RedisServerUrl):
            return loc.host, loc.port
        hello = _auth(loc.sentinel_username, loc.sentinel_password)
        errors: list[str] = []
        for i, (host, port) in enumerate(list(self._sentinels)):
            protocol = _Protocol(lambda _p, _e: None)
            try:
                transport = await _open(host, port, protocol, CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError) as exc:
                errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
                continue
            try:
                replies = await protocol.call(
                    transport,
                    [*hello, ["SENTINEL", "get-master-addr-by-name", loc.master]],
                    CONNECT_TIMEOUT_SECONDS,
                )
            except (OSError, TimeoutError) as exc:
                errors.append(f"{host}:{port}: {exc or type(exc).__name__}")
                continue
            finally:
                transport.close()
            answer = replies[-1]
            if isinstance(answer, list) and len(answer) == 2 and isinstance(answer[0], bytes):
                if i:  # the sentinel that answered is asked first next time
                    self._sentinels.insert(0, self._sentinels.pop(i))
                return answer[0].decode(), int(cast(bytes, answer[1]))
            errors.append(f"{host}:{port}: {answer!r}")
        raise ConnectionError(
            f"no sentinel gave the primary of {loc.master!r}: " + "; ".join(errors)
        )

    def _reconnect_soon(self) -> None:
        if self._closed or (self._connecting is not None and not self._connecting.done()):
            return
        self._connecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closed and self._transport is None:
            try:
                await self.connect()
                return
            except (OSError, TimeoutError, ValueError) as exc:  # ValueError: not RESP
                if attempt == 0:
                    log.warning("%sredis not reachable: %s; retrying", self._prefix(), exc)
            await asyncio.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
            attempt += 1

    def _lost(self, transport: asyncio.Transport) -> None:
        if self._transport is not transport:
            return
        self._transport = None
        self._up.clear()
        self._paused = False
        self._marks.clear()
        self.outbox.disconnected()
        self.down_since = self.clock()
        self.outages += 1
        log.warning(
            "%sredis connection lost; holding parts for up to %g s / %d bytes",
            self._prefix(),
            self.outbox.max_seconds,
            self.outbox.max_bytes,
        )
        self._reconnect_soon()

    def _abandon(self, transport: asyncio.Transport, why: str) -> None:
        """Drop a connection that takes no writes; its unconfirmed parts are replayed."""
        log.warning("%sdropping the redis connection: %s", self._prefix(), why)
        self._lost(transport)
        transport.abort()

    def _on_pause(self, transport: asyncio.Transport, paused: bool) -> None:
        if self._transport is not transport:
            return
        self._paused = paused
        if paused:
            self._paused_at = self.clock()
            size = transport.get_write_buffer_size()
            self.max_write_buffer = max(self.max_write_buffer, size)
        else:
            self._drain()

    def _on_replies(self, protocol: _Protocol, errors: list[str]) -> None:
        for message in errors:
            log.warning("%sredis refused a packager command: %s", self._prefix(), message)
        transport = self._transport
        if transport is None:
            return
        if any(m.startswith(_NOT_WRITABLE) for m in errors):
            # Before confirming anything: writes around this answer were refused too.
            self._abandon(transport, errors[0])
            return
        marks = self._marks
        if marks and marks[0][0] <= self.reader.replies:
            seq = -1
            while marks and marks[0][0] <= self.reader.replies:
                seq = marks.popleft()[1]
            self.outbox.confirm(seq, self.clock())

    # ---- writing ------------------------------------------------------------------------

    def publish(
        self,
        commands: Sequence[tuple[Sequence[Arg], Segment | None]],
        *,
        replies: bool = True,
        state: Sequence[Sequence[Arg]] = (),
    ) -> bool:
        """Ordered commands (each with the segment it belongs to), then state commands.

        Written now, in one write, when connected and nothing older waits (True); else the
        ordered ones are held in order for the next connection and the state ones skipped.

        ``replies=False`` is for the part appends, ten a second per rendition: Redis is
        told not to answer them (``CLIENT REPLY OFF``), which saves the process a wake-up
        per part. The next command sent with replies turns them back on, so errors still
        surface with every health report, and its answer confirms the parts before it.
        """
        now = self.clock()
        outbox = self.outbox
        items = [
            outbox.item(encode_command(c), now, seg, str(c[1]) if c[0] == "XADD" else None)
            for c, seg in commands
        ]
        transport = self._transport
        if transport is not None and not self._paused and outbox.pending_items == 0:
            out = [i.data for i in items]
            if state:
                out += [encode_command(c) for c in state]
                replies = True
            self._write(transport, out, replies)
            outbox.wrote(items, now)
            if replies:
                self._marks.append((self.sent, outbox.last_written_seq, now))
            return True
        lost = outbox.queue(items, now)
        if lost:
            self._report_lost(lost)
        self.skipped_state += len(state)
        if transport is None:
            self._reconnect_soon()
        return False

    def send_state(self, *commands: Sequence[Arg]) -> bool:
        """Commands whose latest value is all that matters (health): sent now or skipped.

        Skipped while parts wait to be written, so they never overtake a part.
        """
        now = self.clock()
        transport = self._transport
        if transport is not None:
            self._check_stall(transport, now)
            transport = self._transport
        if transport is None or self._paused or self.outbox.pending_items:
            self.skipped_state += len(commands)
            if transport is None:
                self._reconnect_soon()
            return False
        self._write(transport, [encode_command(c) for c in commands], True)
        self._marks.append((self.sent, self.outbox.last_written_seq, now))
        return True

    def _write(self, transport: asyncio.Transport, out: list[bytes], replies: bool) -> None:
        n = len(out)
        if replies != self._replies_on:
            if replies:
                out.insert(0, _REPLY_ON)
                self.sent += 1  # "+OK"
            else:
                out.insert(0, _REPLY_OFF)  # answers nothing, not even itself
            self._replies_on = replies
        if replies:
            self.sent += n
        transport.write(b"".join(out))

    def _drain(self) -> None:
        """Write what waits, oldest first, until done or the socket's buffer is full."""
        while (transport := self._transport) is not None and not self._paused:
            items = self.outbox.take(min(DRAIN_CHUNK_BYTES, self.write_buffer_high // 4))
            if not items:
                return
            # With replies: the replay's answers confirm it as it lands.
            self._write(transport, [i.data for i in items], True)
            now = self.clock()
            self.outbox.wrote(items, now)
            self._marks.append((self.sent, self.outbox.last_written_seq, now))

    def _check_stall(self, transport: asyncio.Transport, now: float) -> None:
        """A connection that stopped answering (a frozen Redis, a peer gone without a FIN)."""
        waited = now - self._marks[0][2] if self._marks else 0.0
        if self._paused:
            waited = max(waited, now - self._paused_at)
        if waited > self.stall_seconds:
            self._abandon(transport, f"no answer for {waited:.1f} s")

    def _report_lost(self, lost: list[Segment]) -> None:
        first = self.outbox.lost_segments == len(lost)
        level = logging.WARNING if first or self.outbox.lost_segments % 20 == 0 else logging.DEBUG
        log.log(
            level,
            "%sredis away too long: dropped segment(s) %s, the oldest held (%d lost in all; "
            "budget %g s / %d bytes)",
            self._prefix(),
            ", ".join(f"{r}/{msn}" for r, msn in lost),
            self.outbox.lost_segments,
            self.outbox.max_seconds,
            self.outbox.max_bytes,
        )

    def _prefix(self) -> str:
        return f"stream {self.name}: " if self.name else ""

    async def flush(self, seconds: float) -> bool:
        """Wait until Redis confirmed everything (True), or ``seconds`` passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not (self.connected and self.outbox.settled):
            if loop.time() > deadline:
                return False
            if self.connected and not self._marks and not self.outbox.settled:
                self.send_state(["PING"])  # something to answer, confirming what is before it
            await asyncio.sleep(0.005)
        return True

    async def close(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self.outbox.pending_items:
            log.warning(
                "%sclosing with %d commands never written to redis",
                self._prefix(),
                self.outbox.pending_items,
            )
