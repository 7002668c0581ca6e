"""Containers: boxes whose payload is nothing but child boxes (moov, trak, moof, traf, ...).

One class for every container type, the type kept on the instance (ISO/IEC 14496-12 4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from cascade.cmaf.boxes.header import box_bytes
from cascade.cmaf.boxes.registry import parse_boxes, register_family

if TYPE_CHECKING:
    from cascade.cmaf.boxes.box import Box

__all__ = ["CONTAINER_TYPES", "ContainerBox"]


#: Boxes whose payload is nothing but child boxes.
CONTAINER_TYPES = frozenset(
    {"moov", "trak", "mdia", "minf", "stbl", "mvex", "moof", "traf", "dinf", "edts", "mfra"}
)


@dataclass(frozen=True, slots=True)
class ContainerBox:
    """A box holding only child boxes (moov, trak, moof, traf, ...)."""

    type: str
    children: tuple[Box, ...]

    @classmethod
    def parse_typed(cls, box_type: str, payload: bytes) -> Self:
        return cls(box_type, parse_boxes(payload))

    def serialize(self) -> bytes:
        return box_bytes(self.type, b"".join(child.serialize() for child in self.children))


register_family(CONTAINER_TYPES, ContainerBox.parse_typed)
