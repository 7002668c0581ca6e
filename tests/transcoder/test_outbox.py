"""The outbox's pure rules: order kept, whole oldest segments dropped, no duplicate replayed."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from cascade.transcoder.outbox import Arg, Item, Outbox, Segment, arg_bytes
from cascade.transcoder.resp import encode_command

MB = 1_000_000


def xadd(rendition: str, msn: int, part: int, size: int = 10) -> list[Arg]:
    return [
        "XADD",
        f"parts:{rendition}",
        "MAXLEN",
        "~",
        100,
        "*",
        "msn",
        msn,
        "part",
        part,
        "data",
        b"x" * size,
    ]


class Producer:
    """Makes the items a packager would: parts of segments, per rendition, in time."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.now = 0.0

    def part(self, rendition: str, msn: int, part: int, size: int = 10) -> Item:
        data = encode_command(xadd(rendition, msn, part, size))
        return self.outbox.item(data, self.now, (rendition, msn), f"parts:{rendition}")

    def init(self, rendition: str) -> Item:
        data = encode_command(["XADD", f"parts:{rendition}", "*", "k", "init"])
        return self.outbox.item(data, self.now, None, f"parts:{rendition}")


# What one part of 100 bytes of media weighs, encoded.
PART = len(encode_command(xadd("a", 0, 0, size=100)))


def tail(rendition: str, msn: int, part: int, size: int = 10) -> list[bytes]:
    """The fields XRANGE gives back for that part's entry."""
    return [arg_bytes(a) for a in xadd(rendition, msn, part, size)[6:]]


def drain(outbox: Outbox, now: float = 0.0) -> list[Item]:
    out = []
    while items := outbox.take(1 << 20):
        outbox.wrote(items, now)
        out += items
    return out


def keys(items: list[Item]) -> list[Segment | None]:
    return [i.segment for i in items]


def test_queued_items_come_out_in_order_before_anything_newer() -> None:
    outbox = Outbox(max_bytes=MB, max_seconds=30, retain_seconds=0)
    p = Producer(outbox)
    first = [p.init("a"), p.part("a", 0, 0), p.part("b", 0, 0), p.part("a", 0, 1)]
    assert outbox.queue(first, 0.0) == []
    assert not outbox.idle
    later = [p.part("a", 1, 0)]
    outbox.queue(later, 0.1)

    assert drain(outbox) == first + later
    assert outbox.pending_items == 0 and outbox.pending_bytes == 0


def test_overflow_drops_the_oldest_whole_segment_never_a_part_of_one() -> None:
    # Segments of 3 parts: room for two of them and a bit.
    outbox = Outbox(max_bytes=7 * PART + 100, max_seconds=999, retain_seconds=0)
    p = Producer(outbox)
    init = p.init("a")
    outbox.queue([init], 0.0)
    dropped: list[Segment] = []
    for msn in range(4):
        for part in range(3):
            dropped += outbox.queue([p.part("a", msn, part, size=100)], 0.0)

    assert dropped == [("a", 0), ("a", 1)]
    assert outbox.lost_segments == 2
    assert outbox.bytes <= 7 * PART + 100
    left = drain(outbox)
    assert left[0] is init  # an init is never dropped: every later part needs it
    assert keys(left[1:]) == [("a", 2)] * 3 + [("a", 3)] * 3


def test_the_growing_segment_and_a_half_written_one_are_never_dropped() -> None:
    outbox = Outbox(max_bytes=50, max_seconds=999, retain_seconds=0)
    p = Producer(outbox)
    outbox.wrote([p.part("a", 7, 0, size=40)], 0.0)  # went out before Redis went away
    outbox.disconnected()
    rest_of_7 = p.part("a", 7, 1, size=40)
    growing = p.part("a", 8, 0, size=40)
    assert outbox.queue([rest_of_7, growing], 0.0) == []  # over budget, nothing droppable

    assert outbox.bytes > outbox.max_bytes  # bounded overshoot: one segment per rendition
    assert outbox.queue([p.part("a", 9, 0, size=40)], 0.0) == [("a", 8)]


def test_the_time_budget_drops_segments_older_than_it() -> None:
    outbox = Outbox(max_bytes=MB, max_seconds=2.0, retain_seconds=0)
    p = Producer(outbox)
    dropped: list[Segment] = []
    for msn in range(6):  # one segment a second
        p.now = float(msn)
        dropped += outbox.queue([p.part("a", msn, 0)], p.now)

    assert dropped == [("a", 0), ("a", 1), ("a", 2)]  # older than 2 s when msn 5 came
    assert keys(drain(outbox)) == [("a", 3), ("a", 4), ("a", 5)]


