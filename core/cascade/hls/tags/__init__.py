"""The HLS tags Cascade emits: one frozen dataclass per tag, each with ``render()`` and ``parse()``.

Pure and stdlib-only. Spec references are to draft-pantos-hls-rfc8216bis ("RFC 8216bis").

One module per tag, or per family of tags, with its parse and its render (after gohlslib's
``pkg/playlist``):

- ``primitives``: attribute lists, decimals, integers, quoted strings, date-times, and
  :class:`TagError`; shared by every tag module.
- ``tag``: what every tag class shares (``parse(line)`` through :func:`split_tag`).
- ``segment``: EXTINF, EXT-X-DISCONTINUITY, EXT-X-PROGRAM-DATE-TIME.
- ``map``: EXT-X-MAP. ``part_inf``: EXT-X-PART-INF. ``server_control``:
  EXT-X-SERVER-CONTROL. ``part``: EXT-X-PART. ``preload_hint``: EXT-X-PRELOAD-HINT.
  ``rendition_report``: EXT-X-RENDITION-REPORT. ``skip``: EXT-X-SKIP.
- ``stream_inf``: EXT-X-STREAM-INF (the Multivariant Playlist's one tag here).

Import the names from here. Number formatting is fixed so that rendered text is deterministic
(golden files compare bytes):

- EXTINF durations: always 5 decimals, then the comma: ``#EXTINF:0.50000,``.
- Every other decimal-floating-point attribute (DURATION, PART-TARGET, PART-HOLD-BACK,
  CAN-SKIP-UNTIL, HOLD-BACK): ``%.5f`` with trailing zeros trimmed, one decimal kept:
  ``0.1``, ``0.33333``, ``6.0``. Sub-10-microsecond differences are below what the
  segmenter produces, so nothing is lost.
- FRAME-RATE: always 3 decimals (the spec: "rounded to three decimal places").
- EXT-X-PROGRAM-DATE-TIME: UTC, milliseconds, ``Z``: ``2023-11-14T22:13:20.000Z``.

The ``render_*`` / ``format_*`` functions are what the playlist renderer calls per request (the
hot path: the edge renders per request); the dataclasses delegate to them, so both paths print
the same bytes.
"""

from cascade.hls.tags.map import MapTag, render_map
from cascade.hls.tags.part import PartTag, render_part
from cascade.hls.tags.part_inf import PartInfTag
from cascade.hls.tags.preload_hint import PreloadHintTag, PreloadHintType, render_preload_hint
from cascade.hls.tags.primitives import (
    TagError,
    format_decimal,
    format_pdt,
    parse_attribute_list,
    parse_decimal,
    parse_pdt,
)
from cascade.hls.tags.rendition_report import RenditionReportTag, render_rendition_report
from cascade.hls.tags.segment import (
    DiscontinuityTag,
    InfTag,
    ProgramDateTimeTag,
    render_extinf,
    render_pdt,
)
from cascade.hls.tags.server_control import ServerControlTag, render_server_control
from cascade.hls.tags.skip import SkipTag
from cascade.hls.tags.stream_inf import StreamInfTag, render_stream_inf
from cascade.hls.tags.tag import split_tag

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
