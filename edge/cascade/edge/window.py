"""The edge's in-memory live window of one rendition, and the decisions made on it.

Pure: entries from the Redis stream go in (:meth:`RenditionWindow.apply`), playlists
and bytes come out. The Redis follower (``hub``) and the HTTP layer (``app``) are thin
shells around this module, so the LL-HLS rules here are tested without either. The
numbers they rest on (advance limits, PART-HOLD-BACK, CAN-SKIP-UNTIL, the target
duration) are :mod:`cascade.hls.limits`, which the rule checker uses too.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from cascade.contract.schema import EndEntry, Entry, InitEntry, PartEntry, RenditionInfo
from cascade.hls.limits import (
    beyond_advance_limit,
    max_blocking_msn,
    min_can_skip_until,
    next_parts,
    recommended_part_hold_back,
    target_duration,
)
from cascade.hls.playlist import MediaPlaylist, Part, RenditionReport, Segment


@dataclass(slots=True)
class WindowPart:
    index: int
    duration: float
    independent: bool
    data: bytes


@dataclass(slots=True)
class WindowSegment:
    msn: int
    pdt: float
    generation: int
    discontinuity: bool
    parts: list[WindowPart] = field(default_factory=list)
    complete: bool = False

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)

    @property
    def data(self) -> bytes:
        return b"".join(p.data for p in self.parts)


@dataclass(frozen=True, slots=True)
class Position:
    """The newest part: (segment number, part index)."""

    msn: int
    part: int


class Wait(Enum):
    READY = "ready"  # what was asked for exists: answer now
    BLOCK = "block"  # within the advance limits: hold the request
    TOO_FAR = "too_far"  # beyond the limits: 400 (playlists) or 404 (parts)
    GONE = "gone"  # older than the window


class RenditionWindow:
    """Segments of one rendition, oldest first; the last one may still be growing."""

    def __init__(self, name: str, *, max_segments: int) -> None:
        self.name = name
        self.max_segments = max_segments
        self.segments: deque[WindowSegment] = deque()
        # Segments a msn jump took out of the playlist (see ``_restart_at``): no longer
        # listed, still served, so a URI a player was given just before the jump answers.
        self.retired: deque[WindowSegment] = deque()
        self.inits: dict[int, bytes] = {}
        self.ended = False
        self.discontinuity_sequence = 0  # discontinuities that slid out of the window
        self.version = 0  # raised on every change: held requests and the render cache compare it

    # ---- input ------------------------------------------------------------------------

    def apply(self, entry: Entry) -> None:
        """One entry of the rendition's Redis stream, in stream order.

        Entries already applied may come again (the hub reads a stream again from its
        start after Redis restarted): parts are known by their msn, and an init or end of
        a generation older than the newest segment's is a replay too (a generation's init
        comes before its parts, an end after them).
        """
        self.version += 1
        newest = self.segments[-1].generation if self.segments else -1
        if isinstance(entry, InitEntry):
            if entry.generation > newest:
                self.inits[entry.generation] = entry.data
                self.ended = False
            return
        if isinstance(entry, EndEntry):
            if entry.generation >= newest:
                if self.segments:
                    self.segments[-1].complete = True
                self.ended = True
            return
        self._apply_part(entry)

    def _apply_part(self, p: PartEntry) -> None:
        last = self.segments[-1] if self.segments else None
        if last is not None and p.msn == last.msn and not last.complete:
            if p.part != len(last.parts):
                return  # duplicate or out of order (a replayed entry): already have it
            last.parts.append(WindowPart(p.part, p.duration, p.independent, p.data))
            return
        if last is not None and p.msn <= last.msn:
            return  # an entry we already applied (catch-up overlap)
        if p.part != 0:
            return  # joined mid-segment: wait for the next segment start
        jump = last is not None and p.msn != last.msn + 1
        if last is not None:
            last.complete = True
        if jump:
            self._restart_at()
        self.ended = False
        self.segments.append(
            WindowSegment(
                msn=p.msn,
                pdt=p.pdt,
                generation=p.generation,
                # After a jump the media before it is gone: "The EXT-X-DISCONTINUITY tag
                # MUST be present if there is a change in ... timestamp sequence" (RFC
                # 8216bis 4.4.4.3), and a player that played the old window needs it.
                discontinuity=(p.discontinuity and last is not None) or jump,
                parts=[WindowPart(0, p.duration, p.independent, p.data)],
            )
        )
        while len(self.segments) > self.max_segments:
            self._remove_first()
        # The retired segments age out as the new window grows, as if they still slid.
        while self.retired and len(self.segments) + len(self.retired) > self.max_segments:
            self.retired.popleft()
        live_gens = {s.generation for s in self.segments} | {s.generation for s in self.retired}
        newest = max(self.inits, default=None)
        for gen in [g for g in self.inits if g not in live_gens and g != newest]:
            del self.inits[gen]

    def _remove_first(self) -> WindowSegment:
        gone = self.segments.popleft()
        if gone.discontinuity:
            # "If the server removes a Media Segment from the Playlist that has an
            # EXT-X-DISCONTINUITY tag, the server MUST increment the value of the
            # EXT-X-DISCONTINUITY-SEQUENCE tag" (RFC 8216bis 6.2.1). Not before: while
            # the tagged segment is first, its tag still counts (hls.js checks this).
            self.discontinuity_sequence += 1
        return gone

    def _restart_at(self) -> None:
        """A part starts a segment that does not follow the last one: entries were lost
        (published while this edge could not read them, then trimmed or never stored).

        "The Media Sequence Number of every other Media Segment is equal to the Media
        Sequence Number of the Media Segment that precedes it plus one" (RFC 8216bis 3):
        the numbers are implicit, so a playlist cannot list 186 then 218. Renumbering is
        no way out either: every replica must give a part the same number. So the window
        starts afresh at the new segment, which carries EXT-X-DISCONTINUITY; the old
        segments leave the playlist at once (counted into the discontinuity sequence as
        the RFC asks) but are kept in ``retired`` and still served: a player fetching a
        part it was just given gets it, and a held request for a part that can never come
        is told so (it is older than the window) instead of waiting for its 503.
        """
        retired: deque[WindowSegment] = deque()
        while self.segments:
            retired.append(self._remove_first())
        self.retired = retired

    # ---- queries ----------------------------------------------------------------------

    @property
    def position(self) -> Position | None:
        if not self.segments:
            return None
        last = self.segments[-1]
        return Position(last.msn, len(last.parts) - 1)

    def segment(self, msn: int) -> WindowSegment | None:
        """Segment ``msn`` of the playlist (complete or growing), else None."""
        return _find(self.segments, msn)

    def servable_segment(self, msn: int) -> WindowSegment | None:
        """Complete segment ``msn`` to serve: listed, or retired by a jump."""
        seg = _find(self.segments, msn) or _find(self.retired, msn)
        return seg if seg is not None and seg.complete else None

    def part(self, msn: int, index: int) -> WindowPart | None:
        """Part ``index`` of segment ``msn``: listed, or retired by a jump."""
        seg = _find(self.segments, msn) or _find(self.retired, msn)
        if seg is None or not 0 <= index < len(seg.parts):
            return None
        return seg.parts[index]

    def init(self, generation: int | None = None) -> bytes | None:
        if generation is None:
            return self.inits[max(self.inits)] if self.inits else None
        return self.inits.get(generation)

    def has(self, msn: int, part: int | None) -> bool:
        """Does the playlist contain segment ``msn`` (complete), or its part ``part``?"""
        seg = self.segment(msn)
        if seg is None:
            # Older than the window: the playlist has long moved past it.
            return bool(self.segments) and msn < self.segments[0].msn
        if part is None:
            return seg.complete
        return part < len(seg.parts) or seg.complete

    def playlist_wait(self, msn: int, part: int | None, part_target: float) -> Wait:
        """Hold, answer or refuse a blocking playlist reload (RFC 8216bis 6.2.5.2).

        The advance limits ("plus two", the Advance Part Limit) are those of
        :func:`cascade.hls.limits.beyond_advance_limit`.
        """
        pos = self.position
        if pos is None:
            # No part yet: counted from segment 0, where a stream's numbers start.
            return Wait.BLOCK if msn <= max_blocking_msn(0) else Wait.TOO_FAR
        if self.has(msn, part):
            return Wait.READY
        if self.ended:
            return Wait.READY  # nothing more will come: answer with the final playlist
        if beyond_advance_limit(
            msn,
            part,
            pos.msn,
            pos.part,
            part_target=part_target,
            parts_per_segment=len(self.segments[-1].parts),
        ):
            return Wait.TOO_FAR
        return Wait.BLOCK

    def part_wait(self, msn: int, index: int) -> Wait:
        """A part request: the newest part's successors (``next_parts``, one of them the
        preload hint) block briefly."""
        if self.part(msn, index) is not None:
            return Wait.READY
        pos = self.position
        if pos is None:
            return Wait.BLOCK if (msn, index) == (0, 0) else Wait.TOO_FAR
        if msn < self.segments[0].msn:
            return Wait.GONE
        seg = self.segment(msn)
        if seg is not None and seg.complete:
            return Wait.GONE if index >= len(seg.parts) else Wait.READY
        if self.ended:
            return Wait.TOO_FAR
        if (msn, index) in next_parts(pos.msn, pos.part):
            return Wait.BLOCK
        return Wait.TOO_FAR


def _find(segments: deque[WindowSegment], msn: int) -> WindowSegment | None:
    # Segment numbers in a deque are consecutive (a jump starts a new deque): index, no scan.
    if not segments:
        return None
    i = msn - segments[0].msn
    if 0 <= i < len(segments):
        seg = segments[i]
        if seg.msn == msn:
            return seg
    return None


@dataclass(frozen=True, slots=True)
class PlaylistContext:
    """What a media playlist needs besides the window."""

    part_target: float
    segment_target: float
    reports: tuple[RenditionReport, ...] = ()


def segment_uri(msn: int) -> str:
    return f"{msn}.m4s"


def part_uri(msn: int, index: int) -> str:
    return f"{msn}.{index}.m4s"


def init_uri(generation: int) -> str:
    return f"init-{generation}.mp4"


def build_media_playlist(window: RenditionWindow, ctx: PlaylistContext) -> MediaPlaylist:
    """The window as a typed playlist (rendered by :mod:`cascade.hls.playlist`)."""
    segs = list(window.segments)
    complete = [s for s in segs if s.complete]
    partial_seg = segs[-1] if segs and not segs[-1].complete else None
    prev_gen = segs[0].generation if segs else 0

    def to_segment(s: WindowSegment) -> Segment:
        nonlocal prev_gen
        map_uri = init_uri(s.generation) if s.generation != prev_gen else None
        prev_gen = s.generation
        return Segment(
            msn=s.msn,
            duration=s.duration,
            uri=segment_uri(s.msn),
            parts=tuple(Part(p.duration, part_uri(s.msn, p.index), p.independent) for p in s.parts),
            pdt=s.pdt,
            discontinuity=s.discontinuity,
            map_uri=map_uri,
        )

    segments = tuple(to_segment(s) for s in complete)
    partial = to_segment(partial_seg) if partial_seg is not None else None
    td = target_duration(ctx.segment_target, (s.duration for s in complete))
    hint = None
    pos = window.position
    if pos is not None and not window.ended:
        last = segs[-1]
        same_segment, next_segment = next_parts(pos.msn, pos.part)
        if last.complete or last.duration >= ctx.segment_target - ctx.part_target / 2:
            hint = part_uri(*next_segment)
        else:
            hint = part_uri(*same_segment)
    return MediaPlaylist(
        target_duration=td,
        part_target=ctx.part_target,
        media_sequence=segs[0].msn if segs else 0,
        discontinuity_sequence=window.discontinuity_sequence,
        map_uri=init_uri(segs[0].generation if segs else max(window.inits, default=0)),
        segments=segments,
        partial=partial,
        preload_hint_uri=hint,
        part_hold_back=round(recommended_part_hold_back(ctx.part_target), 6),
        can_skip_until=min_can_skip_until(td),
        rendition_reports=ctx.reports,
        ended=window.ended,
    )


def rendition_report(info: RenditionInfo, window: RenditionWindow) -> RenditionReport | None:
    pos = window.position
    if pos is None:
        return None
    return RenditionReport(uri=f"../{info.name}/index.m3u8", last_msn=pos.msn, last_part=pos.part)
