"""An LL-HLS rule checker for playlist text: pure functions, no I/O.

Each rule has an id (``RULES``). Ids without a prefix enforce a sentence of RFC 8216bis (quoted
above the check); ``cascade-`` ids are Cascade's own design rules, stricter than the spec, and
say why. The checker is lenient where the parser is strict: it reports every problem it can
find rather than stopping at the first. The thresholds that are numbers (PART-HOLD-BACK,
CAN-SKIP-UNTIL, part durations) are the functions of ``cascade.hls.limits`` the edge renders
with, so a served playlist and its check cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType

from cascade.hls.limits import (
    min_can_skip_until,
    min_part_duration,
    min_part_hold_back,
    recommended_part_hold_back,
    rounded_duration,
)
from cascade.hls.parse import Line, tokenize
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
    parse_attribute_list,
)

__all__ = [
    "RULES",
    "Violation",
    "check_media_playlist",
    "check_multivariant_playlist",
]


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule; ``line`` is 1-based, None when the problem is a missing tag."""

    rule: str
    line: int | None
    message: str


RULES: Mapping[str, str] = MappingProxyType(
    {
        "syntax": "the text does not parse (RFC 8216bis 4)",
        "extm3u": "RFC 8216bis 4.4.1.1 MUST: #EXTM3U is the first line",
        "targetduration": "RFC 8216bis 4.4.3.1 REQUIRED: EXT-X-TARGETDURATION, a decimal-integer",
        "targetduration-extinf": "RFC 8216bis 4.4.3.1 MUST: rounded EXTINF <= target duration",
        "cascade-extinf-max": "Cascade: EXTINF <= target duration, unrounded",
        "cascade-media-sequence": "Cascade: EXT-X-MEDIA-SEQUENCE present (live windows slide)",
        "part-inf": "RFC 8216bis 4.4.3.7 REQUIRED: EXT-X-PART-INF when there are EXT-X-PART tags",
        "part-duration-max": "RFC 8216bis 4.4.4.9 MUST: part duration <= PART-TARGET",
        "part-duration-min": "RFC 8216bis 4.4.4.9 MUST: non-final parts >= 85% of PART-TARGET",
        "part-hold-back": "RFC 8216bis 4.4.3.8 MUST: PART-HOLD-BACK present, >= 2x PART-TARGET",
        "cascade-part-hold-back-3x": "Cascade (RFC SHOULD): PART-HOLD-BACK >= 3x PART-TARGET",
        "cascade-can-block-reload": "Cascade: CAN-BLOCK-RELOAD=YES (players need it for LL-HLS)",
        "can-skip-until": "RFC 8216bis 4.4.3.8 MUST: CAN-SKIP-UNTIL >= 6x target duration",
        "skip-once": "RFC 8216bis 4.4.5.2 MUST NOT: more than one EXT-X-SKIP",
        "cascade-parts-sum": "Cascade (RFC 3.2 MUST): a segment's parts add up to its EXTINF",
        "cascade-independent-first-part": "Cascade: every segment starts on an INDEPENDENT part",
        "preload-hint-unlisted": "RFC 8216bis 4.4.5.3: the hinted part is not yet listed",
        "preload-hint-single": "RFC 8216bis 6.2.6 SHOULD NOT: two preload hints of one TYPE",
        "preload-hint-endlist": "RFC 8216bis 4.4.5.3 MUST NOT: preload hint with EXT-X-ENDLIST",
        "cascade-pdt-monotonic": "Cascade: EXT-X-PROGRAM-DATE-TIME strictly increases",
        "cascade-pdt-consistent": "Cascade: PDT follows the durations within 50 ms",
        "rendition-report": "RFC 8216bis 4.4.5.4: URI, LAST-MSN, LAST-PART on rendition reports",
        "version": "RFC 8216bis 8 MUST: EXT-X-VERSION high enough for the features used",
        "media-sequence-decrease": "RFC 8216bis 6.2.1: the media sequence never decreases",
        "segment-changed": "RFC 8216bis 6.2.1: a segment keeps its URI and duration",
        "discontinuity-sequence": "RFC 8216bis 6.2.1: a segment keeps its discontinuity sequence number",
        "stream-inf-bandwidth": "RFC 8216bis 4.4.6.2 MUST: BANDWIDTH on EXT-X-STREAM-INF",
        "cascade-stream-inf-codecs": "Cascade (RFC SHOULD): CODECS on EXT-X-STREAM-INF",
        "cascade-stream-inf-resolution": "Cascade (RFC recommended): RESOLUTION",
        "cascade-stream-inf-frame-rate": "Cascade (RFC recommended): FRAME-RATE",
        "stream-inf-uri": "RFC 8216bis 4.4.6.2 REQUIRED: a URI line after EXT-X-STREAM-INF",
    }
)

