"""The edge's live window: entries in, LL-HLS decisions and playlists out (pure)."""

from __future__ import annotations

import pytest

from cascade.contract.schema import EndEntry, Entry, InitEntry, PartEntry
from cascade.edge.window import (
    PlaylistContext,
    RenditionWindow,
    Wait,
    build_media_playlist,
)
from cascade.hls.playlist import render_media_playlist
from cascade.hls.rules import check_media_playlist

PDT0 = 1_800_000_000.0
CTX = PlaylistContext(part_target=0.1, segment_target=0.5)


def part(msn: int, index: int, *, gen: int = 0, disc: bool = False) -> PartEntry:
    return PartEntry(
        msn=msn,
        part=index,
        duration=0.1,
        independent=index == 0,
        pdt=PDT0 + msn * 0.5 + index * 0.1,
        data=f"{msn}.{index}".encode(),
        discontinuity=disc,
        generation=gen,
    )


def filled(segments: int, parts_in_last: int = 5, *, max_segments: int = 24) -> RenditionWindow:
    w = RenditionWindow("360p", max_segments=max_segments)
    w.apply(InitEntry(b"init", 0))
    for msn in range(segments):
        n = 5 if msn < segments - 1 else parts_in_last
        for i in range(n):
            w.apply(part(msn, i))
    return w


def test_parts_accumulate_and_close_segments() -> None:
    w = filled(3, parts_in_last=2)
    assert [s.msn for s in w.segments] == [0, 1, 2]
    assert [s.complete for s in w.segments] == [True, True, False]
    assert w.segment(1) is not None and w.segment(1).data == b"1.01.11.21.31.4"  # type: ignore[union-attr]
    assert w.position is not None and (w.position.msn, w.position.part) == (2, 1)


def test_replayed_and_out_of_order_entries_are_ignored() -> None:
    w = filled(2, parts_in_last=3)
    w.apply(part(1, 1))  # replay (catch-up overlap)
    w.apply(part(0, 4))
    w.apply(part(1, 4))  # a gap: part 3 missing
    assert [len(s.parts) for s in w.segments] == [5, 3]


def test_joining_mid_segment_waits_for_the_next_segment_start() -> None:
    w = RenditionWindow("360p", max_segments=10)
    w.apply(part(7, 3))
    assert not w.segments
    w.apply(part(8, 0))
    assert w.position is not None and w.position.msn == 8


def test_window_slides_and_counts_discontinuities() -> None:
    w = RenditionWindow("360p", max_segments=3)
    w.apply(InitEntry(b"a", 0))
    w.apply(part(0, 0))
    w.apply(InitEntry(b"b", 1))
    w.apply(part(1, 0, gen=1, disc=True))
    for msn in range(2, 5):
        w.apply(part(msn, 0, gen=1))
    assert [s.msn for s in w.segments] == [2, 3, 4]
    assert w.discontinuity_sequence == 1  # segment 1 carried the tag and is gone


def test_discontinuity_sequence_rises_only_when_the_tagged_segment_leaves() -> None:
    w = RenditionWindow("360p", max_segments=2)
    w.apply(InitEntry(b"a", 0))
    w.apply(part(0, 0))
    w.apply(InitEntry(b"b", 1))
    w.apply(part(1, 0, gen=1, disc=True))
    w.apply(part(2, 0, gen=1))  # segment 0 leaves: 1 is first and still tagged
    assert w.discontinuity_sequence == 0
    text = render_media_playlist(build_media_playlist(w, CTX))
    assert "#EXT-X-DISCONTINUITY\n" in text and "DISCONTINUITY-SEQUENCE" not in text
    w.apply(part(3, 0, gen=1))  # the tagged segment leaves
    assert w.discontinuity_sequence == 1
    assert w.inits == {1: b"b"}  # the first generation's init left with its segments


def test_end_closes_the_last_segment_and_the_playlist() -> None:
    w = filled(2, parts_in_last=2)
    w.apply(EndEntry())
    assert w.ended and w.segments[-1].complete
    text = render_media_playlist(build_media_playlist(w, CTX))
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert "PRELOAD-HINT" not in text


@pytest.mark.parametrize(
    ("msn", "part", "expected"),
    [
        (3, 2, Wait.READY),  # the newest part
        (3, None, Wait.BLOCK),  # the growing segment is not complete yet
        (2, None, Wait.READY),
        (0, 0, Wait.READY),
        (3, 3, Wait.BLOCK),  # the next part
        (4, 0, Wait.BLOCK),
        (5, 0, Wait.BLOCK),  # msn + 2 is still allowed
        (6, 0, Wait.TOO_FAR),  # "greater than ... plus two": 400
        (3, 2 + 31, Wait.TOO_FAR),  # beyond the advance part limit (30 at 100 ms parts)
        (3, 2 + 30, Wait.BLOCK),
    ],
)
def test_blocking_reload_decisions(msn: int, part: int | None, expected: Wait) -> None:
    w = filled(4, parts_in_last=3)
    assert w.playlist_wait(msn, part, 0.1) is expected


