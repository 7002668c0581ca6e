"""The HLS tags Cascade emits: one frozen dataclass per tag, each with ``render()`` and ``parse()``.

Pure and stdlib-only. Spec references are to draft-pantos-hls-rfc8216bis ("RFC 8216bis").

Number formatting is fixed so that rendered text is deterministic (golden files compare bytes):

- EXTINF durations: always 5 decimals, then the comma: ``#EXTINF:0.50000,``.
- Every other decimal-floating-point attribute (DURATION, PART-TARGET, PART-HOLD-BACK,
  CAN-SKIP-UNTIL, HOLD-BACK): ``%.5f`` with trailing zeros trimmed, one decimal kept:
  ``0.1``, ``0.33333``, ``6.0``. Sub-10-microsecond differences are below what the
  segmenter produces, so nothing is lost.
- FRAME-RATE: always 3 decimals (the spec: "rounded to three decimal places").
- EXT-X-PROGRAM-DATE-TIME: UTC, milliseconds, ``Z``: ``2023-11-14T22:13:20.000Z``.

The ``render_*`` / ``format_*`` functions are what the playlist renderer calls per request; the
dataclasses delegate to them, so both paths print the same bytes.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import ClassVar, Literal, Self

__all__ = [
    "DiscontinuityTag",
    "InfTag",
    "MapTag",
    "PartInfTag",
    "PartTag",
    "PreloadHintTag",
    "PreloadHintType",
    "ProgramDateTimeTag",
    "RenditionReportTag",
    "ServerControlTag",
    "SkipTag",
    "StreamInfTag",
    "TagError",
    "format_decimal",
    "format_pdt",
    "parse_attribute_list",
    "parse_decimal",
    "parse_pdt",
    "render_extinf",
    "render_map",
    "render_part",
    "render_pdt",
    "render_preload_hint",
    "render_rendition_report",
    "render_server_control",
    "render_stream_inf",
    "split_tag",
]


class TagError(ValueError):
    """A tag line or attribute list that does not follow RFC 8216bis."""


PreloadHintType = Literal["PART", "MAP"]

# --------------------------------------------------------------------------------------------
# Primitive values (RFC 8216bis 4.2 "Attribute Lists")
# --------------------------------------------------------------------------------------------

# "An AttributeName is an unquoted string containing characters from the set [A..Z], [0..9],
# and '-'."
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
# "decimal-floating-point: an unquoted string of characters from the set [0..9] and '.' that
# expresses a non-negative floating-point number in decimal positional notation."
_DECIMAL_FLOAT = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
# "decimal-integer: an unquoted string of characters from the set [0..9] expressing an integer
# in base-10 arithmetic in the range from 0 to 2^64-1 (18446744073709551615)."
_MAX_DECIMAL_INTEGER = 2**64 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# The renderer runs per request over the same few values (part durations, PDTs of the window),
# so the two formatters memoize: pure functions of their argument, bounded caches.
@lru_cache(maxsize=1024)
def format_decimal(value: float) -> str:
    """A decimal-floating-point attribute value: ``%.5f``, trailing zeros trimmed, one kept."""
    if not 0.0 <= value < math.inf:
        raise TagError(f"decimal-floating-point must be finite and non-negative, got {value!r}")
    # "+ 0.0" turns -0.0 into 0.0 (which the cache also treats as one key).
    text = f"{value + 0.0:.5f}".rstrip("0")
    return text + "0" if text[-1] == "." else text


def parse_decimal(text: str) -> float:
    """Parse a decimal-floating-point (a decimal-integer is accepted too)."""
    if _DECIMAL_FLOAT.fullmatch(text) is None:
        raise TagError(f"not a decimal-floating-point: {text!r}")
    return float(text)


def _parse_integer(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise TagError(f"not a decimal-integer: {text!r}")
    value = int(text)
    if value > _MAX_DECIMAL_INTEGER:
        raise TagError(f"decimal-integer out of range: {text!r}")
    return value


def _quote(value: str) -> str:
    # "The following characters MUST NOT appear in a quoted-string: line feed (0xA), carriage
    # return (0xD), or double quote (0x22)."
    if '"' in value or "\n" in value or "\r" in value:
        raise TagError(f"quoted-string cannot hold a double quote, CR or LF: {value!r}")
    return f'"{value}"'


def format_pdt(timestamp: float) -> str:
    """Unix seconds to ``YYYY-MM-DDThh:mm:ss.SSSZ`` (rounded to the millisecond)."""
    # RFC 8216bis 4.4.4.6: "It SHOULD indicate a time zone and fractional parts of seconds, to
    # millisecond accuracy."
    return _format_pdt_ms(round(timestamp * 1000))


@lru_cache(maxsize=4096)
def _format_pdt_ms(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def parse_pdt(text: str) -> float:
    """An ISO 8601 date-time with a time zone (``Z`` or ``+hh:mm``) to Unix seconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TagError(f"not an ISO 8601 date-time: {text!r}") from exc
    if moment.tzinfo is None:
        raise TagError(f"date-time without a time zone: {text!r}")
    delta = moment - _EPOCH
    # Integer microseconds, then one correctly rounded division: n ms parses to exactly n / 1000.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros / 1_000_000


