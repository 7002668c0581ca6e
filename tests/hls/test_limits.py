"""LL-HLS numbers: each function's values, and the checker holding playlists to them."""

from __future__ import annotations

import dataclasses

import pytest

from cascade.hls.limits import (
    advance_part_limit,
    beyond_advance_limit,
    max_blocking_msn,
    min_can_skip_until,
    min_part_duration,
    min_part_hold_back,
    next_parts,
    part_retention,
    recommended_part_hold_back,
    rounded_duration,
    target_duration,
)
from cascade.hls.playlist import MediaPlaylist, Part, Segment, render_media_playlist
from cascade.hls.rules import check_media_playlist


def test_advance_part_limit_follows_the_rfc() -> None:
    assert advance_part_limit(0.1) == 30
    assert advance_part_limit(0.333) == 9
    assert advance_part_limit(1.0) == 3
    assert advance_part_limit(2.0) == 3


def test_max_blocking_msn_is_the_last_plus_two() -> None:
    assert max_blocking_msn(0) == 2
    assert max_blocking_msn(41) == 43


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (5, None, False),  # msn + 2 is still allowed
        (5, 0, False),
        (6, None, True),  # "greater than ... plus two"
        (6, 0, True),
        (2, None, False),  # behind the newest part: never beyond
        (2, 99, False),
        (3, 2 + 30, False),  # the Advance Part Limit (30 at 100 ms parts)
        (3, 2 + 31, True),
        # A later segment: parts ahead counted as if segments held 3 parts, one segment
        # more than the limit allowed: 3 + 32 - 2 = 33 = 30 + 3.
        (4, 32, False),
        (4, 33, True),
    ],
)
def test_beyond_advance_limit(msn: int, part: int | None, expected: bool) -> None:
    last_msn, last_part = 3, 2
    assert (
        beyond_advance_limit(msn, part, last_msn, last_part, part_target=0.1, parts_per_segment=3)
        is expected
    )


def test_beyond_advance_limit_with_long_parts_and_an_empty_segment() -> None:
    # Parts of a second or more: the limit is three parts.
    assert not beyond_advance_limit(3, 5, 3, 2, part_target=1.0, parts_per_segment=3)
    assert beyond_advance_limit(3, 6, 3, 2, part_target=1.0, parts_per_segment=3)
    # No parts counted: one part per segment (1 + 30 - 0 = 31 = 30 + 1).
    assert not beyond_advance_limit(4, 30, 3, 0, part_target=0.1, parts_per_segment=0)
    assert beyond_advance_limit(4, 31, 3, 0, part_target=0.1, parts_per_segment=0)


def test_next_parts_are_the_next_of_the_segment_and_the_next_segments_first() -> None:
    assert next_parts(7, 2) == ((7, 3), (8, 0))
    assert next_parts(0, 0) == ((0, 1), (1, 0))


@pytest.mark.parametrize(
    ("segment_target", "durations", "expected"),
    [
        (0.5, [], 1),  # never below one second
        (0.5, [0.5, 0.5], 1),
        (1.5, [], 2),  # the configured target, rounded up
        (2.0, [2.0, 1.9], 2),
        (2.0 + 1e-12, [], 2),  # float noise in the target does not raise it
        (2.0, [3.4], 3),  # a longer segment raises it: rounded EXTINF <= target
        (2.0, [3.6], 4),
        (2.0, [2.5], 3),  # halves round up, as the checker rounds them
    ],
)
def test_target_duration(segment_target: float, durations: list[float], expected: int) -> None:
    assert target_duration(segment_target, durations) == expected


@pytest.mark.parametrize(
    ("duration", "expected"),
    [(0.49, 0), (0.5, 1), (1.5, 2), (2.5, 3), (2.49999, 2), (3.0, 3)],
)
def test_rounded_duration_rounds_halves_up(duration: float, expected: int) -> None:
    assert rounded_duration(duration) == expected


def test_the_multiples_of_the_targets() -> None:
    assert min_part_hold_back(0.1) == pytest.approx(0.2)
    assert recommended_part_hold_back(0.1) == pytest.approx(0.3)
    assert min_can_skip_until(2) == 12.0
    assert min_part_duration(0.1) == pytest.approx(0.085)
    assert part_retention(2) == 6


# ---- the checker holds playlists to the same numbers -----------------------------------


def playlist(part_target: float, td: int) -> MediaPlaylist:
    """One segment (a full part, one at the 85% minimum, a short final one), the values as
    the edge renders them."""
    durations = (part_target, min_part_duration(part_target), part_target / 2)
    parts = tuple(
        Part(d, f"10.{i}.m4s", i == 0) for i, d in enumerate(round(d, 5) for d in durations)
    )
    seg = Segment(10, sum(p.duration for p in parts), "10.m4s", parts, None)
    return MediaPlaylist(
        target_duration=td,
        part_target=part_target,
        media_sequence=10,
        discontinuity_sequence=0,
        map_uri="init-0.mp4",
        segments=(seg,),
        partial=None,
        preload_hint_uri="11.0.m4s",
        part_hold_back=round(recommended_part_hold_back(part_target), 6),
        can_skip_until=min_can_skip_until(td),
    )


def rules_broken(pl: MediaPlaylist) -> set[str]:
    return {v.rule for v in check_media_playlist(render_media_playlist(pl))}


TARGETS = [(0.1, 1), (0.2, 1), (0.333, 2), (0.5, 2), (1.0, 4)]


@pytest.mark.parametrize(("part_target", "td"), TARGETS)
def test_the_values_the_edge_renders_pass_the_checker(part_target: float, td: int) -> None:
    assert rules_broken(playlist(part_target, td)) == set()


@pytest.mark.parametrize(("part_target", "td"), TARGETS)
def test_just_below_each_limit_breaks_its_rule(part_target: float, td: int) -> None:
    pl = playlist(part_target, td)
    below = 0.001
    phb = dataclasses.replace(pl, part_hold_back=min_part_hold_back(part_target) - below)
    assert rules_broken(phb) == {"part-hold-back", "cascade-part-hold-back-3x"}
    phb3 = dataclasses.replace(pl, part_hold_back=recommended_part_hold_back(part_target) - below)
    assert rules_broken(phb3) == {"cascade-part-hold-back-3x"}
    skip = dataclasses.replace(pl, can_skip_until=min_can_skip_until(td) - below)
    assert rules_broken(skip) == {"can-skip-until"}
    seg = pl.segments[0]
    short = seg.parts[1].duration - below
    parts = (seg.parts[0], dataclasses.replace(seg.parts[1], duration=short), seg.parts[2])
    shorter = dataclasses.replace(seg, parts=parts, duration=seg.duration - below)
    assert rules_broken(dataclasses.replace(pl, segments=(shorter,))) == {"part-duration-min"}
