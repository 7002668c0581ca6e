"""The recorder: complete segments and distinct inits become uploads, in order."""

from __future__ import annotations

from cascade.contract import recording
from cascade.contract.recording import SegmentName
from cascade.contract.schema import InitEntry, PartEntry
from cascade.transcoder.recorder import Recorder

INIT = b"init-a"


def part(msn: int, i: int, *, gen: int = 0, pdt: float = 1000.0) -> PartEntry:
    return PartEntry(
        msn=msn,
        part=i,
        duration=0.1,
        independent=i == 0,
        pdt=pdt + msn * 0.5 + i * 0.1,
        data=bytes([msn, i]),
        discontinuity=False,
        generation=gen,
    )


def test_segment_uploaded_when_the_next_starts() -> None:
    r = Recorder("demo", ["360p"], prefix="p/")
    first = r.entries("360p", [InitEntry(INIT, 0), *(part(0, i) for i in range(5))])
    init_name = recording.init_name(INIT)
    assert [u.key for u in first] == [f"p/demo/360p/init/{init_name}"]
    assert first[0].segment is None and first[0].data == INIT
    (seg,) = r.entries("360p", [part(1, 0)])
    assert seg.segment == SegmentName(1_000_000, 0, 0, 500_000, init_name.removesuffix(".mp4"))
    assert seg.key == recording.segment_key("p/", "demo", "360p", seg.segment)
    assert seg.data == b"".join(bytes([0, i]) for i in range(5))
    (last,) = r.flush()
    assert last.segment is not None and last.segment.msn == 1 and last.data == bytes([1, 0])
    assert r.flush() == []


def test_same_init_again_is_not_uploaded_again() -> None:
    r = Recorder("demo", ["360p"], prefix="")
    assert len(r.entries("360p", [InitEntry(INIT, 0)])) == 1
    assert r.entries("360p", [InitEntry(INIT, 1)]) == []
    assert len(r.entries("360p", [InitEntry(b"init-b", 2)])) == 1


def test_new_generation_closes_the_segment() -> None:
    r = Recorder("demo", ["360p"], prefix="")
    r.entries("360p", [InitEntry(INIT, 0), part(3, 0), part(3, 1)])
    (seg,) = r.entries("360p", [part(3, 0, gen=1, pdt=2000.0)])
    assert seg.segment is not None and seg.segment.generation == 0


def test_unrecorded_renditions_and_parts_before_an_init_are_ignored() -> None:
    r = Recorder("demo", ["720p"], prefix="")
    assert r.entries("360p", [InitEntry(INIT, 0), part(0, 0), part(1, 0)]) == []
    assert r.entries("720p", [part(0, 0), part(1, 0)]) == []
