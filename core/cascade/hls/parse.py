"""Parse playlist text back into the ``cascade.hls.playlist`` model.

Strict where the model needs a value (a media playlist without EXT-X-MAP or EXT-X-PART-INF is
not one Cascade renders) and silent about tags it does not model (RFC 8216bis 6.3.1: clients
"MUST ignore any tag that is not recognized"). Malformed input raises ``PlaylistError`` carrying
the 1-based line number.

Two things the text does not carry come back as follows:

- a delta update: ``segments`` holds only the segments after the EXT-X-SKIP tag, with their real
  Media Sequence Numbers, so ``segments[0].msn - media_sequence`` is the number skipped;
- the partial segment: its ``uri`` is ``""`` and its ``duration`` the sum of its parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from cascade.hls.playlist import (
    MediaPlaylist,
    MultivariantPlaylist,
    Part,
    RenditionReport,
    Segment,
    Variant,
)
from cascade.hls.tags import (
    InfTag,
    MapTag,
    PartInfTag,
    PartTag,
    PreloadHintTag,
    ProgramDateTimeTag,
    RenditionReportTag,
    ServerControlTag,
    SkipTag,
    StreamInfTag,
    TagError,
)

__all__ = [
    "Line",
    "PlaylistError",
    "parse_media_playlist",
    "parse_multivariant_playlist",
    "tokenize",
]


class PlaylistError(ValueError):
    """Malformed playlist text; ``line`` is the 1-based line number when one is to blame."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message if line is None else f"line {line}: {message}")
        self.line = line
        self.reason = message


@dataclass(frozen=True, slots=True)
class Line:
    """One meaningful playlist line: a tag (``name`` without '#', ``value`` after ':') or a URI
    (``name`` None, ``value`` the URI)."""

    number: int
    name: str | None
    value: str


def tokenize(text: str) -> list[Line]:
    """Split into tag and URI lines; blank lines and comments are dropped.

    RFC 8216bis 4.1: "Lines in a Playlist file are terminated by either a single line feed
    character or a carriage return character followed by a line feed character." ... "Blank
    lines are ignored." ... "Lines that start with the character '#' are either comments or
    tags. Tags begin with #EXT."
    """
    lines: list[Line] = []
    for number, raw in enumerate(text.split("\n"), 1):
        if raw.endswith("\r"):
            raw = raw[:-1]
        if not raw:
            continue
        if raw[0] == "#":
            if not raw.startswith("#EXT"):
                continue
            name, _, value = raw[1:].partition(":")
            lines.append(Line(number, name, value))
        else:
            lines.append(Line(number, None, raw))
    return lines


def _require_extm3u(lines: list[Line]) -> None:
    # RFC 8216bis 4.4.1.1: "It MUST be the first line of every Media Playlist and every
    # Multivariant Playlist."
    if not lines or lines[0].number != 1 or lines[0].name != "EXTM3U":
        raise PlaylistError("the first line must be #EXTM3U", 1)


def _int(line: Line) -> int:
    if not (line.value.isascii() and line.value.isdigit()):
        raise PlaylistError(
            f"#{line.name} needs a decimal-integer, got {line.value!r}", line.number
        )
    return int(line.value)


