"""The packager's hot path: what a fragment's moof says, read in one pass with struct.

This is the one moof reader. :func:`cascade.cmaf.fmp4.fragment_info` (behind
:class:`~cascade.cmaf.fmp4.Fmp4Reader` and :func:`~cascade.cmaf.fmp4.parse_fragment`) turns
its scan into a FragmentInfo, taking a value the trafs leave out from the tfhd defaults,
then the trex ones. It reads the fields straight from the bytes (no box objects, no copies)
because it runs ten times a second per rendition, right after a 100 ms sleep with cold
caches, where every Python object costs. The box classes of :mod:`cascade.cmaf.boxes` are
for parsing and serializing whole boxes; ``tests/cmaf/test_fmp4.py`` checks, on every
fragment it reads (synthetic and real FFmpeg output), that this scan says what the typed
mfhd, tfhd, tfdt and trun boxes decode.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from cascade.cmaf.boxes import BoxError

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HDR = struct.Struct(">I4s")
_FULL = struct.Struct(">I")  # version (8 bits) + flags (24 bits)

# tfhd flags (ISO/IEC 14496-12 8.8.7)
_TFHD_BASE_DATA_OFFSET = 0x000001
_TFHD_SAMPLE_DESCRIPTION_INDEX = 0x000002
_TFHD_DEFAULT_DURATION = 0x000008
_TFHD_DEFAULT_SIZE = 0x000010
_TFHD_DEFAULT_FLAGS = 0x000020
# trun flags (8.8.8)
_TRUN_DATA_OFFSET = 0x000001
_TRUN_FIRST_SAMPLE_FLAGS = 0x000004
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTO = 0x000800


class TrafScan(NamedTuple):
    """One traf as the bytes say it; ``None`` fields fall back to tfhd, then trex, defaults.

    ``duration`` / ``size`` sum the samples that carry their own value; ``unsized`` /
    ``untimed`` count the samples that take the default instead.
    """

    track_id: int
    base_media_decode_time: int | None
    sample_count: int
    duration: int
    untimed: int
    size: int
    unsized: int
    first_flags: int | None
    default_duration: int | None
    default_size: int | None
    default_flags: int | None


class MoofScan(NamedTuple):
    sequence_number: int | None
    trafs: list[TrafScan]


def _children(data: bytes, start: int, end: int, where: str) -> list[tuple[bytes, int, int]]:
    out = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise BoxError(f"truncated box header inside {where} at byte {pos}")
        size, kind = _HDR.unpack_from(data, pos)
        if size == 1:
            if end - pos < 16:
                raise BoxError(f"truncated 64-bit box size inside {where} at byte {pos}")
            (size,) = _U64.unpack_from(data, pos + 8)
            header = 16
        else:
            header = 8
        if size < header or pos + size > end:
            raise BoxError(
                f"box {kind!r} inside {where} at byte {pos} has size {size}, beyond its parent"
            )
        out.append((kind, pos + header, pos + size))
        pos += size
    return out


def scan_moof(data: bytes, start: int, end: int) -> MoofScan:
    """Read the moof box whose payload is ``data[start:end]``."""
    sequence = None
    trafs = []
    try:
        for kind, a, b in _children(data, start, end, "moof"):
            if kind == b"mfhd":
                (sequence,) = _U32.unpack_from(data, a + 4)
            elif kind == b"traf":
                trafs.append(_scan_traf(data, a, b))
    except struct.error as exc:
        raise BoxError(f"truncated box inside moof: {exc}") from exc
    return MoofScan(sequence, trafs)


def _scan_traf(data: bytes, start: int, end: int) -> TrafScan:
    track_id = -1
    tfdt = None
    d_dur = d_size = d_flags = None
    count = duration = untimed = size = unsized = 0
    first_flags = None
    for kind, a, b in _children(data, start, end, "traf"):
        if kind == b"tfhd":
            (vf,) = _FULL.unpack_from(data, a)
            flags = vf & 0xFFFFFF
            (track_id,) = _U32.unpack_from(data, a + 4)
            p = a + 8
            if flags & _TFHD_BASE_DATA_OFFSET:
                p += 8
            if flags & _TFHD_SAMPLE_DESCRIPTION_INDEX:
                p += 4
            if flags & _TFHD_DEFAULT_DURATION:
                (d_dur,) = _U32.unpack_from(data, p)
                p += 4
            if flags & _TFHD_DEFAULT_SIZE:
                (d_size,) = _U32.unpack_from(data, p)
                p += 4
            if flags & _TFHD_DEFAULT_FLAGS:
                (d_flags,) = _U32.unpack_from(data, p)
        elif kind == b"tfdt":
            (vf,) = _FULL.unpack_from(data, a)
            tfdt = (_U64 if vf >> 24 == 1 else _U32).unpack_from(data, a + 4)[0]
        elif kind == b"trun":
            (vf,) = _FULL.unpack_from(data, a)
            flags = vf & 0xFFFFFF
            (n,) = _U32.unpack_from(data, a + 4)
            p = a + 8
            if flags & _TRUN_DATA_OFFSET:
                p += 4
            run_first = None
            if flags & _TRUN_FIRST_SAMPLE_FLAGS:
                (run_first,) = _U32.unpack_from(data, p)
                p += 4
            has_dur, has_size = flags & _TRUN_DURATION, flags & _TRUN_SIZE
            has_flags = flags & _TRUN_FLAGS
            stride = 4 * (
                bool(has_dur) + bool(has_size) + bool(has_flags) + bool(flags & _TRUN_CTO)
            )
            if p + stride * n > b:
                raise BoxError(f"trun declares {n} samples, more than its {b - a} bytes hold")
            if has_dur:
                duration += sum(_U32.unpack_from(data, p + i * stride)[0] for i in range(n))
            else:
                untimed += n
            off = 4 if has_dur else 0
            if has_size:
                size += sum(_U32.unpack_from(data, p + off + i * stride)[0] for i in range(n))
            else:
                unsized += n
            if first_flags is None and n:
                if run_first is not None:
                    first_flags = run_first
                elif has_flags:
                    off = 4 * (bool(has_dur) + bool(has_size))
                    (first_flags,) = _U32.unpack_from(data, p + off)
                else:
                    first_flags = -1  # the default applies: resolved by the caller
            count += n
    if track_id < 0:
        raise BoxError(f"traf at byte {start - 8} has no tfhd box")
    return TrafScan(
        track_id, tfdt, count, duration, untimed, size, unsized,
        None if first_flags == -1 else first_flags, d_dur, d_size, d_flags,
    )  # fmt: skip