def parse_attribute_list(text: str) -> dict[str, str]:
    """Split an attribute-list into raw values (quoted strings keep their quotes).

    RFC 8216bis 4.2: "An attribute-list is a comma-separated list of attribute/value pairs with
    no whitespace." Commas inside quoted strings do not split.
    """
    attrs: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        eq = text.find("=", i)
        if eq == -1:
            raise TagError(f"attribute without '=': {text[i:]!r}")
        name = text[i:eq]
        if not name or not _NAME_CHARS.issuperset(name):
            raise TagError(f"bad AttributeName {name!r}")
        if eq + 1 < n and text[eq + 1] == '"':
            close = text.find('"', eq + 2)
            if close == -1:
                raise TagError(f"unterminated quoted-string for {name}")
            end = close + 1
        else:
            comma = text.find(",", eq + 1)
            end = n if comma == -1 else comma
        value = text[eq + 1 : end]
        if not value:
            raise TagError(f"empty value for {name}")
        # "A given AttributeName MUST NOT appear more than once in a given attribute-list."
        if name in attrs:
            raise TagError(f"duplicate attribute {name}")
        attrs[name] = value
        if end == n:
            break
        if text[end] != ",":
            raise TagError(f"expected ',' after the value of {name}")
        i = end + 1
        if i == n:
            raise TagError("trailing comma in attribute-list")
    return attrs


def _get(attrs: dict[str, str], name: str, tag: str) -> str:
    try:
        return attrs[name]
    except KeyError:
        raise TagError(f"{tag}: missing required attribute {name}") from None


def _quoted(raw: str, name: str) -> str:
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        raise TagError(f"{name} must be a quoted-string, got {raw!r}")
    return raw[1:-1]


def _enumerated(raw: str, name: str) -> str:
    # "An enumerated-string will never contain double quotes ("), commas (,), or whitespace."
    if '"' in raw or any(c.isspace() for c in raw):
        raise TagError(f"{name} must be an enumerated-string, got {raw!r}")
    return raw


def _yes(raw: str, name: str) -> bool:
    # The LL-HLS boolean attributes are enumerated-strings whose only defined value is YES.
    value = _enumerated(raw, name)
    if value == "YES":
        return True
    if value == "NO":
        return False
    raise TagError(f"{name} must be YES, got {raw!r}")


def _resolution(raw: str, name: str) -> tuple[int, int]:
    # "decimal-resolution: two decimal-integers separated by the "x" character."
    width, sep, height = raw.partition("x")
    if not sep:
        raise TagError(f"{name} must be a decimal-resolution, got {raw!r}")
    return _parse_integer(width), _parse_integer(height)


def split_tag(line: str, tag: str) -> str:
    """The value of ``#TAG:value`` (empty for ``#TAG``); TagError if the line is another tag."""
    prefix = "#" + tag
    if not line.startswith(prefix):
        raise TagError(f"not an {tag} line: {line!r}")
    rest = line[len(prefix) :]
    if not rest:
        return ""
    if rest[0] != ":":
        raise TagError(f"not an {tag} line: {line!r}")
    return rest[1:]


