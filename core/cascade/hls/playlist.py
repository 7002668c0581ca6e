"""Typed LL-HLS playlist model and its pure renderers.

``render_media_playlist`` runs per request on the edge: it only appends pre-formatted strings to
one list and joins once. No clock, no I/O, no caching on the model: the same model and flags
always give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cascade.hls.limits import part_retention
from cascade.hls.tags import (
    format_decimal,
    render_extinf,
    render_map,
    render_part,
    render_pdt,
    render_preload_hint,
    render_rendition_report,
    render_server_control,
    render_stream_inf,
)

__all__ = [
    "FLOAT_TOLERANCE",
    "MediaPlaylist",
    "MultivariantPlaylist",
    "Part",
    "RenditionReport",
    "Segment",
    "Variant",
    "media_playlist_version",
    "render_media_playlist",
    "render_multivariant_playlist",
]

# Durations are sums of floats; comparisons against window limits allow this much slack (1 µs)
# so that, e.g., six 0.5 s segments count as exactly 3.0 s.
FLOAT_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Part:
    """A Partial Segment: ``duration`` seconds at ``uri`` (e.g. ``13.2.m4s``)."""

    duration: float
    uri: str
    independent: bool


@dataclass(frozen=True, slots=True)
class Segment:
    """A Media Segment (or, as ``MediaPlaylist.partial``, the Parent Segment being written).

    ``pdt`` is the wall-clock time of its first sample in Unix seconds. ``map_uri``, when set,
    emits an EXT-X-MAP before this segment (an init change after a discontinuity).
    """

    msn: int
    duration: float
    uri: str
    parts: tuple[Part, ...]
    pdt: float | None
    discontinuity: bool = False
    map_uri: str | None = None


@dataclass(frozen=True, slots=True)
class RenditionReport:
    """The live edge of a sibling Rendition; ``uri`` is relative, e.g. ``../360p/index.m3u8``."""

    uri: str
    last_msn: int
    last_part: int


@dataclass(frozen=True, slots=True)
class MediaPlaylist:
    """One Rendition's live window.

    ``segments`` are the complete segments, oldest first; ``partial`` is the segment being
    written (its parts so far, ``duration`` their sum; its ``uri`` is not rendered).
    """

    target_duration: int
    part_target: float
    media_sequence: int
    discontinuity_sequence: int
    map_uri: str
    segments: tuple[Segment, ...]
    partial: Segment | None
    preload_hint_uri: str | None
    part_hold_back: float
    can_skip_until: float | None
    rendition_reports: tuple[RenditionReport, ...] = ()
    ended: bool = False


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF entry of the multivariant playlist."""

    uri: str
    bandwidth: int
    codecs: str
    width: int
    height: int
    frame_rate: float
    average_bandwidth: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MultivariantPlaylist:
    """What ``parse_multivariant_playlist`` returns."""

    variants: tuple[Variant, ...]
    independent_segments: bool = True


def media_playlist_version(pl: MediaPlaylist) -> int:
    """EXT-X-VERSION for ``pl``: a function of its configuration, never of the request.

    RFC 8216bis 8: "A Playlist MUST indicate an EXT-X-VERSION of 9 or higher if it contains:
    The EXT-X-SKIP tag." and "... of 6 or higher if it contains: The EXT-X-MAP tag in a Media
    Playlist that does not contain EXT-X-I-FRAMES-ONLY." A rendition that offers delta updates
    (CAN-SKIP-UNTIL) says 9 in full and delta responses alike, so the two never disagree.
    """
    return 9 if pl.can_skip_until is not None else 6


def _segment_tags(out: list[str], seg: Segment) -> None:
    # RFC 8216bis 4.4.4.9: "When the Media Segment Tags (Section 4.4.4) EXT-X-DISCONTINUITY,
    # EXT-X-KEY, EXT-X-MAP, or EXT-X-PROGRAM-DATE-TIME are applied to a Parent Segment, they
    # also necessarily apply to the first Partial Segment, so they MUST appear before the first
    # EXT-X-PART tag of that Parent Segment."
    if seg.discontinuity:
        out.append("#EXT-X-DISCONTINUITY")
    if seg.map_uri is not None:
        out.append(render_map(seg.map_uri))
    # PDT on every segment: hls.js measures latency from the PDT of the segment it plays.
    if seg.pdt is not None:
        out.append(render_pdt(seg.pdt))


def _first_segment_with_parts(pl: MediaPlaylist, partial_duration: float) -> int:
    # RFC 8216bis 6.2.2 (``part_retention``): a segment keeps its parts while its start is
    # within three Target Durations of the end of the Playlist (the end of the last part).
    # All or none per segment: players number parts by their position in the segment.
    segments = pl.segments
    limit = part_retention(pl.target_duration) + FLOAT_TOLERANCE
    tail = partial_duration
    first = len(segments)
    for i in range(len(segments) - 1, -1, -1):
        tail += segments[i].duration
        if tail > limit:
            break
        first = i
    return first


