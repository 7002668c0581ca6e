"""The pure HLS layer: LL-HLS tags, the playlist model, renderers, parser and rule checker.

Bottom floor: stdlib only, no I/O, no clock. Modules:

- ``tags``: one frozen dataclass per tag we emit, with ``render()`` / ``parse()``, one
  module per tag or tag family (after gohlslib's ``pkg/playlist``), every name re-exported
  by ``cascade.hls.tags``:

  - ``tags.primitives``: attribute lists, decimals, integers, quoted strings, date-times,
    ``TagError``; ``tags.tag``: the shared ``parse`` (``split_tag``);
  - ``tags.segment`` (EXTINF, EXT-X-DISCONTINUITY, EXT-X-PROGRAM-DATE-TIME), ``tags.map``,
    ``tags.part_inf``, ``tags.server_control``, ``tags.part``, ``tags.preload_hint``,
    ``tags.rendition_report``, ``tags.skip``, ``tags.stream_inf``;

- ``playlist``: ``MediaPlaylist`` / ``Variant`` and ``render_media_playlist`` /
  ``render_multivariant_playlist`` (called per request by the edge);
- ``parse``: playlist text back into the model (``PlaylistError`` on malformed input);
- ``limits``: the numbers derived from target durations and positions (advance limits,
  PART-HOLD-BACK, CAN-SKIP-UNTIL, EXT-X-TARGETDURATION...), used by the edge's window, the
  renderer and the checker alike;
- ``rules``: ``check_media_playlist`` / ``check_multivariant_playlist`` return ``Violation`` s.
"""

from cascade.hls.parse import PlaylistError, parse_media_playlist, parse_multivariant_playlist
from cascade.hls.playlist import (
    MediaPlaylist,
    MultivariantPlaylist,
    Part,
    RenditionReport,
    Segment,
    Variant,
    media_playlist_version,
    render_media_playlist,
    render_multivariant_playlist,
)
from cascade.hls.rules import RULES, Violation, check_media_playlist, check_multivariant_playlist

__all__ = [
    "RULES",
    "MediaPlaylist",
    "MultivariantPlaylist",
    "Part",
    "PlaylistError",
    "RenditionReport",
    "Segment",
    "Variant",
    "Violation",
    "check_media_playlist",
    "check_multivariant_playlist",
    "media_playlist_version",
    "parse_media_playlist",
    "parse_multivariant_playlist",
    "render_media_playlist",
    "render_multivariant_playlist",
]
