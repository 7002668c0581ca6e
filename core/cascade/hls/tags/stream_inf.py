"""EXT-X-STREAM-INF: one Variant Stream of a Multivariant Playlist (RFC 8216bis 4.4.6.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import (
    parse_attribute_list,
    parse_decimal,
    parse_integer,
    parse_resolution,
    quote,
    require,
    unquote,
)
from cascade.hls.tags.tag import Tag

__all__ = ["StreamInfTag", "render_stream_inf"]


def render_stream_inf(
    bandwidth: int,
    *,
    average_bandwidth: int | None = None,
    codecs: str | None = None,
    resolution: tuple[int, int] | None = None,
    frame_rate: float | None = None,
    name: str | None = None,
) -> str:
    attrs = [f"BANDWIDTH={bandwidth}"]
    if average_bandwidth is not None:
        attrs.append(f"AVERAGE-BANDWIDTH={average_bandwidth}")
    if codecs is not None:
        attrs.append("CODECS=" + quote(codecs))
    if resolution is not None:
        attrs.append(f"RESOLUTION={resolution[0]}x{resolution[1]}")
    if frame_rate is not None:
        # RFC 8216bis 4.4.6.2: "the maximum frame rate for all the video in the Variant Stream,
        # rounded to three decimal places."
        attrs.append(f"FRAME-RATE={frame_rate:.3f}")
    if name is not None:
        attrs.append("NAME=" + quote(name))
    return "#EXT-X-STREAM-INF:" + ",".join(attrs)


@dataclass(frozen=True, slots=True)
class StreamInfTag(Tag):
    """EXT-X-STREAM-INF: one Variant Stream (the URI is the next line, not part of the tag).

    Only BANDWIDTH is required by the spec; the rule checker requires the rest for Cascade.
    NAME is not a spec attribute of this tag; hls.js shows it as the level name.
    """

    TAG: ClassVar[str] = "EXT-X-STREAM-INF"
    bandwidth: int
    average_bandwidth: int | None = None
    codecs: str | None = None
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None
    name: str | None = None

    def render(self) -> str:
        return render_stream_inf(
            self.bandwidth,
            average_bandwidth=self.average_bandwidth,
            codecs=self.codecs,
            resolution=self.resolution,
            frame_rate=self.frame_rate,
            name=self.name,
        )

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        avg = attrs.get("AVERAGE-BANDWIDTH")
        codecs = attrs.get("CODECS")
        res = attrs.get("RESOLUTION")
        rate = attrs.get("FRAME-RATE")
        name = attrs.get("NAME")
        return cls(
            bandwidth=parse_integer(require(attrs, "BANDWIDTH", cls.TAG)),
            average_bandwidth=None if avg is None else parse_integer(avg),
            codecs=None if codecs is None else unquote(codecs, "CODECS"),
            resolution=None if res is None else parse_resolution(res, "RESOLUTION"),
            frame_rate=None if rate is None else parse_decimal(rate),
            name=None if name is None else unquote(name, "NAME"),
        )
