"""EXT-X-SKIP: the segments a Playlist Delta Update leaves out (RFC 8216bis 4.4.5.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import parse_attribute_list, parse_integer, require
from cascade.hls.tags.tag import Tag

__all__ = ["SkipTag"]


@dataclass(frozen=True, slots=True)
class SkipTag(Tag):
    """EXT-X-SKIP: how many Media Segments a Playlist Delta Update left out."""

    TAG: ClassVar[str] = "EXT-X-SKIP"
    skipped_segments: int

    def render(self) -> str:
        return f"#EXT-X-SKIP:SKIPPED-SEGMENTS={self.skipped_segments}"

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        return cls(parse_integer(require(attrs, "SKIPPED-SEGMENTS", cls.TAG)))
