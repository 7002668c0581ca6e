"""Init/fragment parsing, the box splitter and the stream reader; synthetic and real FFmpeg."""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade.cmaf import (
    BoxError,
    BoxSplitter,
    Fmp4Reader,
    Fragment,
    InitSegment,
    UnsupportedCodecError,
    parse_init,
)
from cascade.cmaf import parse_fragment as read_fragment
from cascade.cmaf.boxes import (
    AudioSampleEntry,
    AvcCBox,
    Box,
    ContainerBox,
    EsdsBox,
    FtypBox,
    HdlrBox,
    MdatBox,
    MdhdBox,
    MfhdBox,
    RawBox,
    StsdBox,
    StypBox,
    TfdtBox,
    TfhdBox,
    TkhdBox,
    TrexBox,
    TrunBox,
    VisualSampleEntry,
    find_all,
    find_first,
    iter_boxes,
    parse_box,
    parse_boxes,
)
from cascade.cmaf.fmp4 import FragmentInfo, InitInfo, is_sync_sample
from cascade.cmaf.moof import MoofScan, TrafScan, scan_moof


def scan_of_boxes(moof: Box) -> MoofScan:
    """What :func:`scan_moof` must read from a moof, as the typed boxes decode it."""
    assert isinstance(moof, ContainerBox)
    mfhd = find_first(moof.children, MfhdBox)
    trafs = []
    for traf in moof.children:
        if not (isinstance(traf, ContainerBox) and traf.type == "traf"):
            continue
        tfhd = find_first(traf.children, TfhdBox)
        assert tfhd is not None
        tfdt = find_first(traf.children, TfdtBox)
        truns = find_all(traf.children, TrunBox)
        first = next((trun for trun in truns if trun.sample_count), None)
        first_flags = None
        if first is not None:
            first_flags = first.first_sample_flags
            if first_flags is None and first.sample_flags is not None:
                first_flags = first.sample_flags[0]
        trafs.append(
            TrafScan(
                tfhd.track_id,
                None if tfdt is None else tfdt.base_media_decode_time,
                sum(trun.sample_count for trun in truns),
                sum(sum(trun.durations) for trun in truns if trun.durations is not None),
                sum(trun.sample_count for trun in truns if trun.durations is None),
                sum(sum(trun.sizes) for trun in truns if trun.sizes is not None),
                sum(trun.sample_count for trun in truns if trun.sizes is None),
                first_flags,
                tfhd.default_sample_duration,
                tfhd.default_sample_size,
                tfhd.default_sample_flags,
            )
        )
    return MoofScan(None if mfhd is None else mfhd.sequence_number, trafs)


def assert_scan_matches_boxes(data: bytes) -> None:
    """The one moof reader (the packager's struct-only scan, ``cascade.cmaf.moof``) reads
    what the typed mfhd, tfhd, tfdt and trun boxes decode from the same bytes."""
    moof = next(h for h in iter_boxes(data) if h.type == "moof")
    expected = scan_of_boxes(parse_box(data, moof.start, moof.end))
    assert scan_moof(data, moof.payload_start, moof.end) == expected


def parse_fragment(data: bytes, init: InitInfo) -> FragmentInfo:
    """The fragment reader, checked against the typed boxes on every fragment a test reads."""
    moof = next((h for h in iter_boxes(data) if h.type == "moof"), None)
    try:
        info = read_fragment(data, init)
    except BoxError:
        # Errors outside the moof (a second moof, a cut mdat) are the reader's to find;
        # inside it the typed boxes may only fail the same clean way, never crash.
        if moof is not None:
            with contextlib.suppress(BoxError):
                parse_box(data, moof.start, moof.end)
        raise
    assert_scan_matches_boxes(data)
    return info


SYNC = 0x02000000  # sample_depends_on = 2 (an I-frame)
NON_SYNC = 0x01010000  # depends on others, sample_is_non_sync_sample = 1