# --------------------------------------------------------------------------------------------
# Fast renderers (the hot path: called per request by the edge)
# --------------------------------------------------------------------------------------------


def render_extinf(duration: float, title: str = "") -> str:
    # RFC 8216bis 4.4.4.1: "#EXTINF:<duration>,[<title>]"
    if not 0.0 <= duration < math.inf:
        raise TagError(f"EXTINF duration must be finite and non-negative, got {duration!r}")
    return f"#EXTINF:{duration + 0.0:.5f},{title}"


def render_pdt(timestamp: float) -> str:
    return "#EXT-X-PROGRAM-DATE-TIME:" + format_pdt(timestamp)


def render_map(uri: str) -> str:
    return "#EXT-X-MAP:URI=" + _quote(uri)


def render_part(duration: float, uri: str, independent: bool, gap: bool = False) -> str:
    line = f"#EXT-X-PART:DURATION={format_decimal(duration)},URI={_quote(uri)}"
    if independent:
        line += ",INDEPENDENT=YES"
    if gap:
        line += ",GAP=YES"
    return line


def render_server_control(
    can_block_reload: bool,
    part_hold_back: float | None,
    can_skip_until: float | None = None,
    hold_back: float | None = None,
) -> str:
    attrs: list[str] = []
    if can_block_reload:
        attrs.append("CAN-BLOCK-RELOAD=YES")
    if part_hold_back is not None:
        attrs.append("PART-HOLD-BACK=" + format_decimal(part_hold_back))
    if can_skip_until is not None:
        attrs.append("CAN-SKIP-UNTIL=" + format_decimal(can_skip_until))
    if hold_back is not None:
        attrs.append("HOLD-BACK=" + format_decimal(hold_back))
    return "#EXT-X-SERVER-CONTROL:" + ",".join(attrs)


def render_preload_hint(uri: str, type: PreloadHintType = "PART") -> str:
    return f"#EXT-X-PRELOAD-HINT:TYPE={type},URI={_quote(uri)}"


def render_rendition_report(uri: str, last_msn: int | None, last_part: int | None) -> str:
    line = "#EXT-X-RENDITION-REPORT:URI=" + _quote(uri)
    if last_msn is not None:
        line += f",LAST-MSN={last_msn}"
    if last_part is not None:
        line += f",LAST-PART={last_part}"
    return line


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
        attrs.append("CODECS=" + _quote(codecs))
    if resolution is not None:
        attrs.append(f"RESOLUTION={resolution[0]}x{resolution[1]}")
    if frame_rate is not None:
        # RFC 8216bis 4.4.6.2: "the maximum frame rate for all the video in the Variant Stream,
        # rounded to three decimal places."
        attrs.append(f"FRAME-RATE={frame_rate:.3f}")
    if name is not None:
        attrs.append("NAME=" + _quote(name))
    return "#EXT-X-STREAM-INF:" + ",".join(attrs)


# --------------------------------------------------------------------------------------------
# Tag dataclasses
# --------------------------------------------------------------------------------------------


class _Tag:
    """Shared ``parse``: strip ``#TAG:`` and hand the value to ``from_value``."""

    __slots__ = ()
    TAG: ClassVar[str]

    @classmethod
    def parse(cls, line: str) -> Self:
        return cls.from_value(split_tag(line, cls.TAG))

    @classmethod
    def from_value(cls, value: str) -> Self:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class InfTag(_Tag):
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
class DiscontinuityTag(_Tag):
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
class ProgramDateTimeTag(_Tag):
    """EXT-X-PROGRAM-DATE-TIME; ``timestamp`` is Unix seconds (millisecond precision)."""

    TAG: ClassVar[str] = "EXT-X-PROGRAM-DATE-TIME"
    timestamp: float

    def render(self) -> str:
        return render_pdt(self.timestamp)

    @classmethod
    def from_value(cls, value: str) -> Self:
        return cls(parse_pdt(value))


@dataclass(frozen=True, slots=True)
class MapTag(_Tag):
    """EXT-X-MAP: the Media Initialization Section of the following segments."""

    TAG: ClassVar[str] = "EXT-X-MAP"
    uri: str

    def render(self) -> str:
        return render_map(self.uri)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        return cls(_quoted(_get(attrs, "URI", cls.TAG), "URI"))


