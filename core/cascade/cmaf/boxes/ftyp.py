"""``ftyp`` and ``styp``: file type and segment type, one layout (ISO/IEC 14496-12 4.3, 8.16.2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes, fourcc
from cascade.cmaf.boxes.payload import PayloadReader
from cascade.cmaf.boxes.registry import register

__all__ = ["FtypBox", "StypBox"]


@dataclass(frozen=True, slots=True)
class FtypBox:
    """File type: major brand, minor version, compatible brands."""

    type: ClassVar[str] = "ftyp"
    major_brand: str
    minor_version: int
    compatible_brands: tuple[str, ...] = ()

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        major = fourcc(r.take(4))
        minor = r.u32()
        if r.remaining() % 4:
            raise BoxError(f"{cls.type!r}: brand list of {r.remaining()} bytes is not 4-aligned")
        rest = r.rest()
        brands = tuple(fourcc(rest[i : i + 4]) for i in range(0, len(rest), 4))
        return cls(major, minor, brands)

    def serialize(self) -> bytes:
        brands = "".join((self.major_brand, *self.compatible_brands)).encode("latin-1")
        payload = brands[:4] + self.minor_version.to_bytes(4) + brands[4:]
        return box_bytes(self.type, payload)


@dataclass(frozen=True, slots=True)
class StypBox(FtypBox):
    """Segment type: same layout as ftyp."""

    type: ClassVar[str] = "styp"


register(FtypBox.type, FtypBox.parse)
register(StypBox.type, StypBox.parse)