def test_part_requests_block_only_for_the_hinted_part() -> None:
    w = filled(4, parts_in_last=3)
    assert w.part_wait(3, 2) is Wait.READY
    assert w.part_wait(3, 3) is Wait.BLOCK
    assert w.part_wait(4, 0) is Wait.BLOCK
    assert w.part_wait(3, 4) is Wait.TOO_FAR
    assert w.part_wait(5, 0) is Wait.TOO_FAR
    assert w.part_wait(2, 7) is Wait.GONE


def test_part_requests_older_than_the_window_are_gone() -> None:
    w = filled(6, max_segments=3)
    assert w.part_wait(1, 0) is Wait.GONE


def test_playlist_of_a_live_window_passes_every_ll_hls_rule() -> None:
    w = filled(20, parts_in_last=3)
    text = render_media_playlist(build_media_playlist(w, CTX))
    assert check_media_playlist(text) == []
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="19.3.m4s"' in text
    assert '#EXT-X-MAP:URI="init-0.mp4"' in text
    assert "PART-HOLD-BACK=0.3" in text


def test_a_segment_of_a_target_and_a_half_raises_the_target_duration() -> None:
    # 2.5 s against a 2 s target (a missed keyframe deadline): the rounded EXTINF, 3, must
    # fit EXT-X-TARGETDURATION. round() made it 2, which the checker refuses.
    w = RenditionWindow("360p", max_segments=10)
    w.apply(InitEntry(b"init", 0))
    for msn, count in ((0, 5), (1, 1)):
        for i in range(count):
            pdt = PDT0 + msn * 2.5 + i * 0.5
            w.apply(PartEntry(msn, i, 0.5, i == 0, pdt, b"x"))
    ctx = PlaylistContext(part_target=0.5, segment_target=2.0)
    text = render_media_playlist(build_media_playlist(w, ctx))
    assert "#EXT-X-TARGETDURATION:3\n" in text
    assert check_media_playlist(text) == []


def test_preload_hint_names_the_next_segment_after_a_full_one() -> None:
    w = filled(5, parts_in_last=5)
    text = render_media_playlist(build_media_playlist(w, CTX))
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="5.0.m4s"' in text


def test_new_generation_gets_a_discontinuity_and_its_own_map() -> None:
    w = filled(3)
    w.apply(InitEntry(b"new", 1))
    w.apply(part(3, 0, gen=1, disc=True))
    text = render_media_playlist(build_media_playlist(w, CTX))
    before, after = text.split("#EXT-X-DISCONTINUITY\n")
    assert 'URI="init-1.mp4"' in after and 'URI="init-1.mp4"' not in before
    assert check_media_playlist(text) == []


@pytest.mark.parametrize(
    "query",
    [b"", b"_HLS_msn=12&_HLS_part=3", b"a=1&a=2", b"x=%41%2B+b&y", b"=v&k=", b"&&_HLS_skip=YES&"],
)
def test_query_parser_agrees_with_the_standard_library(query: bytes) -> None:
    from urllib.parse import parse_qsl

    from cascade.edge.live import parse_query

    assert parse_query(query) == dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))


# ---- a msn jump: entries lost while this edge could not read them ----------------------


def before_jump(parts_in_186: int = 3) -> RenditionWindow:
    """Segments 180-186, the last one growing (``parts_in_186`` parts so far)."""
    w = RenditionWindow("360p", max_segments=24)
    w.apply(InitEntry(b"init", 0))
    for msn in range(180, 187):
        for i in range(5 if msn < 186 else parts_in_186):
            w.apply(part(msn, i))
    return w


def jumped(*, parts_in_186: int = 3, to: int = 218) -> RenditionWindow:
    """:func:`before_jump`, then part ``to``.0: everything between was lost."""
    w = before_jump(parts_in_186)
    w.apply(part(to, 0))
    return w


def test_a_msn_jump_starts_the_window_afresh_with_a_discontinuity() -> None:
    w = jumped()
    assert [s.msn for s in w.segments] == [218]
    text = render_media_playlist(build_media_playlist(w, CTX))
    assert check_media_playlist(text) == []
    # The playlist never lists 186 followed by 218: media sequence numbers are implicit.
    assert "#EXT-X-MEDIA-SEQUENCE:218\n" in text
    assert "186." not in text
    assert text.index("#EXT-X-DISCONTINUITY\n") < text.index('URI="218.0.m4s"')
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="218.1.m4s"' in text