class _MediaBuilder:
    """Accumulates one media playlist; the pending_* fields belong to the next segment."""

    def __init__(self) -> None:
        self.target_duration: int | None = None
        self.part_target: float | None = None
        self.media_sequence: int | None = None
        self.discontinuity_sequence = 0
        self.server_control: ServerControlTag | None = None
        self.map_uri: str | None = None
        self.skipped = 0
        self.segments: list[Segment] = []
        self.preload_hint_uri: str | None = None
        self.reports: list[RenditionReport] = []
        self.ended = False
        self.pending_inf: float | None = None
        self.pending_inf_line = 0
        self.pending_parts: list[Part] = []
        self.pending_pdt: float | None = None
        self.pending_discontinuity = False
        self.pending_map: str | None = None

    def next_msn(self) -> int:
        return (self.media_sequence or 0) + self.skipped + len(self.segments)

    def has_pending(self) -> bool:
        return bool(
            self.pending_parts
            or self.pending_pdt is not None
            or self.pending_discontinuity
            or self.pending_map is not None
        )

    def take_segment(self, duration: float, uri: str) -> Segment:
        seg = Segment(
            msn=self.next_msn(),
            duration=duration,
            uri=uri,
            parts=tuple(self.pending_parts),
            pdt=self.pending_pdt,
            discontinuity=self.pending_discontinuity,
            map_uri=self.pending_map,
        )
        self.pending_inf = None
        self.pending_parts = []
        self.pending_pdt = None
        self.pending_discontinuity = False
        self.pending_map = None
        return seg

    @staticmethod
    def header_once(line: Line, seen: object) -> None:
        if seen is not None:
            raise PlaylistError(f"#{line.name} appears more than once", line.number)

    def feed(self, line: Line) -> None:
        name = line.name
        if name is None:
            if self.pending_inf is None:
                raise PlaylistError(
                    f"URI line {line.value!r} without a preceding #EXTINF", line.number
                )
            self.segments.append(self.take_segment(self.pending_inf, line.value))
            return
        if self.pending_inf is not None and name in _SEGMENT_TAGS:
            # RFC 8216bis 4.4.4.1: the EXTINF tag "applies only to the next Media Segment".
            raise PlaylistError(f"#EXTINF not followed by a URI line (#{name})", line.number)
        value = line.value
        if name == "EXTINF":
            self.pending_inf = InfTag.from_value(value).duration
            self.pending_inf_line = line.number
        elif name == "EXT-X-PART":
            tag = PartTag.from_value(value)
            self.pending_parts.append(Part(tag.duration, tag.uri, tag.independent))
        elif name == "EXT-X-PROGRAM-DATE-TIME":
            self.pending_pdt = ProgramDateTimeTag.from_value(value).timestamp
        elif name == "EXT-X-DISCONTINUITY":
            self.pending_discontinuity = True
        elif name == "EXT-X-MAP":
            uri = MapTag.from_value(value).uri
            # The first EXT-X-MAP is the playlist's; any later one starts a new init.
            if self.map_uri is None:
                self.map_uri = uri
            else:
                self.pending_map = uri
        elif name == "EXT-X-TARGETDURATION":
            self.header_once(line, self.target_duration)
            self.target_duration = _int(line)
        elif name == "EXT-X-MEDIA-SEQUENCE":
            self.header_once(line, self.media_sequence)
            self.media_sequence = _int(line)
        elif name == "EXT-X-DISCONTINUITY-SEQUENCE":
            self.discontinuity_sequence = _int(line)
        elif name == "EXT-X-PART-INF":
            self.header_once(line, self.part_target)
            self.part_target = PartInfTag.from_value(value).part_target
        elif name == "EXT-X-SERVER-CONTROL":
            self.header_once(line, self.server_control)
            self.server_control = ServerControlTag.from_value(value)
        elif name == "EXT-X-SKIP":
            if self.segments or self.skipped or self.has_pending():
                raise PlaylistError("#EXT-X-SKIP must come before every segment", line.number)
            self.skipped = SkipTag.from_value(value).skipped_segments
        elif name == "EXT-X-PRELOAD-HINT":
            hint = PreloadHintTag.from_value(value)
            # RFC 8216bis 6.3.8: "Clients SHOULD ignore all but the first EXT-X-PRELOAD-HINT
            # tag in a Playlist with a particular TYPE attribute."
            if hint.type == "PART" and self.preload_hint_uri is None:
                self.preload_hint_uri = hint.uri
        elif name == "EXT-X-RENDITION-REPORT":
            report = RenditionReportTag.from_value(value)
            if report.last_msn is None or report.last_part is None:
                raise PlaylistError(
                    "#EXT-X-RENDITION-REPORT needs LAST-MSN and LAST-PART", line.number
                )
            self.reports.append(RenditionReport(report.uri, report.last_msn, report.last_part))
        elif name == "EXT-X-ENDLIST":
            self.ended = True
        elif name in _MULTIVARIANT_TAGS:
            raise PlaylistError(f"#{name} belongs in a multivariant playlist", line.number)

    def build(self) -> MediaPlaylist:
        if self.pending_inf is not None:
            raise PlaylistError("#EXTINF not followed by a URI line", self.pending_inf_line)
        if self.target_duration is None:
            raise PlaylistError("missing #EXT-X-TARGETDURATION")
        if self.part_target is None:
            raise PlaylistError("missing #EXT-X-PART-INF")
        control = self.server_control
        if control is None or control.part_hold_back is None:
            raise PlaylistError("missing PART-HOLD-BACK in #EXT-X-SERVER-CONTROL")
        if self.map_uri is None:
            raise PlaylistError("missing #EXT-X-MAP")
        partial = None
        if self.has_pending():
            parts = tuple(self.pending_parts)
            partial = Segment(
                msn=self.next_msn(),
                duration=sum((p.duration for p in parts), 0.0),
                uri="",
                parts=parts,
                pdt=self.pending_pdt,
                discontinuity=self.pending_discontinuity,
                map_uri=self.pending_map,
            )
        return MediaPlaylist(
            target_duration=self.target_duration,
            part_target=self.part_target,
            media_sequence=self.media_sequence or 0,
            discontinuity_sequence=self.discontinuity_sequence,
            map_uri=self.map_uri,
            segments=tuple(self.segments),
            partial=partial,
            preload_hint_uri=self.preload_hint_uri,
            part_hold_back=control.part_hold_back,
            can_skip_until=control.can_skip_until,
            rendition_reports=tuple(self.reports),
            ended=self.ended,
        )


