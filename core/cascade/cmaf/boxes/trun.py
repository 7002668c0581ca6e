"""``trun``: track fragment run, the per-sample columns (ISO/IEC 14496-12 8.8.8)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["TrunBox"]


@dataclass(frozen=True, slots=True)
class TrunBox:
    """Track fragment run, stored by column.

    Each per-sample column (``durations``, ``sizes``, ``sample_flags``,
    ``composition_offsets``) is None when its flag is clear, else holds ``sample_count``
    values. Composition offsets are unsigned in version 0 and signed in version 1.
    """

    type: ClassVar[str] = "trun"
    sample_count: int
    data_offset: int | None = None
    first_sample_flags: int | None = None
    durations: tuple[int, ...] | None = None
    sizes: tuple[int, ...] | None = None
    sample_flags: tuple[int, ...] | None = None
    composition_offsets: tuple[int, ...] | None = None
    version: int = 0

    DATA_OFFSET: ClassVar[int] = 0x001
    FIRST_SAMPLE_FLAGS: ClassVar[int] = 0x004
    SAMPLE_DURATION: ClassVar[int] = 0x100
    SAMPLE_SIZE: ClassVar[int] = 0x200
    SAMPLE_FLAGS: ClassVar[int] = 0x400
    SAMPLE_COMPOSITION_OFFSET: ClassVar[int] = 0x800

    def __post_init__(self) -> None:
        for name in ("durations", "sizes", "sample_flags", "composition_offsets"):
            column = getattr(self, name)
            if column is not None and len(column) != self.sample_count:
                raise BoxError(
                    f"trun {name} has {len(column)} values for {self.sample_count} samples"
                )

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        version, flags = r.full_header()
        count = r.u32()
        data_offset = r.unpack(">i")[0] if flags & 0x001 else None
        first_flags = r.u32() if flags & 0x004 else None
        present = [bool(flags & bit) for bit in (0x100, 0x200, 0x400, 0x800)]
        codes = "II" + "I" + ("i" if version else "I")
        per_sample = "".join(code for code, on in zip(codes, present, strict=True) if on)
        columns: list[tuple[int, ...] | None] = [None] * 4
        if per_sample:
            if count * 4 * len(per_sample) > r.remaining():
                raise BoxError(
                    f"truncated 'trun': {count} samples of {4 * len(per_sample)} bytes need "
                    f"{count * 4 * len(per_sample)} bytes, {r.remaining()} remain"
                )
            values = r.unpack(f">{per_sample * count}")
            stride = len(per_sample)
            column = 0
            for index, on in enumerate(present):
                if on:
                    columns[index] = values[column::stride]
                    column += 1
        durations, sizes, sample_flags, offsets = columns
        return cls(
            count, data_offset, first_flags, durations, sizes, sample_flags, offsets, version
        )

    def serialize(self) -> bytes:
        flags = 0
        head = bytearray(self.sample_count.to_bytes(4))
        if self.data_offset is not None:
            flags |= 0x001
            head += self.data_offset.to_bytes(4, signed=True)
        if self.first_sample_flags is not None:
            flags |= 0x004
            head += self.first_sample_flags.to_bytes(4)
        columns = (self.durations, self.sizes, self.sample_flags, self.composition_offsets)
        codes = "II" + "I" + ("i" if self.version else "I")
        present = [column for column in columns if column is not None]
        fmt = "".join(code for code, c in zip(codes, columns, strict=True) if c is not None)
        for bit, column in zip((0x100, 0x200, 0x400, 0x800), columns, strict=True):
            if column is not None:
                flags |= bit
        body = b""
        if present:
            interleaved = [value for sample in zip(*present, strict=True) for value in sample]
            body = struct.pack(f">{fmt * self.sample_count}", *interleaved)
        return box_bytes(self.type, full_header(self.version, flags) + bytes(head) + body)


register(TrunBox.type, TrunBox.parse)
