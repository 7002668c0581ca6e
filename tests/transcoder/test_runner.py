"""The runner's own decisions, without FFmpeg: bad media or a bug, why a run ended, where a
new process goes on from (with a real Redis for the read)."""

from __future__ import annotations

import logging
from typing import Any, cast

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.manifest import parse_manifest
from cascade.contract.schema import EndEntry, Entry, InitEntry, PartEntry
from cascade.contract.settings import TranscoderSettings
from cascade.transcoder.packager import MediaError, RenditionPackager, Timeline
from cascade.transcoder.publish import Resume
from cascade.transcoder.runner import RunOutcome, StreamRunner, read_resume, run_outcome

from ..conftest import free_server_port
from .fmp4 import init_segment

SPEC = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: r}
spec:
  source: {type: test}
  transcode: {renditions: [{name: low}, {name: high}]}
"""


class FakeProc:
    returncode: int | None = None
    kills = 0

    def kill(self) -> None:
        self.kills += 1


class Raising(RenditionPackager):
    def __init__(self, error: Exception) -> None:
        super().__init__(segment_target=0.5, timeline=Timeline())
        self.error = error
        self.fed = 0

    def feed(self, data: bytes, now: float) -> list[Entry]:
        self.fed += 1
        raise self.error


def runner(url: str = "redis://127.0.0.1:1/0") -> tuple[StreamRunner, FakeProc]:
    stream = parse_manifest(SPEC, source="test")
    r = StreamRunner(stream, cast(Redis, None), TranscoderSettings(redis_url=url))
    proc = FakeProc()
    r._proc = cast(Any, proc)
    return r, proc


# ---- bad media or a bug -----------------------------------------------------------------


def test_bad_media_ends_the_run_as_an_ffmpeg_failure(caplog: pytest.LogCaptureFixture) -> None:
    r, proc = runner()
    packager = Raising(MediaError("moof at byte 8 has no mfhd box"))
    with caplog.at_level(logging.ERROR, "cascade.transcoder"):
        r._on_media("low", packager, b"x")
        r._on_media("low", packager, b"y")  # the run is ending: not fed again
    assert proc.kills == 1 and packager.fed == 1
    assert r._internal_error is None
    assert list(r._stderr_tail) == ["packager: moof at byte 8 has no mfhd box"]
    [record] = caplog.records
    assert record.exc_info is None  # bad media, not a bug: no traceback
    outcome = run_outcome(
        internal_error=r._internal_error,
        silent_for=None,
        returncode=-9,
        tail=r._stderr_tail[-1],
        was_live=True,
    )
    assert outcome == RunOutcome(
        "FFmpegExited",
        "ffmpeg exited with signal 9: packager: moof at byte 8 has no mfhd box",
        True,
    )


@pytest.mark.parametrize("error", [ValueError("oops"), KeyError("low"), AssertionError()])
def test_any_other_exception_is_a_bug_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    # A ValueError too: before MediaError, every ValueError counted as a broken fragment.
    r, proc = runner()
    packager = Raising(error)
    with caplog.at_level(logging.ERROR, "cascade.transcoder"):
        r._on_media("high", packager, b"x")
        r._on_media("high", packager, b"y")
    assert proc.kills == 1 and packager.fed == 1
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[1] is error
    assert "internal error" in record.getMessage()
    assert r._internal_error == f"{type(error).__name__} in the packager: {error}"
    assert list(r._stderr_tail) == []  # nothing blamed on FFmpeg
    outcome = run_outcome(
        internal_error=r._internal_error, silent_for=None, returncode=-9, tail="", was_live=False
    )
    assert outcome.reason == "InternalError" and outcome.message == r._internal_error


def test_a_bug_while_publishing_is_one_too(caplog: pytest.LogCaptureFixture) -> None:
    r, proc = runner()

    def broken(rendition: str, packager: RenditionPackager, entries: list[Entry]) -> None:
        raise TypeError("bad command")

    r._publish = broken  # type: ignore[method-assign]
    packager = RenditionPackager(segment_target=0.5, timeline=Timeline())
    with caplog.at_level(logging.ERROR, "cascade.transcoder"):
        r._on_media("low", packager, init_segment())
    assert proc.kills == 1
    assert r._internal_error == "TypeError in the packager: bad command"


def test_the_other_renditions_are_still_fed_until_ffmpeg_is_gone() -> None:
    r, _ = runner()
    r._on_media("low", Raising(MediaError("broken")), b"x")
    healthy = Raising(MediaError("later"))
    r._on_media("high", healthy, b"x")
    assert healthy.fed == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (
            {"internal_error": "KeyError in the packager: 'x'", "silent_for": 10.0},
            RunOutcome("InternalError", "KeyError in the packager: 'x'", True),
        ),
        (
            {"silent_for": 10.0, "returncode": -15},
            RunOutcome("InputSilent", "no media from the input for 10 s", True),
        ),
        ({"returncode": 0}, RunOutcome("InputEnded", "the input ended", True)),
        ({"returncode": 0, "tail": "EOF"}, RunOutcome("InputEnded", "EOF", True)),
        ({"returncode": 1}, RunOutcome("FFmpegExited", "ffmpeg exited with code 1", True)),
        (
            {"returncode": -9, "tail": "Conversion failed!"},
            RunOutcome("FFmpegExited", "ffmpeg exited with signal 9: Conversion failed!", True),
        ),
    ],
)
def test_run_outcome(kwargs: dict[str, Any], expected: RunOutcome) -> None:
    args: dict[str, Any] = {
        "internal_error": None,
        "silent_for": None,
        "returncode": None,
        "tail": "",
        "was_live": True,
    }
    assert run_outcome(**(args | kwargs)) == expected


# ---- where a new process goes on from ---------------------------------------------------


def _xadd(client: sync_redis.Redis, rendition: str, entry: Entry) -> None:
    client.xadd(schema.parts_key("r", rendition), schema.encode_entry(entry))  # type: ignore[arg-type]


def _part(msn: int, index: int, generation: int) -> PartEntry:
    return PartEntry(msn, index, 0.1, index == 0, 1000.0, b"data", False, generation)


@pytest.mark.anyio
async def test_read_resume_from_a_real_redis(redis_url: str) -> None:
    client = sync_redis.Redis.from_url(redis_url)
    redis = Redis.from_url(redis_url)
    try:
        assert await read_resume(redis, "r", ["low", "high"]) == Resume(0, 0)
        client.hset(schema.meta_key("r"), "generation", "2")
        assert await read_resume(redis, "r", ["low", "high"]) == Resume(3, 0)
        for msn in range(40, 42):
            for i in range(5):
                _xadd(client, "low", _part(msn, i, 2))
        _xadd(client, "high", _part(41, 3, 2))
        # Then 20 runs whose FFmpeg never produced a part (more than a page), and an end.
        for gen in range(3, 23):
            _xadd(client, "low", InitEntry(b"init", gen))
        _xadd(client, "low", EndEntry(22))
        client.xadd(schema.parts_key("r", "low"), {"k": "garbage"})  # skipped, not fatal
        assert await read_resume(redis, "r", ["low", "high"]) == Resume(23, 42)
        # A rendition a segment ahead wins.
        _xadd(client, "high", _part(42, 0, 2))
        assert await read_resume(redis, "r", ["low", "high"]) == Resume(23, 43)
    finally:
        client.close()
        await redis.aclose()


@pytest.mark.anyio
async def test_redis_unreachable_at_start_numbers_from_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://127.0.0.1:{free_server_port()}/0"  # nothing listens there
    r, _ = runner(url)
    r.redis = Redis.from_url(url)
    try:
        with caplog.at_level(logging.WARNING, "cascade.transcoder"):
            await r._resume()
    finally:
        await r.redis.aclose()
    assert (r.generation, r.next_msn) == (0, 0)
    assert any("numbering from generation 0" in m for m in caplog.messages)
