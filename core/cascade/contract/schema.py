"""The Redis contract between transcoders (writers) and edges (readers).

Everything live and shared sits in Redis; nothing else is shared between pods.

* ``cascade:streams`` - set of stream names with a running packager.
* ``cascade:stream:{s}:meta`` - hash: the stream's renditions, timing and state.
* ``cascade:stream:{s}:health`` - hash: the transcoder's health, with a TTL.
* ``cascade:stream:{s}:r:{r}:init`` - the rendition's current init segment (ftyp+moov).
* ``cascade:stream:{s}:r:{r}:parts`` - Redis Stream, one entry per part (and per
  init change or end of stream), trimmed to about the live window. Edges ``XREAD
  BLOCK`` it, so every replica sees every part once, in order, and catches up with
  ``XRANGE`` after a reconnect.
* ``cascade:stream:{s}:r:{r}:seg:{msn}`` - one complete segment's bytes, written by the
  packager when the segment completes, with a TTL (``archive_seconds``): what an edge
  serves, through its byte cache, for requests older than the in-memory live window.

Viewer sessions (written in batches by every edge; only random ids and Unix times, never
an IP address, user agent or anything else about the viewer):

* ``cascade:viewers:{s}`` - sorted set, viewer id -> last request (Unix seconds).
* ``cascade:viewers`` - sorted set, viewer id -> last request on any stream (the total).
* ``cascade:viewed`` - sorted set, stream -> last request of any viewer (which streams to count).
* ``cascade:viewer:{v}:grant:{s}`` - the expiry (Unix seconds) of the signed-URL grant a
  session inherited, with a TTL up to that expiry.

On-demand streams (``activation: OnDemand``: no transcoder until a viewer asks):

* ``cascade:ondemand`` - set of the on-demand stream names, kept by whoever starts
  transcoders (the operator, or ``cascade up``); an edge asked for a stream it does not
  have looks here to tell "starting" (503 + Retry-After) from "no such stream" (404).
* ``cascade:demand`` - sorted set, stream -> last time (Unix seconds) a viewer asked for
  an on-demand stream that had no transcoder; written by the edges, read by the starter.

Encoding and decoding of entries are pure functions here, used by both sides.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Final

PREFIX: Final = "cascade"
STREAMS_SET: Final = f"{PREFIX}:streams"


def meta_key(stream: str) -> str:
    return f"{PREFIX}:stream:{stream}:meta"


def health_key(stream: str) -> str:
    return f"{PREFIX}:stream:{stream}:health"


def init_key(stream: str, rendition: str) -> str:
    return f"{PREFIX}:stream:{stream}:r:{rendition}:init"


def parts_key(stream: str, rendition: str) -> str:
    return f"{PREFIX}:stream:{stream}:r:{rendition}:parts"


def archive_segment_key(stream: str, rendition: str, msn: int) -> str:
    """One complete segment kept past the live window (matched by ``stream_key_pattern``)."""
    return f"{PREFIX}:stream:{stream}:r:{rendition}:seg:{msn}"


def archive_ttl_seconds(archive_seconds: float, segment_target: float, window_segments: int) -> int:
    """The TTL of an archived segment: the live window plus the archive time, whole seconds.

    Written when the segment completes, so it outlives its stay in the in-memory window by
    ``archive_seconds``.
    """
    return max(1, math.ceil(segment_target * window_segments + archive_seconds))


VIEWERS_ALL: Final = f"{PREFIX}:viewers"
VIEWED_STREAMS: Final = f"{PREFIX}:viewed"
VIEWERS_PREFIX: Final = f"{PREFIX}:viewers:"
ON_DEMAND_STREAMS: Final = f"{PREFIX}:ondemand"
DEMAND: Final = f"{PREFIX}:demand"


def viewers_key(stream: str) -> str:
    """Sorted set of one stream's viewers: session id -> last request (Unix seconds)."""
    return f"{VIEWERS_PREFIX}{stream}"


def viewer_grant_key(viewer: str, stream: str) -> str:
    """The grant expiry a session inherited from a signed URL of ``stream``."""
    return f"{PREFIX}:viewer:{viewer}:grant:{stream}"


