"""Synthetic fragmented MP4, as FFmpeg writes it to the packager's pipe, built from boxes.

One H.264 video track at 90 kHz, one frame per fragment: what a rendition's pipe carries,
small enough to build a stream in microseconds.
"""

from __future__ import annotations

from cascade.cmaf.boxes import (
    AvcCBox,
    ContainerBox,
    FtypBox,
    HdlrBox,
    MdatBox,
    MdhdBox,
    MfhdBox,
    RawBox,
    StsdBox,
    TfdtBox,
    TfhdBox,
    TkhdBox,
    TrexBox,
    TrunBox,
    VisualSampleEntry,
)

TIMESCALE = 90_000
SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame)
NON_SYNC = 0x01010000  # depends on others, sample_is_non_sync_sample = 1
CODECS = "avc1.64001f"


def init_segment(width: int = 640, height: int = 360, profile: int = 0x64) -> bytes:
    """ftyp + moov with one avc1 track (``avc1.64001f`` by default)."""
    entry = VisualSampleEntry("avc1", width, height, (AvcCBox(profile, 0, 0x1F),))
    stbl = ContainerBox("stbl", (StsdBox((entry,)),))
    mdia = ContainerBox(
        "mdia", (MdhdBox(TIMESCALE), HdlrBox("vide"), ContainerBox("minf", (stbl,)))
    )
    trak = ContainerBox("trak", (TkhdBox(1), mdia))
    moov = ContainerBox(
        "moov", (RawBox("mvhd", bytes(100)), trak, ContainerBox("mvex", (TrexBox(1),)))
    )
    return FtypBox("iso6", 0, ("iso6", "cmfc")).serialize() + moov.serialize()


def fragment(
    sequence: int, *, start: float, duration: float = 0.1, key: bool, payload: bytes = b""
) -> bytes:
    """moof + mdat: one frame of ``duration`` seconds from media time ``start``."""
    data = payload or b"frame-%d" % sequence
    trun = TrunBox(1, 0, SYNC if key else None, sizes=(len(data),))
    tfhd = TfhdBox(
        1,
        default_sample_duration=round(duration * TIMESCALE),
        default_sample_flags=NON_SYNC,
        default_base_is_moof=True,
    )
    traf = ContainerBox("traf", (tfhd, TfdtBox(round(start * TIMESCALE)), trun))
    moof = ContainerBox("moof", (MfhdBox(sequence), traf))
    return moof.serialize() + MdatBox(data).serialize()


def fragments(
    count: int, *, start: float = 0.0, gop: int = 5, first_key: int = 0, duration: float = 0.1
) -> list[bytes]:
    """``count`` fragments from media time ``start``; a keyframe every ``gop`` from ``first_key``."""
    return [
        fragment(
            n + 1,
            start=start + n * duration,
            duration=duration,
            key=n >= first_key and (n - first_key) % gop == 0,
        )
        for n in range(count)
    ]
