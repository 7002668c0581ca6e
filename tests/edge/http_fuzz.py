"""Fuzz cases for the edge's HTTP server: seeded generators, a raw client, the invariants.

Shared by the fast suite (``tests/edge/test_fuzz.py``, a few seconds) and the long run
before a release (``bench/edge_fuzz.py``). Standard library only, loopback only.

A case is the bytes one hostile or broken client writes on one connection (mutated
LL-HLS URLs, malformed request lines, huge or numerous headers, bodies that lie about
their length, pipelines, writes split anywhere) and how it leaves: it reads until the
edge closes, half-closes first, or drops the connection. The invariants, whatever the
bytes: no 5xx (but the 503 LL-HLS prescribes for a blocking request whose part did not
arrive in time), answers that parse back to back (a HEAD's has no body, nothing
interleaved), and the edge ends the connection within its own limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

STREAM, RENDITION = "cam1", "360p"  # the stream the fuzz plays (``stream=`` for another)
# "...the server SHOULD return 503 if the Playlist is not updated within three times the
# Target Duration" (RFC 8216bis 6.2.5.2): the only 5xx a client may make the edge send.
BLOCKING_TIMEOUT_503 = re.compile(rb"did not arrive in time")
ENDINGS = ("read", "half_close", "drop")


@dataclass(frozen=True, slots=True)
class Case:
    kind: str
    writes: tuple[bytes, ...]  # written in order, ``pause`` seconds apart
    pause: float = 0.0
    ending: str = "read"  # read until the edge closes | half_close, then read | drop
    # For a case of valid requests only: the body each answer must have, in request
    # order (None: any). Checks the order of pipelined answers and HEAD's empty bodies.
    expect: tuple[bytes | None, ...] = ()


Expected = Callable[[str, str], bytes | None]  # (method, target) -> the answer's body


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes


@dataclass(slots=True)
class Outcome:
    case: Case
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0  # from the client's last write to the edge's close
    closed_by_edge: bool = False
    reset: bool = False  # closed with a reset: answers may have been destroyed
    garbage: bytes = b""  # bytes that are not a well-formed answer


# ---- generators ---------------------------------------------------------------------------


def rendition_path(stream: str) -> str:
    return f"/live/{stream}/{RENDITION}"


def _live_urls(stream: str, msn: int, part: int) -> list[str]:
    """Valid LL-HLS URLs around the live edge (msn.part is the newest part)."""
    base = rendition_path(stream)
    return [
        f"/live/{stream}.m3u8",
        f"{base}/index.m3u8",
        f"{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part + 1}",
        f"{base}/index.m3u8?_HLS_msn={msn + 1}&_HLS_part=0&_HLS_skip=YES",
        f"{base}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}&hls_ctx=abcdefghijklmnop",
        f"{base}/{msn}.{part}.m4s",
        f"{base}/{msn}.{part + 1}.m4s",
        f"{base}/{max(0, msn - 2)}.m4s",
        f"{base}/init.mp4",
        f"{base}/init-0.mp4",
        "/livez",
        "/health",
        "/watch/cam1",
        "/static/watch.js",
    ]


_NOISE = [
    "%00", "%2F", "%2e%2e", "%ff", "%", "%zz", "..", "/", "//", "?", "&", "=", "+", "#", ";",
    "\u00e9", "-1", "00", "99999999999999999999999", "0x10", " ", "\t", "*", "@", "\\",
]  # fmt: skip


_NUMBERS = ["0", "-1", "18446744073709551617", "1e9", "", "007"]


def mutate_url(rng: random.Random, url: str) -> str:
    """A few edits: insert noise, replace a number, delete a span, repeat a span, add a
    query parameter."""
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randint(0, len(url))
        if op == 0:
            url = url[:at] + rng.choice(_NOISE) + url[at:]
        elif op == 1:
            number = rng.choice([*_NUMBERS, str(rng.randint(0, 40))])
            url = re.sub(r"\d+", number, url, count=1)
        elif op == 2:
            url = url[:at] + url[rng.randint(at, min(len(url), at + 8)) :]
        elif op == 3:
            span = url[at : rng.randint(at, min(len(url), at + 16))]
            url = url[:at] + span * rng.randint(2, 50) + url[at:]
        else:
            url += rng.choice(_PARAMS) + "x" * rng.randint(0, 40)
    return url


_PARAMS = ["&_HLS_msn=1", "&_HLS_part=2", "&_HLS_skip=v2", "&hls_ctx=", "?a=", "&&", "&="]


def _request(method: str, target: str, headers: list[tuple[str, str]], version: str,
             body: bytes = b"", eol: str = "\r\n") -> bytes:  # fmt: skip
    lines = [f"{method} {target} {version}".rstrip()] + [f"{k}: {v}" for k, v in headers]
    return (eol.join(lines) + eol + eol).encode("utf-8", "surrogateescape") + body


def _normal_headers(rng: random.Random) -> list[tuple[str, str]]:
    headers = [("Host", "edge")]
    if rng.random() < 0.3:
        headers.append(("Origin", rng.choice(["https://player.example", "null", "*"])))
    if rng.random() < 0.3:
        headers.append(("User-Agent", "fuzz/" + "x" * rng.randint(0, 200)))
    return headers


def _one_request(
    rng: random.Random,
    msn: int,
    part: int,
    *,
    max_header_bytes: int,
    small: bool,
    valid: bool = False,
    stream: str = STREAM,
) -> tuple[str, bytes, tuple[str, str]]:
    """One request, maybe broken: the kind, its bytes, and what it asks (method, target).

    ``small``: none of the big ones (for the requests of a long pipeline); ``valid``: a
    well-formed one."""
    url = rng.choice(_live_urls(stream, msn, part))
    method = rng.choices(["GET", "HEAD", "OPTIONS", "POST"], [8, 3, 1, 1])[0]
    version = "HTTP/1.1"
    headers = _normal_headers(rng)
    body = b""
    kind = "valid" if valid else rng.choices(
        ["valid", "url", "request_line", "many_headers", "huge_header", "bad_header",
         "body", "version"],
        [20 if small else 4, 6, 3, 0 if small else 2, 0 if small else 2, 3, 0 if small else 2, 2],
    )[0]  # fmt: skip
    eol = "\r\n"
    if kind == "url":
        url = mutate_url(rng, url)
    elif kind == "request_line":
        choice = rng.randrange(7)
        if choice == 0:
            method = rng.choice(["get", "G ET", "GETT", "", "PRI", "CONNECT", "X" * 5000])
        elif choice == 1 and not small:
            url = "/live/" + "a" * rng.choice([8000, 8300, 70_000])
        elif choice == 2:
            version = ""  # HTTP/0.9
        elif choice == 3:
            eol = rng.choice(["\n", "\r", "\r\r\n"])
        elif choice == 4:
            url = url.replace("/", " ", 1)
        elif choice == 5:
            data = b"\r\n" * rng.randint(1, 50) + _request(method, url, headers, version)
            return kind, data, (method, url)
        else:
            return kind, bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), ("", "")
    elif kind == "version":
        version = rng.choice(["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/9.9",
                              "HTTP/1.1 x", "HTTP/1.", "HTTP /1.1", "http/1.1"])  # fmt: skip
    elif kind == "many_headers":
        n = rng.choice([50, 99, 100, 101, 1000, 20_000])
        headers += [(f"X-{i}", "v") for i in range(n)]
    elif kind == "huge_header":
        size = rng.choice([8000, 31_000, 33_000, max_header_bytes])
        headers.append(("X-Big", "v" * size))
    elif kind == "bad_header":
        headers.append(rng.choice([
            ("X Bad", "1"), ("X-Nul", "a\x00b"), ("", "empty name"), ("Content-Length", "-1"),
            ("Content-Length", "5, 6"), ("Transfer-Encoding", "chunked, identity"),
            ("Connection", "close"), ("Connection", "Upgrade"), ("Upgrade", "h2c"),
            ("Expect", "100-continue"), ("X-Fold", "a\r\n b"), ("Host", "a\rb"),
        ]))  # fmt: skip
    elif kind == "body":
        method = "POST"
        if rng.random() < 0.5:
            declared = rng.choice([0, 5, 100, 2_000_000])
            headers.append(("Content-Length", str(declared)))
            body = b"x" * rng.choice([0, 5, 50, min(declared, 1 << 16)])
        else:
            headers.append(("Transfer-Encoding", "chunked"))
            body = rng.choice([b"5\r\nhello\r\n0\r\n\r\n", b"zz\r\n", b"5\r\nhel", b"0\r\n\r\n"])
    return kind, _request(method, url, headers, version, body, eol), (method, url)


def make_case(
    rng: random.Random,
    msn: int,
    part: int,
    *,
    max_header_bytes: int = 1 << 20,
    expected: Expected | None = None,
    stream: str = STREAM,
) -> Case:
    """One connection's worth: one request or a pipeline, written whole or split.

    ``msn``/``part``: the newest part when the fuzz starts (the URLs are built around it).
    """
    count = rng.choices([1, 2, 5, 50, 300], [10, 4, 2, 1, 1])[0]
    valid = rng.random() < 0.15  # a well-behaved pipeline: its answers' order is checked
    kinds, parts, asked = [], [], []
    for _ in range(count):
        kind, data, what = _one_request(
            rng, msn, part, max_header_bytes=max_header_bytes, small=count > 5, valid=valid,
            stream=stream,
        )  # fmt: skip
        kinds.append(kind)
        parts.append(data)
        asked.append(what)
    wire = b"".join(parts)
    if not valid and rng.random() < 0.2:
        wire = wire[: rng.randint(0, len(wire))]  # cut short
        kinds.append("cut")
    split = rng.random() * (0.85 if valid else 1.0)  # never slowloris when valid
    pause = 0.0
    if split < 0.6 or len(wire) > 1 << 16:
        writes: tuple[bytes, ...] = (wire,)
    elif split < 0.85:
        cuts = sorted(rng.randint(0, len(wire)) for _ in range(rng.randint(1, 8)))
        writes = tuple(wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True))
        pause = 0.0 if valid else rng.choice([0.0, 0.01, 0.05])
    else:  # slowloris: a few bytes at a time, and never the whole request
        step = rng.randint(1, 8)
        writes = tuple(wire[i : i + step] for i in range(0, min(len(wire), 40), step))
        pause = 0.02
        kinds.append("slow")
    ending = rng.choices(ENDINGS, [6, 3, 1])[0]
    name = "+".join(sorted(set(kinds))) + (f" x{count}" if count > 1 else "")
    expect: tuple[bytes | None, ...] = ()
    # Not with pauses: a slow enough client gets its 408, rightly, whatever it asked.
    if expected is not None and set(kinds) == {"valid"} and not pause:
        expect = tuple(b"" if m == "HEAD" else expected(m, url) for m, url in asked)
    return Case(name, writes, pause, ending, expect)


# ---- the client ---------------------------------------------------------------------------


async def run_case(host: str, port: int, case: Case, *, wait: float) -> Outcome:
    """Play ``case`` on a new connection; read until the edge closes or ``wait`` passes.

    The client reads while it writes, as HTTP clients do: an answer that arrives while a
    slow or huge request is still being sent is read at once, so a reset that comes after
    it (the edge closing on a client that goes on sending) destroys nothing.
    """
    out = Outcome(case)
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    received = bytearray()

    async def read() -> None:
        try:
            while chunk := await reader.read(1 << 16):
                received.extend(chunk)
        except ConnectionError:
            out.reset = True
        out.closed_by_edge = True

    reading = asyncio.ensure_future(read())
    try:
        for i, data in enumerate(case.writes):
            if i and case.pause:
                await asyncio.sleep(case.pause)
            if writer.transport.is_closing() or reading.done():
                break  # the edge has ended it already (a refusal, a timeout)
            writer.write(data)
        # The clock starts once the client has said all it will say.
        start = time.monotonic()
        if case.ending == "drop":
            return out
        if case.ending == "half_close" and not writer.transport.is_closing():
            # uvloop raises RuntimeError on a transport the edge's close has just shut.
            with contextlib.suppress(RuntimeError, OSError):
                writer.write_eof()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reading), wait)
        out.seconds = time.monotonic() - start
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
        writer.transport.abort()
    out.answers, out.garbage = parse_answers(bytes(received))
    return out


_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def parse_answers(data: bytes) -> tuple[list[Answer], bytes]:
    """The answers in ``data``, back to back, and what is left that is not one.

    A HEAD's answer has a Content-Length and no body: when the bytes after a head are
    another status line rather than the announced body, the body is taken as absent.
    """
    answers = []
    pos = 0
    while pos < len(data):
        m = _STATUS.match(data, pos)
        end = data.find(b"\r\n\r\n", pos)
        if m is None or end < 0:
            break
        head = data[pos:end].decode("latin-1").lower()
        body_at = end + 4
        length = re.search(r"\ncontent-length: *(\d+)", head)
        if length is not None:
            n = int(length.group(1))
            at_next = body_at + n == len(data) or _STATUS.match(data, body_at + n)
            if not at_next and _STATUS.match(data, body_at):
                n = 0  # a HEAD's answer, followed by the next one
            answers.append(Answer(int(m.group(1)), data[body_at : body_at + n]))
            pos = body_at + n
        elif "\ntransfer-encoding: chunked" in head:
            body, pos = _chunked(data, body_at)
            if pos < 0:
                return answers, data[body_at:]
            answers.append(Answer(int(m.group(1)), body))
        else:
            answers.append(Answer(int(m.group(1)), b""))
            pos = body_at
    return answers, data[pos:]


def _chunked(data: bytes, pos: int) -> tuple[bytes, int]:
    body = bytearray()
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return b"", -1
        size = int(data[pos:eol], 16)
        pos = eol + 2
        if size == 0:
            return bytes(body), pos + 2
        body += data[pos : pos + size]
        pos += size + 2


# ---- the invariants -----------------------------------------------------------------------


def violations(out: Outcome, *, bound: float) -> list[str]:
    """What is wrong with how the edge treated this case (empty: nothing)."""
    problems = []
    for a in out.answers:
        if a.status >= 500 and not (a.status == 503 and BLOCKING_TIMEOUT_503.search(a.body)):
            problems.append(f"{a.status} {a.body[:120]!r}")
    if out.garbage:
        problems.append(f"unparsable answer bytes {out.garbage[:120]!r}")
    if out.case.expect and out.case.ending != "drop":
        if len(out.answers) != len(out.case.expect):
            problems.append(f"{len(out.answers)} answers to {len(out.case.expect)} requests")
        for i, (a, body) in enumerate(zip(out.answers, out.case.expect, strict=False)):
            if body is not None and a.body != body:
                problems.append(f"answer {i} out of order or wrong: {a.status} {a.body[:60]!r}")
    if out.reset and not out.answers:
        # A reset before any answer could be read (the client reads as it writes: a reset
        # after its answer, on a client that goes on sending, destroys nothing).
        problems.append("reset by the edge (a lingering close lets the client read first)")
    if out.case.ending != "drop" and not out.closed_by_edge:
        problems.append(f"connection still open after {out.seconds:.2f} s")
    elif out.seconds > bound:
        problems.append(f"closed after {out.seconds:.2f} s, beyond the limits ({bound:.2f} s)")
    return problems


def case_bound(*, header_timeout: float, keep_alive: float, blocking: float) -> float:
    """The longest the edge may keep a fuzz case's connection: a held request (the
    blocking timeout), then the header or keep-alive timeout; one second of slack."""
    return blocking + max(header_timeout, keep_alive) + 1.0


# ---- a viewer beside the fuzz -------------------------------------------------------------

_HINT = re.compile(rb'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"')


@dataclass(slots=True)
class ViewerLog:
    # Seconds to get a part once the playlist announced it (a blocking reload's wait for
    # the next part is the stream's pace, not the edge's delay).
    part_latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Keep-alive connections the edge closed while the viewer was idle (its own loop
    # starved by the fuzzers beside it): a client opens a new one and asks again, as
    # "a client ... MAY retry" an idempotent request on it (RFC 9112 9.3.1).
    reconnects: int = 0
    hint: tuple[int, int] | None = None  # the part the last playlist hinted


async def viewer(
    host: str,
    port: int,
    stop: asyncio.Event,
    check_part: Callable[[int, int, bytes], bool],
    log: ViewerLog,
    stream: str = STREAM,
) -> None:
    """A player on one keep-alive connection: blocking reload for the hinted part, then the
    part, as hls.js does; every answer must be right and prompt."""
    base = rendition_path(stream)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        hint = None
        while not stop.is_set():
            try:
                await _play_one(reader, writer, base, hint, check_part, log)
            except _IdleClosedError:
                writer.transport.abort()
                log.reconnects += 1
                reader, writer = await asyncio.open_connection(host, port)
                hint = None
                continue
            hint = log.hint
    except (ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
        log.errors.append(f"viewer connection: {exc!r}")
    finally:
        writer.transport.abort()


class _IdleClosedError(Exception):
    """The edge closed the keep-alive connection before any byte of the answer."""


async def _play_one(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    base: str,
    hint: tuple[int, int] | None,
    check_part: Callable[[int, int, bytes], bool],
    log: ViewerLog,
) -> None:
    """One round: the (blocking) playlist reload, then the hinted part; sets ``log.hint``."""
    query = f"?_HLS_msn={hint[0]}&_HLS_part={hint[1]}" if hint else ""
    status, body, _ = await _get(reader, writer, f"{base}/index.m3u8{query}")
    m = _HINT.search(body)
    if status != 200 or m is None:
        log.errors.append(f"playlist {status} {body[:100]!r}")
        log.hint = None
        return
    got = hint or (int(m.group(1)), int(m.group(2)))
    if hint is not None:
        status, part, seconds = await _get(reader, writer, f"{base}/{got[0]}.{got[1]}.m4s")
        log.part_latencies.append(seconds)
        if status != 200 or not check_part(got[0], got[1], part):
            log.errors.append(f"part {got} {status} {part[:60]!r}")
    log.hint = (int(m.group(1)), int(m.group(2)))


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes, float]:
    start = time.monotonic()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
    async with asyncio.timeout(5):
        try:
            first = await reader.readuntil(b"\r\n")
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            if not getattr(exc, "partial", b""):  # closed before any byte of the answer
                raise _IdleClosedError from exc
            raise
        status = int(first.split()[1])
        length = 0
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
    return status, body, time.monotonic() - start


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