def stream_key_pattern(stream: str) -> str:
    """Every key of one stream (for cleanup with SCAN MATCH)."""
    return f"{PREFIX}:stream:{stream}:*"


class StreamState(StrEnum):
    STARTING = "starting"  # packager up, no part yet
    LIVE = "live"  # parts flowing
    RECONNECTING = "reconnecting"  # input dropped, FFmpeg restarting with backoff
    IDLE = "idle"  # no input for idleTimeoutSeconds
    ENDED = "ended"  # clean end of stream


@dataclass(frozen=True, slots=True)
class RenditionInfo:
    """What a multivariant playlist needs to describe one rendition."""

    name: str
    bandwidth: int  # peak bits/s, video + audio, as EXT-X-STREAM-INF BANDWIDTH
    codecs: str  # RFC 6381, e.g. "avc1.64001f,mp4a.40.2"
    width: int
    height: int
    frame_rate: float


@dataclass(frozen=True, slots=True)
class StreamMeta:
    renditions: tuple[RenditionInfo, ...]
    part_target: float  # seconds
    segment_target: float  # seconds (the configured segment duration)
    window_segments: int
    state: StreamState
    generation: int  # raised on each FFmpeg (re)start
    access: str = "public"

    def encode(self) -> dict[str, str]:
        return {
            "renditions": json.dumps([asdict(r) for r in self.renditions]),
            "part_target": repr(self.part_target),
            "segment_target": repr(self.segment_target),
            "window_segments": str(self.window_segments),
            "state": self.state.value,
            "generation": str(self.generation),
            "access": self.access,
        }

    @classmethod
    def decode(cls, raw: dict[bytes, bytes] | dict[str, str]) -> StreamMeta:
        d = {_s(k): _s(v) for k, v in raw.items()}
        return cls(
            renditions=tuple(RenditionInfo(**r) for r in json.loads(d["renditions"])),
            part_target=float(d["part_target"]),
            segment_target=float(d["segment_target"]),
            window_segments=int(d["window_segments"]),
            state=StreamState(d["state"]),
            generation=int(d["generation"]),
            access=d.get("access", "public"),
        )


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EntryKind(StrEnum):
    PART = "part"
    INIT = "init"  # a new init segment: the next part follows a discontinuity
    END = "end"  # clean end of stream: the playlist gets EXT-X-ENDLIST


@dataclass(frozen=True, slots=True)
class PartEntry:
    """One LL-HLS part as published: segment number, part index, timing and bytes."""

    msn: int
    part: int
    duration: float  # seconds
    independent: bool
    pdt: float  # program date-time of the part's first sample, Unix seconds
    data: bytes
    discontinuity: bool = False  # first part after a timing break (only meaningful when part == 0)
    generation: int = 0


@dataclass(frozen=True, slots=True)
class InitEntry:
    data: bytes
    generation: int


@dataclass(frozen=True, slots=True)
class EndEntry:
    generation: int = 0


Entry = PartEntry | InitEntry | EndEntry


def encode_entry(entry: Entry) -> dict[str, bytes | str]:
    if isinstance(entry, PartEntry):
        return {
            "k": EntryKind.PART.value,
            "msn": str(entry.msn),
            "part": str(entry.part),
            "dur": f"{entry.duration:.6f}",
            "ind": "1" if entry.independent else "0",
            "pdt": f"{entry.pdt:.6f}",
            "disc": "1" if entry.discontinuity else "0",
            "gen": str(entry.generation),
            "data": entry.data,
        }
    if isinstance(entry, InitEntry):
        return {"k": EntryKind.INIT.value, "gen": str(entry.generation), "data": entry.data}
    return {"k": EntryKind.END.value, "gen": str(entry.generation)}


class SchemaError(ValueError):
    """A stream entry that does not follow the contract (a peer's bug, never a crash)."""