# Slack for comparing decimal values that went through %.5f formatting.
_EPS = 1e-5
# Parts vs EXTINF: the brief's "within 1 ms".
_SUM_TOLERANCE = 0.001
# PDT vs accumulated durations.
_PDT_TOLERANCE = 0.05


@dataclass(slots=True)
class _PartRef:
    line: int
    tag: PartTag


@dataclass(slots=True)
class _SegRef:
    line: int = 0
    duration: float | None = None  # None: the partial segment (no EXTINF yet)
    uri: str | None = None
    parts: list[_PartRef] = field(default_factory=list)
    pdt: float | None = None
    pdt_line: int = 0
    discontinuity: bool = False
    msn: int = 0
    dsn: int = 0  # discontinuity sequence number

    def pending(self) -> bool:
        return bool(self.parts) or self.pdt is not None or self.discontinuity


@dataclass(slots=True)
class _Media:
    version: int | None = None
    version_line: int | None = None
    target_duration: int | None = None
    media_sequence: int | None = None
    discontinuity_sequence: int = 0
    control: ServerControlTag | None = None
    control_line: int | None = None
    part_inf: PartInfTag | None = None
    skips: list[tuple[int, SkipTag]] = field(default_factory=list)
    has_map: bool = False
    segments: list[_SegRef] = field(default_factory=list)
    partial: _SegRef | None = None
    hints: list[tuple[int, PreloadHintTag]] = field(default_factory=list)
    endlist_line: int | None = None


def _check_extm3u(lines: list[Line], out: list[Violation]) -> None:
    # RFC 8216bis 4.4.1.1: "The EXTM3U tag indicates that the file is an Extended M3U [M3U]
    # Playlist file. It MUST be the first line of every Media Playlist and every Multivariant
    # Playlist."
    first = lines[0] if lines else None
    if first is None or first.number != 1 or first.name != "EXTM3U" or first.value:
        out.append(Violation("extm3u", 1, "the first line must be #EXTM3U"))


def _decimal_integer(line: Line, rule: str, out: list[Violation]) -> int | None:
    if line.value.isascii() and line.value.isdigit():
        return int(line.value)
    out.append(Violation(rule, line.number, f"#{line.name} must be a decimal-integer"))
    return None


def _scan(lines: list[Line], out: list[Violation]) -> _Media:
    """One pass over the lines: the tags the rules need, with their line numbers."""
    media = _Media()
    pending = _SegRef()
    for line in lines:
        name, value = line.name, line.value
        try:
            if name is None:
                if pending.duration is None:
                    out.append(Violation("syntax", line.number, "URI line without #EXTINF"))
                    continue
                pending.uri = value
                media.segments.append(pending)
                pending = _SegRef()
            elif name == "EXTINF":
                if pending.duration is not None:
                    out.append(Violation("syntax", pending.line, "#EXTINF without a URI line"))
                pending.duration = InfTag.from_value(value).duration
                pending.line = line.number
            elif name == "EXT-X-PART":
                pending.parts.append(_PartRef(line.number, PartTag.from_value(value)))
            elif name == "EXT-X-PROGRAM-DATE-TIME":
                pending.pdt = ProgramDateTimeTag.from_value(value).timestamp
                pending.pdt_line = line.number
            elif name == "EXT-X-DISCONTINUITY":
                pending.discontinuity = True
            elif name == "EXT-X-MAP":
                MapTag.from_value(value)
                media.has_map = True
            elif name == "EXT-X-TARGETDURATION":
                media.target_duration = _decimal_integer(line, "targetduration", out)
            elif name == "EXT-X-VERSION":
                media.version = _decimal_integer(line, "syntax", out)
                media.version_line = line.number
            elif name == "EXT-X-MEDIA-SEQUENCE":
                media.media_sequence = _decimal_integer(line, "syntax", out)
            elif name == "EXT-X-DISCONTINUITY-SEQUENCE":
                media.discontinuity_sequence = _decimal_integer(line, "syntax", out) or 0
            elif name == "EXT-X-SERVER-CONTROL":
                media.control = ServerControlTag.from_value(value)
                media.control_line = line.number
            elif name == "EXT-X-PART-INF":
                media.part_inf = PartInfTag.from_value(value)
            elif name == "EXT-X-SKIP":
                media.skips.append((line.number, SkipTag.from_value(value)))
            elif name == "EXT-X-PRELOAD-HINT":
                media.hints.append((line.number, PreloadHintTag.from_value(value)))
            elif name == "EXT-X-RENDITION-REPORT":
                _check_rendition_report(line, out)
            elif name == "EXT-X-ENDLIST":
                media.endlist_line = line.number
        except TagError as exc:
            out.append(Violation("syntax", line.number, str(exc)))
    if pending.duration is not None:
        out.append(Violation("syntax", pending.line, "#EXTINF without a URI line"))
    elif pending.pending():
        pending.line = pending.parts[0].line if pending.parts else pending.pdt_line
        media.partial = pending
    base = (media.media_sequence or 0) + (media.skips[0][1].skipped_segments if media.skips else 0)
    dsn = media.discontinuity_sequence
    for i, seg in enumerate(media.segments):
        seg.msn = base + i
        dsn += seg.discontinuity
        seg.dsn = dsn
    if media.partial is not None:
        media.partial.msn = base + len(media.segments)
        media.partial.dsn = dsn + media.partial.discontinuity
    return media


