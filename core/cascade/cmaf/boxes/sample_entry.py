"""Sample entries: the visual (avc1, hvc1, ...) and audio (mp4a, ac-3, ...) families.

ISO/IEC 14496-12 12.1.3 and 12.2.3; each entry holds its codec's configuration box
(``avcC``, ``hvcC``, ``esds``, ...) as a child.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes
from cascade.cmaf.boxes.payload import PayloadReader
from cascade.cmaf.boxes.registry import parse_boxes, register_family

if TYPE_CHECKING:
    from cascade.cmaf.boxes.box import Box

__all__ = ["AudioSampleEntry", "VisualSampleEntry"]


@dataclass(frozen=True, slots=True)
class VisualSampleEntry:
    """A video sample entry (avc1, avc3, hvc1, hev1, ...) with its child boxes (avcC, ...)."""

    type: str
    width: int
    height: int
    children: tuple[Box, ...] = ()
    data_reference_index: int = 1
    horizresolution: int = 0x00480000
    vertresolution: int = 0x00480000
    frame_count: int = 1
    compressorname: bytes = bytes(32)
    depth: int = 0x18

    TYPES: ClassVar[frozenset[str]] = frozenset(
        {"avc1", "avc3", "hvc1", "hev1", "av01", "vp09", "encv"}
    )
    _FIXED: ClassVar[str] = ">6xH16xHHIIIH32sHh"

    @classmethod
    def parse_typed(cls, box_type: str, payload: bytes) -> Self:
        r = PayloadReader(payload, box_type)
        dri, width, height, hres, vres, _, frames, name, depth, _ = struct.unpack_from(
            cls._FIXED, r.take(struct.calcsize(cls._FIXED))
        )
        return cls(
            box_type, width, height, parse_boxes(r.rest()), dri, hres, vres, frames, name, depth
        )

    def serialize(self) -> bytes:
        fixed = struct.pack(
            self._FIXED, self.data_reference_index, self.width, self.height,
            self.horizresolution, self.vertresolution, 0, self.frame_count,
            self.compressorname, self.depth, -1,
        )  # fmt: skip
        return box_bytes(self.type, fixed + b"".join(c.serialize() for c in self.children))


@dataclass(frozen=True, slots=True)
class AudioSampleEntry:
    """An audio sample entry (mp4a, ac-3, ec-3, Opus, fLaC) with its child boxes (esds, ...).

    ``sample_rate`` is the integer part of the 16.16 field (so at most 65535; AAC's real rate
    is in the AudioSpecificConfig). QuickTime sound descriptions (version 1/2) are refused.
    """

    type: str
    channel_count: int
    sample_size: int
    sample_rate: int
    children: tuple[Box, ...] = ()
    data_reference_index: int = 1

    TYPES: ClassVar[frozenset[str]] = frozenset({"mp4a", "ac-3", "ec-3", "Opus", "fLaC", "enca"})
    _FIXED: ClassVar[str] = ">6xHH6xHH4xI"

    @classmethod
    def parse_typed(cls, box_type: str, payload: bytes) -> Self:
        r = PayloadReader(payload, box_type)
        dri, version, channels, bits, rate = struct.unpack_from(
            cls._FIXED, r.take(struct.calcsize(cls._FIXED))
        )
        if version != 0:
            raise BoxError(
                f"{box_type!r}: QuickTime sound description version {version} is not supported"
            )
        return cls(box_type, channels, bits, rate >> 16, parse_boxes(r.rest()), dri)

    def serialize(self) -> bytes:
        fixed = struct.pack(
            self._FIXED, self.data_reference_index, 0, self.channel_count, self.sample_size,
            self.sample_rate << 16,
        )  # fmt: skip
        return box_bytes(self.type, fixed + b"".join(c.serialize() for c in self.children))


register_family(VisualSampleEntry.TYPES, VisualSampleEntry.parse_typed)
register_family(AudioSampleEntry.TYPES, AudioSampleEntry.parse_typed)
