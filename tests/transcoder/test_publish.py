"""Publishing, pure: packaged entries in, the exact Redis commands out.

No Redis, no FFmpeg, no clock: entries are built by hand (for exact values) or by the
packager from synthetic fragmented MP4 (:mod:`.fmp4`), and compared with the commands
the writer is given.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cascade.contract import schema
from cascade.contract.manifest import parse_manifest
from cascade.contract.schema import (
    EndEntry,
    Entry,
    Health,
    InitEntry,
    PartEntry,
    RenditionInfo,
    StreamMeta,
    StreamState,
)
from cascade.contract.spec import LiveStream
from cascade.transcoder.packager import RenditionPackager, Timeline
from cascade.transcoder.publish import (
    Command,
    Publish,
    Resume,
    StreamPublisher,
    health_ttl_seconds,
    resume_point,
    window_entries,
)

from .fmp4 import fragments, init_segment

LADDER = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: s}
spec:
  source: {type: test}
  transcode:
    frameRate: 20
    renditions:
      - {name: low, width: 320, height: 180, videoBitrateKbps: 150}
      - {name: high, width: 640, height: 360, videoBitrateKbps: 400}
  delivery: {segmentDurationMs: 500, partDurationMs: 100}
"""
PASSTHROUGH = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: s}
spec:
  source: {type: srt}
  transcode:
    mode: passthrough
    frameRate: 20
    renditions: [{name: source, width: 1920, height: 1080}]
  delivery: {segmentDurationMs: 500, partDurationMs: 100}
