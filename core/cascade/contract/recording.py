"""Where recordings live in the object store: the key layout transcoders write and edges read.

One object per complete segment and one per distinct init segment, under the store's
prefix (``CASCADE_S3_PREFIX``, default ``recordings/``)::

    {prefix}{stream}/{rendition}/init/{sha256[:16]}.mp4
    {prefix}{stream}/{rendition}/seg/{start_ms:013}_{msn:010}_{generation:06}_{duration_us:09}_{init}.m4s

* Segments are named by their program date-time first (Unix milliseconds, zero-padded),
  so the store's lexical order (ListObjectsV2 returns keys in it) is time order: a time
  range is one listing that starts after ``seg/{from_ms}``, and the media playlist of a
  recording is built from the listing alone, without an index object that every upload
  would have to rewrite. Time keeps its order when a transcoder starts again, and even
  when Redis was lost and segment numbers start from 0 again.
* The name also carries what the playlist needs: the segment number and generation (a
  new generation is an ``EXT-X-DISCONTINUITY``), the duration, and the init it decodes
  with (``EXT-X-MAP``).
* Inits are content-addressed: every run writes the same init while its encoder settings
  stay the same, and a changed one never overwrites the one older segments need.
* Objects are written once and never changed, so any cache may keep them forever, and a
  retry after a timeout writes the same bytes again.

A *recording* is a run of segments without a gap longer than ``gap_seconds``: a
transcoder restart (a new generation, a few seconds) continues the same recording after
a discontinuity; a stream that stopped for longer starts a new one. Its id is the start
time of its first segment in Unix milliseconds.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cascade.contract.spec import is_valid_name

__all__ = [
    "INIT_NAME_RE",
    "SEGMENT_NAME_RE",
    "SegmentName",
    "init_key",
    "init_name",
    "rendition_prefix",
    "segment_key",
    "segments_prefix",
    "stream_prefix",
]

SEGMENT_NAME_RE = re.compile(r"(\d{13})_(\d{10})_(\d{6})_(\d{9})_([0-9a-f]{16})\.m4s")
INIT_NAME_RE = re.compile(r"[0-9a-f]{16}\.mp4")


def init_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16] + ".mp4"


@dataclass(frozen=True, slots=True, order=True)
class SegmentName:
    """What a segment's object name says (ordered like the names: by time first)."""

    start_ms: int  # program date-time of its first frame, Unix milliseconds
    msn: int
    generation: int
    duration_us: int
    init: str  # the init's name without ".mp4"

    @property
    def name(self) -> str:
        return (
            f"{self.start_ms:013d}_{self.msn:010d}_{self.generation:06d}_"
            f"{self.duration_us:09d}_{self.init}.m4s"
        )

    @property
    def start(self) -> float:
        return self.start_ms / 1000

    @property
    def duration(self) -> float:
        return self.duration_us / 1_000_000

    @property
    def end(self) -> float:
        return self.start + self.duration

    @classmethod
    def parse(cls, name: str) -> SegmentName | None:
        """The name's fields, or None for a name this layout does not write."""
        m = SEGMENT_NAME_RE.fullmatch(name)
        if m is None:
            return None
        return cls(int(m[1]), int(m[2]), int(m[3]), int(m[4]), m[5])


def stream_prefix(prefix: str, stream: str) -> str:
    if not is_valid_name(stream):
        raise ValueError(f"not a stream name: {stream!r}")
    return f"{prefix}{stream}/"


def rendition_prefix(prefix: str, stream: str, rendition: str) -> str:
    return f"{stream_prefix(prefix, stream)}{rendition}/"


def segments_prefix(prefix: str, stream: str, rendition: str) -> str:
    return f"{rendition_prefix(prefix, stream, rendition)}seg/"


def segment_key(prefix: str, stream: str, rendition: str, segment: SegmentName) -> str:
    return f"{segments_prefix(prefix, stream, rendition)}{segment.name}"


def init_key(prefix: str, stream: str, rendition: str, name: str) -> str:
    return f"{rendition_prefix(prefix, stream, rendition)}init/{name}"
