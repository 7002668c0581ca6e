"""Box headers and walking: where each box lies in a buffer, and whole boxes encoded.

The bottom of :mod:`cascade.cmaf.boxes`: no box classes, only sizes, types and offsets
(ISO/IEC 14496-12 4.2). Every other module of the package builds on this one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["BoxError", "BoxHeader", "box_bytes", "fourcc", "iter_boxes", "read_header"]


class BoxError(ValueError):
    """Truncated, garbage or unsupported MP4 input; the message says which box and where."""


_U32_TYPE = struct.Struct(">I4s")
_U64 = struct.Struct(">Q")


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


def fourcc(raw: bytes) -> str:
    """A four-character code (box type, brand, handler) as text."""
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
    box_type = fourcc(raw_type)
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