"""
LOW_INIT = init_segment(320, 180)
HIGH_INIT = init_segment(640, 360)
PARTS = "cascade:stream:s:r:low:parts"
# (window 24 + 2) segments of 5 parts, twice, plus 8.
MAXLEN = 268
# The window (24 x 0.5 s) plus archive_seconds (120 s).
ARCHIVE_TTL = 132


def stream_of(text: str) -> LiveStream:
    return parse_manifest(text, source="test")


def publisher(text: str = LADDER, *, archive_seconds: float = 120.0) -> StreamPublisher:
    return StreamPublisher(
        stream_of(text), archive_seconds=archive_seconds, health_interval_seconds=1.0
    )


def part(msn: int, index: int, *, data: bytes = b"", generation: int = 0) -> PartEntry:
    return PartEntry(
        msn=msn,
        part=index,
        duration=0.1,
        independent=index == 0,
        pdt=1000.0 + msn * 0.5 + index * 0.1,
        data=data or b"p%d.%d" % (msn, index),
        discontinuity=False,
        generation=generation,
    )


def xadd(key: str, entry: Entry) -> Command:
    command: Command = ["XADD", key, "MAXLEN", "~", MAXLEN, "*"]
    for name, value in schema.encode_entry(entry).items():
        command += (name, value)
    return command


def meta_of(state: Sequence[Command]) -> StreamMeta:
    [hset] = state
    assert hset[:2] == ["HSET", "cascade:stream:s:meta"]
    fields = hset[2:]
    return StreamMeta.decode(
        {str(k): str(v) for k, v in zip(fields[::2], fields[1::2], strict=True)}
    )


def test_the_window_in_entries() -> None:
    assert window_entries(stream_of(LADDER)) == MAXLEN
    assert health_ttl_seconds(1.0) == 10
    assert health_ttl_seconds(0.2) == 5  # never below 5 s


def test_the_steady_state_is_one_xadd_with_replies_off() -> None:
    pub = publisher()
    pub.entries("low", [InitEntry(LOW_INIT, 0)])
    pub.entries("low", [part(0, 0)])
    got = pub.entries("low", [part(0, 1)])
    assert got == Publish(commands=[(xadd(PARTS, part(0, 1)), ("low", 0))], state=[], replies=False)
    # The append trims the stream to about the window; the entry's fields end it.
    assert got.commands[0][0][:6] == ["XADD", PARTS, "MAXLEN", "~", MAXLEN, "*"]
    assert got.commands[0][0][-2:] == ["data", b"p0.1"]


def test_an_init_is_set_and_appended_with_replies_on() -> None:
    got = publisher().entries("low", [InitEntry(LOW_INIT, 2)])
    assert got == Publish(
        commands=[
            (["SET", "cascade:stream:s:r:low:init", LOW_INIT], None),
            (xadd(PARTS, InitEntry(LOW_INIT, 2)), None),
        ],
        state=[],
        replies=True,
    )


def test_a_segment_is_archived_when_the_next_one_starts() -> None:
    pub = publisher()
    pub.entries("low", [InitEntry(LOW_INIT, 0)])
    for i in range(5):
        assert len(pub.entries("low", [part(3, i)]).commands) == 1  # not yet complete
    got = pub.entries("low", [part(4, 0)])
    key = "cascade:stream:s:r:low:seg:3"
    whole = b"p3.0p3.1p3.2p3.3p3.4"
    assert got.commands == [
        (["SET", key, whole, "EX", ARCHIVE_TTL], ("low", 3)),  # before the new part
        (xadd(PARTS, part(4, 0)), ("low", 4)),
    ]
    assert got.replies  # two commands: not the steady state
    # Renditions are archived apart: high's first part archives nothing of low's.
    pub.entries("high", [InitEntry(HIGH_INIT, 0)])
    assert len(pub.entries("high", [part(4, 0)]).commands) == 1


def test_no_archive_when_archive_seconds_is_zero() -> None:
    pub = publisher(archive_seconds=0)
    for i in range(5):
        pub.entries("low", [part(0, i)])
    assert pub.entries("low", [part(1, 0)]).commands == [(xadd(PARTS, part(1, 0)), ("low", 1))]


def test_the_meta_waits_for_every_rendition_s_init_then_comes_once_per_generation() -> None:
    pub = publisher()
    assert pub.entries("low", [InitEntry(LOW_INIT, 0)]).state == []
    assert pub.entries("low", [part(0, 0)]).state == []  # high's init is not known yet
    got = pub.entries("high", [InitEntry(HIGH_INIT, 0)])
    assert meta_of(got.state) == StreamMeta(
        renditions=(
            # Configured bitrate plus audio (64 kbps), and 10 % for the container.
            RenditionInfo("low", 235400, "avc1.64001f", 320, 180, 20.0),
            RenditionInfo("high", 510400, "avc1.64001f", 640, 360, 20.0),
        ),
        part_target=0.1,
        segment_target=0.5,
        window_segments=24,
        state=StreamState.LIVE,
        generation=0,
        access="public",
    )
    assert pub.meta == meta_of(got.state)
    assert pub.entries("high", [part(0, 0)]).state == []  # once per generation
    assert pub.entries("low", [part(0, 1)]).replies is False
    # A new run (generation 1): the meta again, with the new generation.
    got = pub.entries("low", [InitEntry(LOW_INIT, 1)])
    assert meta_of(got.state).generation == 1


def test_passthrough_meta_waits_for_a_whole_segment_s_peak_bandwidth() -> None:
    pub = publisher(PASSTHROUGH)
    key = "cascade:stream:s:r:source:parts"
    assert pub.entries("source", [InitEntry(LOW_INIT, 0)]).state == []
    for i in range(5):  # segment 0: five parts of 1250 bytes, 0.5 s in all
        got = pub.entries("source", [part(0, i, data=bytes(1250))])
        assert got.state == []
    got = pub.entries("source", [part(1, 0, data=bytes(10))])
    [info] = meta_of(got.state).renditions
    assert info.bandwidth == 100_000  # 6250 bytes x 8 / 0.5 s, measured: none configured
    assert got.commands[-1][0][1] == key


def test_health_with_the_re_asserts() -> None:
    pub = publisher()
    health = Health(state=StreamState.LIVE, restarts=2, reason="Ingesting", updated_at=5.0)
    before = pub.health(health)
    assert before == [
        ["HSET", "cascade:stream:s:health", *[x for kv in health.encode().items() for x in kv]],
        ["EXPIRE", "cascade:stream:s:health", 10],
        ["SADD", "cascade:streams", "s"],
    ]
    pub.entries("low", [InitEntry(LOW_INIT, 0)])
    pub.entries("high", [InitEntry(HIGH_INIT, 0)])
    after = pub.health(health)
    assert after[:3] == before
    assert meta_of([after[3]]) == pub.meta
    assert after[4:] == [  # NX: never over an init a newer run wrote
        ["SET", "cascade:stream:s:r:low:init", LOW_INIT, "NX"],
        ["SET", "cascade:stream:s:r:high:init", HIGH_INIT, "NX"],
    ]


def test_the_end_is_appended_to_every_rendition() -> None:
    assert publisher().end(4) == [
        (xadd(PARTS, EndEntry(4)), None),
        (xadd("cascade:stream:s:r:high:parts", EndEntry(4)), None),
    ]


def test_a_restart_publishes_a_new_init_then_a_discontinuity_on_the_next_segment() -> None:
    """Packager and publisher together, over two runs of FFmpeg."""
    pub = publisher(archive_seconds=0)
    sent: list[Publish] = []
    first_msn = 0
    for generation in (0, 1):
        timeline = Timeline()
        packagers = {
            r: RenditionPackager(0.5, timeline, first_msn=first_msn, generation=generation)
            for r in ("low", "high")
        }
        for name, init in (("low", LOW_INIT), ("high", HIGH_INIT)):
            sent.append(pub.entries(name, packagers[name].feed(init, 10.0 * generation)))
        for frag in fragments(7):  # one segment and two parts: the run ends mid-segment
            for name, p in packagers.items():
                if entries := p.feed(frag, 10.0 * generation + 1):
                    sent.append(pub.entries(name, entries))
        first_msn = max(p.next_msn for p in packagers.values())
    low = [
        schema.decode_entry(_fields(c))
        for batch in sent
        for c, _ in batch.commands
        if c[0] == "XADD" and c[1] == PARTS
    ]
    parts = [e for e in low if isinstance(e, PartEntry)]
    assert [(e.generation, e.msn, e.part, e.discontinuity) for e in parts if e.part == 0] == [
        (0, 0, 0, False),
        (0, 1, 0, False),
        (1, 2, 0, True),  # after the new init; msn 1 was open: never reused
        (1, 3, 0, False),
    ]
    assert [type(e).__name__ for e in low][:1] == ["InitEntry"]
    assert [e.generation for e in low if isinstance(e, InitEntry)] == [0, 1]
    assert [meta_of(b.state).generation for b in sent if b.state] == [0, 1]
    steady = [b for b in sent if len(b.commands) == 1 and not b.state]
    assert steady and all(not b.replies for b in steady)


def _fields(command: Command) -> dict[bytes, bytes]:
    rest = command[6:]
    return {
        str(k).encode(): v if isinstance(v, bytes) else str(v).encode()
        for k, v in zip(rest[::2], rest[1::2], strict=True)
    }


# ---- where a restarted process goes on from --------------------------------------------


@pytest.mark.parametrize(
    ("meta_generation", "tails", "expected"),
    [
        pytest.param(None, [[], []], Resume(0, 0), id="nothing-there"),
        pytest.param(None, [], Resume(0, 0), id="no-renditions-read"),
        pytest.param(3, [[], []], Resume(4, 0), id="meta-only"),
        pytest.param(2, [[part(41, 3, generation=2)]], Resume(3, 42), id="killed-mid-segment"),
        pytest.param(
            2, [[EndEntry(2), part(41, 4, generation=2)]], Resume(3, 42), id="stopped-cleanly"
        ),
        pytest.param(
            # The last run wrote its init and parts, not yet its meta (passthrough measures
            # a segment first): its generation is taken, not the meta's.
            4,
            [[part(10, 2, generation=5), InitEntry(b"i", 5)]],
            Resume(6, 11),
            id="parts-before-their-meta",
        ),
        pytest.param(
            1,
            [[InitEntry(b"i", 3), InitEntry(b"i", 2), part(7, 0, generation=1)]],
            Resume(4, 8),
            id="runs-that-never-produced-a-part",
        ),
        pytest.param(
            0,
            [[part(9, 1)], [part(10, 0)]],  # one rendition a segment ahead of the other
            Resume(1, 11),
            id="newest-of-any-rendition",
        ),
        pytest.param(None, [[EndEntry(0)]], Resume(1, 0), id="an-end-alone"),
    ],
)
def test_resume_point(
    meta_generation: int | None, tails: list[list[Entry]], expected: Resume
) -> None:
    assert resume_point(meta_generation, tails) == expected
