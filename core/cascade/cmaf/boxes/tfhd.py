"""``tfhd``: track fragment header, the fragment's sample defaults (ISO/IEC 14496-12 8.8.7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["TfhdBox"]


@dataclass(frozen=True, slots=True)
class TfhdBox:
    """Track fragment header. Optional fields are None when their flag is clear."""

    type: ClassVar[str] = "tfhd"
    track_id: int
    base_data_offset: int | None = None
    sample_description_index: int | None = None
    default_sample_duration: int | None = None
    default_sample_size: int | None = None
    default_sample_flags: int | None = None
    duration_is_empty: bool = False
    default_base_is_moof: bool = False

    BASE_DATA_OFFSET: ClassVar[int] = 0x01
    SAMPLE_DESCRIPTION_INDEX: ClassVar[int] = 0x02
    DEFAULT_SAMPLE_DURATION: ClassVar[int] = 0x08
    DEFAULT_SAMPLE_SIZE: ClassVar[int] = 0x10
    DEFAULT_SAMPLE_FLAGS: ClassVar[int] = 0x20
    DURATION_IS_EMPTY: ClassVar[int] = 0x010000
    DEFAULT_BASE_IS_MOOF: ClassVar[int] = 0x020000

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        _, flags = r.full_header()
        track_id = r.u32()
        base = r.u64() if flags & 0x01 else None
        index = r.u32() if flags & 0x02 else None
        duration = r.u32() if flags & 0x08 else None
        size = r.u32() if flags & 0x10 else None
        sample_flags = r.u32() if flags & 0x20 else None
        return cls(
            track_id, base, index, duration, size, sample_flags,
            bool(flags & 0x010000), bool(flags & 0x020000),
        )  # fmt: skip

    def serialize(self) -> bytes:
        flags = (0x010000 if self.duration_is_empty else 0) | (
            0x020000 if self.default_base_is_moof else 0
        )
        out = bytearray(self.track_id.to_bytes(4))
        if self.base_data_offset is not None:
            flags |= 0x01
            out += self.base_data_offset.to_bytes(8)
        for bit, value in (
            (0x02, self.sample_description_index),
            (0x08, self.default_sample_duration),
            (0x10, self.default_sample_size),
            (0x20, self.default_sample_flags),
        ):
            if value is not None:
                flags |= bit
                out += value.to_bytes(4)
        return box_bytes(self.type, full_header(0, flags) + bytes(out))


register(TfhdBox.type, TfhdBox.parse)
