"""EXT-X-RENDITION-REPORT: the live edge of another Rendition (RFC 8216bis 4.4.5.4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import parse_attribute_list, parse_integer, quote, require, unquote
from cascade.hls.tags.tag import Tag

__all__ = ["RenditionReportTag", "render_rendition_report"]


def render_rendition_report(uri: str, last_msn: int | None, last_part: int | None) -> str:
    line = "#EXT-X-RENDITION-REPORT:URI=" + quote(uri)
    if last_msn is not None:
        line += f",LAST-MSN={last_msn}"
    if last_part is not None:
        line += f",LAST-PART={last_part}"
    return line


@dataclass(frozen=True, slots=True)
class RenditionReportTag(Tag):
    """EXT-X-RENDITION-REPORT: the live edge of another Rendition.

    LAST-MSN and LAST-PART are optional in the tag (the spec lets a server omit a value equal to
    its own playlist's); the rule checker requires all three.
    """

    TAG: ClassVar[str] = "EXT-X-RENDITION-REPORT"
    uri: str
    last_msn: int | None = None
    last_part: int | None = None

    def render(self) -> str:
        return render_rendition_report(self.uri, self.last_msn, self.last_part)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        msn = attrs.get("LAST-MSN")
        part = attrs.get("LAST-PART")
        return cls(
            uri=unquote(require(attrs, "URI", cls.TAG), "URI"),
            last_msn=None if msn is None else parse_integer(msn),
            last_part=None if part is None else parse_integer(part),
        )
