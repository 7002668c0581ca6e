"""ISO BMFF (MP4) boxes: headers, the typed boxes CMAF needs, and unknown boxes kept as bytes.

Every typed box is a frozen dataclass with the same protocol (after mp4ff):
``Cls.parse(payload)`` decodes the bytes after the box header, ``box.serialize()`` encodes the
whole box, header included, and ``parse_box(box.serialize()) == box``. Boxes this package does
not know are kept byte for byte as :class:`RawBox`; containers as :class:`ContainerBox`.

Truncated or garbage input raises :class:`BoxError` (a ``ValueError``) naming the box and the
offset; ``IndexError`` and ``struct.error`` never escape.

One module per box, or per family of boxes that share one class (after mp4ff's ``mp4/``),
from the bottom up; each module imports only the ones above it in this list:

* ``header``: :class:`BoxHeader`, :func:`read_header`, :func:`iter_boxes`, :func:`box_bytes`,
  :class:`BoxError`.
* ``payload``: the bounds-checked reader every ``parse`` uses.
* ``raw``: :class:`RawBox`, what an unregistered type decodes to.
* ``registry``: box type to parser, :func:`parse_box` and :func:`parse_boxes`.
* one module per box, each registering its class: ``ftyp`` (ftyp, styp), ``mdat``,
  ``tkhd``, ``mdhd``, ``hdlr``, ``trex``, ``avcc``, ``hvcc``, ``esds`` (with
  AudioSpecificConfig), ``mfhd``, ``tfhd``, ``tfdt``, ``trun``; and the boxes that hold
  boxes, which parse their children through the registry: ``container`` (moov, trak, moof,
  traf, ...), ``stsd``, ``sample_entry`` (the visual and audio sample entries).
* ``box``: :data:`Box` (the union of every class), :data:`KNOWN_TYPES` and the ``find_*``
  helpers.

This ``__init__`` imports every module (so every parser is registered before anything is
parsed) and re-exports the names; import them from here.

References: ISO/IEC 14496-12 (ISOBMFF), 14496-14 (MP4, ``esds``), 14496-15 (``avcC``,
``hvcC``), 14496-3 (AudioSpecificConfig).
"""

from cascade.cmaf.boxes.avcc import AvcCBox
from cascade.cmaf.boxes.box import KNOWN_TYPES, Box, find_all, find_container, find_first
from cascade.cmaf.boxes.container import CONTAINER_TYPES, ContainerBox
from cascade.cmaf.boxes.esds import AudioSpecificConfig, EsdsBox
from cascade.cmaf.boxes.ftyp import FtypBox, StypBox
from cascade.cmaf.boxes.hdlr import HdlrBox
from cascade.cmaf.boxes.header import BoxError, BoxHeader, box_bytes, iter_boxes, read_header
from cascade.cmaf.boxes.hvcc import HvcCBox
from cascade.cmaf.boxes.mdat import MdatBox
from cascade.cmaf.boxes.mdhd import MdhdBox
from cascade.cmaf.boxes.mfhd import MfhdBox
from cascade.cmaf.boxes.raw import RawBox
from cascade.cmaf.boxes.registry import parse_box, parse_boxes
from cascade.cmaf.boxes.sample_entry import AudioSampleEntry, VisualSampleEntry
from cascade.cmaf.boxes.stsd import StsdBox
from cascade.cmaf.boxes.tfdt import TfdtBox
from cascade.cmaf.boxes.tfhd import TfhdBox
from cascade.cmaf.boxes.tkhd import TkhdBox
from cascade.cmaf.boxes.trex import TrexBox
from cascade.cmaf.boxes.trun import TrunBox

__all__ = [
    "CONTAINER_TYPES",
    "KNOWN_TYPES",
    "AudioSampleEntry",
    "AudioSpecificConfig",
    "AvcCBox",
    "Box",
    "BoxError",
    "BoxHeader",
    "ContainerBox",
    "EsdsBox",
    "FtypBox",
    "HdlrBox",
    "HvcCBox",
    "MdatBox",
    "MdhdBox",
    "MfhdBox",
    "RawBox",
    "StsdBox",
    "StypBox",
    "TfdtBox",
    "TfhdBox",
    "TkhdBox",
    "TrexBox",
    "TrunBox",
    "VisualSampleEntry",
    "box_bytes",
    "find_all",
    "find_container",
    "find_first",
    "iter_boxes",
    "parse_box",
    "parse_boxes",
    "read_header",
]
