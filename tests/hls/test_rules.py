"""Rule checker: the golden playlists are clean, and every rule has a failing example."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cascade.hls.rules import (
    RULES,
    Violation,
    check_media_playlist,
    check_multivariant_playlist,
)

GOLDEN = Path(__file__).parent / "golden"
MEDIA_GOLDENS = sorted(GOLDEN.glob("media_*.m3u8"))


def read(name: str) -> str:
    return (GOLDEN / f"{name}.m3u8").read_text(encoding="utf-8")


LIVE = read("media_live")
DELTA = read("media_live_delta")
MULTI = read("multivariant")


def test_there_are_goldens() -> None:
    assert len(MEDIA_GOLDENS) >= 4


@pytest.mark.parametrize("path", MEDIA_GOLDENS, ids=lambda p: p.name)
def test_media_goldens_are_clean(path: Path) -> None:
    assert check_media_playlist(path.read_text(encoding="utf-8")) == []


def test_multivariant_golden_is_clean() -> None:
    assert check_multivariant_playlist(MULTI) == []


def test_delta_follows_full_playlist() -> None:
    assert check_media_playlist(DELTA, previous=LIVE) == []
    assert check_media_playlist(LIVE, previous=DELTA) == []


def sub(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


Check = Callable[[str], list[Violation]]


def media(text: str, previous: str | None = None) -> tuple[Check, str]:
    return (lambda t: check_media_playlist(t, previous=previous)), text


def multi(text: str) -> tuple[Check, str]:
    return check_multivariant_playlist, text


P115_2 = '#EXT-X-PART:DURATION=0.1,URI="115.2.m4s"'
PDT_105 = "#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:22.500Z"
HINT = '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="116.3.m4s"'
EXTINF_100 = "#EXTINF:0.50000,\n100.m4s"
EXTINF_115 = "#EXTINF:0.50000,\n115.m4s"
SKIP = "#EXT-X-SKIP:SKIPPED-SEGMENTS=3\n"
CONTROL = "CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=0.3"

# rule -> (checker, a playlist that breaks it)
BAD: dict[str, tuple[Check, str]] = {
    "syntax": media(sub(LIVE, EXTINF_100, "#EXTINF:half,\n100.m4s")),
    "extm3u": media(sub(LIVE, "#EXTM3U\n", "")),
    "targetduration": media(sub(LIVE, "#EXT-X-TARGETDURATION:1\n", "")),
    "targetduration-extinf": media(sub(LIVE, EXTINF_100, "#EXTINF:1.60000,\n100.m4s")),
    "cascade-extinf-max": media(sub(LIVE, EXTINF_100, "#EXTINF:1.20000,\n100.m4s")),
    "cascade-media-sequence": media(sub(LIVE, "#EXT-X-MEDIA-SEQUENCE:100\n", "")),
    "part-inf": media(sub(LIVE, "#EXT-X-PART-INF:PART-TARGET=0.1\n", "")),
    "part-duration-max": media(sub(LIVE, P115_2, P115_2.replace("0.1", "0.12"))),
    # 80 ms < 85% of 100 ms; the segment shrinks with it so its parts still add up.
    "part-duration-min": media(
        sub(sub(LIVE, P115_2, P115_2.replace("0.1", "0.08")), EXTINF_115, "#EXTINF:0.48,\n115.m4s")
    ),
    "part-hold-back": media(sub(LIVE, "PART-HOLD-BACK=0.3", "PART-HOLD-BACK=0.15")),
    "cascade-part-hold-back-3x": media(sub(LIVE, "PART-HOLD-BACK=0.3", "PART-HOLD-BACK=0.25")),
    "cascade-can-block-reload": media(sub(LIVE, "CAN-BLOCK-RELOAD=YES,", "")),
    "can-skip-until": media(sub(LIVE, "CAN-SKIP-UNTIL=6.0", "CAN-SKIP-UNTIL=5.0")),
    "skip-once": media(sub(DELTA, SKIP, SKIP + SKIP)),
    "cascade-parts-sum": media(sub(LIVE, EXTINF_115, "#EXTINF:0.45000,\n115.m4s")),
    "cascade-independent-first-part": media(
        sub(LIVE, '"113.0.m4s",INDEPENDENT=YES', '"113.0.m4s"')
    ),
    "preload-hint-unlisted": media(sub(LIVE, HINT, HINT.replace("116.3", "116.2"))),
    "preload-hint-single": media(sub(LIVE, HINT, HINT + "\n" + HINT.replace("116.3", "116.4"))),
    "preload-hint-endlist": media(LIVE + "#EXT-X-ENDLIST\n"),
    "cascade-pdt-monotonic": media(sub(LIVE, PDT_105, PDT_105.replace("22.500", "22.000"))),
    "cascade-pdt-consistent": media(sub(LIVE, PDT_105, PDT_105.replace("22.500", "22.600"))),
    "rendition-report": media(sub(LIVE, "LAST-MSN=116,LAST-PART=2", "LAST-MSN=116")),
    "version": media(sub(LIVE, "#EXT-X-VERSION:9", "#EXT-X-VERSION:5")),
    "media-sequence-decrease": media(
        sub(LIVE, "#EXT-X-MEDIA-SEQUENCE:100", "#EXT-X-MEDIA-SEQUENCE:99"), previous=LIVE
    ),
    "segment-changed": media(sub(LIVE, "\n105.m4s\n", "\n105-again.m4s\n"), previous=LIVE),
    # The bug hls.js caught: the sequence rose while the tagged segment was still listed.
    "discontinuity-sequence": media(
        sub(
            LIVE,
            "#EXT-X-MEDIA-SEQUENCE:100",
            "#EXT-X-MEDIA-SEQUENCE:100\n#EXT-X-DISCONTINUITY-SEQUENCE:1",
        ),
        previous=LIVE,
    ),
    "stream-inf-bandwidth": multi(
        sub(MULTI, "#EXT-X-STREAM-INF:BANDWIDTH=800000,", "#EXT-X-STREAM-INF:")
    ),
    "cascade-stream-inf-codecs": multi(sub(MULTI, 'CODECS="avc1.42c01e,mp4a.40.2",', "")),
    "cascade-stream-inf-resolution": multi(sub(MULTI, "RESOLUTION=640x360,", "")),
    "cascade-stream-inf-frame-rate": multi(sub(MULTI, "FRAME-RATE=29.970,", "")),
    "stream-inf-uri": multi(sub(MULTI, "\n360p/index.m3u8\n", "\n")),
}


def test_every_rule_has_a_failing_example() -> None:
    assert set(BAD) == set(RULES)


@pytest.mark.parametrize("rule", sorted(BAD))
def test_rule_fails(rule: str) -> None:
    check, text = BAD[rule]
    found = check(text)
    assert rule in {v.rule for v in found}, found
    assert all(v.rule in RULES for v in found)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # Rules that fire alone on their example, at the right lines.
        ("part-duration-min", [76]),
        ("cascade-independent-first-part", [58]),
        ("preload-hint-unlisted", [85]),
        # 105 starts 100 ms late: off from 104's end, and 106 starts 100 ms "early".
        ("cascade-pdt-consistent", [23, 26]),
        ("extm3u", [1]),
        ("cascade-part-hold-back-3x", [4]),
        ("stream-inf-uri", [7]),
    ],
)
def test_rule_fires_alone_at_its_lines(rule: str, expected: list[int]) -> None:
    check, text = BAD[rule]
    assert [(v.rule, v.line) for v in check(text)] == [(rule, n) for n in expected]


def test_part_hold_back_below_twice_breaks_both_rules() -> None:
    check, text = BAD["part-hold-back"]
    assert {v.rule for v in check(text)} == {"part-hold-back", "cascade-part-hold-back-3x"}


def test_part_hold_back_required_with_part_inf() -> None:
    text = sub(LIVE, "PART-HOLD-BACK=0.3,", "")
    assert "part-hold-back" in {v.rule for v in check_media_playlist(text)}


def shorten(text: str, uri: str) -> str:
    """Make the part at ``uri`` last 50 ms (under 85% of the 100 ms PART-TARGET)."""
    return sub(text, f'DURATION=0.1,URI="{uri}"', f'DURATION=0.05,URI="{uri}"')


@pytest.mark.parametrize(
    "text",
    [
        shorten(LIVE, "115.0.m4s"),  # INDEPENDENT=YES
        shorten(LIVE, "115.4.m4s"),  # the final part of its segment
        shorten(sub(LIVE, '"115.3.m4s"', '"115.3.m4s",GAP=YES'), "115.2.m4s"),  # before a GAP
        shorten(sub(LIVE, '"115.3.m4s"', '"115.3.m4s",GAP=YES'), "115.3.m4s"),  # a GAP
        shorten(LIVE, "116.2.m4s"),  # the last listed part of the open segment
    ],
)
def test_minimum_part_exemptions(text: str) -> None:
    assert "part-duration-min" not in {v.rule for v in check_media_playlist(text)}


def test_version_for_skip() -> None:
    text = sub(DELTA, "#EXT-X-VERSION:9", "#EXT-X-VERSION:6")
    found = check_media_playlist(text)
    assert [(v.rule, v.line) for v in found] == [("version", 2)]
    assert "EXT-X-SKIP" in found[0].message


def test_pdt_jump_allowed_at_discontinuity() -> None:
    assert check_media_playlist(read("media_discontinuity")) == []
    no_disc = read("media_discontinuity").replace("#EXT-X-DISCONTINUITY\n", "")
    assert {v.rule for v in check_media_playlist(no_disc)} == {"cascade-pdt-consistent"}


def test_violations_are_sorted_missing_tags_first() -> None:
    text = sub(sub(LIVE, "#EXT-X-MEDIA-SEQUENCE:100\n", ""), P115_2, P115_2.replace("0.1", "0.05"))
    found = check_media_playlist(text)
    assert [(v.rule, v.line) for v in found] == [
        ("cascade-media-sequence", None),
        ("part-duration-min", 75),
        ("cascade-parts-sum", 78),
    ]


def test_garbage_does_not_raise() -> None:
    found = check_media_playlist('hello\n#EXT-X-PART:DURATION=x\n#EXTINF:1,\n#EXT-X-MAP:URI="')
    assert {"extm3u", "syntax", "targetduration"} <= {v.rule for v in found}
    assert check_multivariant_playlist("") == [
        Violation("extm3u", 1, "the first line must be #EXTM3U")
    ]