def test_every_uri_listed_after_a_jump_is_servable() -> None:
    w = jumped()
    for msn in range(218, 222):
        for i in range(1 if msn == 218 else 0, 5):
            w.apply(part(msn, i))
    text = render_media_playlist(build_media_playlist(w, CTX))
    assert check_media_playlist(text) == []
    for line in text.splitlines():
        if line.startswith("#EXT-X-PART:"):
            uri = line.split('URI="')[1].split('"')[0]
            msn, index = (int(n) for n in uri.removesuffix(".m4s").split("."))
            assert w.part(msn, index) is not None, uri
        elif line and not line.startswith("#"):
            assert (seg := w.servable_segment(int(line.removesuffix(".m4s")))) is not None
            assert seg.data


def test_the_playlists_around_a_jump_pass_the_update_rules() -> None:
    w = before_jump()
    before = render_media_playlist(build_media_playlist(w, CTX))
    w.apply(part(218, 0))
    after = render_media_playlist(build_media_playlist(w, CTX))
    assert check_media_playlist(after, previous=before) == []
    # The discontinuity sequence counts the tags that left (none here), and stays put
    # while the new first segment still carries its own tag.
    assert w.discontinuity_sequence == 0
    for msn in range(219, 250):
        w.apply(part(msn, 0))
    assert w.discontinuity_sequence == 1  # the tagged segment 218 slid out


def test_parts_given_out_just_before_a_jump_are_still_served() -> None:
    w = jumped(parts_in_186=3)
    assert w.part(186, 2) is not None and w.part(186, 2).data == b"186.2"  # type: ignore[union-attr]
    assert w.servable_segment(185) is not None
    assert w.part_wait(186, 2) is Wait.READY


def test_held_requests_at_a_jump_get_an_answer_at_once() -> None:
    w = jumped(parts_in_186=3)
    # The preload hint 186.3 and the next segment's 187.0 will never come: gone, not held.
    assert w.part_wait(186, 3) is Wait.GONE
    assert w.part_wait(187, 0) is Wait.GONE
    # A blocking reload for them is answered with the new playlist.
    assert w.playlist_wait(186, 3, 0.1) is Wait.READY
    assert w.playlist_wait(187, 0, 0.1) is Wait.READY
    assert w.playlist_wait(218, 1, 0.1) is Wait.BLOCK


def test_retired_segments_age_out_as_the_new_window_grows() -> None:
    w = jumped()
    for msn in range(219, 218 + 24):
        w.apply(part(msn, 0))
    assert len(w.segments) == 24 and not w.retired
    assert w.part(186, 0) is None
    assert w.inits == {0: b"init"}


def test_a_jump_into_a_new_generation_keeps_the_inits_it_needs() -> None:
    w = jumped()
    w.apply(InitEntry(b"gen1", 1))
    w.apply(part(300, 0, gen=1, disc=True))
    assert [s.msn for s in w.segments] == [300]
    assert w.init(0) == b"init"  # the retired segments' init, still served with them
    assert w.init(1) == b"gen1"
    text = render_media_playlist(build_media_playlist(w, CTX))
    assert check_media_playlist(text) == []
    assert '#EXT-X-MAP:URI="init-1.mp4"' in text


def test_a_jump_mid_segment_waits_for_the_next_segment_start() -> None:
    w = before_jump()
    w.apply(part(218, 3))  # joined mid-segment: the old window stays as it is
    assert w.position is not None and (w.position.msn, w.position.part) == (186, 2)
    w.apply(part(219, 0))
    assert [s.msn for s in w.segments] == [219] and w.segments[0].discontinuity


# ---- a stream read again from its start (the hub does so after Redis restarted) -------


def history() -> list[Entry]:
    """Two generations: an init, parts, the end of the first run, the second run."""
    entries: list[Entry] = [InitEntry(b"a", 0)]
    entries += [part(msn, i) for msn in range(4) for i in range(5)]
    entries += [EndEntry(0), InitEntry(b"b", 1)]
    entries += [part(4, 0, gen=1, disc=True)]
    entries += [part(msn, i, gen=1) for msn in range(4, 7) for i in range(5) if (msn, i) != (4, 0)]
    entries += [part(7, 0, gen=1), part(7, 1, gen=1)]
    return entries


def render(w: RenditionWindow) -> str:
    return render_media_playlist(build_media_playlist(w, CTX))


def test_entries_read_again_change_nothing() -> None:
    w = RenditionWindow("360p", max_segments=24)
    for entry in history():
        w.apply(entry)
    before = render(w)
    assert not w.ended and "#EXT-X-ENDLIST" not in before
    for entry in history():  # the whole stream again, the old end included
        w.apply(entry)
    assert render(w) == before
    assert w.inits == {0: b"a", 1: b"b"}
    w.apply(part(7, 2, gen=1))  # and reading goes on where it was
    assert w.position is not None and (w.position.msn, w.position.part) == (7, 2)


def test_an_end_read_again_after_it_ended_keeps_it_ended() -> None:
    w = RenditionWindow("360p", max_segments=24)
    entries = [*history(), EndEntry(1)]
    for entry in entries + entries:
        w.apply(entry)
    assert w.ended and render(w).rstrip().endswith("#EXT-X-ENDLIST")
