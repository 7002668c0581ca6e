"""``trex``: track extends, the per-track fragment sample defaults (ISO/IEC 14496-12 8.8.3)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["TrexBox"]


@dataclass(frozen=True, slots=True)
class TrexBox:
    """Track extends: per-track sample defaults for movie fragments."""

    type: ClassVar[str] = "trex"
    track_id: int
    default_sample_description_index: int = 1
    default_sample_duration: int = 0
    default_sample_size: int = 0
    default_sample_flags: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        r.full_header()
        return cls(*r.unpack(">IIIII"))

    def serialize(self) -> bytes:
        payload = full_header(0, 0) + struct.pack(
            ">IIIII",
            self.track_id,
            self.default_sample_description_index,
            self.default_sample_duration,
            self.default_sample_size,
            self.default_sample_flags,
        )
        return box_bytes(self.type, payload)


register(TrexBox.type, TrexBox.parse)
