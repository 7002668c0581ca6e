"""``tkhd``: track header (ISO/IEC 14496-12 8.3.2)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["TkhdBox"]


_UNITY_MATRIX = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(frozen=True, slots=True)
class TkhdBox:
    """Track header. ``width``/``height`` are the 16.16 presentation size, as floats."""

    type: ClassVar[str] = "tkhd"
    track_id: int
    duration: int = 0
    width: float = 0.0
    height: float = 0.0
    version: int = 0
    flags: int = 3
    creation_time: int = 0
    modification_time: int = 0
    layer: int = 0
    alternate_group: int = 0
    volume: int = 0
    matrix: tuple[int, ...] = _UNITY_MATRIX

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        version, flags = r.full_header()
        if version == 1:
            ctime, mtime, track_id, _, duration = r.unpack(">QQIIQ")
        elif version == 0:
            ctime, mtime, track_id, _, duration = r.unpack(">IIIII")
        else:
            raise BoxError(f"'tkhd' version {version} is not supported")
        _, _, layer, group, volume, _ = r.unpack(">IIhhhH")
        matrix = r.unpack(">9i")
        width, height = r.unpack(">II")
        return cls(
            track_id, duration, width / 65536, height / 65536, version, flags,
            ctime, mtime, layer, group, volume, matrix,
        )  # fmt: skip

    def serialize(self) -> bytes:
        if self.version == 1:
            times = struct.pack(
                ">QQIIQ", self.creation_time, self.modification_time, self.track_id, 0,
                self.duration,
            )  # fmt: skip
        else:
            times = struct.pack(
                ">IIIII", self.creation_time, self.modification_time, self.track_id, 0,
                self.duration,
            )  # fmt: skip
        payload = (
            full_header(self.version, self.flags)
            + times
            + struct.pack(">IIhhhH", 0, 0, self.layer, self.alternate_group, self.volume, 0)
            + struct.pack(">9i", *self.matrix)
            + struct.pack(">II", round(self.width * 65536), round(self.height * 65536))
        )
        return box_bytes(self.type, payload)


register(TkhdBox.type, TkhdBox.parse)
