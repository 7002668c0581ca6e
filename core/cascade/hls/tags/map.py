"""EXT-X-MAP: the Media Initialization Section (RFC 8216bis 4.4.4.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import parse_attribute_list, quote, require, unquote
from cascade.hls.tags.tag import Tag

__all__ = ["MapTag", "render_map"]


def render_map(uri: str) -> str:
    return "#EXT-X-MAP:URI=" + quote(uri)


@dataclass(frozen=True, slots=True)
class MapTag(Tag):
    """EXT-X-MAP: the Media Initialization Section of the following segments."""

    TAG: ClassVar[str] = "EXT-X-MAP"
    uri: str

    def render(self) -> str:
        return render_map(self.uri)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        return cls(unquote(require(attrs, "URI", cls.TAG), "URI"))
