"""Renderers: one table of cases drives the golden render tests and the golden parse tests.

Regenerate the golden files on purpose with ``CASCADE_REGEN_GOLDEN=1 pytest tests/hls``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from cascade.hls.parse import parse_media_playlist, parse_multivariant_playlist
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

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("CASCADE_REGEN_GOLDEN") == "1"

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def segment(
    msn: int,
    *,
    first: int = 100,
    t0: float = T0,
    n_parts: int = 5,
    discontinuity: bool = False,
    map_uri: str | None = None,
) -> Segment:
    """A 500 ms segment of five 100 ms parts, the first independent."""
    parts = tuple(Part(0.1, f"{msn}.{i}.m4s", i == 0) for i in range(n_parts))
    return Segment(
        msn=msn,
        duration=0.5,
        uri=f"{msn}.m4s",
        parts=parts,
        pdt=t0 + (msn - first) * 0.5,
        discontinuity=discontinuity,
        map_uri=map_uri,
    )


def partial(msn: int, n_parts: int, *, first: int = 100, t0: float = T0) -> Segment:
    parts = tuple(Part(0.1, f"{msn}.{i}.m4s", i == 0) for i in range(n_parts))
    return Segment(msn, sum((p.duration for p in parts), 0.0), "", parts, t0 + (msn - first) * 0.5)


REPORTS = (
    RenditionReport("../360p/index.m3u8", 116, 2),
    RenditionReport("../1080p/index.m3u8", 116, 2),
)

LIVE = MediaPlaylist(
    target_duration=1,
    part_target=0.1,
    media_sequence=100,
    discontinuity_sequence=0,
    map_uri="init.mp4",
    segments=tuple(segment(m) for m in range(100, 116)),
    partial=partial(116, 3),
    preload_hint_uri="116.3.m4s",
    part_hold_back=0.3,
    can_skip_until=6.0,
    rendition_reports=REPORTS,
)

DISCONTINUITY = MediaPlaylist(
    target_duration=1,
    part_target=0.1,
    media_sequence=200,
    discontinuity_sequence=3,
    map_uri="init.mp4",
    segments=(
        *(segment(m, first=200) for m in range(200, 205)),
        # The encoder restarted: new init, and wall clock 10 s later than the durations say.
        segment(205, first=200, t0=T0 + 10, discontinuity=True, map_uri="init-1.mp4"),
        *(segment(m, first=200, t0=T0 + 10) for m in range(206, 210)),
    ),
    partial=partial(210, 2, first=200, t0=T0 + 10),
    preload_hint_uri="210.2.m4s",
    part_hold_back=0.3,
    can_skip_until=None,
    rendition_reports=(RenditionReport("../360p/index.m3u8", 210, 1),),
)

STARTED = MediaPlaylist(
    target_duration=1,
    part_target=0.1,
    media_sequence=0,
    discontinuity_sequence=0,
    map_uri="init.mp4",
    segments=(),
    partial=partial(0, 2, first=0),
    preload_hint_uri="0.2.m4s",
    part_hold_back=0.3,
    can_skip_until=6.0,
)

ENDED = MediaPlaylist(
    target_duration=1,
    part_target=0.1,
    media_sequence=40,
    discontinuity_sequence=0,
    map_uri="init.mp4",
    segments=tuple(segment(m, first=40) for m in range(40, 46)),
    partial=None,
    preload_hint_uri="46.0.m4s",  # not rendered: the playlist has ended
    part_hold_back=0.3,
    can_skip_until=6.0,
    ended=True,
)

VARIANTS = (
    Variant("1080p/index.m3u8", 6_000_000, "avc1.640028,mp4a.40.2", 1920, 1080, 30.0, 5_000_000),
    Variant("720p/index.m3u8", 3_000_000, "avc1.64001f,mp4a.40.2", 1280, 720, 30.0, 2_500_000),
    Variant("360p/index.m3u8", 800_000, "avc1.42c01e,mp4a.40.2", 640, 360, 29.97, name="360p"),
)


def strip_old_parts(pl: MediaPlaylist) -> MediaPlaylist:
    """What a parse gets back: parts only on segments starting within 3 target durations of the
    end of the playlist (re-derived here, independently of the renderer)."""
    end = sum(s.duration for s in pl.segments)
    if pl.partial is not None:
        end += sum(p.duration for p in pl.partial.parts)
    start = 0.0
    segments = []
    for s in pl.segments:
        keep = end - start <= 3 * pl.target_duration + 1e-6
        segments.append(s if keep else dataclasses.replace(s, parts=()))
        start += s.duration
    return dataclasses.replace(pl, segments=tuple(segments))


@dataclass(frozen=True)
class Case:
    name: str
    playlist: MediaPlaylist
    skip: bool = False
    skipped: int = 0  # segments an EXT-X-SKIP replaces: the parse misses them


CASES = [
    Case("media_live", LIVE),
    # End of the last complete segment: 8.0 s. Segments ending more than 6.0 s before it:
    # 100 (0.5), 101 (1.0), 102 (1.5); 103 ends at exactly 2.0 and stays.
    Case("media_live_delta", LIVE, skip=True, skipped=3),
    Case("media_discontinuity", DISCONTINUITY),
    # Delta requested, but an 8-segment window has nothing older than the Skip Boundary.
    Case("media_started", STARTED, skip=True),
    Case("media_ended", ENDED, skip=True),  # _HLS_skip is ignored once ended
]


def expected_parse(case: Case) -> MediaPlaylist:
    pl = strip_old_parts(case.playlist)
    if pl.ended:
        pl = dataclasses.replace(pl, preload_hint_uri=None)
    if pl.partial is not None:
        pl = dataclasses.replace(pl, partial=dataclasses.replace(pl.partial, uri=""))
    return dataclasses.replace(pl, segments=pl.segments[case.skipped :])


def golden(name: str, rendered: str) -> str:
    path = GOLDEN / f"{name}.m3u8"
    if REGEN:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(rendered, encoding="utf-8", newline="")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_render_matches_golden(case: Case) -> None:
    rendered = render_media_playlist(case.playlist, skip=case.skip)
    assert rendered == golden(case.name, rendered)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parse_golden(case: Case) -> None:
    text = (GOLDEN / f"{case.name}.m3u8").read_text(encoding="utf-8")
    parsed = parse_media_playlist(text)
    assert parsed == expected_parse(case)
    if parsed.segments:
        assert parsed.segments[0].msn - parsed.media_sequence == case.skipped


def test_multivariant_golden_render_and_parse() -> None:
    rendered = render_multivariant_playlist(VARIANTS)
    assert rendered == golden("multivariant", rendered)
    assert parse_multivariant_playlist(rendered) == MultivariantPlaylist(VARIANTS, True)


def test_multivariant_without_independent_segments() -> None:
    text = render_multivariant_playlist(VARIANTS[:1], independent_segments=False)
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in text
    assert parse_multivariant_playlist(text) == MultivariantPlaylist(VARIANTS[:1], False)


def test_multivariant_stream_inf_line() -> None:
    text = render_multivariant_playlist(VARIANTS[2:])
    assert text.splitlines()[2] == (
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,CODECS="avc1.42c01e,mp4a.40.2",'
        'RESOLUTION=640x360,FRAME-RATE=29.970,NAME="360p"'
    )


# Behaviour in detail ---------------------------------------------------------------------------


def lines(pl: MediaPlaylist, *, skip: bool = False) -> list[str]:
    return render_media_playlist(pl, skip=skip).splitlines()


def test_header_order_and_version() -> None:
    assert lines(LIVE)[:7] == [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        "#EXT-X-TARGETDURATION:1",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3,CAN-SKIP-UNTIL=6.0",
        "#EXT-X-PART-INF:PART-TARGET=0.1",
        "#EXT-X-MEDIA-SEQUENCE:100",
        '#EXT-X-MAP:URI="init.mp4"',
    ]


def test_version_is_6_without_delta_updates() -> None:
    assert lines(DISCONTINUITY)[1] == "#EXT-X-VERSION:6"


def test_version_does_not_depend_on_the_request() -> None:
    assert lines(LIVE)[1] == lines(LIVE, skip=True)[1] == "#EXT-X-VERSION:9"


def test_discontinuity_sequence_only_when_non_zero() -> None:
    assert not any(x.startswith("#EXT-X-DISCONTINUITY-SEQUENCE") for x in lines(LIVE))
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:3" in lines(DISCONTINUITY)


def test_parts_only_within_three_target_durations() -> None:
    # End = 8.0 + 0.3; segments starting at or after 5.3 keep parts: 111..115.
    text = lines(LIVE)
    with_parts = {ln.split('"')[1].split(".")[0] for ln in text if ln.startswith("#EXT-X-PART:")}
    assert with_parts == {"111", "112", "113", "114", "115", "116"}


def test_every_segment_has_a_pdt() -> None:
    text = lines(LIVE)
    assert sum(ln.startswith("#EXT-X-PROGRAM-DATE-TIME:") for ln in text) == 16 + 1
    assert "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z" in text


def test_segment_block_order() -> None:
    text = lines(DISCONTINUITY)
    i = text.index("#EXT-X-DISCONTINUITY")
    assert text[i : i + 9] == [
        "#EXT-X-DISCONTINUITY",
        '#EXT-X-MAP:URI="init-1.mp4"',
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:32.500Z",
        '#EXT-X-PART:DURATION=0.1,URI="205.0.m4s",INDEPENDENT=YES',
        '#EXT-X-PART:DURATION=0.1,URI="205.1.m4s"',
        '#EXT-X-PART:DURATION=0.1,URI="205.2.m4s"',
        '#EXT-X-PART:DURATION=0.1,URI="205.3.m4s"',
        '#EXT-X-PART:DURATION=0.1,URI="205.4.m4s"',
        "#EXTINF:0.50000,",
    ]
    assert text[i + 9] == "205.m4s"


def test_tail_order_partial_hint_reports() -> None:
    assert lines(LIVE)[-7:] == [
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:28.000Z",
        '#EXT-X-PART:DURATION=0.1,URI="116.0.m4s",INDEPENDENT=YES',
        '#EXT-X-PART:DURATION=0.1,URI="116.1.m4s"',
        '#EXT-X-PART:DURATION=0.1,URI="116.2.m4s"',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="116.3.m4s"',
        '#EXT-X-RENDITION-REPORT:URI="../360p/index.m3u8",LAST-MSN=116,LAST-PART=2',
        '#EXT-X-RENDITION-REPORT:URI="../1080p/index.m3u8",LAST-MSN=116,LAST-PART=2',
    ]


def test_partial_without_parts_renders_nothing() -> None:
    pl = dataclasses.replace(LIVE, partial=partial(116, 0))
    text = lines(pl)
    assert text[-5:-2] == [
        "#EXTINF:0.50000,",
        "115.m4s",
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="116.3.m4s"',
    ]


def test_ended_has_endlist_and_no_hint() -> None:
    text = lines(ENDED)
    assert text[-1] == "#EXT-X-ENDLIST"
    assert not any(ln.startswith("#EXT-X-PRELOAD-HINT") for ln in text)


def test_delta_update_skips_and_keeps_map() -> None:
    text = lines(LIVE, skip=True)
    assert text[6:9] == [
        "#EXT-X-SKIP:SKIPPED-SEGMENTS=3",
        '#EXT-X-MAP:URI="init.mp4"',
        "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.500Z",
    ]
    assert "100.m4s" not in text
    assert "103.m4s" in text


def test_delta_update_carries_the_map_in_effect() -> None:
    segments = (
        segment(1, first=0),
        segment(2, first=0, discontinuity=True, map_uri="init-2.mp4"),
        *(segment(m, first=0) for m in range(3, 20)),
    )
    pl = dataclasses.replace(LIVE, media_sequence=1, segments=segments, partial=None)
    text = lines(pl, skip=True)
    # 19 segments end at 9.5 s; those ending before 3.5 s are skipped: msn 1..6.
    assert text[6:8] == ["#EXT-X-SKIP:SKIPPED-SEGMENTS=6", '#EXT-X-MAP:URI="init-2.mp4"']
    assert "#EXT-X-DISCONTINUITY" not in text


def test_skip_ignored_without_can_skip_until() -> None:
    pl = dataclasses.replace(LIVE, can_skip_until=None)
    assert render_media_playlist(pl, skip=True) == render_media_playlist(pl)


def test_output_ends_with_newline_and_has_no_blank_lines() -> None:
    text = render_media_playlist(LIVE)
    assert text.endswith("\n")
    assert "" not in text[:-1].split("\n")