def _skipped_segments(pl: MediaPlaylist, can_skip_until: float) -> int:
    # RFC 8216bis 6.2.5.1: "The Playlist Delta Update is a version of the Playlist in which Media
    # Segments that are further from the end of the last (Parent) Media Segment in the Playlist
    # than the Skip Boundary (Section 4.4.3.8), as well as their associated tags, are replaced by
    # an EXT-X-SKIP tag (Section 4.4.5.2)."
    # Read conservatively: a segment is skipped only when all of it (its end) lies further than
    # the Skip Boundary from the end of the last complete segment.
    segments = pl.segments
    boundary = can_skip_until + FLOAT_TOLERANCE
    tail = 0.0
    for i in range(len(segments) - 1, -1, -1):
        if tail > boundary:
            return i + 1
        tail += segments[i].duration
    return 0


def render_media_playlist(pl: MediaPlaylist, *, skip: bool = False) -> str:
    """Render ``pl``; ``skip=True`` (the ``_HLS_skip=YES`` directive) gives a delta update.

    When no segment is old enough to skip, the full playlist is returned (no EXT-X-SKIP tag):
    a delta update that replaces nothing is the full playlist.
    """
    segments = pl.segments
    partial = pl.partial
    partial_parts = partial.parts if partial is not None else ()
    can_skip_until = pl.can_skip_until

    out = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{media_playlist_version(pl)}",
        f"#EXT-X-TARGETDURATION:{pl.target_duration}",
        render_server_control(True, pl.part_hold_back, can_skip_until),
        "#EXT-X-PART-INF:PART-TARGET=" + format_decimal(pl.part_target),
        f"#EXT-X-MEDIA-SEQUENCE:{pl.media_sequence}",
    ]
    # Absent means 0 (RFC 8216bis 4.4.3.3), so it is only written once it is non-zero.
    if pl.discontinuity_sequence:
        out.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{pl.discontinuity_sequence}")

    skipped = 0
    # RFC 8216bis 6.2.5.1: "A Server MUST ignore the _HLS_skip directive if the Playlist does not
    # contain the CAN-SKIP-UNTIL attribute, or if it contains an EXT-X-ENDLIST tag."
    if skip and can_skip_until is not None and not pl.ended:
        skipped = _skipped_segments(pl, can_skip_until)

    map_uri = pl.map_uri
    if skipped:
        # RFC 8216bis 4.4.5.2: "When replacing Media Segments, the EXT-X-SKIP tag replaces the
        # segment URI lines and all Media Segment Tags that are applied to those segments."
        # RFC 8216bis 6.2.5.1: "All tags that were not skipped MUST remain in the Playlist Delta
        # Update." The EXT-X-MAP in effect also applies to the kept segments, so it is written
        # after the EXT-X-SKIP tag, before the first kept segment.
        out.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        for seg in segments[:skipped]:
            if seg.map_uri is not None:
                map_uri = seg.map_uri
    out.append(render_map(map_uri))

    partial_duration = sum((p.duration for p in partial_parts), 0.0)
    with_parts = _first_segment_with_parts(pl, partial_duration)
    for i in range(skipped, len(segments)):
        seg = segments[i]
        _segment_tags(out, seg)
        if i >= with_parts:
            for part in seg.parts:
                out.append(render_part(part.duration, part.uri, part.independent))
        out.append(render_extinf(seg.duration))
        out.append(seg.uri)

    if partial is not None and partial_parts:
        _segment_tags(out, partial)
        for part in partial_parts:
            out.append(render_part(part.duration, part.uri, part.independent))

    # RFC 8216bis 4.4.5.3: "A Playlist containing an EXT-X-ENDLIST tag MUST NOT contain an
    # EXT-X-PRELOAD-HINT tag."
    if pl.preload_hint_uri is not None and not pl.ended:
        out.append(render_preload_hint(pl.preload_hint_uri))
    for report in pl.rendition_reports:
        out.append(render_rendition_report(report.uri, report.last_msn, report.last_part))
    if pl.ended:
        out.append("#EXT-X-ENDLIST")
    out.append("")
    return "\n".join(out)


def render_multivariant_playlist(
    variants: Sequence[Variant], *, independent_segments: bool = True
) -> str:
    """Render the multivariant playlist: one EXT-X-STREAM-INF + URI line per variant."""
    out = ["#EXTM3U"]
    if independent_segments:
        out.append("#EXT-X-INDEPENDENT-SEGMENTS")
    for v in variants:
        out.append(
            render_stream_inf(
                v.bandwidth,
                average_bandwidth=v.average_bandwidth,
                codecs=v.codecs,
                resolution=(v.width, v.height),
                frame_rate=v.frame_rate,
                name=v.name,
            )
        )
        # RFC 8216bis 4.4.6.2: "The URI line that follows the EXT-X-STREAM-INF tag specifies a
        # Media Playlist that carries a Rendition of the Variant Stream. The URI line is
        # REQUIRED."
        out.append(v.uri)
    out.append("")
    return "\n".join(out)
