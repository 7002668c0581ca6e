"""From FFmpeg's fragmented MP4 to LL-HLS parts: the packager's pure core.

Per rendition, a :class:`RenditionPackager` takes the top-level boxes FFmpeg writes
(an init segment, then one moof+mdat per part), places each fragment into a segment
with the :class:`~cascade.cmaf.segmenter.Segmenter`, stamps its program date-time and
returns the entries to publish. No I/O: the runner feeds bytes and the clock in.

Program date-time: the wall clock at capture. FFmpeg's media timeline starts when the
input starts; the first fragment of a run anchors that timeline to the wall clock
(``anchor = arrival - media end of the fragment``), and every later part's date is
``anchor + media time``. Arrival comes after capture, so the anchor errs late by the
encoder's delay (about one frame with zero-latency encoding): measured latency can only
be understated by that much, never by the network or the player. All renditions of a run
share one anchor so their dates agree when a player switches.

Bad media (a broken fragment, an init without a track, a codec with no RFC 6381 string)
raises :class:`MediaError`, and only that: anything else out of :meth:`RenditionPackager.feed`
is a bug here, not FFmpeg's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cascade.cmaf import BoxError, Fmp4Reader, Fragment, InitSegment
from cascade.cmaf.segmenter import Segmenter
from cascade.contract.schema import Entry, InitEntry, PartEntry


class MediaError(Exception):
    """What FFmpeg wrote is not media the packager can publish (its message says why).

    The cmaf layer's :class:`~cascade.cmaf.BoxError` (garbage, truncated or unsupported
    boxes) comes out of the packager as this, so that a caller can tell bad media (end the
    run: the encoder's output is broken) from a bug in Python (any other exception).
    """


@dataclass(slots=True)
class Timeline:
    """One FFmpeg run's mapping from media time to wall clock (shared by renditions)."""

    anchor: float | None = None

    def date(self, media_start: float, media_end: float, arrival: float) -> float:
        if self.anchor is None:
            self.anchor = arrival - media_end
        return self.anchor + media_start


@dataclass(slots=True)
class RenditionStats:
    parts: int = 0
    bytes: int = 0
    skipped_fragments: int = 0  # fragments before the first independent one of a run
    last_part_at: float = 0.0
    media_end: float = 0.0  # seconds of media published in this run


@dataclass(slots=True)
class RenditionPackager:
    """Turns one rendition's FFmpeg output into init and part entries."""

    segment_target: float
    timeline: Timeline
    first_msn: int = 0
    generation: int = 0
    reader: Fmp4Reader = field(default_factory=Fmp4Reader)
    stats: RenditionStats = field(default_factory=RenditionStats)
    init: InitSegment | None = None
    _segmenter: Segmenter | None = None
    _media_origin: float | None = None  # media start of the run's first part

    @property
    def next_msn(self) -> int:
        """Where the next run of FFmpeg must start numbering segments."""
        return self._segmenter.next_msn if self._segmenter is not None else self.first_msn

    def feed(self, data: bytes, now: float) -> list[Entry]:
        """Bytes from FFmpeg's pipe, as they come; returns what to publish, in order.

        Raises :class:`MediaError` when the bytes are not fragmented MP4 it can package.
        """
        out: list[Entry] = []
        try:
            items = self.reader.feed(data)
        except BoxError as exc:
            raise MediaError(str(exc)) from exc
        for item in items:
            if isinstance(item, InitSegment):
                self.init = item
                out.append(InitEntry(data=item.data, generation=self.generation))
            else:
                entry = self._place(item, now)
                if entry is not None:
                    out.append(entry)
        return out

    def _place(self, fragment: Fragment, now: float) -> PartEntry | None:
        if self.init is None:
            raise MediaError("a media fragment came before any init segment (ftyp+moov)")
        info = fragment.info  # parsed once, by the reader
        if self._segmenter is None:
            if not info.independent:
                # A segment must start on an independent part: wait for a keyframe.
                self.stats.skipped_fragments += 1
                return None
            self._segmenter = Segmenter(self.segment_target, first_msn=self.first_msn)
            self._media_origin = info.start
        placement = self._segmenter.place(info.independent, info.duration)
        pdt = self.timeline.date(info.start, info.start + info.duration, now)
        self.stats.parts += 1
        self.stats.bytes += len(fragment.data)
        self.stats.last_part_at = now
        self.stats.media_end = info.start + info.duration - (self._media_origin or 0.0)
        return PartEntry(
            msn=placement.msn,
            part=placement.part,
            duration=placement.duration,
            independent=placement.independent,
            pdt=pdt,
            data=fragment.data,
            # The first part of every run after the first follows a timing break.
            discontinuity=self.stats.parts == 1 and self.generation > 0,
            generation=self.generation,
        )