def _check_rendition_report(line: Line, out: list[Violation]) -> None:
    # RFC 8216bis 4.4.5.4: URI "This attribute is REQUIRED."; LAST-MSN "This attribute is
    # REQUIRED."; LAST-PART "This attribute is REQUIRED if the Rendition contains a Partial
    # Segment." Every Cascade rendition has parts, so all three must be there.
    attrs = parse_attribute_list(line.value)
    missing = [n for n in ("URI", "LAST-MSN", "LAST-PART") if n not in attrs]
    if missing:
        out.append(Violation("rendition-report", line.number, f"missing {', '.join(missing)}"))
    if "URI" in attrs:
        RenditionReportTag.from_value(line.value)


def _check_header(media: _Media, out: list[Violation]) -> None:
    td = media.target_duration
    # RFC 8216bis 4.4.3.1: "The EXT-X-TARGETDURATION tag is REQUIRED."
    if td is None and not any(v.rule == "targetduration" for v in out):
        out.append(Violation("targetduration", None, "missing #EXT-X-TARGETDURATION"))

    # RFC 8216: "If Media Segments are to be removed, the Playlist file MUST contain an
    # EXT-X-MEDIA-SEQUENCE tag." A live window always removes segments, so Cascade always
    # writes it.
    if media.media_sequence is None:
        out.append(Violation("cascade-media-sequence", None, "missing #EXT-X-MEDIA-SEQUENCE"))

    control = media.control
    # RFC 8216bis 6.3.8: "Clients MUST NOT request Blocking Playlist Reloads unless the Playlist
    # contains an EXT-X-SERVER-CONTROL tag with a CAN-BLOCK-RELOAD=YES attribute." Without it,
    # LL-HLS players fall back to polling: Cascade always offers blocking reload.
    if control is None or not control.can_block_reload:
        out.append(
            Violation(
                "cascade-can-block-reload", media.control_line, "CAN-BLOCK-RELOAD=YES missing"
            )
        )

    part_inf = media.part_inf
    if part_inf is not None:
        pt = part_inf.part_target
        phb = control.part_hold_back if control is not None else None
        # RFC 8216bis 4.4.3.8 PART-HOLD-BACK: "Its value MUST be at least twice the Part Target
        # Duration." and "PART-HOLD-BACK is REQUIRED if the Playlist contains the
        # EXT-X-PART-INF tag."
        if phb is None:
            out.append(
                Violation("part-hold-back", media.control_line, "PART-HOLD-BACK is required")
            )
        else:
            if phb < min_part_hold_back(pt) - _EPS:
                msg = f"PART-HOLD-BACK {phb} < 2 x PART-TARGET {pt}"
                out.append(Violation("part-hold-back", media.control_line, msg))
            # RFC 8216bis 4.4.3.8: "Its value SHOULD be at least three times the Part Target
            # Duration." Cascade makes it a requirement: at 2x a single late part stalls.
            if phb < recommended_part_hold_back(pt) - _EPS:
                msg = f"PART-HOLD-BACK {phb} < 3 x PART-TARGET {pt}"
                out.append(Violation("cascade-part-hold-back-3x", media.control_line, msg))

    # RFC 8216bis 4.4.3.8 CAN-SKIP-UNTIL: "The Skip Boundary MUST be at least six times the
    # Target Duration."
    skip_until = control.can_skip_until if control is not None else None
    if skip_until is not None and td is not None and skip_until < min_can_skip_until(td) - _EPS:
        msg = f"CAN-SKIP-UNTIL {skip_until} < 6 x TARGETDURATION {td}"
        out.append(Violation("can-skip-until", media.control_line, msg))

    # RFC 8216bis 4.4.5.2: "This tag MUST NOT appear more than once in a Playlist."
    for number, _ in media.skips[1:]:
        out.append(Violation("skip-once", number, "a second #EXT-X-SKIP"))


