"""Recordings as HLS VOD: grouping the stored segments and rendering playlists. Pure.

The object store's listing of a rendition (:mod:`cascade.contract.recording`: names in
program date-time order) is all a playlist needs:

* a *recording* is a run of segments with no gap over ``gap`` seconds; its id is the
  start of its first segment in Unix milliseconds (:func:`recordings`);
* its media playlist is a VOD playlist (RFC 8216bis 4.4.3.5: "EXT-X-PLAYLIST-TYPE:VOD
  ... the Media Playlist cannot change", and 4.4.3.4 EXT-X-ENDLIST: "no more Media
  Segments will be added"), every segment named with its EXTINF duration;
* a new generation (the transcoder started again), another init, or a hole in media time
  is an ``EXT-X-DISCONTINUITY`` ("a discontinuity between the Media Segment that follows
  it and the one that preceded it", 4.4.4.3), with ``EXT-X-MAP`` again when the init
  changed and the ``EXT-X-PROGRAM-DATE-TIME`` of the segment after it, so a player's
  clock stays the wall clock of capture;
* a time range is the segments that overlap it (:func:`in_range`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cascade.contract.recording import SegmentName
from cascade.hls.tags.map import render_map
from cascade.hls.tags.primitives import format_pdt
from cascade.hls.tags.segment import render_extinf, render_pdt

__all__ = ["Recording", "in_range", "recordings", "render_vod_playlist"]

# Media time between two segments' ends and starts under this is not a hole (rounding of
# durations to the microsecond, of dates to the millisecond).
CONTIGUOUS_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Recording:
    segments: tuple[SegmentName, ...]

    @property
    def id(self) -> str:
        return str(self.segments[0].start_ms)

    @property
    def start(self) -> float:
        return self.segments[0].start

    @property
    def end(self) -> float:
        return self.segments[-1].end

    @property
    def media_seconds(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def discontinuities(self) -> int:
        return sum(
            1 for a, b in zip(self.segments, self.segments[1:], strict=False) if _breaks(a, b)
        )

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "start": format_pdt(self.start),
            "end": format_pdt(self.end),
            "duration": round(self.media_seconds, 3),
            "segments": len(self.segments),
            "discontinuities": self.discontinuities,
        }


def _breaks(a: SegmentName, b: SegmentName) -> bool:
    return (
        a.generation != b.generation
        or a.init != b.init
        or abs(b.start - a.end) > CONTIGUOUS_SECONDS
    )


def recordings(segments: Sequence[SegmentName], *, gap: float) -> list[Recording]:
    """Segments (in name order) split where media time stops for longer than ``gap``."""
    out: list[Recording] = []
    run: list[SegmentName] = []
    for seg in segments:
        if run and seg.start - run[-1].end > gap:
            out.append(Recording(tuple(run)))
            run = []
        run.append(seg)
    if run:
        out.append(Recording(tuple(run)))
    return out


def in_range(segments: Sequence[SegmentName], start: float, end: float) -> list[SegmentName]:
    """The segments with any media in ``[start, end)``."""
    return [s for s in segments if s.end > start and s.start < end]


def render_vod_playlist(
    segments: Sequence[SegmentName],
    *,
    segment_uri: Callable[[SegmentName], str],
    init_uri: Callable[[str], str],
) -> str:
    """The VOD media playlist of ``segments`` (at least one, in time order)."""
    if not segments:
        raise ValueError("a VOD playlist needs at least one segment")
    target = max(1, math.ceil(max(s.duration for s in segments) - 1e-6))
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    previous: SegmentName | None = None
    for seg in segments:
        if previous is None or _breaks(previous, seg):
            if previous is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            if previous is None or previous.init != seg.init:
                lines.append(render_map(init_uri(seg.init + ".mp4")))
            lines.append(render_pdt(seg.start))
        lines.append(render_extinf(seg.duration))
        lines.append(segment_uri(seg))
        previous = seg
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
