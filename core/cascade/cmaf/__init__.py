"""CMAF (fragmented MP4) on the bottom floor: boxes, stream reading, LL-HLS segmenting.

Pure Python, standard library only, no I/O: bytes in, typed values out.

* :mod:`cascade.cmaf.boxes`: ISO BMFF boxes with ``parse`` / ``serialize``, one module per
  box (after mp4ff's ``mp4/``), every name re-exported by the package:

  * ``header``: box headers and walking (``BoxHeader``, ``read_header``, ``iter_boxes``,
    ``box_bytes``, ``BoxError``); ``payload``: the bounds-checked payload reader;
  * ``raw``: unknown boxes kept byte for byte; ``registry``: box type to parser,
    ``parse_box``, ``parse_boxes``;
  * the boxes: ``ftyp`` (ftyp, styp), ``mdat``, ``tkhd``, ``mdhd``, ``hdlr``, ``trex``,
    ``avcc``, ``hvcc``, ``esds`` (with AudioSpecificConfig), ``mfhd``, ``tfhd``, ``tfdt``,
    ``trun``, and those holding boxes: ``container``, ``stsd``, ``sample_entry``;
  * ``box``: the ``Box`` union, ``KNOWN_TYPES``, ``find_first`` / ``find_all`` /
    ``find_container``.

* :mod:`cascade.cmaf.codec_string`: RFC 6381 codec strings from sample entries.
* :mod:`cascade.cmaf.splitter`: incremental top-level box splitting.
* :mod:`cascade.cmaf.moof`: the one moof reader, struct-only (the packager's hot path).
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
