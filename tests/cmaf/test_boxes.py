"""Boxes: inline hex vectors (hand-made, or cut from FFmpeg 5 output), round trips, bad input."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascade.cmaf.boxes import (
    KNOWN_TYPES,
    AudioSampleEntry,
    AudioSpecificConfig,
    AvcCBox,
    Box,
    BoxError,
    ContainerBox,
    EsdsBox,
    FtypBox,
    HdlrBox,
    HvcCBox,
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
    box_bytes,
    find_all,
    find_container,
    find_first,
    iter_boxes,
    parse_box,
    parse_boxes,
    read_header,
)
from cascade.cmaf.codec_string import UnsupportedCodecError, codec_string

# ---------------------------------------------------------------------------------------------
# The two generic helpers every box test uses (after mp4ff's boxDiffAfterEncodeAndDecode and
# its hex-vector decoding).


def assert_round_trip(box: Box) -> None:
    """Encoding then decoding gives the same box, and encoding is stable."""
    encoded = box.serialize()
    header = read_header(encoded)
    assert header.type == box.type
    assert header.size == len(encoded)
    decoded = parse_box(encoded)
    assert decoded == box
    assert decoded.serialize() == encoded


def assert_hex_vector(hex_box: str, expected: Box) -> None:
    """The hex decodes to ``expected`` and ``expected`` encodes to the very same bytes."""
    data = bytes.fromhex(hex_box)
    assert parse_box(data) == expected
    assert expected.serialize() == data
    assert_round_trip(expected)


# ---------------------------------------------------------------------------------------------
# Headers and walking


def test_header_32_bit() -> None:
    data = bytes.fromhex("0000000c66726565 61626364")
    header = read_header(data)
    assert (header.type, header.start, header.header_size, header.size) == ("free", 0, 8, 12)
    assert (header.payload_start, header.end) == (8, 12)
    assert parse_box(data) == RawBox("free", b"abcd")


def test_header_64_bit_largesize() -> None:
    # size == 1, then a 64-bit size of 20 = 16 header bytes + 4 payload bytes.
    data = bytes.fromhex("00000001 6d646174 0000000000000014 deadbeef")
    header = read_header(data)
    assert (header.type, header.header_size, header.size) == ("mdat", 16, 20)
    assert parse_box(data) == MdatBox(bytes.fromhex("deadbeef"))


def test_header_size_zero_runs_to_end() -> None:
    data = bytes.fromhex("00000000 6d646174 010203")
    header = read_header(data)
    assert header.size == 11
    assert parse_box(data) == MdatBox(b"\1\2\3")
    # Within a parent, size 0 runs to the parent's end, not the buffer's.
    assert read_header(data + b"tail", 0, len(data)).size == 11


def test_header_uuid_usertype() -> None:
    usertype = bytes(range(16))
    data = bytes.fromhex("0000001a 75756964") + usertype + b"hi"
    header = read_header(data)
    assert (header.header_size, header.usertype) == (24, usertype)
    box = parse_box(data)
    assert box == RawBox("uuid", b"hi", usertype)
    assert box.serialize() == data


def test_box_bytes_switches_to_largesize_only_when_needed() -> None:
    assert box_bytes("free", b"") == bytes.fromhex("0000000866726565")
    with pytest.raises(BoxError, match="4 characters"):
        box_bytes("toolong", b"")
    with pytest.raises(BoxError, match="16 bytes"):
        box_bytes("uuid", b"", b"short")


def test_iter_boxes_walks_a_range() -> None:
    data = b"xx" + RawBox("free", b"a").serialize() + RawBox("skip", b"bc").serialize() + b"yy"
    headers = list(iter_boxes(data, 2, len(data) - 2))
    assert [(h.type, h.start, h.end) for h in headers] == [("free", 2, 11), ("skip", 11, 21)]


@pytest.mark.parametrize(
    ("hex_data", "message"),
    [
        ("000000", "truncated box header at byte 0: 3 of 8 bytes"),
        ("00000004 66726565", "box 'free' at byte 0 has invalid size 4"),
        ("00000010 66726565 0000", "truncated box 'free' at byte 0: declares 16 bytes, 10 remain"),
        ("00000001 6d646174 0000", "truncated 64-bit header of box 'mdat' at byte 0"),
        ("00000001 6d646174 0000000000000008", "box 'mdat' at byte 0 has invalid size 8"),
        ("00000018 75756964 0001", "truncated uuid header at byte 0"),
    ],
)
def test_bad_headers_raise_box_error(hex_data: str, message: str) -> None:
    with pytest.raises(BoxError, match=f"^{message}$"):
        read_header(bytes.fromhex(hex_data))


def test_box_error_is_a_value_error() -> None:
    assert issubclass(BoxError, ValueError)


def test_truncated_child_names_the_box_and_offset() -> None:
    moov = ContainerBox("moov", (RawBox("free", b"1234"),)).serialize()
    broken = moov[:-2] + b""  # child declares 12 bytes, only 10 remain
    broken = len(broken).to_bytes(4) + broken[4:]
    with pytest.raises(BoxError, match="truncated box 'free' at byte 0: declares 12 bytes"):
        parse_box(broken)


# ---------------------------------------------------------------------------------------------
# Hex vectors. "FFmpeg" vectors are cut from the sample file of the module docstring.


def test_ftyp_vector_from_ffmpeg() -> None:
    assert_hex_vector(
        "0000001c 66747970 69736f35 00000200 69736f35 69736f36 6d703431",
        FtypBox("iso5", 512, ("iso5", "iso6", "mp41")),
    )


def test_styp_is_its_own_type() -> None:
    # size 20, 'styp', major 'msdh', minor 0, compatible 'msdh'
    assert_hex_vector("00000014 73747970 6d736468 00000000 6d736468", StypBox("msdh", 0, ("msdh",)))
    assert StypBox("msdh", 0) != FtypBox("msdh", 0)


def test_ftyp_rejects_ragged_brand_list() -> None:
    with pytest.raises(BoxError, match="not 4-aligned"):
        parse_box(bytes.fromhex("00000012 66747970 69736f35 00000000 6d70"))


def test_tkhd_vector_from_ffmpeg() -> None:
    assert_hex_vector(
        "0000005c746b6864000000030000000000000000000000010000000000000000000000000000000000000000"
        "000000000001000000000000000000000000000000010000000000000000000000000000400000000280000"
        "001680000",
        TkhdBox(track_id=1, width=640.0, height=360.0),
    )


def test_tkhd_version_1() -> None:
    assert_round_trip(TkhdBox(7, duration=1 << 40, version=1, creation_time=1 << 33, volume=256))


def test_mdhd_vector_from_ffmpeg() -> None:
    # version 0, times 0, timescale 15360 (0x3c00), duration 0, language 'und' (0x55c4)
    assert_hex_vector(
        "00000020 6d646864 00000000 00000000 00000000 00003c00 00000000 55c4 0000",
        MdhdBox(15360),
    )


def test_mdhd_hand_made_language_eng() -> None:
    # 'eng' = 5, 14, 7 in 5 bits each = 0b00101_01110_00111 = 0x15c7
    assert_hex_vector(
        "00000020 6d646864 00000000 00000000 00000000 0000bb80 00000000 15c7 0000",
        MdhdBox(48000, language="eng"),
    )


def test_mdhd_version_1_and_unknown_version() -> None:
    assert_round_trip(MdhdBox(90000, duration=1 << 35, version=1))
    with pytest.raises(BoxError, match="'mdhd' version 2 is not supported"):
        MdhdBox.parse(bytes.fromhex("02000000") + bytes(28))


def test_hdlr_vector_from_ffmpeg() -> None:
    assert_hex_vector(
        "0000002d68646c72000000000000000076696465000000000000000000000000566964656f48616e646c"
        "657200",
        HdlrBox("vide", "VideoHandler"),
    )


def test_trex_vector_hand_made() -> None:
    # track 1, description 1, duration 1024, size 0, flags 0x02000000 (depends on no other)
    assert_hex_vector(
        "00000020 74726578 00000000 00000001 00000001 00000400 00000000 02000000",
        TrexBox(1, 1, 1024, 0, 0x02000000),
    )


def test_avcc_vector_from_ffmpeg_and_codec_string() -> None:
    avcc = AvcCBox(
        profile=0x64,
        compatibility=0,
        level=0x1E,
        sps=(bytes.fromhex("6764001eacb405017fcb8088000003000800000301e478b175"),),
        pps=(bytes.fromhex("68ef3cb0"),),
        extra=bytes.fromhex("fdf8f800"),
    )
    assert_hex_vector(
        "00000034617663430164001effe100196764001eacb405017fcb8088000003000800000301e478b17501"
        "000468ef3cb0fdf8f800",
        avcc,
    )
    entry = VisualSampleEntry("avc1", 640, 360, (avcc,))
    assert codec_string(entry) == "avc1.64001e"
    assert codec_string(VisualSampleEntry("avc3", 1920, 1080, (AvcCBox(0x4D, 0x40, 0x28),))) == (
        "avc3.4d4028"
    )


def test_visual_sample_entry_round_trip_keeps_unknown_children() -> None:
    entry = VisualSampleEntry(
        "avc1",
        1280,
        720,
        (AvcCBox(0x64, 0, 0x1F), RawBox("pasp", bytes.fromhex("0000000100000001"))),
    )
    assert_round_trip(entry)
    assert len(entry.serialize()) == 8 + 78 + len(entry.children[0].serialize()) + 16


def test_hvcc_codec_strings_iso_14496_15_annex_e() -> None:
    # Annex E examples: Main profile, compatibility flags 1 and 2, Main tier, level 3.1,
    # progressive + non-packed + frame-only constraint flags.
    main = HvcCBox(0, 0, 1, 0x60000000, 0xB0_00_00_00_00_00, 93)
    assert main.codec_suffix == "1.6.L93.B0"
    assert codec_string(VisualSampleEntry("hev1", 1280, 720, (main,))) == "hev1.1.6.L93.B0"
    # Profile space 1 ('A'), profile 4, flags reversing to 0x41, High tier, two constraint bytes.
    rext = HvcCBox(1, 1, 4, 0x82000000, 0xB0_23_00_00_00_00, 120)
    assert rext.codec_suffix == "A4.41.H120.B0.23"
    # Apple's HLS authoring spec: Main 10 at level 4.1.
    main10 = HvcCBox(0, 0, 2, 0x20000000, 0xB0_00_00_00_00_00, 123)
    assert codec_string(VisualSampleEntry("hvc1", 3840, 2160, (main10,))) == "hvc1.2.4.L123.B0"
    # No constraint flags at all: nothing after the level.
    assert HvcCBox(0, 0, 1, 0x40000000, 0, 90).codec_suffix == "1.2.L90"


def test_hvcc_hand_made_vector() -> None:
    # version 1, ptp 0x01 (space 0, tier 0, profile 1), compat 0x60000000,
    # constraint b00000000000, level 93 (0x5d), then 2 bytes kept as-is.
    assert_hex_vector(
        "00000017 68766343 01 01 60000000 b00000000000 5d f000",
        HvcCBox(0, 0, 1, 0x60000000, 0xB0_00_00_00_00_00, 93, bytes.fromhex("f000")),
    )


def test_esds_vector_from_ffmpeg_and_audio_config() -> None:
    hex_box = (
        "0000003665736473000000000380808025000200048080801740150000000000fa000000fa000580808005"
        "118856e500068080800102"
    )
    esds = parse_box(bytes.fromhex(hex_box))
    assert isinstance(esds, EsdsBox)
    assert esds.serialize().hex() == hex_box
    assert esds.object_type_indication == 0x40
    assert esds.audio_specific_config == AudioSpecificConfig(2, 48000, 1)
    entry = AudioSampleEntry("mp4a", 2, 16, 48000, (esds,))
    assert_round_trip(entry)
    assert codec_string(entry) == "mp4a.40.2"


def test_esds_built_for_audio_round_trips() -> None:
    esds = EsdsBox.for_audio(bytes.fromhex("1190"))
    assert_round_trip(esds)
    assert esds.audio_specific_config == AudioSpecificConfig(2, 48000, 2)
    mp3 = EsdsBox.for_audio(b"", object_type_indication=0x6B)
    assert codec_string(AudioSampleEntry("mp4a", 2, 16, 44100, (mp3,))) == "mp4a.6b"


@pytest.mark.parametrize(
    ("hex_asc", "expected"),
    [
        # AOT 2 (LC), index 3 (48 kHz), 2 channels: 00010 0011 0010 000
        ("1190", AudioSpecificConfig(2, 48000, 2)),
        # AOT 2, index 4 (44.1 kHz), 6 channels: 00010 0100 0110 000
        ("1230", AudioSpecificConfig(2, 44100, 6)),
        # HE-AAC explicit: AOT 5, core index 6 (24 kHz), 2 ch, extension index 3 (48 kHz), AOT 2
        # 00101 0110 0010 0011 00010 + padding
        ("2b1188", AudioSpecificConfig(5, 48000, 2)),
        # Escaped AOT 42 (31, then 6 bits of 10), index 3, 2 channels:
        # 11111 001010 0011 0010 + padding
        ("f94640", AudioSpecificConfig(42, 48000, 2)),
        # Explicit 24-bit frequency: AOT 2, index 15, 22000 Hz, 1 channel
        # 00010 1111 000000000101010111110000 0001 + padding
        ("17802af808", AudioSpecificConfig(2, 22000, 1)),
    ],
)
def test_audio_specific_config_vectors(hex_asc: str, expected: AudioSpecificConfig) -> None:
    assert AudioSpecificConfig.parse(bytes.fromhex(hex_asc)) == expected


def test_audio_specific_config_channels() -> None:
    assert AudioSpecificConfig(2, 48000, 7).channels == 8
    assert AudioSpecificConfig(2, 48000, 0).channels is None  # in a PCE


def test_audio_specific_config_errors() -> None:
    with pytest.raises(BoxError, match="truncated AudioSpecificConfig"):
        AudioSpecificConfig.parse(b"\x11")
    with pytest.raises(BoxError, match="reserved sampling frequency index 13"):
        AudioSpecificConfig.parse(bytes.fromhex("1690"))  # 00010 1101 ...


def test_esds_garbage_descriptor() -> None:
    with pytest.raises(BoxError, match="expected ES_Descriptor"):
        _ = EsdsBox(bytes.fromhex("0401ff")).object_type_indication
    with pytest.raises(BoxError, match="no DecoderConfigDescriptor"):
        _ = EsdsBox(bytes.fromhex("0303000100")).object_type_indication


def test_plain_and_unsupported_codec_strings() -> None:
    assert codec_string(AudioSampleEntry("Opus", 2, 16, 48000, (RawBox("dOps", b"x"),))) == "opus"
    assert codec_string(AudioSampleEntry("ec-3", 6, 16, 48000)) == "ec-3"
    with pytest.raises(UnsupportedCodecError, match="'av01'"):
        codec_string(VisualSampleEntry("av01", 1920, 1080))
    with pytest.raises(BoxError, match="'hvc1' sample entry has no hvcC box"):
        codec_string(VisualSampleEntry("hvc1", 1920, 1080))
    with pytest.raises(BoxError, match="no esds"):
        codec_string(AudioSampleEntry("mp4a", 2, 16, 48000))


def test_quicktime_sound_description_refused() -> None:
    payload = bytes(6) + b"\0\1" + b"\0\1" + bytes(18)  # version 1
    with pytest.raises(BoxError, match="QuickTime sound description version 1"):
        AudioSampleEntry.parse_typed("mp4a", payload)


def test_stsd_entry_count_checked() -> None:
    stsd = StsdBox((AudioSampleEntry("ac-3", 2, 16, 48000),))
    assert_round_trip(stsd)
    data = bytearray(stsd.serialize())
    data[15] = 2
    with pytest.raises(BoxError, match="declares 2 sample entries but holds 1"):
        parse_box(bytes(data))


def test_mfhd_vector_hand_made() -> None:
    assert_hex_vector("00000010 6d666864 00000000 00000007", MfhdBox(7))


def test_tfhd_vector_from_ffmpeg() -> None:
    # flags 0x020038: default-base-is-moof, default duration, size and flags present
    assert_hex_vector(
        "0000001c 74666864 00020038 00000001 00000348 000015f9 01010000",
        TfhdBox(
            1,
            default_sample_duration=840,
            default_sample_size=5625,
            default_sample_flags=0x01010000,
            default_base_is_moof=True,
        ),
    )


def test_tfhd_hand_made_all_fields() -> None:
    # flags 0x01003b: every optional field, plus duration-is-empty
    assert_hex_vector(
        "00000028 74666864 0001003b 00000002 0000000100000000 00000003 00000400 00000010 02000000",
        TfhdBox(2, 1 << 32, 3, 1024, 16, 0x02000000, duration_is_empty=True),
    )


def test_tfdt_vectors_version_0_and_1() -> None:
    assert_hex_vector("00000010 74666474 00000000 000004d2", TfdtBox(1234, version=0))
    assert_hex_vector("00000014 74666474 01000000 0000000100000000", TfdtBox(1 << 32))
    with pytest.raises(BoxError, match="'tfdt' version 2"):
        TfdtBox.parse(bytes.fromhex("02000000 00000000"))


def test_trun_vector_from_ffmpeg_video() -> None:
    # flags 0x305: data offset, first sample flags, per-sample duration and size
    assert_hex_vector(
        "00000030 7472756e 00000305 00000003 000000e8 02000000"
        " 00000348 000015f9 00000200 000004ae 00000200 00000557",
        TrunBox(3, 232, 0x02000000, durations=(840, 512, 512), sizes=(5625, 1198, 1367)),
    )


def test_trun_vector_from_ffmpeg_audio_sizes_only() -> None:
    # flags 0x201: data offset and per-sample size
    assert_hex_vector(
        "00000028 7472756e 00000201 00000005 000020e6 000000c0 000000eb 0000009e 000000a1 000000c6",
        TrunBox(5, 8422, sizes=(192, 235, 158, 161, 198)),
    )


def test_trun_hand_made_version_1_signed_composition_offsets() -> None:
    # version 1, flags 0xf00: duration, size, flags, composition offset per sample; no offset
    assert_hex_vector(
        "00000030 7472756e 01000f00 00000002"
        " 00000200 00000064 02000000 fffffe00"
        " 00000200 000000c8 01010000 00000400",
        TrunBox(
            2,
            durations=(512, 512),
            sizes=(100, 200),
            sample_flags=(0x02000000, 0x01010000),
            composition_offsets=(-512, 1024),
            version=1,
        ),
    )


def test_trun_version_0_composition_offsets_are_unsigned() -> None:
    data = bytes.fromhex("00000014 7472756e 00000800 00000001 fffffe00")
    trun = parse_box(data)
    assert isinstance(trun, TrunBox)
    assert trun.composition_offsets == (0xFFFFFE00,)


def test_trun_no_optional_fields_and_negative_data_offset() -> None:
    assert_hex_vector("00000010 7472756e 00000000 00000009", TrunBox(9))
    assert_hex_vector("00000014 7472756e 00000001 00000000 fffffff0", TrunBox(0, -16))


def test_trun_column_length_checked() -> None:
    with pytest.raises(BoxError, match="trun sizes has 1 values for 2 samples"):
        TrunBox(2, sizes=(1,))


def test_trun_sample_count_beyond_payload() -> None:
    data = bytes.fromhex("00000014 7472756e 00000200 ffffffff 00000001")
    with pytest.raises(BoxError, match="4294967295 samples of 4 bytes need"):
        parse_box(data)


def test_container_and_finders() -> None:
    traf = ContainerBox(
        "traf",
        (TfhdBox(1), TfdtBox(0), TrunBox(1), TrunBox(2), RawBox("sbgp", b"\0" * 8)),
    )
    moof = ContainerBox("moof", (MfhdBox(1), traf))
    assert_round_trip(moof)
    assert find_first(traf.children, TfdtBox) == TfdtBox(0)
    assert find_first(traf.children, MfhdBox) is None
    assert find_all(traf.children, TrunBox) == [TrunBox(1), TrunBox(2)]
    assert find_container(moof.children, "traf") == traf
    assert find_container(moof.children, "moov") is None
    assert parse_boxes(moof.serialize() + MdatBox(b"x").serialize()) == (moof, MdatBox(b"x"))


def test_unknown_box_kept_byte_for_byte() -> None:
    data = bytes.fromhex("00000012 7072667400000000 0102030405 ff")
    box = parse_box(data)
    assert box == RawBox("prft", bytes.fromhex("0000000001020304 05ff"))
    assert box.serialize() == data


# ---------------------------------------------------------------------------------------------
# Property tests: every box type round trips; random payloads only ever raise BoxError.

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
u64 = st.integers(0, (1 << 64) - 1)
fourcc = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=4, max_size=4)
small_bytes = st.binary(max_size=40)
opt_u32 = st.none() | u32


@st.composite
def truns(draw: st.DrawFn) -> TrunBox:
    version = draw(st.sampled_from([0, 1]))
    count = draw(st.integers(0, 8))
    offsets = st.integers(-(1 << 31), (1 << 31) - 1) if version else u32

    def column(values: st.SearchStrategy[int]) -> tuple[int, ...] | None:
        if draw(st.booleans()):
            return tuple(draw(st.lists(values, min_size=count, max_size=count)))
        return None

    return TrunBox(
        count,
        draw(st.none() | st.integers(-(1 << 31), (1 << 31) - 1)),
        draw(opt_u32),
        column(u32),
        column(u32),
        column(u32),
        column(offsets),
        version,
    )


leaf_boxes: st.SearchStrategy[Box] = st.one_of(
    st.builds(RawBox, fourcc.filter(lambda t: t not in KNOWN_TYPES | {"uuid"}), small_bytes),
    st.builds(RawBox, st.just("uuid"), small_bytes, st.binary(min_size=16, max_size=16)),
    st.builds(FtypBox, fourcc, u32, st.lists(fourcc, max_size=4).map(tuple)),
    st.builds(StypBox, fourcc, u32, st.lists(fourcc, max_size=4).map(tuple)),
    st.builds(MdatBox, small_bytes),
    st.builds(
        TkhdBox,
        u32,
        u32,
        u32.map(lambda v: v / 65536),
        u32.map(lambda v: v / 65536),
        st.just(0),
        st.integers(0, 0xFFFFFF),
        u32,
        u32,
        st.integers(-0x8000, 0x7FFF),
        st.integers(-0x8000, 0x7FFF),
        st.integers(-0x8000, 0x7FFF),
        st.lists(st.integers(-(1 << 31), (1 << 31) - 1), min_size=9, max_size=9).map(tuple),
    ),
    st.builds(
        MdhdBox,
        u32,
        u64,
        st.text(st.characters(min_codepoint=0x60, max_codepoint=0x7F), min_size=3, max_size=3),
        st.just(1),
        u64,
        u64,
    ),
    st.builds(MdhdBox, u32, u32, st.just("und"), st.just(0), u32, u32),
    st.builds(HdlrBox, fourcc, st.text(st.characters(exclude_characters="\0"), max_size=20)),
    st.builds(TrexBox, u32, u32, u32, u32, u32),
    st.builds(
        AvcCBox,
        u8,
        u8,
        u8,
        st.integers(1, 4),
        st.lists(small_bytes, max_size=3).map(tuple),
        st.lists(small_bytes, max_size=3).map(tuple),
        small_bytes,
        u8,
    ),
    st.builds(
        HvcCBox,
        st.integers(0, 3),
        st.integers(0, 1),
        st.integers(0, 31),
        u32,
        st.integers(0, (1 << 48) - 1),
        u8,
        small_bytes,
        u8,
    ),
    st.builds(EsdsBox, small_bytes),
    st.builds(MfhdBox, u32),
    st.builds(TfhdBox, u32, st.none() | u64, opt_u32, opt_u32, opt_u32, opt_u32),
    st.builds(TfdtBox, u64, st.just(1)),
    st.builds(TfdtBox, u32, st.just(0)),
    truns(),
)

sample_entries: st.SearchStrategy[Box] = st.one_of(
    st.builds(
        VisualSampleEntry,
        st.sampled_from(sorted(VisualSampleEntry.TYPES)),
        u16,
        u16,
        st.lists(leaf_boxes, max_size=2).map(tuple),
        u16,
        u32,
        u32,
        u16,
        st.binary(min_size=32, max_size=32),
        u16,
    ),
    st.builds(
        AudioSampleEntry,
        st.sampled_from(sorted(AudioSampleEntry.TYPES)),
        u16,
        u16,
        u16,
        st.lists(leaf_boxes, max_size=2).map(tuple),
        u16,
    ),
)

any_box: st.SearchStrategy[Box] = st.recursive(
    st.one_of(
        leaf_boxes,
        sample_entries,
        st.builds(StsdBox, st.lists(sample_entries, max_size=2).map(tuple)),
    ),
    lambda children: st.builds(
        ContainerBox,
        st.sampled_from(["moov", "trak", "moof", "traf"]),
        st.lists(children, max_size=3).map(tuple),
    ),
    max_leaves=8,
)


@given(any_box)
def test_every_box_round_trips(box: Box) -> None:
    assert_round_trip(box)


TYPED_PARSERS: list[Callable[[bytes], Box]] = [
    FtypBox.parse,
    TkhdBox.parse,
    MdhdBox.parse,
    HdlrBox.parse,
    TrexBox.parse,
    StsdBox.parse,
    AvcCBox.parse,
    HvcCBox.parse,
    EsdsBox.parse,
    MfhdBox.parse,
    TfhdBox.parse,
    TfdtBox.parse,
    TrunBox.parse,
]


@given(st.sampled_from(TYPED_PARSERS), st.binary(max_size=64))
def test_garbage_payload_raises_only_box_error(
    parse: Callable[[bytes], Box], payload: bytes
) -> None:
    try:
        box = parse(payload)
    except BoxError:
        return
    assert box.serialize()[4:8] == box.type.encode("latin-1")


@given(
    st.sampled_from(sorted(VisualSampleEntry.TYPES | AudioSampleEntry.TYPES)),
    st.binary(max_size=120),
)
def test_garbage_sample_entry_raises_only_box_error(kind: str, payload: bytes) -> None:
    try:
        entry = parse_box(box_bytes(kind, payload))
    except BoxError:
        return
    with contextlib.suppress(BoxError):
        codec_string(entry)


@given(st.binary(max_size=64))
def test_garbage_esds_and_asc_raise_only_box_error(data: bytes) -> None:
    esds = EsdsBox(data)
    with contextlib.suppress(BoxError):
        _ = esds.object_type_indication
        _ = esds.audio_specific_config
    with contextlib.suppress(BoxError):
        AudioSpecificConfig.parse(data)


@given(st.binary(max_size=200))
def test_garbage_stream_raises_only_box_error(data: bytes) -> None:
    try:
        boxes = parse_boxes(data)
    except BoxError:
        return
    assert len(boxes) == len(list(iter_boxes(data)))
    assert sum(h.size for h in iter_boxes(data)) == len(data)
