"""EXT-X-PART-INF: the Part Target Duration (RFC 8216bis 4.4.3.7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import format_decimal, parse_attribute_list, parse_decimal, require
from cascade.hls.tags.tag import Tag

__all__ = ["PartInfTag"]


@dataclass(frozen=True, slots=True)
class PartInfTag(Tag):
    """EXT-X-PART-INF: the Part Target Duration."""

    TAG: ClassVar[str] = "EXT-X-PART-INF"
    part_target: float

    def render(self) -> str:
        return "#EXT-X-PART-INF:PART-TARGET=" + format_decimal(self.part_target)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        return cls(parse_decimal(require(attrs, "PART-TARGET", cls.TAG)))
