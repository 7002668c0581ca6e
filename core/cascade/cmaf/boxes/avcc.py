"""``avcC``: the H.264 decoder configuration record (ISO/IEC 14496-15 5.3.3.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import box_bytes
from cascade.cmaf.boxes.payload import PayloadReader
from cascade.cmaf.boxes.registry import register

__all__ = ["AvcCBox"]


@dataclass(frozen=True, slots=True)
class AvcCBox:
    """AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1).

    ``extra`` keeps what follows the PPS list (the high-profile chroma/bit-depth fields).
    """

    type: ClassVar[str] = "avcC"
    profile: int
    compatibility: int
    level: int
    length_size: int = 4
    sps: tuple[bytes, ...] = ()
    pps: tuple[bytes, ...] = ()
    extra: bytes = b""
    configuration_version: int = 1

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        version, profile, compat, level, length = r.unpack(">BBBBB")
        sps = tuple(r.take(r.u16()) for _ in range(r.u8() & 0x1F))
        pps = tuple(r.take(r.u16()) for _ in range(r.u8()))
        return cls(profile, compat, level, (length & 3) + 1, sps, pps, r.rest(), version)

    def serialize(self) -> bytes:
        out = bytearray(
            (
                self.configuration_version, self.profile, self.compatibility, self.level,
                0xFC | (self.length_size - 1), 0xE0 | len(self.sps),
            )
        )  # fmt: skip
        for nal in self.sps:
            out += len(nal).to_bytes(2) + nal
        out.append(len(self.pps))
        for nal in self.pps:
            out += len(nal).to_bytes(2) + nal
        return box_bytes(self.type, bytes(out) + self.extra)

    @property
    def codec_suffix(self) -> str:
        """``PPCCLL`` of RFC 6381: profile_idc, constraint flags, level_idc in hex."""
        return f"{self.profile:02x}{self.compatibility:02x}{self.level:02x}"


register(AvcCBox.type, AvcCBox.parse)