# Tags that belong to the segment after them: not allowed between an EXTINF and its URI.
_SEGMENT_TAGS = frozenset({"EXTINF", "EXT-X-PART", "EXT-X-DISCONTINUITY", "EXT-X-MAP"})
_MULTIVARIANT_TAGS = frozenset({"EXT-X-STREAM-INF", "EXT-X-MEDIA", "EXT-X-I-FRAME-STREAM-INF"})


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Parse a (full or delta) media playlist; raises ``PlaylistError``."""
    lines = tokenize(text)
    _require_extm3u(lines)
    builder = _MediaBuilder()
    for line in lines[1:]:
        try:
            builder.feed(line)
        except TagError as exc:
            raise PlaylistError(str(exc), line.number) from exc
    return builder.build()


def parse_multivariant_playlist(text: str) -> MultivariantPlaylist:
    """Parse a multivariant playlist of EXT-X-STREAM-INF entries; raises ``PlaylistError``."""
    lines = tokenize(text)
    _require_extm3u(lines)
    variants: list[Variant] = []
    independent = False
    pending: tuple[Line, StreamInfTag] | None = None
    for line in lines[1:]:
        if line.name is None:
            if pending is None:
                raise PlaylistError(
                    f"URI line {line.value!r} without #EXT-X-STREAM-INF", line.number
                )
            variants.append(_variant(pending[0], pending[1], line.value))
            pending = None
            continue
        if pending is not None:
            # RFC 8216bis 4.4.6.2: "The URI line is REQUIRED."
            raise PlaylistError("#EXT-X-STREAM-INF not followed by a URI line", pending[0].number)
        if line.name == "EXT-X-STREAM-INF":
            try:
                pending = (line, StreamInfTag.from_value(line.value))
            except TagError as exc:
                raise PlaylistError(str(exc), line.number) from exc
        elif line.name == "EXT-X-INDEPENDENT-SEGMENTS":
            independent = True
        elif line.name in ("EXTINF", "EXT-X-PART", "EXT-X-TARGETDURATION"):
            raise PlaylistError(f"#{line.name} belongs in a media playlist", line.number)
    if pending is not None:
        raise PlaylistError("#EXT-X-STREAM-INF not followed by a URI line", pending[0].number)
    return MultivariantPlaylist(tuple(variants), independent)


def _variant(line: Line, tag: StreamInfTag, uri: str) -> Variant:
    if tag.codecs is None or tag.resolution is None or tag.frame_rate is None:
        raise PlaylistError(
            "#EXT-X-STREAM-INF needs CODECS, RESOLUTION and FRAME-RATE", line.number
        )
    return Variant(
        uri=uri,
        bandwidth=tag.bandwidth,
        codecs=tag.codecs,
        width=tag.resolution[0],
        height=tag.resolution[1],
        frame_rate=tag.frame_rate,
        average_bandwidth=tag.average_bandwidth,
        name=tag.name,
    )
