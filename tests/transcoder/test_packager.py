"""The packager's pure core: FFmpeg's fragmented MP4 in, init and part entries out.

Synthetic streams (:mod:`.fmp4`), one 100 ms frame per fragment, a keyframe every five:
500 ms segments of five parts. The clock is a plain float passed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cascade.cmaf import BoxError
from cascade.contract.schema import InitEntry, PartEntry
from cascade.transcoder.packager import MediaError, RenditionPackager, Timeline

from .fmp4 import fragment, fragments, init_segment

INIT = init_segment()


def packager(
    *, first_msn: int = 0, generation: int = 0, timeline: Timeline | None = None
) -> RenditionPackager:
    return RenditionPackager(
        segment_target=0.5,
        timeline=timeline if timeline is not None else Timeline(),
        first_msn=first_msn,
        generation=generation,
    )


def parts_of(entries: Sequence[object]) -> list[PartEntry]:
    return [e for e in entries if isinstance(e, PartEntry)]


def test_the_init_comes_first_with_the_run_s_generation() -> None:
    p = packager(generation=3)
    out = p.feed(INIT, 10.0)
    assert out == [InitEntry(data=INIT, generation=3)]
    assert p.init is not None and p.init.info.codecs == "avc1.64001f"


def test_parts_are_numbered_into_segments_from_the_first_msn() -> None:
    p = packager(first_msn=7)
    p.feed(INIT, 10.0)
    got = [(e.msn, e.part, e.independent) for e in parts_of(p.feed(b"".join(fragments(11)), 10.0))]
    assert got == [
        (7, 0, True), (7, 1, False), (7, 2, False), (7, 3, False), (7, 4, False),
        (8, 0, True), (8, 1, False), (8, 2, False), (8, 3, False), (8, 4, False),
        (9, 0, True),
    ]  # fmt: skip


def test_the_timeline_anchor_is_the_first_part_s_arrival_less_its_media_end() -> None:
    # The first part (media 0.0-0.1 s) arrives at 1000.0: its media end is "now", so
    # the anchor is 999.9 and each part's date is the anchor plus its media start,
    # whenever it arrives (a late read does not shift the dates).
    p = packager()
    p.feed(INIT, 999.0)
    frags = fragments(3)
    first = parts_of(p.feed(frags[0], 1000.0))[0]
    late = parts_of(p.feed(frags[1] + frags[2], 1005.0))
    assert first.pdt == pytest.approx(999.9)
    assert [e.pdt for e in late] == pytest.approx([1000.0, 1000.1])
    assert p.timeline.anchor == pytest.approx(999.9)


def test_renditions_of_a_run_share_one_anchor() -> None:
    timeline = Timeline()
    a, b = packager(timeline=timeline), packager(timeline=timeline)
    a.feed(INIT, 0.0)
    b.feed(INIT, 0.0)
    pa = parts_of(a.feed(b"".join(fragments(2)), 50.0))
    pb = parts_of(b.feed(b"".join(fragments(2)), 50.7))  # read later: same dates
    # Anchored by a's first part (media end 0.1 s, read at 50.0): 49.9.
    assert [e.pdt for e in pa] == pytest.approx([49.9, 50.0])
    assert [e.pdt for e in pb] == [e.pdt for e in pa]


def test_fragments_before_the_first_keyframe_are_skipped_and_do_not_anchor() -> None:
    p = packager(first_msn=4)
    p.feed(INIT, 0.0)
    out = parts_of(p.feed(b"".join(fragments(8, first_key=3)), 100.0))
    assert p.stats.skipped_fragments == 3
    assert [(e.msn, e.part) for e in out] == [(4, 0), (4, 1), (4, 2), (4, 3), (4, 4)]
    assert out[0].independent
    # The anchor is set by the first part placed (media 0.3-0.4 s), not a skipped one.
    assert out[0].pdt == pytest.approx(100.0 - 0.4 + 0.3)
    assert p.stats.media_end == pytest.approx(0.5)  # media published in this run


def test_a_first_run_has_no_discontinuity() -> None:
    p = packager(generation=0)
    p.feed(INIT, 0.0)
    assert not any(e.discontinuity for e in parts_of(p.feed(b"".join(fragments(6)), 1.0)))


def test_a_restarted_run_marks_only_its_first_part_discontinuous() -> None:
    p = packager(first_msn=12, generation=1)
    p.feed(INIT, 0.0)
    out = parts_of(p.feed(b"".join(fragments(6)), 1.0))
    assert [e.discontinuity for e in out] == [True, False, False, False, False, False]
    assert {e.generation for e in out} == {1}


def test_the_next_msn_across_restarts() -> None:
    first = packager()
    first.feed(INIT, 0.0)
    assert first.next_msn == 0  # nothing placed yet: the next run reuses the number
    first.feed(b"".join(fragments(7)), 1.0)  # segment 0 whole, segment 1 has two parts
    assert first.next_msn == 2  # the open segment is published: never reused
    second = packager(first_msn=first.next_msn, generation=1)
    second.feed(INIT, 2.0)
    assert second.next_msn == 2
    out = parts_of(second.feed(b"".join(fragments(7, first_key=1)), 3.0))
    assert (out[0].msn, out[0].part, out[0].discontinuity) == (2, 0, True)
    assert [(e.msn, e.part) for e in out][-1] == (3, 0)
    assert second.next_msn == 4


def test_chunks_of_any_size_give_the_same_entries() -> None:
    stream = INIT + b"".join(fragments(11))
    whole = packager().feed(stream, 5.0)
    p = packager()
    cut: list[object] = []
    for i in range(0, len(stream), 7):
        cut += p.feed(stream[i : i + 7], 5.0)
    assert cut == whole


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(INIT + b"\x00\x00\x00\x03junk", "invalid size", id="garbage"),
        pytest.param(fragment(1, start=0.0, key=True), "before any init", id="no-init"),
    ],
)
def test_bad_media_raises_media_error(data: bytes, message: str) -> None:
    with pytest.raises(MediaError, match=message) as info:
        packager().feed(data, 0.0)
    assert not isinstance(info.value, ValueError)  # not to be confused with a bug's
    if info.value.__cause__ is not None:
        assert isinstance(info.value.__cause__, BoxError)
