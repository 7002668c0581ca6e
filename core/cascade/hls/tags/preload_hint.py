"""EXT-X-PRELOAD-HINT: a resource the client may request before it exists (RFC 8216bis 4.4.5.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Self

from cascade.hls.tags.primitives import (
    TagError,
    parse_attribute_list,
    parse_enumerated,
    quote,
    require,
    unquote,
)
from cascade.hls.tags.tag import Tag

__all__ = ["PreloadHintTag", "PreloadHintType", "render_preload_hint"]


PreloadHintType = Literal["PART", "MAP"]


def render_preload_hint(uri: str, type: PreloadHintType = "PART") -> str:
    return f"#EXT-X-PRELOAD-HINT:TYPE={type},URI={quote(uri)}"


@dataclass(frozen=True, slots=True)
class PreloadHintTag(Tag):
    """EXT-X-PRELOAD-HINT: a resource the client may request before it exists."""

    TAG: ClassVar[str] = "EXT-X-PRELOAD-HINT"
    uri: str
    type: PreloadHintType = "PART"

    def render(self) -> str:
        return render_preload_hint(self.uri, self.type)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        kind = parse_enumerated(require(attrs, "TYPE", cls.TAG), "TYPE")
        if kind == "PART":
            return cls(unquote(require(attrs, "URI", cls.TAG), "URI"), "PART")
        if kind == "MAP":
            return cls(unquote(require(attrs, "URI", cls.TAG), "URI"), "MAP")
        raise TagError(f"EXT-X-PRELOAD-HINT TYPE must be PART or MAP, got {kind!r}")
