"""``hdlr``: handler reference, what kind of track this is (ISO/IEC 14496-12 8.4.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import box_bytes, fourcc
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["HdlrBox"]


@dataclass(frozen=True, slots=True)
class HdlrBox:
    """Handler reference: ``handler_type`` is 'vide', 'soun', 'subt', 'meta', ..."""

    type: ClassVar[str] = "hdlr"
    handler_type: str
    name: str = ""

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        r.full_header()
        r.u32()  # pre_defined
        handler = fourcc(r.take(4))
        r.take(12)  # reserved
        name = r.rest().split(b"\0", 1)[0].decode("utf-8", "replace")
        return cls(handler, name)

    def serialize(self) -> bytes:
        payload = (
            full_header(0, 0)
            + bytes(4)
            + self.handler_type.encode("latin-1")
            + bytes(12)
            + self.name.encode()
            + b"\0"
        )
        return box_bytes(self.type, payload)


register(HdlrBox.type, HdlrBox.parse)
