"""Tags: one table of (tag, line) drives render and parse; then the attribute-list grammar."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascade.hls.tags import (
    DiscontinuityTag,
    InfTag,
    MapTag,
    PartInfTag,
    PartTag,
    PreloadHintTag,
    ProgramDateTimeTag,
    RenditionReportTag,
    ServerControlTag,
    SkipTag,
    StreamInfTag,
    TagError,
    format_decimal,
    format_pdt,
    parse_attribute_list,
    parse_pdt,
    render_extinf,
    split_tag,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z

TagT = (
    InfTag
    | DiscontinuityTag
    | ProgramDateTimeTag
    | MapTag
    | PartInfTag
    | ServerControlTag
    | PartTag
    | PreloadHintTag
    | RenditionReportTag
    | SkipTag
    | StreamInfTag
)

CASES: list[tuple[TagT, str]] = [
    (InfTag(0.5), "#EXTINF:0.50000,"),
    (InfTag(0.48), "#EXTINF:0.48000,"),
    (InfTag(2.0, "live"), "#EXTINF:2.00000,live"),
    (DiscontinuityTag(), "#EXT-X-DISCONTINUITY"),
    (ProgramDateTimeTag(T0), "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z"),
    (ProgramDateTimeTag(T0 + 0.123), "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.123Z"),
    (MapTag("init.mp4"), '#EXT-X-MAP:URI="init.mp4"'),
    (PartInfTag(0.1), "#EXT-X-PART-INF:PART-TARGET=0.1"),
    (PartInfTag(0.33334), "#EXT-X-PART-INF:PART-TARGET=0.33334"),
    (
        ServerControlTag(True, 0.3, 6.0),
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3,CAN-SKIP-UNTIL=6.0",
    ),
    (
        ServerControlTag(True, 0.3, 6.0, 3.0),
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3,CAN-SKIP-UNTIL=6.0,"
        "HOLD-BACK=3.0",
    ),
    (ServerControlTag(True, 0.3), "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3"),
    (PartTag(0.1, "13.2.m4s"), '#EXT-X-PART:DURATION=0.1,URI="13.2.m4s"'),
    (
        PartTag(0.1, "13.0.m4s", independent=True),
        '#EXT-X-PART:DURATION=0.1,URI="13.0.m4s",INDEPENDENT=YES',
    ),
    (
        PartTag(0.1, "13.3.m4s", gap=True),
        '#EXT-X-PART:DURATION=0.1,URI="13.3.m4s",GAP=YES',
    ),
    (PreloadHintTag("13.3.m4s"), '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="13.3.m4s"'),
    (PreloadHintTag("init-2.mp4", "MAP"), '#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="init-2.mp4"'),
    (
        RenditionReportTag("../360p/index.m3u8", 12, 3),
        '#EXT-X-RENDITION-REPORT:URI="../360p/index.m3u8",LAST-MSN=12,LAST-PART=3',
    ),
    (RenditionReportTag("../360p/index.m3u8"), '#EXT-X-RENDITION-REPORT:URI="../360p/index.m3u8"'),
    (SkipTag(12), "#EXT-X-SKIP:SKIPPED-SEGMENTS=12"),
    (
        StreamInfTag(3_000_000, 2_500_000, "avc1.64001f,mp4a.40.2", (1280, 720), 30.0, "720p"),
        "#EXT-X-STREAM-INF:BANDWIDTH=3000000,AVERAGE-BANDWIDTH=2500000,"
        'CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000,NAME="720p"',
    ),
    (
        StreamInfTag(800_000, codecs="avc1.42c01e", resolution=(640, 360), frame_rate=29.97),
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.42c01e",RESOLUTION=640x360,'
        "FRAME-RATE=29.970",
    ),
]


@pytest.mark.parametrize(("tag", "line"), CASES, ids=lambda x: x if isinstance(x, str) else "")
def test_render(tag: TagT, line: str) -> None:
    assert tag.render() == line


@pytest.mark.parametrize(("tag", "line"), CASES, ids=lambda x: x if isinstance(x, str) else "")
def test_parse(tag: TagT, line: str) -> None:
    assert type(tag).parse(line) == tag


@pytest.mark.parametrize(
    ("cls", "line", "expected"),
    [
        # Attribute order, integer-looking decimals and unknown attributes do not matter.
        (
            PartTag,
            '#EXT-X-PART:URI="a,b.m4s",X-FOO=1,INDEPENDENT=YES,DURATION=1',
            PartTag(1.0, "a,b.m4s", True),
        ),
        (InfTag, "#EXTINF:10", InfTag(10.0)),
        (InfTag, "#EXTINF:4.5,title, with comma", InfTag(4.5, "title, with comma")),
        (
            ProgramDateTimeTag,
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000+00:00",
            ProgramDateTimeTag(T0),
        ),
        (
            ProgramDateTimeTag,
            "#EXT-X-PROGRAM-DATE-TIME:2023-11-15T00:13:20.250+02:00",
            ProgramDateTimeTag(T0 + 0.25),
        ),
        (ServerControlTag, "#EXT-X-SERVER-CONTROL:", ServerControlTag()),
        (StreamInfTag, "#EXT-X-STREAM-INF:BANDWIDTH=1", StreamInfTag(1)),
        (MapTag, '#EXT-X-MAP:URI="init.mp4",BYTERANGE="720@0"', MapTag("init.mp4")),
    ],
)
def test_parse_variants(cls: type[TagT], line: str, expected: TagT) -> None:
    assert cls.parse(line) == expected


@pytest.mark.parametrize(
    ("cls", "line"),
    [
        (PartTag, '#EXT-X-PART:URI="a.m4s"'),  # DURATION required
        (PartTag, "#EXT-X-PART:DURATION=0.1,URI=a.m4s"),  # URI must be quoted
        (PartTag, '#EXT-X-PART:DURATION=-0.1,URI="a.m4s"'),
        (PartTag, '#EXT-X-PART:DURATION=0.1,URI="a.m4s",INDEPENDENT=MAYBE'),
        (PartTag, '#EXT-X-PART:DURATION=0.1,URI="a.m4s",INDEPENDENT="YES"'),
        (PartTag, '#EXT-X-PART:DURATION=0.1,URI="a.m4s",DURATION=0.2'),
        (PartTag, '#EXT-X-PARTX:DURATION=0.1,URI="a.m4s"'),
        (PartInfTag, "#EXT-X-PART-INF:"),
        (PartInfTag, "#EXT-X-PART-INF:PART-TARGET=1e-1"),
        (SkipTag, "#EXT-X-SKIP:SKIPPED-SEGMENTS=1.5"),
        (SkipTag, "#EXT-X-SKIP:SKIPPED-SEGMENTS=٣"),  # a non-ASCII digit
        (SkipTag, f"#EXT-X-SKIP:SKIPPED-SEGMENTS={2**64}"),
        (PreloadHintTag, '#EXT-X-PRELOAD-HINT:TYPE=SEGMENT,URI="a"'),
        (PreloadHintTag, '#EXT-X-PRELOAD-HINT:URI="a"'),
        (RenditionReportTag, "#EXT-X-RENDITION-REPORT:LAST-MSN=1"),
        (StreamInfTag, "#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640"),
        (StreamInfTag, '#EXT-X-STREAM-INF:CODECS="avc1"'),
        (ProgramDateTimeTag, "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000"),  # no zone
        (ProgramDateTimeTag, "#EXT-X-PROGRAM-DATE-TIME:yesterday"),
        (DiscontinuityTag, "#EXT-X-DISCONTINUITY:1"),
        (InfTag, "#EXTINF:abc,"),
        (MapTag, "#EXT-X-MAP:"),
    ],
)
def test_parse_rejects(cls: type[TagT], line: str) -> None:
    with pytest.raises(TagError):
        cls.parse(line)


def test_render_rejects_unquotable_uri() -> None:
    with pytest.raises(TagError):
        PartTag(0.1, 'a"b.m4s').render()
    with pytest.raises(TagError):
        MapTag("a\nb").render()


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf")])
def test_render_rejects_bad_durations(value: float) -> None:
    with pytest.raises(TagError):
        format_decimal(value)
    with pytest.raises(TagError):
        render_extinf(value)


# Attribute lists (RFC 8216bis 4.2) ------------------------------------------------------------


def test_attribute_list_keeps_quoted_commas_and_equals() -> None:
    attrs = parse_attribute_list('CODECS="avc1.64001f,mp4a.40.2",URI="a=b,c",RESOLUTION=1280x720')
    assert attrs == {
        "CODECS": '"avc1.64001f,mp4a.40.2"',
        "URI": '"a=b,c"',
        "RESOLUTION": "1280x720",
    }


def test_attribute_list_empty() -> None:
    assert parse_attribute_list("") == {}


@pytest.mark.parametrize(
    "text",
    [
        "A=1,",  # trailing comma
        "A=1,A=2",  # duplicate
        "a=1",  # lower-case name
        "A B=1",  # whitespace in name
        "=1",
        "A=",
        "A",
        'A="unterminated',
        'A="x"B=1',  # no comma after a quoted string
    ],
)
def test_attribute_list_rejects(text: str) -> None:
    with pytest.raises(TagError):
        parse_attribute_list(text)


# Numbers and dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1, "0.1"),
        (6.0, "6.0"),
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (1 / 3, "0.33333"),
        (0.300000001, "0.3"),
        (12, "12.0"),
    ],
)
def test_format_decimal(value: float, text: str) -> None:
    assert format_decimal(value) == text


def test_extinf_negative_zero() -> None:
    assert render_extinf(-0.0) == "#EXTINF:0.00000,"


def test_pdt_rounds_to_the_millisecond() -> None:
    assert format_pdt(T0 + 0.0004) == "2023-11-14T22:13:20.000Z"
    assert format_pdt(T0 + 0.9996) == "2023-11-14T22:13:21.000Z"


@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # up to 2100
def test_pdt_round_trip_exact_for_milliseconds(ms: int) -> None:
    ts = ms / 1000
    assert parse_pdt(format_pdt(ts)) == ts


@given(st.integers(min_value=0, max_value=10**9))
def test_decimal_round_trip_for_five_decimals(n: int) -> None:
    value = n / 100_000
    assert PartInfTag.parse(PartInfTag(value).render()).part_target == value


def test_split_tag() -> None:
    assert split_tag("#EXT-X-ENDLIST", "EXT-X-ENDLIST") == ""
    assert split_tag("#EXT-X-SKIP:SKIPPED-SEGMENTS=1", "EXT-X-SKIP") == "SKIPPED-SEGMENTS=1"
    with pytest.raises(TagError):
        split_tag("#EXT-X-PART-INF:PART-TARGET=1", "EXT-X-PART")
