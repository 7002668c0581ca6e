"""Incremental splitting of an MP4 byte stream (a pipe) into top-level boxes.

Bytes arrive in chunks of any size, one byte at a time included. They are appended to one
``bytearray``; complete boxes are found by reading headers at a scan offset, and each box (or
group of boxes) is copied out exactly once. Consumed bytes are dropped from the front of the
buffer now and then, so the cost stays linear in the stream length.
"""

from __future__ import annotations

import struct

from cascade.cmaf.boxes import BoxError

__all__ = ["DEFAULT_MAX_BOX_SIZE", "BoxSplitter"]

#: Largest top-level box accepted (64 MiB). A 2 s GOP fragment at 50 Mbit/s is ~12.5 MB; a
#: larger declared size almost always means garbage, which would otherwise be buffered forever.
DEFAULT_MAX_BOX_SIZE = 64 << 20

_HEADER = struct.Struct(">I4s")
_U64 = struct.Struct(">Q")
# Compact when this many consumed bytes sit at the front and they are half the buffer or more.
_COMPACT_AT = 1 << 16


class _BoxStream:
    """The buffer behind the splitter and the reader; offsets are absolute stream offsets."""

    __slots__ = ("_base", "_buf", "_scan", "max_box_size")

    def __init__(self, max_box_size: int) -> None:
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._scan = 0  # stream offset of the next box header to read
        self.max_box_size = max_box_size

    @property
    def end(self) -> int:
        """Stream offset just past the last byte received."""
        return self._base + len(self._buf)

    @property
    def scan(self) -> int:
        return self._scan

    def extend(self, data: bytes | bytearray | memoryview) -> None:
        self._buf += data

    def next_box(self) -> tuple[str, int, int] | None:
        """The next complete top-level box as (type, start, end), or None until more bytes.

        A box with size 0 (runs to the end of the stream) completes only in :meth:`finish`.
        """
        buf = self._buf
        pos = self._scan - self._base
        avail = len(buf) - pos
        if avail < 8:
            return None
        size, raw_type = _HEADER.unpack_from(buf, pos)
        box_type = self._check_type(raw_type, size)
        if size == 1:
            if avail < 16:
                return None
            (size,) = _U64.unpack_from(buf, pos + 8)
            if size < 16:
                raise BoxError(
                    f"box {box_type!r} at stream byte {self._scan} has invalid 64-bit size {size}"
                )
        elif size == 0:
            return None
        elif size < 8:
            raise BoxError(f"box {box_type!r} at stream byte {self._scan} has invalid size {size}")
        if size > self.max_box_size:
            raise BoxError(
                f"box {box_type!r} at stream byte {self._scan} declares {size} bytes, over the "
                f"{self.max_box_size}-byte limit (garbage input?)"
            )
        if avail < size:
            return None
        start = self._scan
        self._scan = start + size
        return box_type, start, start + size

    def _check_type(self, raw_type: bytes, size: int) -> str:
        if not all(0x20 <= byte <= 0x7E for byte in raw_type):
            raise BoxError(
                f"not an MP4 box at stream byte {self._scan}: type {raw_type!r}, size {size} "
                "(garbage input, or the stream lost sync)"
            )
        return raw_type.decode("ascii")

    def finish(self) -> tuple[str, int, int] | None:
        """At end of stream: the pending size-0 box, None if nothing is pending, else an error."""
        pos = self._scan - self._base
        avail = len(self._buf) - pos
        if avail == 0:
            return None
        if avail >= 8:
            size, raw_type = _HEADER.unpack_from(self._buf, pos)
            box_type = self._check_type(raw_type, size)
            if size == 0:
                start = self._scan
                self._scan = self.end
                return box_type, start, self._scan
            if size == 1 and avail >= 16:
                (size,) = _U64.unpack_from(self._buf, pos + 8)
            raise BoxError(
                f"stream ended inside box {box_type!r} at stream byte {self._scan}: "
                f"{avail} of {size} bytes received"
            )
        raise BoxError(
            f"stream ended inside a box header at stream byte {self._scan}: {avail} of 8 bytes"
        )

    def take(self, start: int, end: int) -> bytes:
        """Copy stream bytes ``[start, end)`` out (one copy)."""
        view = memoryview(self._buf)
        try:
            return view[start - self._base : end - self._base].tobytes()
        finally:
            view.release()

    def release(self, upto: int) -> None:
        """Bytes before stream offset ``upto`` are no longer needed."""
        drop = upto - self._base
        if drop == len(self._buf):
            self._buf.clear()
            self._base = upto
        elif drop >= _COMPACT_AT and drop * 2 >= len(self._buf):
            del self._buf[:drop]
            self._base = upto


class BoxSplitter:
    """Feed bytes in, get complete top-level boxes out as ``(type, bytes incl. header)``.

    >>> splitter = BoxSplitter()
    >>> splitter.feed(bytes.fromhex("0000000c66726565"))
    []
    >>> splitter.feed(b"abcd")
    [('free', b'\\x00\\x00\\x00\\x0cfreeabcd')]

    Raises :class:`BoxError` on a header that cannot start a box (non-printable type, size
    below 8, or over ``max_box_size``). Call :meth:`close` at end of stream: it returns a
    final size-0 box (one that runs to the end) and raises if a box was cut short.
    """

    __slots__ = ("_stream",)

    def __init__(self, *, max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> None:
        self._stream = _BoxStream(max_box_size)

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[str, bytes]]:
        stream = self._stream
        stream.extend(data)
        boxes: list[tuple[str, bytes]] = []
        while (found := stream.next_box()) is not None:
            box_type, start, end = found
            boxes.append((box_type, stream.take(start, end)))
        if boxes:
            stream.release(stream.scan)
        return boxes

    def close(self) -> list[tuple[str, bytes]]:
        stream = self._stream
        found = stream.finish()
        if found is None:
            return []
        box_type, start, end = found
        box = stream.take(start, end)
        stream.release(end)
        return [(box_type, box)]

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a returned box."""
        return self._stream.end - self._stream.scan

    @property
    def position(self) -> int:
        """Stream offset just past the last returned box."""
        return self._stream.scan