@dataclass(frozen=True, slots=True)
class PartInfTag(_Tag):
    """EXT-X-PART-INF: the Part Target Duration."""

    TAG: ClassVar[str] = "EXT-X-PART-INF"
    part_target: float

    def render(self) -> str:
        return "#EXT-X-PART-INF:PART-TARGET=" + format_decimal(self.part_target)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        return cls(parse_decimal(_get(attrs, "PART-TARGET", cls.TAG)))


@dataclass(frozen=True, slots=True)
class ServerControlTag(_Tag):
    """EXT-X-SERVER-CONTROL: which Delivery Directives the server supports."""

    TAG: ClassVar[str] = "EXT-X-SERVER-CONTROL"
    can_block_reload: bool = False
    part_hold_back: float | None = None
    can_skip_until: float | None = None
    hold_back: float | None = None

    def render(self) -> str:
        return render_server_control(
            self.can_block_reload, self.part_hold_back, self.can_skip_until, self.hold_back
        )

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        block = attrs.get("CAN-BLOCK-RELOAD")
        phb = attrs.get("PART-HOLD-BACK")
        skip = attrs.get("CAN-SKIP-UNTIL")
        hold = attrs.get("HOLD-BACK")
        return cls(
            can_block_reload=block is not None and _yes(block, "CAN-BLOCK-RELOAD"),
            part_hold_back=None if phb is None else parse_decimal(phb),
            can_skip_until=None if skip is None else parse_decimal(skip),
            hold_back=None if hold is None else parse_decimal(hold),
        )


@dataclass(frozen=True, slots=True)
class PartTag(_Tag):
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
            duration=parse_decimal(_get(attrs, "DURATION", cls.TAG)),
            uri=_quoted(_get(attrs, "URI", cls.TAG), "URI"),
            independent=independent is not None and _yes(independent, "INDEPENDENT"),
            gap=gap is not None and _yes(gap, "GAP"),
        )


@dataclass(frozen=True, slots=True)
class PreloadHintTag(_Tag):
    """EXT-X-PRELOAD-HINT: a resource the client may request before it exists."""

    TAG: ClassVar[str] = "EXT-X-PRELOAD-HINT"
    uri: str
    type: PreloadHintType = "PART"

    def render(self) -> str:
        return render_preload_hint(self.uri, self.type)

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        kind = _enumerated(_get(attrs, "TYPE", cls.TAG), "TYPE")
        if kind == "PART":
            return cls(_quoted(_get(attrs, "URI", cls.TAG), "URI"), "PART")
        if kind == "MAP":
            return cls(_quoted(_get(attrs, "URI", cls.TAG), "URI"), "MAP")
        raise TagError(f"EXT-X-PRELOAD-HINT TYPE must be PART or MAP, got {kind!r}")


@dataclass(frozen=True, slots=True)
class RenditionReportTag(_Tag):
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
            uri=_quoted(_get(attrs, "URI", cls.TAG), "URI"),
            last_msn=None if msn is None else _parse_integer(msn),
            last_part=None if part is None else _parse_integer(part),
        )


@dataclass(frozen=True, slots=True)
class SkipTag(_Tag):
    """EXT-X-SKIP: how many Media Segments a Playlist Delta Update left out."""

    TAG: ClassVar[str] = "EXT-X-SKIP"
    skipped_segments: int

    def render(self) -> str:
        return f"#EXT-X-SKIP:SKIPPED-SEGMENTS={self.skipped_segments}"

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        return cls(_parse_integer(_get(attrs, "SKIPPED-SEGMENTS", cls.TAG)))


@dataclass(frozen=True, slots=True)
class StreamInfTag(_Tag):
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
            bandwidth=_parse_integer(_get(attrs, "BANDWIDTH", cls.TAG)),
            average_bandwidth=None if avg is None else _parse_integer(avg),
            codecs=None if codecs is None else _quoted(codecs, "CODECS"),
            resolution=None if res is None else _resolution(res, "RESOLUTION"),
            frame_rate=None if rate is None else parse_decimal(rate),
            name=None if name is None else _quoted(name, "NAME"),
        )
