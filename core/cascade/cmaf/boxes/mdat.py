"""``mdat``: media data (ISO/IEC 14496-12 8.1.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import box_bytes
from cascade.cmaf.boxes.registry import register

__all__ = ["MdatBox"]


@dataclass(frozen=True, slots=True)
class MdatBox:
    """Media data. Parsing copies the payload; fragment parsing never parses mdat."""

    type: ClassVar[str] = "mdat"
    data: bytes

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        return cls(payload)

    def serialize(self) -> bytes:
        return box_bytes(self.type, self.data)


register(MdatBox.type, MdatBox.parse)
