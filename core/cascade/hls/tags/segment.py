"""The tags of one Media Segment: EXTINF, EXT-X-DISCONTINUITY, EXT-X-PROGRAM-DATE-TIME.

RFC 8216bis 4.4.4.1, 4.4.4.3 and 4.4.4.6 (gohlslib keeps them together in
``media_segment.go``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import TagError, format_pdt, parse_decimal, parse_pdt
from cascade.hls.tags.tag import Tag

__all__ = ["DiscontinuityTag", "InfTag", "ProgramDateTimeTag", "render_extinf", "render_pdt"]


def render_extinf(duration: float, title: str = "") -> str:
    # RFC 8216bis 4.4.4.1: "#EXTINF:<duration>,[<title>]"
    if not 0.0 <= duration < math.inf:
        raise TagError(f"EXTINF duration must be finite and non-negative, got {duration!r}")
    return f"#EXTINF:{duration + 0.0:.5f},{title}"


def render_pdt(timestamp: float) -> str:
    return "#EXT-X-PROGRAM-DATE-TIME:" + format_pdt(timestamp)


@dataclass(frozen=True, slots=True)
class InfTag(Tag):
    """EXTINF: the duration of the next Media Segment."""

    TAG: ClassVar[str] = "EXTINF"
    duration: float
    title: str = ""

    def render(self) -> str:
        return render_extinf(self.duration, self.title)

    @classmethod
    def from_value(cls, value: str) -> Self:
        duration, _, title = value.partition(",")
        return cls(parse_decimal(duration), title)


@dataclass(frozen=True, slots=True)
class DiscontinuityTag(Tag):
    """EXT-X-DISCONTINUITY: the next segment does not continue the previous one."""

    TAG: ClassVar[str] = "EXT-X-DISCONTINUITY"

    def render(self) -> str:
        return "#EXT-X-DISCONTINUITY"

    @classmethod
    def from_value(cls, value: str) -> Self:
        if value:
            raise TagError(f"EXT-X-DISCONTINUITY takes no value, got {value!r}")
        return cls()


@dataclass(frozen=True, slots=True)
class ProgramDateTimeTag(Tag):
    """EXT-X-PROGRAM-DATE-TIME; ``timestamp`` is Unix seconds (millisecond precision)."""

    TAG: ClassVar[str] = "EXT-X-PROGRAM-DATE-TIME"
    timestamp: float

    def render(self) -> str:
        return render_pdt(self.timestamp)

    @classmethod
    def from_value(cls, value: str) -> Self:
        return cls(parse_pdt(value))