def decode_entry(fields: dict[bytes, bytes]) -> Entry:
    try:
        kind = EntryKind(fields[b"k"].decode())
        gen = int(fields.get(b"gen", b"0"))
        if kind is EntryKind.PART:
            return PartEntry(
                msn=int(fields[b"msn"]),
                part=int(fields[b"part"]),
                duration=float(fields[b"dur"]),
                independent=fields[b"ind"] == b"1",
                pdt=float(fields[b"pdt"]),
                discontinuity=fields.get(b"disc") == b"1",
                generation=gen,
                data=fields[b"data"],
            )
        if kind is EntryKind.INIT:
            return InitEntry(data=fields[b"data"], generation=gen)
        return EndEntry(generation=gen)
    except (KeyError, ValueError) as exc:
        raise SchemaError(f"malformed stream entry: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class Health:
    """The transcoder's health, as the operator's status and the edge's /status show it."""

    state: StreamState
    input_bitrate_kbps: float = 0.0
    fps: float = 0.0
    speed: float = 0.0
    last_part_at: float = 0.0  # Unix seconds of the last published part (0: none yet)
    restarts: int = 0
    last_error: str = ""
    reason: str = ""  # CamelCase reason for the state, e.g. "InputSilent"
    updated_at: float = 0.0
    # Segments the transcoder dropped, whole and oldest first, because Redis was away
    # longer than its outage buffer holds (since it started; 0: nothing lost).
    lost_segments: int = 0
    # Bytes of parts waiting for Redis right now (after an outage, or a slow Redis).
    redis_backlog_bytes: int = 0
    # The recording, as this transcoder process wrote it to the object store: bytes
    # written, bytes waiting (a slow or unreachable store), segments dropped past the
    # backlog, and the program date-times (Unix s) of the oldest and newest written.
    recording: bool = False
    recording_bytes: int = 0
    recording_backlog_bytes: int = 0
    recording_lost_segments: int = 0
    recording_oldest: float = 0.0
    recording_newest: float = 0.0

    def encode(self) -> dict[str, str]:
        return {
            "state": self.state.value,
            "input_bitrate_kbps": f"{self.input_bitrate_kbps:.1f}",
            "fps": f"{self.fps:.2f}",
            "speed": f"{self.speed:.3f}",
            "last_part_at": f"{self.last_part_at:.3f}",
            "restarts": str(self.restarts),
            "last_error": self.last_error,
            "reason": self.reason,
            "updated_at": f"{self.updated_at:.3f}",
            "lost_segments": str(self.lost_segments),
            "redis_backlog_bytes": str(self.redis_backlog_bytes),
            "recording": "1" if self.recording else "0",
            "recording_bytes": str(self.recording_bytes),
            "recording_backlog_bytes": str(self.recording_backlog_bytes),
            "recording_lost_segments": str(self.recording_lost_segments),
            "recording_oldest": f"{self.recording_oldest:.3f}",
            "recording_newest": f"{self.recording_newest:.3f}",
        }

    @classmethod
    def decode(cls, raw: dict[bytes, bytes] | dict[str, str]) -> Health:
        d = {_s(k): _s(v) for k, v in raw.items()}
        return cls(
            state=StreamState(d.get("state", "starting")),
            input_bitrate_kbps=float(d.get("input_bitrate_kbps", 0)),
            fps=float(d.get("fps", 0)),
            speed=float(d.get("speed", 0)),
            last_part_at=float(d.get("last_part_at", 0)),
            restarts=int(d.get("restarts", 0)),
            last_error=d.get("last_error", ""),
            reason=d.get("reason", ""),
            updated_at=float(d.get("updated_at", 0)),
            lost_segments=int(d.get("lost_segments", 0)),
            redis_backlog_bytes=int(d.get("redis_backlog_bytes", 0)),
            recording=d.get("recording", "0") == "1",
            recording_bytes=int(d.get("recording_bytes", 0)),
            recording_backlog_bytes=int(d.get("recording_backlog_bytes", 0)),
            recording_lost_segments=int(d.get("recording_lost_segments", 0)),
            recording_oldest=float(d.get("recording_oldest", 0)),
            recording_newest=float(d.get("recording_newest", 0)),
        )
