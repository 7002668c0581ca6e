"""``tfdt``: track fragment base media decode time (ISO/IEC 14496-12 8.8.12)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["TfdtBox"]


@dataclass(frozen=True, slots=True)
class TfdtBox:
    """Track fragment decode time: the first sample's decode time in the track timescale."""

    type: ClassVar[str] = "tfdt"
    base_media_decode_time: int
    version: int = 1

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        version, _ = r.full_header()
        if version > 1:
            raise BoxError(f"'tfdt' version {version} is not supported")
        return cls(r.u64() if version == 1 else r.u32(), version)

    def serialize(self) -> bytes:
        width = 8 if self.version == 1 else 4
        return box_bytes(
            self.type, full_header(self.version, 0) + self.base_media_decode_time.to_bytes(width)
        )


register(TfdtBox.type, TfdtBox.parse)
