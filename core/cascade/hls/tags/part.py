"""EXT-X-PART: one Partial Segment (RFC 8216bis 4.4.4.9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import (
    format_decimal,
    parse_attribute_list,
    parse_decimal,
    parse_yes,
    quote,
    require,
    unquote,
)
from cascade.hls.tags.tag import Tag

__all__ = ["PartTag", "render_part"]


def render_part(duration: float, uri: str, independent: bool, gap: bool = False) -> str:
    line = f"#EXT-X-PART:DURATION={format_decimal(duration)},URI={quote(uri)}"
    if independent:
        line += ",INDEPENDENT=YES"
    if gap:
        line += ",GAP=YES"
    return line


@dataclass(frozen=True, slots=True)
class PartTag(Tag):
    """EXT-X-PART: one Partial Segment."""

    TAG: ClassVar[str] = "EXT-X-PART"
    duration: float
    uri: str
    independent: bool = False
    gap: bool = False

    def render(self) -> str:
        return render_part(self.duration, self.uri, self.independent, self.gap)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        independent = attrs.get("INDEPENDENT")
        gap = attrs.get("GAP")
        return cls(
            duration=parse_decimal(require(attrs, "DURATION", cls.TAG)),
            uri=unquote(require(attrs, "URI", cls.TAG), "URI"),
            independent=independent is not None and parse_yes(independent, "INDEPENDENT"),
            gap=gap is not None and parse_yes(gap, "GAP"),
        )
