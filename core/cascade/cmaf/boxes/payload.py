"""The bounds-checked cursor every box's ``parse`` reads its payload with.

Each read checks the bytes are there and raises :class:`BoxError` naming the box and the
offset, so ``IndexError`` and ``struct.error`` never escape a box parser.
"""

from __future__ import annotations

import struct

from cascade.cmaf.boxes.header import BoxError

__all__ = ["PayloadReader", "full_header"]


class PayloadReader:
    """Cursor over one box payload; every read checks bounds and raises BoxError."""

    __slots__ = ("box", "data", "pos")

    def __init__(self, data: bytes, box: str) -> None:
        self.data = data
        self.box = box
        self.pos = 0

    def _need(self, n: int) -> int:
        start = self.pos
        if start + n > len(self.data):
            raise BoxError(
                f"truncated {self.box!r} payload: need {n} bytes at offset {start}, "
                f"payload has {len(self.data)}"
            )
        self.pos = start + n
        return start

    def unpack(self, fmt: str) -> tuple[int, ...]:
        start = self._need(struct.calcsize(fmt))
        values: tuple[int, ...] = struct.unpack_from(fmt, self.data, start)
        return values

    def u8(self) -> int:
        return self.data[self._need(1)]

    def u16(self) -> int:
        return int.from_bytes(self.data[self._need(2) : self.pos])

    def u32(self) -> int:
        return int.from_bytes(self.data[self._need(4) : self.pos])

    def u64(self) -> int:
        return int.from_bytes(self.data[self._need(8) : self.pos])

    def take(self, n: int) -> bytes:
        return self.data[self._need(n) : self.pos]

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def full_header(self) -> tuple[int, int]:
        value = self.u32()
        return value >> 24, value & 0xFFFFFF

    def remaining(self) -> int:
        return len(self.data) - self.pos


def full_header(version: int, flags: int) -> bytes:
    """The 4 bytes a FullBox payload starts with: version (8 bits) and flags (24 bits)."""
    return ((version << 24) | flags).to_bytes(4)
