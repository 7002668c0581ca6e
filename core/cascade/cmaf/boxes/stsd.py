"""``stsd``: sample descriptions, the sample entries of a track (ISO/IEC 14496-12 8.5.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import parse_boxes, register

if TYPE_CHECKING:
    from cascade.cmaf.boxes.box import Box

__all__ = ["StsdBox"]


@dataclass(frozen=True, slots=True)
class StsdBox:
    """Sample descriptions: the sample entries (avc1, hvc1, mp4a, ...) of a track."""

    type: ClassVar[str] = "stsd"
    entries: tuple[Box, ...]
    version: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        version, _ = r.full_header()
        count = r.u32()
        entries = parse_boxes(r.rest())
        if len(entries) != count:
            raise BoxError(f"'stsd' declares {count} sample entries but holds {len(entries)}")
        return cls(entries, version)

    def serialize(self) -> bytes:
        payload = full_header(self.version, 0) + len(self.entries).to_bytes(4)
        return box_bytes(self.type, payload + b"".join(e.serialize() for e in self.entries))


register(StsdBox.type, StsdBox.parse)
