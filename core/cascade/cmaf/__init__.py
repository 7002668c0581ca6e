"""CMAF (fragmented MP4) on the bottom floor: boxes, stream reading, LL-HLS segmenting.

Pure Python, standard library only, no I/O: bytes in, typed values out.

* :mod:`cascade.cmaf.boxes`: ISO BMFF boxes with ``parse`` / ``serialize``.
* :mod:`cascade.cmaf.codec_string`: RFC 6381 codec strings from sample entries.
* :mod:`cascade.cmaf.splitter`: incremental top-level box splitting.
* :mod:`cascade.cmaf.fmp4`: init segments and fragments from FFmpeg's fragmented MP4.
* :mod:`cascade.cmaf.segmenter`: fragments placed into LL-HLS parts and segments.
"""

from cascade.cmaf.boxes import BoxError
from cascade.cmaf.codec_string import UnsupportedCodecError, codec_string
from cascade.cmaf.fmp4 import (
    Fmp4Reader,
    Fragment,
    FragmentInfo,
    InitInfo,
    InitSegment,
    TrackFragmentInfo,
    TrackInfo,
    TrackKind,
    parse_fragment,
    parse_init,
)
from cascade.cmaf.segmenter import Placement, Segmenter
from cascade.cmaf.splitter import BoxSplitter

__all__ = [
    "BoxError",
    "BoxSplitter",
    "Fmp4Reader",
    "Fragment",
    "FragmentInfo",
    "InitInfo",
    "InitSegment",
    "Placement",
    "Segmenter",
    "TrackFragmentInfo",
    "TrackInfo",
    "TrackKind",
    "UnsupportedCodecError",
    "codec_string",
    "parse_fragment",
    "parse_init",
]
