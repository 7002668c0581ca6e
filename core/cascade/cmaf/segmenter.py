"""Placing fragments (LL-HLS parts) into media segments: a pure state machine.

Each fragment FFmpeg writes becomes one partial segment. A media segment must begin with an
independent frame (Apple's HLS authoring specification wants every video segment to start
with an IDR frame; players join and switch renditions at segment starts), so a segment
boundary can only fall on an independent fragment: the segmenter starts a new segment at the
first independent fragment once the current segment has reached the target duration.

With GOPs longer than the target (passthrough of an encoder we do not control) a segment
runs on until the next independent fragment, so segments can exceed the target; the
playlist's EXT-X-TARGETDURATION must then be derived from the segments actually cut.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DURATION_TOLERANCE", "Placement", "Segmenter"]

#: A segment counts as full when it is at most this short of the target (1 ms). It absorbs
#: float rounding (0.1 added five times must count as 0.5) and the rounding of durations to
#: track timescales, yet is far below any real frame duration (4.2 ms at 240 fps), so it never
#: ends a segment a whole frame early.
DURATION_TOLERANCE = 0.001


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one fragment goes: media sequence number and part index within the segment."""

    msn: int
    part: int
    duration: float
    independent: bool
    starts_segment: bool


class Segmenter:
    """Assign fragments to segments (``msn``) and parts (``part``, from 0 in each segment).

    The first fragment placed must be independent: a segment cannot start elsewhere, and
    dropping or holding fragments is the caller's policy, not this class's. Placing a
    non-independent fragment first raises ``ValueError``; check :attr:`started` and skip
    fragments until the first independent one.
    """

    __slots__ = ("_elapsed", "_msn", "_parts", "segment_target")

    def __init__(self, segment_target: float, *, first_msn: int = 0) -> None:
        if not segment_target > 0:
            raise ValueError(f"segment_target must be positive, got {segment_target}")
        if first_msn < 0:
            raise ValueError(f"first_msn must not be negative, got {first_msn}")
        self.segment_target = segment_target
        self._msn = first_msn
        self._parts = 0  # parts placed in the current segment
        self._elapsed = 0.0  # seconds placed in the current segment

    @property
    def started(self) -> bool:
        """Whether a segment is open (the first independent fragment has been placed)."""
        return self._parts > 0

    @property
    def msn(self) -> int:
        """Media sequence number of the current (open) segment."""
        return self._msn

    @property
    def next_msn(self) -> int:
        """The msn a new Segmenter should start at after a restart.

        The current msn + 1 if the current segment has parts (it is already published, even
        if incomplete), else the current msn.
        """
        return self._msn + 1 if self._parts else self._msn

    @property
    def segment_duration(self) -> float:
        """Seconds placed so far in the current segment."""
        return self._elapsed

    def place(self, independent: bool, duration: float) -> Placement:
        """Place the next fragment; ``duration`` in seconds."""
        if duration < 0:
            raise ValueError(f"fragment duration must not be negative, got {duration}")
        if not self._parts:
            if not independent:
                raise ValueError(
                    "the first fragment must be independent: skip fragments until a keyframe"
                )
            starts = True
        else:
            starts = independent and self._elapsed + DURATION_TOLERANCE >= self.segment_target
            if starts:
                self._msn += 1
                self._parts = 0
                self._elapsed = 0.0
        placement = Placement(self._msn, self._parts, duration, independent, starts)
        self._parts += 1
        self._elapsed += duration
        return placement
