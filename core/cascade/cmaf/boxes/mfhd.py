"""``mfhd``: movie fragment header, the fragment's sequence number (ISO/IEC 14496-12 8.8.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["MfhdBox"]


@dataclass(frozen=True, slots=True)
class MfhdBox:
    """Movie fragment header: the fragment's sequence number."""

    type: ClassVar[str] = "mfhd"
    sequence_number: int

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        r.full_header()
        return cls(r.u32())

    def serialize(self) -> bytes:
        return box_bytes(self.type, full_header(0, 0) + self.sequence_number.to_bytes(4))


register(MfhdBox.type, MfhdBox.parse)
