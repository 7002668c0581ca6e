"""ISO BMFF (MP4) boxes: headers, the typed boxes CMAF needs, and unknown boxes kept as bytes.

Every typed box is a frozen dataclass with the same protocol (after mp4ff):
``Cls.parse(payload)`` decodes the bytes after the box header, ``box.serialize()`` encodes the
whole box, header included, and ``parse_box(box.serialize()) == box``. Boxes this module does
not know are kept byte for byte as :class:`RawBox`; containers as :class:`ContainerBox`.

Truncated or garbage input raises :class:`BoxError` (a ``ValueError``) naming the box and the
offset; ``IndexError`` and ``struct.error`` never escape.

References: ISO/IEC 14496-12 (ISOBMFF), 14496-14 (MP4, ``esds``), 14496-15 (``avcC``,
``hvcC``), 14496-3 (AudioSpecificConfig).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Self, TypeVar

__all__ = [
    "CONTAINER_TYPES",
    "KNOWN_TYPES",
    "AudioSampleEntry",
    "AudioSpecificConfig",
    "AvcCBox",
    "Box",
    "BoxError",
    "BoxHeader",
    "ContainerBox",
    "EsdsBox",
    "FtypBox",
    "HdlrBox",
    "HvcCBox",
    "MdatBox",
    "MdhdBox",
    "MfhdBox",
    "RawBox",
    "StsdBox",
    "StypBox",
    "TfdtBox",
    "TfhdBox",
    "TkhdBox",
    "TrexBox",
    "TrunBox",
    "VisualSampleEntry",
    "box_bytes",
    "find_all",
    "find_container",
    "find_first",
    "iter_boxes",
    "parse_box",
    "parse_boxes",
    "read_header",
]


class BoxError(ValueError):
    """Truncated, garbage or unsupported MP4 input; the message says which box and where."""


# --------------------------------------------------------------------------------------------
# Headers and walking

_U32_TYPE = struct.Struct(">I4s")
_U64 = struct.Struct(">Q")

#: Boxes whose payload is nothing but child boxes.
CONTAINER_TYPES = frozenset(
    {"moov", "trak", "mdia", "minf", "stbl", "mvex", "moof", "traf", "dinf", "edts", "mfra"}
)


@dataclass(frozen=True, slots=True)
class BoxHeader:
    """Where one box lies in a buffer: ``data[start:end]`` is the box, header included."""

    type: str
    start: int
    header_size: int
    size: int
    usertype: bytes | None = None

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def payload_start(self) -> int:
        return self.start + self.header_size


def _fourcc(raw: bytes) -> str:
    # latin-1 maps every byte to one character and back, so '©too' survives a round trip.
    return raw.decode("latin-1")


def read_header(data: bytes | bytearray | memoryview, start: int = 0, end: int = -1) -> BoxHeader:
    """Read the header of the box at ``data[start:]``, which must lie within ``data[:end]``.

    Handles 32-bit sizes, ``size == 1`` (64-bit largesize), ``size == 0`` (box runs to ``end``)
    and ``uuid`` extended types. ``end`` defaults to ``len(data)``.
    """
    if end < 0:
        end = len(data)
    avail = end - start
    if avail < 8:
        raise BoxError(f"truncated box header at byte {start}: {avail} of 8 bytes")
    size, raw_type = _U32_TYPE.unpack_from(data, start)
    box_type = _fourcc(raw_type)
    header_size = 8
    if size == 1:
        if avail < 16:
            raise BoxError(f"truncated 64-bit header of box {box_type!r} at byte {start}")
        (size,) = _U64.unpack_from(data, start + 8)
        header_size = 16
    elif size == 0:
        size = avail
    usertype = None
    if box_type == "uuid":
        if avail < header_size + 16:
            raise BoxError(f"truncated uuid header at byte {start}")
        usertype = bytes(data[start + header_size : start + header_size + 16])
        header_size += 16
    if size < header_size:
        raise BoxError(f"box {box_type!r} at byte {start} has invalid size {size}")
    if size > avail:
        raise BoxError(
            f"truncated box {box_type!r} at byte {start}: declares {size} bytes, {avail} remain"
        )
    return BoxHeader(box_type, start, header_size, size, usertype)


def iter_boxes(
    data: bytes | bytearray | memoryview, start: int = 0, end: int = -1
) -> Iterator[BoxHeader]:
    """Walk the consecutive boxes in ``data[start:end]`` (a file, or a container's payload)."""
    if end < 0:
        end = len(data)
    pos = start
    while pos < end:
        header = read_header(data, pos, end)
        yield header
        pos = header.end


def box_bytes(box_type: str, payload: bytes, usertype: bytes | None = None) -> bytes:
    """Encode a whole box: a 32-bit header, or a 64-bit one when the box needs it."""
    raw_type = box_type.encode("latin-1")
    if len(raw_type) != 4:
        raise BoxError(f"box type must be 4 characters, got {box_type!r}")
    extra = b""
    if usertype is not None:
        if len(usertype) != 16:
            raise BoxError(f"uuid usertype must be 16 bytes, got {len(usertype)}")
        extra = usertype
    size = 8 + len(extra) + len(payload)
    if size <= 0xFFFFFFFF:
        return _U32_TYPE.pack(size, raw_type) + extra + payload
    return _U32_TYPE.pack(1, raw_type) + _U64.pack(size + 8) + extra + payload


# --------------------------------------------------------------------------------------------
# Payload reading


class _Reader:
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


def _full(version: int, flags: int) -> bytes:
    return ((version << 24) | flags).to_bytes(4)


# --------------------------------------------------------------------------------------------
# Generic boxes


@dataclass(frozen=True, slots=True)
class RawBox:
    """A box this module does not decode, kept byte for byte (payload after the header)."""

    type: str
    payload: bytes
    usertype: bytes | None = None

    def serialize(self) -> bytes:
        return box_bytes(self.type, self.payload, self.usertype)


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


@dataclass(frozen=True, slots=True)
class FtypBox:
    """File type: major brand, minor version, compatible brands."""

    type: ClassVar[str] = "ftyp"
    major_brand: str
    minor_version: int
    compatible_brands: tuple[str, ...] = ()

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        major = _fourcc(r.take(4))
        minor = r.u32()
        if r.remaining() % 4:
            raise BoxError(f"{cls.type!r}: brand list of {r.remaining()} bytes is not 4-aligned")
        rest = r.rest()
        brands = tuple(_fourcc(rest[i : i + 4]) for i in range(0, len(rest), 4))
        return cls(major, minor, brands)

    def serialize(self) -> bytes:
        brands = "".join((self.major_brand, *self.compatible_brands)).encode("latin-1")
        payload = brands[:4] + self.minor_version.to_bytes(4) + brands[4:]
        return box_bytes(self.type, payload)


@dataclass(frozen=True, slots=True)
class StypBox(FtypBox):
    """Segment type: same layout as ftyp."""

    type: ClassVar[str] = "styp"


@dataclass(frozen=True, slots=True)
class MdatBox:
    """Media data. Parsing copies the payload; fragment parsing never parses mdat."""

    type: ClassVar[str] = "mdat"
    data: bytes

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        return cls(payload)

    def serialize(self) -> bytes:
        return box_bytes(self.type, self.data)


# --------------------------------------------------------------------------------------------
# Movie (init segment) boxes

_UNITY_MATRIX = (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


@dataclass(frozen=True, slots=True)
class TkhdBox:
    """Track header. ``width``/``height`` are the 16.16 presentation size, as floats."""

    type: ClassVar[str] = "tkhd"
    track_id: int
    duration: int = 0
    width: float = 0.0
    height: float = 0.0
    version: int = 0
    flags: int = 3
    creation_time: int = 0
    modification_time: int = 0
    layer: int = 0
    alternate_group: int = 0
    volume: int = 0
    matrix: tuple[int, ...] = _UNITY_MATRIX

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        version, flags = r.full_header()
        if version == 1:
            ctime, mtime, track_id, _, duration = r.unpack(">QQIIQ")
        elif version == 0:
            ctime, mtime, track_id, _, duration = r.unpack(">IIIII")
        else:
            raise BoxError(f"'tkhd' version {version} is not supported")
        _, _, layer, group, volume, _ = r.unpack(">IIhhhH")
        matrix = r.unpack(">9i")
        width, height = r.unpack(">II")
        return cls(
            track_id, duration, width / 65536, height / 65536, version, flags,
            ctime, mtime, layer, group, volume, matrix,
        )  # fmt: skip

    def serialize(self) -> bytes:
        if self.version == 1:
            times = struct.pack(
                ">QQIIQ", self.creation_time, self.modification_time, self.track_id, 0,
                self.duration,
            )  # fmt: skip
        else:
            times = struct.pack(
                ">IIIII", self.creation_time, self.modification_time, self.track_id, 0,
                self.duration,
            )  # fmt: skip
        payload = (
            _full(self.version, self.flags)
            + times
            + struct.pack(">IIhhhH", 0, 0, self.layer, self.alternate_group, self.volume, 0)
            + struct.pack(">9i", *self.matrix)
            + struct.pack(">II", round(self.width * 65536), round(self.height * 65536))
        )
        return box_bytes(self.type, payload)


@dataclass(frozen=True, slots=True)
class MdhdBox:
    """Media header: the track's timescale (ticks per second) and language."""

    type: ClassVar[str] = "mdhd"
    timescale: int
    duration: int = 0
    language: str = "und"
    version: int = 0
    creation_time: int = 0
    modification_time: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        version, _ = r.full_header()
        if version == 1:
            ctime, mtime, timescale, duration = r.unpack(">QQIQ")
        elif version == 0:
            ctime, mtime, timescale, duration = r.unpack(">IIII")
        else:
            raise BoxError(f"'mdhd' version {version} is not supported")
        packed = r.u16()
        language = "".join(chr(0x60 + ((packed >> shift) & 0x1F)) for shift in (10, 5, 0))
        return cls(timescale, duration, language, version, ctime, mtime)

    def serialize(self) -> bytes:
        if len(self.language) != 3:
            raise BoxError(f"mdhd language must be 3 letters, got {self.language!r}")
        packed = 0
        for char in self.language:
            packed = (packed << 5) | ((ord(char) - 0x60) & 0x1F)
        fmt = ">QQIQ" if self.version == 1 else ">IIII"
        payload = (
            _full(self.version, 0)
            + struct.pack(
                fmt, self.creation_time, self.modification_time, self.timescale, self.duration
            )
            + struct.pack(">HH", packed, 0)
        )
        return box_bytes(self.type, payload)


@dataclass(frozen=True, slots=True)
class HdlrBox:
    """Handler reference: ``handler_type`` is 'vide', 'soun', 'subt', 'meta', ..."""

    type: ClassVar[str] = "hdlr"
    handler_type: str
    name: str = ""

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        r.full_header()
        r.u32()  # pre_defined
        handler = _fourcc(r.take(4))
        r.take(12)  # reserved
        name = r.rest().split(b"\0", 1)[0].decode("utf-8", "replace")
        return cls(handler, name)

    def serialize(self) -> bytes:
        payload = (
            _full(0, 0)
            + bytes(4)
            + self.handler_type.encode("latin-1")
            + bytes(12)
            + self.name.encode()
            + b"\0"
        )
        return box_bytes(self.type, payload)


@dataclass(frozen=True, slots=True)
class TrexBox:
    """Track extends: per-track sample defaults for movie fragments."""

    type: ClassVar[str] = "trex"
    track_id: int
    default_sample_description_index: int = 1
    default_sample_duration: int = 0
    default_sample_size: int = 0
    default_sample_flags: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        r.full_header()
        return cls(*r.unpack(">IIIII"))

    def serialize(self) -> bytes:
        payload = _full(0, 0) + struct.pack(
            ">IIIII",
            self.track_id,
            self.default_sample_description_index,
            self.default_sample_duration,
            self.default_sample_size,
            self.default_sample_flags,
        )
        return box_bytes(self.type, payload)


@dataclass(frozen=True, slots=True)
class StsdBox:
    """Sample descriptions: the sample entries (avc1, hvc1, mp4a, ...) of a track."""

    type: ClassVar[str] = "stsd"
    entries: tuple[Box, ...]
    version: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        version, _ = r.full_header()
        count = r.u32()
        entries = parse_boxes(r.rest())
        if len(entries) != count:
            raise BoxError(f"'stsd' declares {count} sample entries but holds {len(entries)}")
        return cls(entries, version)

    def serialize(self) -> bytes:
        payload = _full(self.version, 0) + len(self.entries).to_bytes(4)
        return box_bytes(self.type, payload + b"".join(e.serialize() for e in self.entries))


@dataclass(frozen=True, slots=True)
class VisualSampleEntry:
    """A video sample entry (avc1, avc3, hvc1, hev1, ...) with its child boxes (avcC, ...)."""

    type: str
    width: int
    height: int
    children: tuple[Box, ...] = ()
    data_reference_index: int = 1
    horizresolution: int = 0x00480000
    vertresolution: int = 0x00480000
    frame_count: int = 1
    compressorname: bytes = bytes(32)
    depth: int = 0x18

    TYPES: ClassVar[frozenset[str]] = frozenset(
        {"avc1", "avc3", "hvc1", "hev1", "av01", "vp09", "encv"}
    )
    _FIXED: ClassVar[str] = ">6xH16xHHIIIH32sHh"

    @classmethod
    def parse_typed(cls, box_type: str, payload: bytes) -> Self:
        r = _Reader(payload, box_type)
        dri, width, height, hres, vres, _, frames, name, depth, _ = struct.unpack_from(
            cls._FIXED, r.take(struct.calcsize(cls._FIXED))
        )
        return cls(
            box_type, width, height, parse_boxes(r.rest()), dri, hres, vres, frames, name, depth
        )

    def serialize(self) -> bytes:
        fixed = struct.pack(
            self._FIXED, self.data_reference_index, self.width, self.height,
            self.horizresolution, self.vertresolution, 0, self.frame_count,
            self.compressorname, self.depth, -1,
        )  # fmt: skip
        return box_bytes(self.type, fixed + b"".join(c.serialize() for c in self.children))


@dataclass(frozen=True, slots=True)
class AudioSampleEntry:
    """An audio sample entry (mp4a, ac-3, ec-3, Opus, fLaC) with its child boxes (esds, ...).

    ``sample_rate`` is the integer part of the 16.16 field (so at most 65535; AAC's real rate
    is in the AudioSpecificConfig). QuickTime sound descriptions (version 1/2) are refused.
    """

    type: str
    channel_count: int
    sample_size: int
    sample_rate: int
    children: tuple[Box, ...] = ()
    data_reference_index: int = 1

    TYPES: ClassVar[frozenset[str]] = frozenset({"mp4a", "ac-3", "ec-3", "Opus", "fLaC", "enca"})
    _FIXED: ClassVar[str] = ">6xHH6xHH4xI"

    @classmethod
    def parse_typed(cls, box_type: str, payload: bytes) -> Self:
        r = _Reader(payload, box_type)
        dri, version, channels, bits, rate = struct.unpack_from(
            cls._FIXED, r.take(struct.calcsize(cls._FIXED))
        )
        if version != 0:
            raise BoxError(
                f"{box_type!r}: QuickTime sound description version {version} is not supported"
            )
        return cls(box_type, channels, bits, rate >> 16, parse_boxes(r.rest()), dri)

    def serialize(self) -> bytes:
        fixed = struct.pack(
            self._FIXED, self.data_reference_index, 0, self.channel_count, self.sample_size,
            self.sample_rate << 16,
        )  # fmt: skip
        return box_bytes(self.type, fixed + b"".join(c.serialize() for c in self.children))


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
        r = _Reader(payload, cls.type)
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
        r = _Reader(payload, cls.type)
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


def _read_descriptor(r: _Reader) -> tuple[int, bytes]:
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
        r = _Reader(payload, cls.type)
        r.full_header()
        return cls(r.rest())

    def serialize(self) -> bytes:
        return box_bytes(self.type, _full(0, 0) + self.descriptor)

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
        r = _Reader(self.descriptor, "esds")
        tag, body = _read_descriptor(r)
        if tag != 3:
            raise BoxError(f"'esds': expected ES_Descriptor (tag 3), got tag {tag}")
        es = _Reader(body, "esds ES_Descriptor")
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
                dc = _Reader(body, "esds DecoderConfigDescriptor")
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


# --------------------------------------------------------------------------------------------
# Movie fragment boxes


@dataclass(frozen=True, slots=True)
class MfhdBox:
    """Movie fragment header: the fragment's sequence number."""

    type: ClassVar[str] = "mfhd"
    sequence_number: int

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        r.full_header()
        return cls(r.u32())

    def serialize(self) -> bytes:
        return box_bytes(self.type, _full(0, 0) + self.sequence_number.to_bytes(4))


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
        r = _Reader(payload, cls.type)
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
        return box_bytes(self.type, _full(0, flags) + bytes(out))


@dataclass(frozen=True, slots=True)
class TfdtBox:
    """Track fragment decode time: the first sample's decode time in the track timescale."""

    type: ClassVar[str] = "tfdt"
    base_media_decode_time: int
    version: int = 1

    @classmethod
    def parse(cls, payload: bytes) -> Self:
        r = _Reader(payload, cls.type)
        version, _ = r.full_header()
        if version > 1:
            raise BoxError(f"'tfdt' version {version} is not supported")
        return cls(r.u64() if version == 1 else r.u32(), version)

    def serialize(self) -> bytes:
        width = 8 if self.version == 1 else 4
        return box_bytes(
            self.type, _full(self.version, 0) + self.base_media_decode_time.to_bytes(width)
        )


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
        r = _Reader(payload, cls.type)
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
        return box_bytes(self.type, _full(self.version, flags) + bytes(head) + body)


# --------------------------------------------------------------------------------------------
# Dispatch

Box = (
    RawBox | ContainerBox | FtypBox | StypBox | MdatBox | TkhdBox | MdhdBox | HdlrBox | TrexBox
    | StsdBox | VisualSampleEntry | AudioSampleEntry | AvcCBox | HvcCBox | EsdsBox | MfhdBox
    | TfhdBox | TfdtBox | TrunBox
)  # fmt: skip

_TYPED_BOXES = (
    FtypBox, StypBox, MdatBox, TkhdBox, MdhdBox, HdlrBox, TrexBox, StsdBox, AvcCBox, HvcCBox,
    EsdsBox, MfhdBox, TfhdBox, TfdtBox, TrunBox,
)  # fmt: skip
_TYPED: dict[str, Callable[[bytes], Box]] = {cls.type: cls.parse for cls in _TYPED_BOXES}

#: Every box type decoded into something other than a RawBox.
KNOWN_TYPES = frozenset(
    _TYPED.keys() | CONTAINER_TYPES | VisualSampleEntry.TYPES | AudioSampleEntry.TYPES
)


def _parse_payload(header: BoxHeader, payload: bytes) -> Box:
    box_type = header.type
    try:
        parse = _TYPED.get(box_type)
        if parse is not None:
            return parse(payload)
        if box_type in CONTAINER_TYPES:
            return ContainerBox.parse_typed(box_type, payload)
        if box_type in VisualSampleEntry.TYPES:
            return VisualSampleEntry.parse_typed(box_type, payload)
        if box_type in AudioSampleEntry.TYPES:
            return AudioSampleEntry.parse_typed(box_type, payload)
    except (struct.error, IndexError, OverflowError) as exc:  # pragma: no cover - defensive
        raise BoxError(f"malformed {box_type!r} box at byte {header.start}: {exc}") from exc
    return RawBox(box_type, payload, header.usertype)


def parse_box(data: bytes, start: int = 0, end: int = -1) -> Box:
    """Parse the one box at ``data[start:]`` (and its children); see :func:`read_header`."""
    header = read_header(data, start, end)
    return _parse_payload(header, data[header.payload_start : header.end])


def parse_boxes(data: bytes, start: int = 0, end: int = -1) -> tuple[Box, ...]:
    """Parse every consecutive box in ``data[start:end]``."""
    return tuple(
        _parse_payload(h, data[h.payload_start : h.end]) for h in iter_boxes(data, start, end)
    )


_B = TypeVar("_B")


def find_first(children: tuple[Box, ...], kind: type[_B]) -> _B | None:
    """The first child of class ``kind``, or None."""
    for child in children:
        if isinstance(child, kind):
            return child
    return None


def find_all(children: tuple[Box, ...], kind: type[_B]) -> list[_B]:
    """Every child of class ``kind``, in order."""
    return [child for child in children if isinstance(child, kind)]


def find_container(children: tuple[Box, ...], box_type: str) -> ContainerBox | None:
    """The first container child of the given type, or None."""
    for child in children:
        if isinstance(child, ContainerBox) and child.type == box_type:
            return child
    return None
