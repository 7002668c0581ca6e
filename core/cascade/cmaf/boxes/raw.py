"""Boxes this package does not decode, kept byte for byte (mp4ff's ``UnknownBox``)."""

from __future__ import annotations

from dataclasses import dataclass

from cascade.cmaf.boxes.header import box_bytes

__all__ = ["RawBox"]


@dataclass(frozen=True, slots=True)
class RawBox:
    """A box this module does not decode, kept byte for byte (payload after the header)."""

    type: str
    payload: bytes
    usertype: bytes | None = None

    def serialize(self) -> bytes:
        return box_bytes(self.type, self.payload, self.usertype)
