"""``Box``, the union of every box class, and the helpers that search a box's children.

The top of :mod:`cascade.cmaf.boxes`: it imports every box module, so by the time this
module is loaded every decoder is in :mod:`~cascade.cmaf.boxes.registry`, and
:data:`KNOWN_TYPES` lists them all.
"""

from __future__ import annotations

from typing import TypeVar

from cascade.cmaf.boxes.avcc import AvcCBox
from cascade.cmaf.boxes.container import ContainerBox
from cascade.cmaf.boxes.esds import EsdsBox
from cascade.cmaf.boxes.ftyp import FtypBox, StypBox
from cascade.cmaf.boxes.hdlr import HdlrBox
from cascade.cmaf.boxes.hvcc import HvcCBox
from cascade.cmaf.boxes.mdat import MdatBox
from cascade.cmaf.boxes.mdhd import MdhdBox
from cascade.cmaf.boxes.mfhd import MfhdBox
from cascade.cmaf.boxes.raw import RawBox
from cascade.cmaf.boxes.registry import registered_types
from cascade.cmaf.boxes.sample_entry import AudioSampleEntry, VisualSampleEntry
from cascade.cmaf.boxes.stsd import StsdBox
from cascade.cmaf.boxes.tfdt import TfdtBox
from cascade.cmaf.boxes.tfhd import TfhdBox
from cascade.cmaf.boxes.tkhd import TkhdBox
from cascade.cmaf.boxes.trex import TrexBox
from cascade.cmaf.boxes.trun import TrunBox

__all__ = ["KNOWN_TYPES", "Box", "find_all", "find_container", "find_first"]

Box = (
    RawBox | ContainerBox | FtypBox | StypBox | MdatBox | TkhdBox | MdhdBox | HdlrBox | TrexBox
    | StsdBox | VisualSampleEntry | AudioSampleEntry | AvcCBox | HvcCBox | EsdsBox | MfhdBox
    | TfhdBox | TfdtBox | TrunBox
)  # fmt: skip

#: Every box type decoded into something other than a RawBox.
KNOWN_TYPES = registered_types()

_B = TypeVar("_B")


def find_first(children: tuple[Box, ...], kind: type[_B]) -> _B | None:
    """The first child of class ``kind``, or None."""
    for child in children:
        if isinstance(child, kind):
            return child
    return None


def find_all(children: tuple[Box, ...], kind: type[_B]) -> list[_B]:
    """Every child of class ``kind``, in order."""
    return [child for child in children if isinstance(child, kind)]


def find_container(children: tuple[Box, ...], box_type: str) -> ContainerBox | None:
    """The first container child of the given type, or None."""
    for child in children:
        if isinstance(child, ContainerBox) and child.type == box_type:
            return child
    return None