# ---------------------------------------------------------------------------------------------
# Synthetic streams built from box objects


def video_entry() -> VisualSampleEntry:
    return VisualSampleEntry("avc1", 1280, 720, (AvcCBox(0x64, 0, 0x1F),))


def audio_entry(asc: str = "1190") -> AudioSampleEntry:
    return AudioSampleEntry("mp4a", 2, 16, 48000, (EsdsBox.for_audio(bytes.fromhex(asc)),))


def trak(track_id: int, handler: str, timescale: int, entry: Box) -> ContainerBox:
    stbl = ContainerBox("stbl", (StsdBox((entry,)),))
    mdia = ContainerBox(
        "mdia", (MdhdBox(timescale), HdlrBox(handler), ContainerBox("minf", (stbl,)))
    )
    return ContainerBox("trak", (TkhdBox(track_id), mdia))


VIDEO = trak(1, "vide", 90000, video_entry())
AUDIO = trak(2, "soun", 48000, audio_entry())


def init_bytes(*traks: ContainerBox, trexes: tuple[TrexBox, ...] | None = None) -> bytes:
    if trexes is None:
        tkhds = (find_first(t.children, TkhdBox) for t in traks)
        trexes = tuple(TrexBox(tkhd.track_id) for tkhd in tkhds if tkhd is not None)
    moov = ContainerBox("moov", (RawBox("mvhd", bytes(100)), *traks, ContainerBox("mvex", trexes)))
    return FtypBox("iso6", 0, ("iso6", "cmfc")).serialize() + moov.serialize()


def traf(
    track_id: int,
    decode_time: int | None,
    *truns: TrunBox,
    default_sample_duration: int | None = None,
    default_sample_size: int | None = None,
    default_sample_flags: int | None = None,
) -> ContainerBox:
    tfhd = TfhdBox(
        track_id,
        default_sample_duration=default_sample_duration,
        default_sample_size=default_sample_size,
        default_sample_flags=default_sample_flags,
        default_base_is_moof=True,
    )
    tfdt = () if decode_time is None else (TfdtBox(decode_time),)
    return ContainerBox("traf", (tfhd, *tfdt, *truns))


def fragment_bytes(sequence: int, *trafs: ContainerBox, payload: bytes = b"media") -> bytes:
    moof = ContainerBox("moof", (MfhdBox(sequence), *trafs))
    return moof.serialize() + MdatBox(payload).serialize()


