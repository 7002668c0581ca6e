"""``esds`` and the AudioSpecificConfig it carries (ISO/IEC 14496-14 5.6, 14496-3 1.6.2.1).

The MPEG-4 descriptors (ES_Descriptor, DecoderConfigDescriptor, DecoderSpecificInfo) are
read and written here too: only ``esds`` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.cmaf.boxes.header import BoxError, box_bytes
from cascade.cmaf.boxes.payload import PayloadReader, full_header
from cascade.cmaf.boxes.registry import register

__all__ = ["AudioSpecificConfig", "EsdsBox"]


_AAC_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
_AAC_CHANNELS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}


@dataclass(frozen=True, slots=True)
class AudioSpecificConfig:
    """The head of an MPEG-4 AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).

    For explicit SBR/PS signalling (object type 5 or 29) ``sample_rate`` is the output
    (extension) rate. ``channels`` is None when the configuration is in a PCE (config 0).
    """

    object_type: int
    sample_rate: int
    channel_configuration: int

    @property
    def channels(self) -> int | None:
        return _AAC_CHANNELS.get(self.channel_configuration)

    @classmethod
    def parse(cls, data: bytes) -> Self:
        bits = int.from_bytes(data)
        avail = len(data) * 8
        pos = 0

        def read(n: int) -> int:
            nonlocal pos
            if pos + n > avail:
                raise BoxError(f"truncated AudioSpecificConfig ({len(data)} bytes)")
            pos += n
            return (bits >> (avail - pos)) & ((1 << n) - 1)

        def object_type() -> int:
            value = read(5)
            return 32 + read(6) if value == 31 else value

        def rate() -> int:
            index = read(4)
            if index == 15:
                return read(24)
            if index >= len(_AAC_RATES):
                raise BoxError(f"AudioSpecificConfig: reserved sampling frequency index {index}")
            return _AAC_RATES[index]

        aot = object_type()
        sample_rate = rate()
        channel_config = read(4)
        if aot in (5, 29):
            sample_rate = rate()
        return cls(aot, sample_rate, channel_config)


def _read_descriptor(r: PayloadReader) -> tuple[int, bytes]:
    tag = r.u8()
    size = 0
    for _ in range(4):
        byte = r.u8()
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    return tag, r.take(size)


def _descriptor(tag: int, body: bytes) -> bytes:
    size = len(body)
    if size >= 1 << 28:
        raise BoxError(f"descriptor of {size} bytes is too large")
    length = bytes(((size >> shift) & 0x7F) | (0x80 if shift else 0) for shift in (21, 14, 7, 0))
    return bytes((tag,)) + length + body


@dataclass(frozen=True, slots=True)
class EsdsBox:
    """Elementary stream descriptor (ISO/IEC 14496-14 5.6): the ES_Descriptor kept as bytes.

    The object type indication (0x40 for MPEG-4 audio) and the AudioSpecificConfig are
    decoded on demand.
    """

    type: ClassVar[str] = "esds"
    descriptor: bytes

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = PayloadReader(payload, cls.type)
        r.full_header()
        return cls(r.rest())

    def serialize(self) -> bytes:
        return box_bytes(self.type, full_header(0, 0) + self.descriptor)

    @classmethod
    def for_audio(
        cls, audio_specific_config: bytes, *, object_type_indication: int = 0x40, es_id: int = 1
    ) -> Self:
        """Build the ES_Descriptor an MP4 muxer writes for one audio stream."""
        decoder_config = (
            bytes((object_type_indication, 0x15)) + bytes(11)  # audio stream, buffer, bitrates
        ) + _descriptor(5, audio_specific_config)
        body = es_id.to_bytes(2) + b"\0" + _descriptor(4, decoder_config) + _descriptor(6, b"\2")
        return cls(_descriptor(3, body))

    def _decoder_config(self) -> tuple[int, bytes | None]:
        r = PayloadReader(self.descriptor, "esds")
        tag, body = _read_descriptor(r)
        if tag != 3:
            raise BoxError(f"'esds': expected ES_Descriptor (tag 3), got tag {tag}")
        es = PayloadReader(body, "esds ES_Descriptor")
        es.u16()  # ES_ID
        flags = es.u8()
        if flags & 0x80:
            es.u16()  # dependsOn_ES_ID
        if flags & 0x40:
            es.take(es.u8())  # URL
        if flags & 0x20:
            es.u16()  # OCR_ES_Id
        while es.remaining():
            tag, body = _read_descriptor(es)
            if tag == 4:
                dc = PayloadReader(body, "esds DecoderConfigDescriptor")
                oti = dc.u8()
                dc.take(12)
                while dc.remaining():
                    tag, info = _read_descriptor(dc)
                    if tag == 5:
                        return oti, info
                return oti, None
        raise BoxError("'esds': no DecoderConfigDescriptor")

    @property
    def object_type_indication(self) -> int:
        return self._decoder_config()[0]

    @property
    def audio_specific_config(self) -> AudioSpecificConfig | None:
        info = self._decoder_config()[1]
        return None if info is None else AudioSpecificConfig.parse(info)


register(EsdsBox.type, EsdsBox.parse)