def _check_segments(media: _Media, out: list[Violation]) -> None:
    td = media.target_duration
    for seg in media.segments:
        duration = seg.duration
        if duration is None:
            continue
        if td is not None:
            # RFC 8216bis 4.4.3.1: "The EXTINF duration of each Media Segment in a Playlist
            # file, when rounded to the nearest integer, MUST be less than or equal to the
            # Target Duration."
            if rounded_duration(duration) > td:
                msg = f"EXTINF {duration} rounds above TARGETDURATION {td}"
                out.append(Violation("targetduration-extinf", seg.line, msg))
            # Cascade: segments are cut at or under the target duration, never rounded down
            # to fit; a longer segment means the segmenter missed a keyframe deadline.
            if duration > td + _EPS:
                msg = f"EXTINF {duration} > TARGETDURATION {td}"
                out.append(Violation("cascade-extinf-max", seg.line, msg))
        if seg.parts:
            # RFC 8216bis 3.2: "A Parent Segment and its entire set of Partial Segments MUST
            # contain the same set of media samples, with the same timing and metadata."
            # Cascade lists all parts of a segment or none, so the sum must match.
            total = sum((p.tag.duration for p in seg.parts), 0.0)
            if abs(total - duration) > _SUM_TOLERANCE:
                msg = f"parts add up to {total:.5f}, EXTINF is {duration:.5f}"
                out.append(Violation("cascade-parts-sum", seg.line, msg))


def _with_parts(media: _Media) -> list[_SegRef]:
    segs = [s for s in media.segments if s.parts]
    if media.partial is not None and media.partial.parts:
        segs.append(media.partial)
    return segs


def _check_parts(media: _Media, out: list[Violation]) -> None:
    segs = _with_parts(media)
    if not segs:
        return
    part_inf = media.part_inf
    # RFC 8216bis 4.4.3.7: "It is REQUIRED if a Playlist contains one or more EXT-X-PART tags."
    if part_inf is None:
        out.append(
            Violation("part-inf", segs[0].parts[0].line, "EXT-X-PART without EXT-X-PART-INF")
        )
    for seg in segs:
        parts = seg.parts
        # Cascade: a segment starts on an independent frame, so its first part carries one.
        # RFC 8216bis 4.4.4.9 INDEPENDENT: "The value is an enumerated-string whose value is YES
        # if the Partial Segment contains an independent frame."
        if not parts[0].tag.independent:
            out.append(
                Violation(
                    "cascade-independent-first-part",
                    parts[0].line,
                    f"first part of segment {seg.msn} is not INDEPENDENT=YES",
                )
            )
        if part_inf is None:
            continue
        pt = part_inf.part_target
        last = len(parts) - 1
        for j, ref in enumerate(parts):
            tag = ref.tag
            # RFC 8216bis 4.4.4.9: "The duration of a Partial Segment MUST be less than or equal
            # to the Part Target Duration."
            if tag.duration > pt + _EPS:
                msg = f"part {tag.uri} lasts {tag.duration} > PART-TARGET {pt}"
                out.append(Violation("part-duration-max", ref.line, msg))
            # RFC 8216bis 4.4.4.9: "The duration of each Partial Segment MUST be at least 85% of
            # the Part Target Duration, with the exception of Partial Segments with the
            # INDEPENDENT=YES or GAP=YES attribute, Partial Segments that are immediately
            # followed by a Partial Segment with a GAP=YES attribute, and the final Partial
            # Segment of any Parent Segment."
            # The last listed part of the segment being written may turn out to be its final.
            exempt = tag.independent or tag.gap or j == last or parts[j + 1].tag.gap
            if not exempt and tag.duration < min_part_duration(pt) - _EPS:
                msg = f"part {tag.uri} lasts {tag.duration} < 85% of PART-TARGET {pt}"
                out.append(Violation("part-duration-min", ref.line, msg))