def av_fragment(sequence: int, *, key: bool, frames: int = 3) -> bytes:
    """A muxed fragment: `frames` video frames at 30 fps and 5 AAC frames."""
    video = TrunBox(
        frames,
        0,
        SYNC if key else None,
        sizes=tuple(range(100, 100 + frames)),
    )
    audio = TrunBox(5, 0, sizes=(10, 11, 12, 13, 14))
    return fragment_bytes(
        sequence,
        traf(1, (sequence - 1) * 9000, video, default_sample_duration=3000,
             default_sample_flags=NON_SYNC),
        traf(2, (sequence - 1) * 5120, audio, default_sample_duration=1024,
             default_sample_flags=SYNC),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# parse_init


def test_init_describes_video_and_audio_tracks() -> None:
    info = parse_init(init_bytes(AUDIO, VIDEO))
    assert [t.track_id for t in info.tracks] == [2, 1]
    video, audio = info.video, info.audio
    assert video is not None
    assert audio is not None
    assert (video.kind, video.timescale, video.codec, video.width, video.height) == (
        "video", 90000, "avc1.64001f", 1280, 720,
    )  # fmt: skip
    assert (audio.kind, audio.timescale, audio.codec, audio.sample_rate, audio.channels) == (
        "audio", 48000, "mp4a.40.2", 48000, 2,
    )  # fmt: skip
    assert video.trex == TrexBox(1)
    assert info.main is video
    assert info.codecs == "avc1.64001f,mp4a.40.2"  # video first whatever the track order
    assert info.track(2) is audio
    assert info.track(3) is None


def test_init_audio_only_and_he_aac() -> None:
    # HE-AAC, explicit signalling: 24 kHz core, 48 kHz output.
    info = parse_init(init_bytes(trak(1, "soun", 48000, audio_entry("2b1188"))))
    assert info.video is None
    assert info.main.kind == "audio"
    assert info.codecs == "mp4a.40.5"
    assert info.main.sample_rate == 48000


def test_init_keeps_other_tracks_by_id_only() -> None:
    meta = trak(3, "meta", 1000, RawBox("mett", bytes(8)))
    info = parse_init(init_bytes(VIDEO, meta))
    assert [t.track_id for t in info.tracks] == [1]
    assert info.other_track_ids == frozenset({3})
    # ... and their trafs are ignored.
    fragment = fragment_bytes(
        1, traf(1, 0, TrunBox(1, first_sample_flags=SYNC), default_sample_duration=3000),
        traf(3, 0, TrunBox(1), default_sample_duration=1000),
    )  # fmt: skip
    assert [t.track_id for t in parse_fragment(fragment, info).tracks] == [1]


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (FtypBox("iso6", 0).serialize(), BoxError, "init segment has no moov box"),
        (
            ContainerBox("moov", (VIDEO,)).serialize(),
            BoxError,
            "moov has no mvex box: not a fragmented MP4",
        ),
        (init_bytes(VIDEO, trexes=(TrexBox(2),)), BoxError, "track 1 has no trex box"),
        (
            init_bytes(trak(1, "vide", 90000, VisualSampleEntry("av01", 1920, 1080))),
            UnsupportedCodecError,
            "no RFC 6381 codec string for sample entry 'av01'",
        ),
        (
            init_bytes(trak(1, "vide", 90000, audio_entry())),
            BoxError,
            "video track 1 has a 'mp4a' sample entry",
        ),
        (init_bytes(trak(1, "vide", 0, video_entry())), BoxError, "track 1 has timescale 0"),
        (init_bytes(), BoxError, "init segment has no audio or video track"),
        (init_bytes(VIDEO)[:-3], BoxError, "truncated box 'moov'"),
    ],
)
def test_init_errors(data: bytes, error: type[BoxError], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_init(data)


# ---------------------------------------------------------------------------------------------
# parse_fragment

INIT = parse_init(init_bytes(VIDEO, AUDIO))


def test_fragment_info_from_a_muxed_fragment() -> None:
    data = fragment_bytes(
        4,
        traf(1, 270000, TrunBox(3, 8, SYNC, sizes=(500, 40, 41)), default_sample_duration=3000,
             default_sample_flags=NON_SYNC),
        traf(2, 144000, TrunBox(5, 600, sizes=(10, 11, 12, 13, 14)),
             default_sample_duration=1024),
    )  # fmt: skip
    info = parse_fragment(data, INIT)
    assert info.sequence_number == 4
    assert info.size == len(data)
    video, audio = info.tracks
    assert (video.base_media_decode_time, video.duration, video.sample_count, video.size) == (
        270000, 9000, 3, 581,
    )  # fmt: skip
    assert video.first_sample_sync
    assert video.end_time == 279000
    assert (audio.base_media_decode_time, audio.duration, audio.sample_count, audio.size) == (
        144000, 5120, 5, 60,
    )  # fmt: skip
    assert info.main is video
    assert info.start == 3.0
    assert info.duration == pytest.approx(0.1)
    assert info.independent
    assert info.track(2) is audio


@pytest.mark.parametrize(
    ("trun", "tfhd", "trex", "duration", "size"),
    [
        # per-sample values win over every default
        (TrunBox(2, durations=(7, 8), sizes=(1, 2)), {"default_sample_duration": 100}, 1000, 15, 3),
        # tfhd defaults win over trex
        (TrunBox(2), {"default_sample_duration": 100, "default_sample_size": 9}, 1000, 200, 18),
        # trex defaults when tfhd has none
        (TrunBox(2), {}, 1000, 2000, 8),
    ],
)
def test_duration_and_size_precedence(
    trun: TrunBox, tfhd: dict[str, int], trex: int, duration: int, size: int
) -> None:
    init = parse_init(init_bytes(AUDIO, trexes=(TrexBox(2, 1, trex, 4, 0),)))
    info = parse_fragment(fragment_bytes(1, traf(2, 0, trun, **tfhd)), init)
    assert (info.main.duration, info.main.size, info.main.sample_count) == (duration, size, 2)


@pytest.mark.parametrize(
    ("trun", "tfhd_flags", "trex_flags", "sync"),
    [
        # first_sample_flags overrides everything for sample 0
        (TrunBox(2, first_sample_flags=SYNC), NON_SYNC, NON_SYNC, True),
        (TrunBox(2, first_sample_flags=NON_SYNC), SYNC, SYNC, False),
        # then the per-sample flags
        (TrunBox(2, sample_flags=(NON_SYNC, SYNC)), SYNC, SYNC, False),
        (TrunBox(2, sample_flags=(SYNC, NON_SYNC)), NON_SYNC, NON_SYNC, True),
        # then the tfhd default
        (TrunBox(2), NON_SYNC, SYNC, False),
        (TrunBox(2), SYNC, NON_SYNC, True),
        # then the trex default
        (TrunBox(2), None, NON_SYNC, False),
        (TrunBox(2), None, SYNC, True),
        (TrunBox(2), None, 0, True),  # all-zero flags: a sync sample
    ],
)
def test_sync_flag_precedence(
    trun: TrunBox, tfhd_flags: int | None, trex_flags: int, sync: bool
) -> None:
    init = parse_init(init_bytes(VIDEO, trexes=(TrexBox(1, 1, 3000, 0, trex_flags),)))
    tfhd = {} if tfhd_flags is None else {"default_sample_flags": tfhd_flags}
    info = parse_fragment(fragment_bytes(1, traf(1, 0, trun, **tfhd)), init)
    assert info.main.first_sample_sync is sync
    assert info.independent is sync


def test_is_sync_sample() -> None:
    assert is_sync_sample(0)
    assert is_sync_sample(SYNC)
    assert not is_sync_sample(NON_SYNC)
    assert is_sync_sample(0x02010000)  # an I-frame flagged non-sync (open GOP) still counts
    assert not is_sync_sample(0x00010000)


def test_several_truns_and_an_empty_one() -> None:
    data = fragment_bytes(
        1,
        traf(1, 0, TrunBox(0), TrunBox(2, sample_flags=(SYNC, NON_SYNC)), TrunBox(1, sizes=(5,)),
             default_sample_duration=3000, default_sample_size=1),
    )  # fmt: skip
    info = parse_fragment(data, INIT)
    assert (info.main.sample_count, info.main.duration, info.main.size) == (3, 9000, 7)
    assert info.main.first_sample_sync


def test_empty_traf_is_not_sync() -> None:
    info = parse_fragment(fragment_bytes(1, traf(1, 0, default_sample_duration=1)), INIT)
    assert info.main.sample_count == 0
    assert not info.independent


def test_audio_only_fragment_is_independent() -> None:
    data = fragment_bytes(1, traf(2, 48000, TrunBox(4, first_sample_flags=NON_SYNC)))
    info = parse_fragment(data, parse_init(init_bytes(AUDIO)))
    assert info.independent
    assert info.start == 1.0


def test_fragment_with_styp_and_prft_before_moof() -> None:
    data = (
        StypBox("msdh", 0, ("msdh", "msix")).serialize()
        + RawBox("prft", bytes(20)).serialize()
        + av_fragment(1, key=True)
    )
    info = parse_fragment(data, INIT)
    assert info.sequence_number == 1
    assert info.size == len(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (MdatBox(b"x").serialize(), "fragment has no moof box"),
        (av_fragment(1, key=True) + av_fragment(2, key=False), "fragment has a second moof box"),
        (fragment_bytes(1, traf(1, None, TrunBox(1))), "traf of track 1 has no tfdt box"),
        (fragment_bytes(1, traf(9, 0, TrunBox(1))), "fragment has track 9, which the init"),
        (fragment_bytes(1), "moof at byte 0 has no audio or video traf"),
        (
            ContainerBox("moof", (traf(1, 0, TrunBox(1)),)).serialize(),
            "moof at byte 0 has no mfhd box",
        ),
        (
            ContainerBox("moof", (MfhdBox(1), ContainerBox("traf", (TfdtBox(0),)))).serialize(),
            "traf at byte 24 has no tfhd box",
        ),
        (av_fragment(1, key=True)[:-2], "truncated box 'mdat'"),
    ],
)
def test_fragment_errors(data: bytes, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        parse_fragment(data, INIT)


# ---------------------------------------------------------------------------------------------
# BoxSplitter

STREAM = init_bytes(VIDEO, AUDIO) + b"".join(av_fragment(n, key=n % 5 == 1) for n in range(1, 12))
STREAM_BOXES = [(h.type, STREAM[h.start : h.end]) for h in iter_boxes(STREAM)]


def split_in(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.lists(st.integers(0, len(STREAM)), max_size=40))
def test_splitter_any_chunking_gives_the_same_boxes(cuts: list[int]) -> None:
    splitter = BoxSplitter()
    boxes = [box for chunk in split_in(STREAM, cuts) for box in splitter.feed(chunk)]
    assert boxes == STREAM_BOXES
    assert splitter.pending == 0
    assert splitter.close() == []


def test_splitter_one_byte_at_a_time() -> None:
    splitter = BoxSplitter()
    boxes = []
    for i in range(len(STREAM)):
        boxes += splitter.feed(STREAM[i : i + 1])
        assert splitter.pending == i + 1 - splitter.position
    assert boxes == STREAM_BOXES
    assert splitter.position == len(STREAM)


def test_splitter_large_stream_in_small_chunks_compacts_correctly() -> None:
    rng = random.Random(7)
    boxes = [MdatBox(rng.randbytes(rng.randrange(0, 40000))).serialize() for _ in range(60)]
    data = b"".join(boxes)
    splitter = BoxSplitter()
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        step = rng.randrange(1, 20000)
        out += [box for _, box in splitter.feed(memoryview(data)[pos : pos + step])]
        pos += step
    assert out == boxes


def test_splitter_pending_and_close() -> None:
    splitter = BoxSplitter()
    assert splitter.feed(STREAM[:40]) == [("ftyp", STREAM[:24])]
    assert splitter.pending == 16
    moov_size = len(STREAM_BOXES[1][1])
    with pytest.raises(
        BoxError, match=f"stream ended inside box 'moov' at stream byte 24: 16 of {moov_size} bytes"
    ):
        splitter.close()


def test_splitter_close_completes_a_size_zero_box() -> None:
    splitter = BoxSplitter()
    assert splitter.feed(bytes.fromhex("00000000 6d646174 0102")) == []
    assert splitter.feed(b"\3") == []
    assert splitter.close() == [("mdat", bytes.fromhex("00000000 6d646174 010203"))]


def test_splitter_close_inside_a_header() -> None:
    splitter = BoxSplitter()
    splitter.feed(b"\0\0\0")
    with pytest.raises(BoxError, match="inside a box header at stream byte 0: 3 of 8 bytes"):
        splitter.close()


def test_splitter_64_bit_size() -> None:
    box = bytes.fromhex("00000001 6d646174 0000000000000012 ffff")
    splitter = BoxSplitter()
    assert splitter.feed(box[:12]) == []
    assert splitter.feed(box[12:]) == [("mdat", box)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            STREAM[:24] + b"\x89PNG\r\n\x1a\n",
            r"not an MP4 box at stream byte 24: type b'\\r\\n\\x1a\\n', size 2303741511",
        ),
        (bytes.fromhex("00000007 66726565"), "box 'free' at stream byte 0 has invalid size 7"),
        (
            bytes.fromhex("00000001 6d646174 0000000000000009"),
            "invalid 64-bit size 9",
        ),
        (
            bytes.fromhex("7fffffff 6d646174"),
            "declares 2147483647 bytes, over the 67108864-byte limit",
        ),
    ],
)
def test_splitter_garbage(data: bytes, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        BoxSplitter().feed(data)


# ---------------------------------------------------------------------------------------------
# Fmp4Reader


def read_all(data: bytes, cuts: list[int] | None = None) -> list[InitSegment | Fragment]:
    reader = Fmp4Reader()
    items = [item for chunk in split_in(data, cuts or []) for item in reader.feed(chunk)]
    items += reader.close()
    assert reader.pending == 0
    for item in items:
        if isinstance(item, Fragment):
            assert_scan_matches_boxes(item.data)
    return items


def test_reader_gives_init_then_fragments() -> None:
    items = read_all(STREAM)
    init, *fragments = items
    assert isinstance(init, InitSegment)
    assert init.data == init_bytes(VIDEO, AUDIO)
    assert init.info == INIT
    assert all(isinstance(f, Fragment) for f in fragments)
    assert b"".join(item.data for item in items) == STREAM
    assert [f.info.sequence_number for f in fragments if isinstance(f, Fragment)] == list(
        range(1, 12)
    )
    assert [f.info.independent for f in fragments if isinstance(f, Fragment)] == [
        n % 5 == 1 for n in range(1, 12)
    ]


@settings(max_examples=50)
@given(st.lists(st.integers(0, len(STREAM)), max_size=30))
def test_reader_any_chunking_gives_the_same_items(cuts: list[int]) -> None:
    assert read_all(STREAM, cuts) == read_all(STREAM)


def test_reader_keeps_boxes_before_moof_with_the_fragment() -> None:
    head = StypBox("msdh", 0).serialize() + RawBox("prft", bytes(20)).serialize()
    middle = RawBox("free", b"").serialize()
    fragment = av_fragment(1, key=True)
    moof_end = len(fragment) - len(MdatBox(b"media").serialize())
    data = init_bytes(VIDEO, AUDIO) + head + fragment[:moof_end] + middle + fragment[moof_end:]
    init, frag = read_all(data)
    assert isinstance(frag, Fragment)
    assert frag.data == head + fragment[:moof_end] + middle + fragment[moof_end:]
    assert frag.info.size == len(frag.data)
    assert isinstance(init, InitSegment)
    assert init.data == init_bytes(VIDEO, AUDIO)


def test_reader_reports_a_second_init_and_uses_it() -> None:
    audio_only = init_bytes(trak(2, "soun", 44100, audio_entry("1210")))
    data = (
        STREAM
        + RawBox("free", b"junk").serialize()  # dropped: not part of either item
        + audio_only
        + fragment_bytes(1, traf(2, 44100, TrunBox(2), default_sample_duration=1024))
    )
    items = read_all(data)
    inits = [item for item in items if isinstance(item, InitSegment)]
    assert [i.info.codecs for i in inits] == ["avc1.64001f,mp4a.40.2", "mp4a.40.2"]
    assert inits[1].data == audio_only
    last = items[-1]
    assert isinstance(last, Fragment)
    assert last.info.main.timescale == 44100
    assert last.info.start == 1.0
    assert len(b"".join(item.data for item in items)) == len(data) - 12


def test_reader_init_property_and_pending() -> None:
    reader = Fmp4Reader()
    before = reader.init
    assert before is None
    init = init_bytes(VIDEO, AUDIO)
    fragment = av_fragment(1, key=True)
    assert reader.feed(init + fragment[:50]) == [InitSegment(init, parse_init(init))]
    assert reader.init == InitSegment(init, parse_init(init))
    assert reader.pending == 50
    (item,) = reader.feed(fragment[50:])
    assert isinstance(item, Fragment)
    assert reader.pending == 0


def test_reader_close_completes_a_size_zero_mdat() -> None:
    fragment = av_fragment(1, key=True)
    mdat = MdatBox(b"media").serialize()
    open_ended = fragment[: -len(mdat)] + b"\0\0\0\0" + mdat[4:]
    reader = Fmp4Reader()
    reader.feed(init_bytes(VIDEO, AUDIO))
    assert reader.feed(open_ended) == []
    (item,) = reader.close()
    assert isinstance(item, Fragment)
    assert item.data == open_ended


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (av_fragment(1, key=True), "fragment at stream byte 0 before any init segment"),
        (
            init_bytes(VIDEO) + MdatBox(b"").serialize(),
            f"mdat at stream byte {len(init_bytes(VIDEO))} without a moof",
        ),
        (
            init_bytes(VIDEO) + av_fragment(1, key=True)[:-13] + av_fragment(2, key=False),
            "second moof at stream byte",
        ),
        (
            init_bytes(VIDEO) + av_fragment(1, key=True)[:-13] + init_bytes(VIDEO),
            "ftyp at stream byte .* inside a fragment",
        ),
        (
            init_bytes(VIDEO) + b"\xff" * 8,
            f"not an MP4 box at stream byte {len(init_bytes(VIDEO))}",
        ),
    ],
)
def test_reader_errors(data: bytes, message: str) -> None:
    with pytest.raises(BoxError, match=message):
        Fmp4Reader().feed(data)


