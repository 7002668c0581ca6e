"""VOD playlists from a recording's segment names: exact text, grouping, ranges."""

from __future__ import annotations

import pytest

from cascade.contract.recording import SegmentName
from cascade.edge.vod import in_range, recordings, render_vod_playlist

T0 = 1_733_356_800_000  # 2024-12-05T00:00:00Z in ms
A, B = "a" * 16, "b" * 16


def seg(i: int, *, gen: int = 0, init: str = A, offset_ms: int = 0) -> SegmentName:
    return SegmentName(T0 + offset_ms + i * 500, i, gen, 500_000, init)


def render(segments: list[SegmentName]) -> str:
    return render_vod_playlist(
        segments, segment_uri=lambda s: f"s/{s.msn}.m4s", init_uri=lambda n: f"i/{n}"
    )


def test_whole_recording_with_a_restart() -> None:
    segments = [seg(0), seg(1), seg(2, gen=1, init=B, offset_ms=3000)]
    assert render(segments) == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-TARGETDURATION:1\n"
        "#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXT-X-MEDIA-SEQUENCE:0\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        f'#EXT-X-MAP:URI="i/{A}.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2024-12-05T00:00:00.000Z\n"
        "#EXTINF:0.50000,\ns/0.m4s\n"
        "#EXTINF:0.50000,\ns/1.m4s\n"
        "#EXT-X-DISCONTINUITY\n"
        f'#EXT-X-MAP:URI="i/{B}.mp4"\n'
        "#EXT-X-PROGRAM-DATE-TIME:2024-12-05T00:00:04.000Z\n"
        "#EXTINF:0.50000,\ns/2.m4s\n"
        "#EXT-X-ENDLIST\n"
    )


def test_same_init_new_generation_is_a_discontinuity_without_a_map() -> None:
    text = render([seg(0), seg(1, gen=1)])
    assert text.count("#EXT-X-DISCONTINUITY") == 1 and text.count("#EXT-X-MAP") == 1
    assert text.count("#EXT-X-PROGRAM-DATE-TIME") == 2


def test_recordings_split_at_a_long_gap_only() -> None:
    segments = [seg(0), seg(1), seg(2, gen=1, offset_ms=5_000), seg(3, offset_ms=200_000)]
    found = recordings(segments, gap=60)
    assert [len(r.segments) for r in found] == [3, 1]
    assert found[0].id == str(T0) and found[0].discontinuities == 1
    assert found[0].describe() == {
        "id": str(T0),
        "start": "2024-12-05T00:00:00.000Z",
        "end": "2024-12-05T00:00:06.500Z",
        "duration": 1.5,
        "segments": 3,
        "discontinuities": 1,
    }


def test_range_takes_overlapping_segments() -> None:
    segments = [seg(i) for i in range(10)]
    t = T0 / 1000
    assert [s.msn for s in in_range(segments, t + 0.7, t + 2.0)] == [1, 2, 3]


def test_an_empty_playlist_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        render([])
