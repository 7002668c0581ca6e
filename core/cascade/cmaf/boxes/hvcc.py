"""``hvcC``: the HEVC decoder configuration record (ISO/IEC 14496-15 8.3.3.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import box_bytes
from cascade.cmaf.boxes.payload import PayloadReader
from cascade.cmaf.boxes.registry import register

__all__ = ["HvcCBox"]


@dataclass(frozen=True, slots=True)
class HvcCBox:
    """HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1): the general_* fields.

    ``rest`` keeps the record after general_level_idc byte for byte (parameter sets, ...).
    """

    type: ClassVar[str] = "hvcC"
    profile_space: int
    tier_flag: int
    profile_idc: int
    compatibility_flags: int
    constraint_flags: int
    level_idc: int
    rest: bytes = b""
    configuration_version: int = 1

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        version, ptp, compat, c_hi, c_lo, level = r.unpack(">BBIHIB")
        return cls(
            ptp >> 6, (ptp >> 5) & 1, ptp & 0x1F, compat, (c_hi << 32) | c_lo, level,
            r.rest(), version,
        )  # fmt: skip

    def serialize(self) -> bytes:
        ptp = (self.profile_space << 6) | (self.tier_flag << 5) | self.profile_idc
        payload = struct.pack(
            ">BBIHIB", self.configuration_version, ptp, self.compatibility_flags,
            self.constraint_flags >> 32, self.constraint_flags & 0xFFFFFFFF, self.level_idc,
        )  # fmt: skip
        return box_bytes(self.type, payload + self.rest)

    @property
    def codec_suffix(self) -> str:
        """The part after ``hvc1.`` of ISO/IEC 14496-15 Annex E, e.g. ``1.6.L93.B0``.

        Profile space as '', 'A', 'B', 'C' before the profile_idc (decimal); the 32
        compatibility flags in reverse bit order, hex without leading zeros; tier 'L' or 'H'
        and level_idc (decimal); then each of the six constraint bytes in hex, trailing zero
        bytes left out.
        """
        space = ("", "A", "B", "C")[self.profile_space]
        compat = int(f"{self.compatibility_flags:032b}"[::-1], 2)
        tier = "H" if self.tier_flag else "L"
        constraint = list(self.constraint_flags.to_bytes(6))
        while constraint and constraint[-1] == 0:
            constraint.pop()
        parts = [f"{space}{self.profile_idc}", f"{compat:X}", f"{tier}{self.level_idc}"]
        parts += [f"{byte:X}" for byte in constraint]
        return ".".join(parts)


register(HvcCBox.type, HvcCBox.parse)