# ---------------------------------------------------------------------------------------------
# Real FFmpeg output

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
FRAGMENTED = ["-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer"]


def run_ffmpeg(out: Path, *args: str) -> bytes:
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed")
    command = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", *args]
    command += ["-f", "mp4", *FRAGMENTED, "-frag_duration", "100000", str(out)]
    subprocess.run(command, check=True, timeout=120)
    return out.read_bytes()


VIDEO_IN = ["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"]
AUDIO_IN = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
X264 = "-c:v libx264 -preset veryfast -tune zerolatency -profile:v high -b:v 400k -g 15 "
X264 += "-keyint_min 15 -sc_threshold 0 -bf 0 -pix_fmt yuv420p"
AAC = ["-c:a", "aac", "-b:a", "64k"]


@pytest.fixture(scope="module")
def muxed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    out = tmp_path_factory.mktemp("ffmpeg") / "muxed.mp4"
    args = [*VIDEO_IN, *AUDIO_IN, "-t", "3", "-map", "0:v", "-map", "1:a", *X264.split(), *AAC]
    return out, run_ffmpeg(out, *args)


def probe_duration_ts(path: Path, stream: str) -> int:
    assert FFPROBE is not None
    result = subprocess.run(
        [FFPROBE, "-v", "error", "-select_streams", stream, "-show_entries",
         "stream=duration_ts", "-of", "json", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return int(json.loads(result.stdout)["streams"][0]["duration_ts"])


def fragments_of(items: list[InitSegment | Fragment]) -> list[Fragment]:
    fragments = [item for item in items if isinstance(item, Fragment)]
    assert len(fragments) == len(items) - 1
    return fragments


@pytest.mark.slow
def test_ffmpeg_muxed_stream(muxed: tuple[Path, bytes]) -> None:
    path, data = muxed
    items = read_all(data)
    init = items[0]
    assert isinstance(init, InitSegment)
    assert init.info.codecs == "avc1.64001e,mp4a.40.2"  # High profile, level 3.0
    video, audio = init.info.video, init.info.audio
    assert video is not None
    assert audio is not None
    assert (video.width, video.height, video.timescale) == (640, 360, 15360)
    assert (audio.sample_rate, audio.channels, audio.timescale) == (48000, 1, 48000)

    fragments = fragments_of(items)
    assert b"".join(item.data for item in items) == data
    # 90 frames at 30 fps, 100 ms fragments: 30 fragments of 3 frames each.
    assert len(fragments) == 30
    assert all(f.info.main.sample_count == 3 for f in fragments)
    # -g 15: a keyframe every 15 frames, so every 5th fragment is independent.
    assert [i for i, f in enumerate(fragments) if f.info.independent] == list(range(0, 30, 5))
    assert [f.info.sequence_number for f in fragments] == list(range(1, 31))

    for track in (video, audio):
        parts = [f.info.track(track.track_id) for f in fragments]
        assert all(p is not None for p in parts)
        times = [(p.base_media_decode_time, p.duration) for p in parts if p is not None]
        assert times[0][0] == 0
        for (start, duration), (next_start, _) in itertools.pairwise(times):
            assert next_start == start + duration  # tfdt continuity
        total = sum(duration for _, duration in times)
        assert abs(total / track.timescale - 3.0) < 0.05
        if FFPROBE is not None:
            stream = "v:0" if track is video else "a:0"
            assert total == probe_duration_ts(path, stream)
    assert sum(f.info.duration for f in fragments) == pytest.approx(
        sum(f.info.main.duration for f in fragments) / 15360
    )


@pytest.mark.slow
def test_ffmpeg_stream_round_trips_box_for_box(muxed: tuple[Path, bytes]) -> None:
    _, data = muxed
    assert b"".join(box.serialize() for box in parse_boxes(data)) == data


@pytest.mark.slow
def test_ffmpeg_stream_in_random_chunks(muxed: tuple[Path, bytes]) -> None:
    _, data = muxed
    rng = random.Random(1)
    cuts = [rng.randrange(len(data)) for _ in range(300)]
    assert read_all(data, cuts) == read_all(data)


@pytest.mark.slow
def test_ffmpeg_audio_only(tmp_path: Path) -> None:
    data = run_ffmpeg(tmp_path / "a.mp4", *AUDIO_IN, "-t", "2", *AAC, "-ac", "2")
    init, *rest = read_all(data)
    assert isinstance(init, InitSegment)
    assert init.info.codecs == "mp4a.40.2"
    assert init.info.main.channels == 2
    fragments = fragments_of([init, *rest])
    assert all(f.info.independent for f in fragments)
    total = sum(f.info.main.duration for f in fragments)
    assert abs(total / 48000 - 2.0) < 0.05


@pytest.mark.slow
def test_ffmpeg_video_only(tmp_path: Path) -> None:
    data = run_ffmpeg(tmp_path / "v.mp4", *VIDEO_IN, "-t", "2", *X264.split())
    init, *rest = read_all(data)
    assert isinstance(init, InitSegment)
    assert init.info.codecs == "avc1.64001e"
    fragments = fragments_of([init, *rest])
    assert [i for i, f in enumerate(fragments) if f.info.independent] == list(range(0, 20, 5))


@pytest.mark.slow
def test_ffmpeg_hevc(tmp_path: Path) -> None:
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed")
    encoders = subprocess.run(
        [FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    if "libx265" not in encoders:
        pytest.skip("ffmpeg has no libx265")
    data = run_ffmpeg(
        tmp_path / "h.mp4", *VIDEO_IN, "-t", "1", "-c:v", "libx265", "-tag:v", "hvc1",
        "-x265-params", "log-level=error:keyint=15:min-keyint=15:bframes=0", "-pix_fmt",
        "yuv420p",
    )  # fmt: skip
    init, *rest = read_all(data)
    assert isinstance(init, InitSegment)
    # Main profile (1), compatible with Main and Main 10 (flags 1, 2 reversed: 6), Main tier.
    codec = init.info.codecs
    assert codec.startswith("hvc1.1.6.L")
    level = int(codec.split(".")[3][1:])
    assert level % 3 == 0  # level_idc is 30 x the level number
    assert codec.count(".") >= 3
    assert fragments_of([init, *rest])[0].info.independent
