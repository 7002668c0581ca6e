"""``mdhd``: media header, the track's timescale and language (ISO/IEC 14496-12 8.4.2)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["MdhdBox"]


@dataclass(frozen=True, slots=True)
class MdhdBox:
    """Media header: the track's timescale (ticks per second) and language."""

    type: ClassVar[str] = "mdhd"
    timescale: int
    duration: int = 0
    language: str = "und"
    version: int = 0
    creation_time: int = 0
    modification_time: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        version, _ = r.full_header()
        if version == 1:
            ctime, mtime, timescale, duration = r.unpack(">QQIQ")
        elif version == 0:
            ctime, mtime, timescale, duration = r.unpack(">IIII")
        else:
            raise BoxError(f"'mdhd' version {version} is not supported")
        packed = r.u16()
        language = "".join(chr(0x60 + ((packed >> shift) & 0x1F)) for shift in (10, 5, 0))
        return cls(timescale, duration, language, version, ctime, mtime)

    def serialize(self) -> bytes:
        if len(self.language) != 3:
            raise BoxError(f"mdhd language must be 3 letters, got {self.language!r}")
        packed = 0
        for char in self.language:
            packed = (packed << 5) | ((ord(char) - 0x60) & 0x1F)
        fmt = ">QQIQ" if self.version == 1 else ">IIII"
        payload = (
            full_header(self.version, 0)
            + struct.pack(
                fmt, self.creation_time, self.modification_time, self.timescale, self.duration
            )
            + struct.pack(">HH", packed, 0)
        )
        return box_bytes(self.type, payload)


register(MdhdBox.type, MdhdBox.parse)