def test_the_oldest_segment_goes_first_whichever_rendition_it_is() -> None:
    outbox = Outbox(max_bytes=int(4.5 * PART), max_seconds=999, retain_seconds=0)
    p = Producer(outbox)
    dropped: list[Segment] = []
    for msn in range(3):
        for rendition in "ab":
            dropped += outbox.queue([p.part(rendition, msn, 0, size=100)], 0.0)

    assert dropped == [("a", 0), ("b", 0)]
    assert keys(drain(outbox)) == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]


def test_confirmed_items_are_kept_for_the_replay_window_then_let_go() -> None:
    outbox = Outbox(max_bytes=MB, max_seconds=30, retain_seconds=5)
    p = Producer(outbox)
    old = p.part("a", 0, 0)
    outbox.wrote([old], 0.0)
    p.now = 4.0
    new = p.part("a", 0, 1)
    outbox.wrote([new], 4.0)
    outbox.confirm(new.seq, 4.0)
    assert outbox.settled and outbox.bytes == len(old.data) + len(new.data)

    outbox.confirm(new.seq, 6.0)  # old is past the replay window now
    assert outbox.bytes == len(new.data)
    outbox.disconnected()  # what remains may be missing from the next Redis
    assert drain(outbox) == [new]


def test_unconfirmed_items_are_replayed_after_a_disconnect_in_order() -> None:
    outbox = Outbox(max_bytes=MB, max_seconds=30, retain_seconds=0)
    p = Producer(outbox)
    a = [p.part("a", 0, i) for i in range(3)]
    outbox.wrote(a, 0.0)
    outbox.confirm(a[0].seq, 1.0)  # Redis answered after the first only
    outbox.disconnected()
    b = p.part("a", 0, 3)
    outbox.queue([b], 0.0)

    assert drain(outbox) == [*a[1:], b]


def test_skip_delivered_drops_what_the_stream_tail_shows_is_there() -> None:
    outbox = Outbox(max_bytes=MB, max_seconds=30, retain_seconds=0)
    p = Producer(outbox)
    written = [p.part("a", 0, i) for i in range(4)] + [p.part("b", 0, 0)]
    outbox.wrote(written, 0.0)
    outbox.disconnected()
    never_written = p.part("a", 0, 4)
    outbox.queue([never_written], 0.0)
    assert outbox.streams_to_check() == ["parts:a", "parts:b"]

    # Redis has a/0.0 and a/0.1; b's stream is empty
    skipped = outbox.skip_delivered({"parts:a": tail("a", 0, 1), "parts:b": None})

    assert skipped == 2
    assert drain(outbox) == [written[2], written[3], written[4], never_written]


def test_skip_delivered_without_a_matching_tail_replays_everything() -> None:
    # Redis restarted from an older dump: its last entry is none of ours.
    outbox = Outbox(max_bytes=MB, max_seconds=30, retain_seconds=0)
    p = Producer(outbox)
    written = [p.part("a", 5, i) for i in range(3)]
    outbox.wrote(written, 0.0)
    outbox.disconnected()

    assert outbox.skip_delivered({"parts:a": tail("a", 1, 0)}) == 0
    assert drain(outbox) == written


@given(
    st.lists(st.tuples(st.sampled_from("ab"), st.integers(1, 300)), min_size=1, max_size=80),
    st.integers(200, 3000),
)
def test_whatever_the_budget_order_is_kept_and_segments_stay_whole(
    parts: list[tuple[str, int]], budget: int
) -> None:
    outbox = Outbox(max_bytes=budget, max_seconds=999, retain_seconds=0)
    p = Producer(outbox)
    count = {"a": 0, "b": 0}
    made: list[Item] = []
    for i, (rendition, size) in enumerate(parts):
        msn, part = divmod(count[rendition], 3)  # segments of three parts
        count[rendition] += 1
        item = p.part(rendition, msn, part, size)
        made.append(item)
        outbox.queue([item], float(i))
    out = drain(outbox)

    assert [i.seq for i in out] == sorted(i.seq for i in out)  # order kept
    expected = Counter(i.segment for i in made)
    got = Counter(i.segment for i in out)
    assert all(got[s] == expected[s] for s in got)  # a segment comes out whole, or not at all
    assert len(expected) - len(got) == outbox.lost_segments