def _check_pdt(media: _Media, out: list[Violation]) -> None:
    # RFC 8216bis 4.4.4.6: "The EXT-X-PROGRAM-DATE-TIME tag associates the first sample of a
    # Media Segment with an absolute date and/or time." Cascade stamps every segment from one
    # wall clock, so consecutive stamps increase and, without a discontinuity between them,
    # differ by the earlier segment's duration (hls.js computes latency from them).
    segs = list(media.segments)
    if media.partial is not None:
        segs.append(media.partial)
    for prev, seg in pairwise(segs):
        if prev.pdt is None or seg.pdt is None:
            continue
        if seg.pdt <= prev.pdt:
            msg = f"PDT of segment {seg.msn} is not after that of segment {prev.msn}"
            out.append(Violation("cascade-pdt-monotonic", seg.pdt_line, msg))
        elif not seg.discontinuity and prev.duration is not None:
            drift = seg.pdt - (prev.pdt + prev.duration)
            if abs(drift) > _PDT_TOLERANCE:
                msg = f"PDT of segment {seg.msn} is {drift * 1000:+.0f} ms off the durations"
                out.append(Violation("cascade-pdt-consistent", seg.pdt_line, msg))


def _check_hints(media: _Media, out: list[Violation]) -> None:
    listed = {ref.tag.uri for seg in _with_parts(media) for ref in seg.parts}
    seen: set[str] = set()
    for number, hint in media.hints:
        # RFC 8216bis 6.2.6: "The Server SHOULD NOT add more than one EXT-X-PRELOAD-HINT tag
        # with the same TYPE to a Playlist."
        if hint.type in seen:
            out.append(Violation("preload-hint-single", number, f"second TYPE={hint.type} hint"))
        seen.add(hint.type)
        # RFC 8216bis 4.4.5.3 URI: "It MUST match the URI that will be subsequently added to the
        # Playlist as a non-hinted resource (for example, the URI of an EXT-X-PART tag)." A hint
        # names the next part, never one already listed.
        if hint.type == "PART" and hint.uri in listed:
            msg = f"hinted part {hint.uri} is already listed"
            out.append(Violation("preload-hint-unlisted", number, msg))
        # RFC 8216bis 4.4.5.3: "A Playlist containing an EXT-X-ENDLIST tag MUST NOT contain an
        # EXT-X-PRELOAD-HINT tag."
        if media.endlist_line is not None:
            out.append(Violation("preload-hint-endlist", number, "preload hint with EXT-X-ENDLIST"))


def _check_version(media: _Media, out: list[Violation]) -> None:
    # RFC 8216bis 8: "A Playlist MUST indicate an EXT-X-VERSION of 9 or higher if it contains:
    # The EXT-X-SKIP tag." / "of 6 or higher if it contains: The EXT-X-MAP tag in a Media
    # Playlist that does not contain EXT-X-I-FRAMES-ONLY." / "of 3 or higher if it contains:
    # Floating-point EXTINF duration values." A Playlist without EXT-X-VERSION is version 1.
    needs: list[tuple[int, str]] = []
    if media.skips:
        needs.append((9, "EXT-X-SKIP"))
    if media.has_map:
        needs.append((6, "EXT-X-MAP"))
    if any(s.duration is not None and not s.duration.is_integer() for s in media.segments):
        needs.append((3, "floating-point EXTINF"))
    declared = media.version if media.version is not None else 1
    for required, feature in needs:
        if declared < required:
            msg = f"{feature} needs EXT-X-VERSION {required} or higher, playlist says {declared}"
            out.append(Violation("version", media.version_line, msg))


