"""Segmenter: fragments into LL-HLS parts and segments."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascade.cmaf.segmenter import DURATION_TOLERANCE, Placement, Segmenter


def place_all(segmenter: Segmenter, fragments: list[tuple[bool, float]]) -> list[Placement]:
    return [segmenter.place(independent, duration) for independent, duration in fragments]


def gop(parts: int, duration: float = 0.1) -> list[tuple[bool, float]]:
    """One GOP: an independent part, then parts - 1 dependent ones."""
    return [(i == 0, duration) for i in range(parts)]


def test_one_segment_per_gop_when_the_gop_matches_the_target() -> None:
    # 5 x 0.1 s must count as 0.5 s even though floating sums drift.
    placements = place_all(Segmenter(0.5), gop(5) * 3)
    assert [(p.msn, p.part) for p in placements] == [
        (msn, part) for msn in range(3) for part in range(5)
    ]
    assert [p.starts_segment for p in placements] == [p.part == 0 for p in placements]
    assert placements[0] == Placement(0, 0, 0.1, True, True)
    assert placements[1] == Placement(0, 1, 0.1, False, False)


def test_floating_sum_just_below_the_target_still_closes_the_segment() -> None:
    assert sum([0.1] * 10) < 1.0  # 0.9999999999999999
    placements = place_all(Segmenter(1.0), gop(10) * 2)
    assert placements[10] == Placement(1, 0, 0.1, True, True)


def test_tolerance_is_below_a_frame() -> None:
    # A segment a whole frame short of the target (1/240 s) is not full.
    segmenter = Segmenter(1.0)
    segmenter.place(True, 1.0 - 1 / 240)
    assert DURATION_TOLERANCE < 1 / 240
    assert not segmenter.place(True, 0.1).starts_segment


def test_segments_span_several_gops_up_to_the_target() -> None:
    # 2 s target, keyframe every 0.5 s: 20 parts per segment, 4 GOPs each.
    placements = place_all(Segmenter(2.0, first_msn=7), gop(5) * 8)
    starts = [(i, p.msn) for i, p in enumerate(placements) if p.starts_segment]
    assert starts == [(0, 7), (20, 8)]
    assert placements[19] == Placement(7, 19, 0.1, False, False)
    assert placements[15] == Placement(7, 15, 0.1, True, False)  # keyframe, segment not full


def test_gops_longer_than_the_target_make_longer_segments() -> None:
    # Passthrough: keyframes every 3 s, target 1 s; each segment runs to the next keyframe.
    segmenter = Segmenter(1.0)
    placements = place_all(segmenter, gop(30) * 2)
    assert [p.msn for p in placements] == [0] * 30 + [1] * 30
    assert placements[29].part == 29
    assert segmenter.segment_duration == pytest.approx(3.0)


def test_first_fragment_must_be_independent() -> None:
    segmenter = Segmenter(2.0, first_msn=3)
    assert not segmenter.started
    with pytest.raises(ValueError, match="first fragment must be independent"):
        segmenter.place(False, 0.1)
    # Nothing changed: the caller skips to the next keyframe and carries on.
    assert not segmenter.started
    assert segmenter.next_msn == 3
    assert segmenter.place(True, 0.1) == Placement(3, 0, 0.1, True, True)
    assert segmenter.started


def test_next_msn_after_a_restart() -> None:
    segmenter = Segmenter(0.5, first_msn=10)
    assert segmenter.next_msn == 10  # nothing placed: reuse the msn
    segmenter.place(True, 0.1)
    assert (segmenter.msn, segmenter.next_msn) == (10, 11)  # open segment has a part
    place_all(segmenter, [(False, 0.1)] * 4 + [(True, 0.1)])
    assert (segmenter.msn, segmenter.next_msn) == (11, 12)
    restarted = Segmenter(0.5, first_msn=segmenter.next_msn)
    assert restarted.place(True, 0.1).msn == 12


def test_zero_duration_parts_are_placed() -> None:
    segmenter = Segmenter(0.2)
    assert [p.part for p in place_all(segmenter, [(True, 0.0), (True, 0.2), (True, 0.0)])] == [
        0,
        1,
        0,
    ]


@pytest.mark.parametrize(
    ("target", "first_msn", "message"),
    [
        (0.0, 0, "segment_target must be positive"),
        (float("nan"), 0, "segment_target must be positive"),
        (1.0, -1, "first_msn must not be negative"),
    ],
)
def test_bad_arguments(target: float, first_msn: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Segmenter(target, first_msn=first_msn)


def test_negative_duration_refused() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Segmenter(1.0).place(True, -0.1)


fragment_lists = st.lists(
    st.tuples(st.booleans(), st.sampled_from([0.0, 1 / 30, 0.1, 0.1001, 0.2, 0.5])),
    min_size=1,
    max_size=80,
)


@given(
    st.sampled_from([0.3, 0.5, 1.0, 2.0, 4.0]),
    st.integers(0, 1000),
    st.floats(0.001, 1.0),
    fragment_lists,
)
def test_segmenter_invariants(
    target: float, first_msn: int, first_duration: float, rest: list[tuple[bool, float]]
) -> None:
    fragments = [(True, first_duration), *rest]
    segmenter = Segmenter(target, first_msn=first_msn)
    placements = place_all(segmenter, fragments)
    assert placements[0].msn == first_msn
    assert placements[0].starts_segment
    elapsed = 0.0  # seconds in the open segment before the fragment being checked
    for index in range(1, len(placements)):
        previous, placement = placements[index - 1], placements[index]
        independent, duration = fragments[index]
        assert (placement.independent, placement.duration) == (independent, duration)
        elapsed = previous.duration if previous.starts_segment else elapsed + previous.duration
        # A segment starts exactly when the fragment is independent and the segment is full.
        full = elapsed + DURATION_TOLERANCE >= target
        assert placement.starts_segment == (independent and full)
        if placement.starts_segment:
            assert (placement.msn, placement.part) == (previous.msn + 1, 0)
        else:
            assert (placement.msn, placement.part) == (previous.msn, previous.part + 1)
    assert segmenter.next_msn == placements[-1].msn + 1
