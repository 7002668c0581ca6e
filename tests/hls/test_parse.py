"""Parser: errors with line numbers, and render -> parse -> equal for generated playlists."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascade.hls.parse import (
    Line,
    PlaylistError,
    parse_media_playlist,
    parse_multivariant_playlist,
    tokenize,
)
from cascade.hls.playlist import (
    MediaPlaylist,
    MultivariantPlaylist,
    Part,
    RenditionReport,
    Segment,
    Variant,
    render_media_playlist,
    render_multivariant_playlist,
)

HEADER = """#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:1
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3
#EXT-X-PART-INF:PART-TARGET=0.1
#EXT-X-MEDIA-SEQUENCE:12
#EXT-X-MAP:URI="init.mp4"
"""


def test_tokenize() -> None:
    text = '#EXTM3U\r\n\n# a comment\n#EXT-X-ENDLIST\n#EXT-X-MAP:URI="a:b"\nseg.m4s\n'
    assert tokenize(text) == [
        Line(1, "EXTM3U", ""),
        Line(4, "EXT-X-ENDLIST", ""),
        Line(5, "EXT-X-MAP", 'URI="a:b"'),
        Line(6, None, "seg.m4s"),
    ]


def test_parse_minimal() -> None:
    text = HEADER + "#EXTINF:0.5,\n12.m4s\n"
    assert parse_media_playlist(text) == MediaPlaylist(
        target_duration=1,
        part_target=0.1,
        media_sequence=12,
        discontinuity_sequence=0,
        map_uri="init.mp4",
        segments=(Segment(12, 0.5, "12.m4s", (), None),),
        partial=None,
        preload_hint_uri=None,
        part_hold_back=0.3,
        can_skip_until=None,
    )


def test_parse_delta_update_numbers_segments_after_the_skip() -> None:
    text = HEADER.replace("#EXT-X-MAP", "#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n#EXT-X-MAP")
    pl = parse_media_playlist(text + "#EXTINF:0.5,\n16.m4s\n")
    assert pl.media_sequence == 12
    assert [s.msn for s in pl.segments] == [16]


def test_parse_partial_and_hint() -> None:
    text = HEADER + (
        "#EXTINF:0.5,\n12.m4s\n"
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.500Z\n"
        '#EXT-X-PART:DURATION=0.1,URI="13.0.m4s",INDEPENDENT=YES\n'
        '#EXT-X-PART:DURATION=0.1,URI="13.1.m4s"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=MAP,URI="init-2.mp4"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="13.2.m4s"\n'
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="ignored.m4s"\n'
    )
    pl = parse_media_playlist(text)
    assert pl.partial == Segment(
        13,
        0.2,
        "",
        (Part(0.1, "13.0.m4s", True), Part(0.1, "13.1.m4s", False)),
        1_700_000_000.5,
    )
    assert pl.preload_hint_uri == "13.2.m4s"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("#EXT-X-VERSION:6\n#EXTM3U\n", 1, "#EXTM3U"),
        ("\n" + HEADER, 1, "#EXTM3U"),
        (HEADER + "12.m4s\n", 8, "without a preceding #EXTINF"),
        (HEADER + "#EXTINF:0.5,\n#EXTINF:0.5,\n12.m4s\n", 9, "not followed by a URI"),
        (HEADER + "#EXTINF:0.5,\n", 8, "not followed by a URI"),
        (HEADER + "#EXTINF:half,\n12.m4s\n", 8, "decimal-floating-point"),
        (HEADER + '#EXT-X-PART:DURATION=0.1,URI="a,INDEPENDENT=YES\n', 8, "unterminated"),
        (HEADER + "#EXT-X-TARGETDURATION:2\n", 8, "more than once"),
        (HEADER.replace("TARGETDURATION:1", "TARGETDURATION:0.5"), 3, "decimal-integer"),
        (HEADER + "#EXT-X-STREAM-INF:BANDWIDTH=1\n", 8, "multivariant"),
        (HEADER + "#EXTINF:0.5,\n12.m4s\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n", 10, "EXT-X-SKIP"),
        (HEADER + '#EXT-X-RENDITION-REPORT:URI="a.m3u8"\n', 8, "LAST-MSN"),
        (HEADER + "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20\n", 8, "time zone"),
    ],
)
def test_parse_errors_carry_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(PlaylistError) as info:
        parse_media_playlist(text)
    assert info.value.line == line
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"line {line}: ")


@pytest.mark.parametrize(
    ("drop", "fragment"),
    [
        ("#EXT-X-TARGETDURATION:1\n", "TARGETDURATION"),
        ("#EXT-X-PART-INF:PART-TARGET=0.1\n", "PART-INF"),
        ('#EXT-X-MAP:URI="init.mp4"\n', "EXT-X-MAP"),
        ("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3\n", "PART-HOLD-BACK"),
    ],
)
def test_parse_missing_required_tags(drop: str, fragment: str) -> None:
    with pytest.raises(PlaylistError, match=fragment) as info:
        parse_media_playlist(HEADER.replace(drop, ""))
    assert info.value.line is None


def test_playlist_error_is_a_value_error() -> None:
    assert issubclass(PlaylistError, ValueError)


def test_media_sequence_defaults_to_zero() -> None:
    pl = parse_media_playlist(HEADER.replace("#EXT-X-MEDIA-SEQUENCE:12\n", ""))
    assert pl.media_sequence == 0


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", 2, "URI line"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n#EXT-X-STREAM-INF:BANDWIDTH=2\na\n", 2, "URI"),
        ("#EXTM3U\na.m3u8\n", 2, "without #EXT-X-STREAM-INF"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\na.m3u8\n", 2, "CODECS"),
        ('#EXTM3U\n#EXT-X-STREAM-INF:CODECS="a"\na.m3u8\n', 2, "BANDWIDTH"),
        ("#EXTM3U\n#EXTINF:1,\na.m4s\n", 2, "media playlist"),
    ],
)
def test_multivariant_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(PlaylistError, match=fragment) as info:
        parse_multivariant_playlist(text)
    assert info.value.line == line


# Round trip ----------------------------------------------------------------------------------

# Values the text carries exactly: durations in whole milliseconds (5 decimals are rendered),
# PDTs in whole milliseconds.
durations = st.integers(min_value=1, max_value=2000).map(lambda ms: ms / 1000)
uris = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-/", min_size=1, max_size=12)
pdts = st.none() | st.integers(min_value=0, max_value=4_000_000_000_000).map(lambda ms: ms / 1000)


@st.composite
def parts(draw: st.DrawFn, msn: int, *, min_size: int = 0) -> tuple[Part, ...]:
    n = draw(st.integers(min_value=min_size, max_value=6))
    return tuple(Part(draw(durations), f"{msn}.{i}.m4s", draw(st.booleans())) for i in range(n))


@st.composite
def segments(draw: st.DrawFn, msn: int) -> Segment:
    return Segment(
        msn=msn,
        duration=draw(durations),
        uri=draw(uris),
        parts=draw(parts(msn)),
        pdt=draw(pdts),
        discontinuity=draw(st.booleans()),
        map_uri=draw(st.none() | uris),
    )


@st.composite
def media_playlists(draw: st.DrawFn) -> MediaPlaylist:
    seq = draw(st.integers(min_value=0, max_value=10**9))
    n = draw(st.integers(min_value=0, max_value=10))
    segs = tuple(draw(segments(seq + i)) for i in range(n))
    partial = None
    if draw(st.booleans()):
        pp = draw(parts(seq + n, min_size=1))
        partial = Segment(
            msn=seq + n,
            duration=sum((p.duration for p in pp), 0.0),
            uri="",  # not in the text
            parts=pp,
            pdt=draw(pdts),
            discontinuity=draw(st.booleans()),
            map_uri=draw(st.none() | uris),
        )
    ended = draw(st.booleans())
    return MediaPlaylist(
        target_duration=draw(st.integers(min_value=1, max_value=10)),
        part_target=draw(durations),
        media_sequence=seq,
        discontinuity_sequence=draw(st.integers(min_value=0, max_value=1000)),
        map_uri=draw(uris),
        segments=segs,
        partial=partial,
        preload_hint_uri=None if ended else draw(st.none() | uris),
        part_hold_back=draw(durations),
        can_skip_until=draw(st.none() | durations),
        rendition_reports=tuple(
            RenditionReport(u, m, p)
            for u, m, p in draw(
                st.lists(st.tuples(uris, st.integers(0, 10**9), st.integers(0, 50)), max_size=3)
            )
        ),
        ended=ended,
    )


def strip_old_parts(pl: MediaPlaylist) -> MediaPlaylist:
    """Parts survive only on segments starting within 3 target durations of the end."""
    end = sum(s.duration for s in pl.segments)
    if pl.partial is not None:
        end += sum(p.duration for p in pl.partial.parts)
    start, out = 0.0, []
    for s in pl.segments:
        keep = end - start <= 3 * pl.target_duration + 1e-6
        out.append(s if keep else dataclasses.replace(s, parts=()))
        start += s.duration
    return dataclasses.replace(pl, segments=tuple(out))


@given(media_playlists())
def test_media_round_trip(pl: MediaPlaylist) -> None:
    text = render_media_playlist(pl)
    assert parse_media_playlist(text) == strip_old_parts(pl)
    # And the text is a fixed point.
    assert render_media_playlist(parse_media_playlist(text)) == text


@given(media_playlists())
def test_delta_round_trip(pl: MediaPlaylist) -> None:
    full = parse_media_playlist(render_media_playlist(pl))
    delta = parse_media_playlist(render_media_playlist(pl, skip=True))
    skipped = delta.segments[0].msn - delta.media_sequence if delta.segments else 0
    # The delta's EXT-X-MAP is the one in effect where the kept segments start.
    in_effect = full.map_uri
    for s in full.segments[:skipped]:
        in_effect = s.map_uri or in_effect
    assert delta.map_uri == in_effect
    assert dataclasses.replace(delta, segments=(), map_uri="") == dataclasses.replace(
        full, segments=(), map_uri=""
    )
    assert delta.segments == full.segments[skipped:]
    if skipped:
        assert pl.can_skip_until is not None
        assert not pl.ended
        # Everything skipped ends more than the Skip Boundary before the last segment's end.
        tail = sum(s.duration for s in pl.segments[skipped:])
        assert tail > pl.can_skip_until
        assert tail - pl.segments[skipped].duration <= pl.can_skip_until + 1e-6


variants = st.builds(
    Variant,
    uri=uris,
    bandwidth=st.integers(min_value=1, max_value=10**9),
    codecs=st.sampled_from(["avc1.64001f,mp4a.40.2", "hvc1.1.6.L93.B0", "avc1.42c01e"]),
    width=st.integers(min_value=1, max_value=7680),
    height=st.integers(min_value=1, max_value=4320),
    frame_rate=st.integers(min_value=1, max_value=240_000).map(lambda n: n / 1000),
    average_bandwidth=st.none() | st.integers(min_value=1, max_value=10**9),
    name=st.none() | uris,
)


@given(st.lists(variants, max_size=5), st.booleans())
def test_multivariant_round_trip(vs: list[Variant], independent: bool) -> None:
    text = render_multivariant_playlist(vs, independent_segments=independent)
    assert parse_multivariant_playlist(text) == MultivariantPlaylist(tuple(vs), independent)