def _check_update(prev: _Media, cur: _Media, out: list[Violation]) -> None:
    # RFC 8216bis 6.2.1: "The server MUST NOT change the Media Playlist file, except to: Append
    # lines to it ... Remove Media Segment URIs from the Playlist in the order that they
    # appear ... Increment the value of the EXT-X-MEDIA-SEQUENCE or EXT-X-DISCONTINUITY-SEQUENCE
    # tags ..."
    prev_seq, cur_seq = prev.media_sequence or 0, cur.media_sequence or 0
    if cur_seq < prev_seq:
        msg = f"EXT-X-MEDIA-SEQUENCE went from {prev_seq} to {cur_seq}"
        out.append(Violation("media-sequence-decrease", None, msg))
    before = {s.msn: s for s in prev.segments}
    for seg in cur.segments:
        old = before.get(seg.msn)
        if old is None or old.duration is None or seg.duration is None:
            continue
        if old.uri != seg.uri or abs(old.duration - seg.duration) > 1e-6:
            msg = (
                f"segment {seg.msn} was {old.uri} ({old.duration:.5f} s), "
                f"now {seg.uri} ({seg.duration:.5f} s)"
            )
            out.append(Violation("segment-changed", seg.line, msg))
        # "The EXT-X-DISCONTINUITY-SEQUENCE tag ... If the server removes a Media Segment
        # from the Playlist that has an EXT-X-DISCONTINUITY tag, the server MUST increment
        # the value": a segment's discontinuity sequence number never changes between
        # reloads (hls.js refuses the playlist: "discontinuity sequence mismatch").
        if not cur.skips and not prev.skips and old.dsn != seg.dsn:
            msg = f"segment {seg.msn} had discontinuity sequence {old.dsn}, now {seg.dsn}"
            out.append(Violation("discontinuity-sequence", seg.line, msg))


def _sorted(out: list[Violation]) -> list[Violation]:
    return sorted(out, key=lambda v: (v.line is not None, v.line or 0))


def check_media_playlist(text: str, *, previous: str | None = None) -> list[Violation]:
    """Every LL-HLS rule ``text`` breaks; ``previous`` (the prior response) adds update rules."""
    out: list[Violation] = []
    lines = tokenize(text)
    _check_extm3u(lines, out)
    media = _scan([ln for ln in lines if ln.name != "EXTM3U"], out)
    _check_header(media, out)
    _check_segments(media, out)
    _check_parts(media, out)
    _check_pdt(media, out)
    _check_hints(media, out)
    _check_version(media, out)
    if previous is not None:
        prev_lines = [ln for ln in tokenize(previous) if ln.name != "EXTM3U"]
        _check_update(_scan(prev_lines, []), media, out)
    return _sorted(out)


def check_multivariant_playlist(text: str) -> list[Violation]:
    """Every rule the multivariant playlist ``text`` breaks."""
    out: list[Violation] = []
    lines = tokenize(text)
    _check_extm3u(lines, out)
    pending: Line | None = None
    for line in lines:
        if line.name == "EXTM3U":
            continue
        if line.name is None:
            if pending is None:
                out.append(Violation("syntax", line.number, "URI line without #EXT-X-STREAM-INF"))
            pending = None
            continue
        if pending is not None:
            # RFC 8216bis 4.4.6.2: "The URI line is REQUIRED."
            out.append(Violation("stream-inf-uri", pending.number, "no URI line after the tag"))
            pending = None
        if line.name != "EXT-X-STREAM-INF":
            continue
        pending = line
        try:
            attrs = parse_attribute_list(line.value)
            _check_stream_inf(line, attrs, out)
            if "BANDWIDTH" in attrs:
                StreamInfTag.from_value(line.value)
        except TagError as exc:
            out.append(Violation("syntax", line.number, str(exc)))
    if pending is not None:
        out.append(Violation("stream-inf-uri", pending.number, "no URI line after the tag"))
    return _sorted(out)


def _check_stream_inf(line: Line, attrs: dict[str, str], out: list[Violation]) -> None:
    # RFC 8216bis 4.4.6.2: "Every EXT-X-STREAM-INF tag MUST include the BANDWIDTH attribute."
    if "BANDWIDTH" not in attrs:
        out.append(Violation("stream-inf-bandwidth", line.number, "missing BANDWIDTH"))
    # RFC 8216bis 4.4.6.2: "Every EXT-X-STREAM-INF tag SHOULD include a CODECS attribute."
    # Cascade requires it: without it players probe segments before they can pick a variant.
    if "CODECS" not in attrs:
        out.append(Violation("cascade-stream-inf-codecs", line.number, "missing CODECS"))
    # RFC 8216bis 4.4.6.2: "The RESOLUTION attribute is OPTIONAL but is recommended if the
    # Variant Stream includes video." Every Cascade variant has video.
    if "RESOLUTION" not in attrs:
        out.append(Violation("cascade-stream-inf-resolution", line.number, "missing RESOLUTION"))
    # RFC 8216bis 4.4.6.2: "The FRAME-RATE attribute is OPTIONAL but is recommended if the
    # Variant Stream includes video. The FRAME-RATE attribute SHOULD be included if any video
    # in a Variant Stream exceeds 30 frames per second."
    if "FRAME-RATE" not in attrs:
        out.append(Violation("cascade-stream-inf-frame-rate", line.number, "missing FRAME-RATE"))
