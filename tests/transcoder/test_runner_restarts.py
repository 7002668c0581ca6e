"""A real transcoder (FFmpeg's test source, the packager, the raw writer, a real Redis)
started again: as a new process it goes on from what Redis holds; after a bug or bad media
in one run, the next run follows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis as sync_redis
from redis.asyncio import Redis

import cascade.transcoder.runner as runner_module
from cascade.contract import schema
from cascade.contract.schema import EndEntry, Entry, Health, InitEntry, PartEntry, StreamMeta
from cascade.contract.settings import TranscoderSettings
from cascade.edge.window import PlaylistContext, RenditionWindow, build_media_playlist
from cascade.hls.playlist import render_media_playlist
from cascade.hls.rules import check_media_playlist
from cascade.transcoder.argv import Inputs
from cascade.transcoder.packager import MediaError, RenditionPackager
from cascade.transcoder.runner import RunOutcome, StreamRunner

from ..conftest import REPO, RedisServer, ffmpeg_or_fail
from .test_runner_redis import SPEC, stream_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

KEY = schema.parts_key("outage", "low")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def entries(port: int) -> list[Entry]:
    client = sync_redis.Redis(port=port)
    try:
        raw: Any = client.xrange(KEY)
    finally:
        client.close()
    return [schema.decode_entry(fields) for _, fields in raw]


def parts(port: int, generation: int | None = None) -> list[PartEntry]:
    return [
        e
        for e in entries(port)
        if isinstance(e, PartEntry) and (generation is None or e.generation == generation)
    ]


def hash_of(port: int, key: str) -> dict[bytes, bytes]:
    client = sync_redis.Redis(port=port)
    try:
        raw: Any = client.hgetall(key)
        return dict(raw)
    finally:
        client.close()


def start_process(server: RedisServer, tmp_path: Path) -> subprocess.Popen[bytes]:
    """The transcoder program, as a pod runs it."""
    spec = tmp_path / "outage.yaml"
    spec.write_text(SPEC)
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "CASCADE_FFMPEG": ffmpeg_or_fail(),
        "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("core", "transcoder")),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cascade.transcoder.main",
            "--file",
            str(spec),
            "--bind-host",
            "127.0.0.1",
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("how", ["stopped", "killed"])
async def test_a_new_process_goes_on_with_the_next_segment_of_a_new_generation(
    server: RedisServer, tmp_path: Path, how: str
) -> None:
    # The first process: a pod stopped (SIGTERM: it ends the stream) or deleted
    # mid-stream (SIGKILL: no end, its last segment cut short).
    first = start_process(server, tmp_path)
    try:
        await wait_for("12 parts in Redis", lambda: len(parts(server.port)) >= 12, 30)
        first.send_signal(signal.SIGTERM if how == "stopped" else signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    before = entries(server.port)
    old = [e for e in before if isinstance(e, PartEntry)]
    assert isinstance(before[-1], EndEntry if how == "stopped" else PartEntry)
    assert {e.generation for e in old} == {0}
    meta_before = StreamMeta.decode(hash_of(server.port, schema.meta_key("outage")))
    assert meta_before.generation == 0

    # The second process (in this one, to read its state).
    settings = TranscoderSettings(redis_url=server.url, ffmpeg=ffmpeg_or_fail())
    redis = Redis.from_url(server.url)
    second = StreamRunner(stream_of(SPEC), redis, settings, inputs=Inputs("127.0.0.1"))
    task = asyncio.create_task(second.run())
    try:
        await wait_for("new parts", lambda: len(parts(server.port, 1)) >= 6, 30)
        assert (second.generation, second.status.restarts) == (1, 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()

    after = entries(server.port)[len(before) :]
    new = [e for e in after if isinstance(e, PartEntry)]
    assert after[0] == InitEntry(after[0].data, generation=1)  # type: ignore[union-attr]
    assert (new[0].msn, new[0].part, new[0].generation) == (old[-1].msn + 1, 0, 1)
    assert new[0].discontinuity and not any(e.discontinuity for e in new[1:])
    assert [(e.msn, e.part) for e in new] == sorted((e.msn, e.part) for e in new)
    meta = StreamMeta.decode(hash_of(server.port, schema.meta_key("outage")))
    assert meta.generation == 1

    # An edge that held the first process's window takes the new segments, after a
    # discontinuity and with the new init.
    window = RenditionWindow("low", max_segments=meta.window_segments)
    for entry in before:
        window.apply(entry)
    held = window.position
    for entry in after:
        window.apply(entry)
    assert held is not None and window.position is not None
    assert window.position.msn > held.msn
    assert 1 in window.inits
    text = render_media_playlist(
        build_media_playlist(window, PlaylistContext(meta.part_target, meta.segment_target))
    )
    assert check_media_playlist(text) == []
    lines = text.splitlines()
    first_new = lines.index(f"{new[0].msn}.m4s")
    tags = lines[lines.index("#EXT-X-DISCONTINUITY") : first_new]
    assert '#EXT-X-MAP:URI="init-1.mp4"' in tags
    assert all(f"{e.msn}.m4s" not in tags for e in old)  # the tag sits on the new segment


class Flaky(RenditionPackager):
    """The real packager, raising once, on its 15th read, in the first run."""

    error: ClassVar[Exception] = RuntimeError("boom")
    feeds: ClassVar[int] = 0

    def feed(self, data: bytes, now: float) -> list[Entry]:
        if self.generation == 0:
            Flaky.feeds += 1
            if Flaky.feeds == 15:
                raise Flaky.error
        return super().feed(data, now)


class OutcomeRunner(StreamRunner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes: list[RunOutcome] = []
        self.health_at_restart: list[Health] = []

    async def _run_once(self) -> RunOutcome:
        outcome = await super()._run_once()
        self.outcomes.append(outcome)
        return outcome

    async def _write_health(self) -> None:
        if self.outcomes and len(self.health_at_restart) < len(self.outcomes):
            self.health_at_restart.append(self._health())  # what the restart reports
        await super()._write_health()


@pytest.mark.parametrize(
    ("error", "reason", "message"),
    [
        pytest.param(
            RuntimeError("boom"),
            "InternalError",
            "RuntimeError in the packager: boom",
            id="a-bug",
        ),
        pytest.param(
            # Was caught as "bad media" with every other ValueError.
            ValueError("a bug's ValueError"),
            "InternalError",
            "ValueError in the packager: a bug's ValueError",
            id="a-bug-raising-valueerror",
        ),
        pytest.param(
            MediaError("moof at byte 8 has no mfhd box"),
            "FFmpegExited",
            "ffmpeg exited with signal 9: packager: moof at byte 8 has no mfhd box",
            id="bad-media",
        ),
    ],
)
async def test_a_run_that_failed_is_reported_then_started_again(
    server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    error: Exception,
    reason: str,
    message: str,
) -> None:
    monkeypatch.setattr(runner_module, "RenditionPackager", Flaky)
    monkeypatch.setattr(Flaky, "error", error)
    monkeypatch.setattr(Flaky, "feeds", 0)
    settings = TranscoderSettings(redis_url=server.url, ffmpeg=ffmpeg_or_fail())
    redis = Redis.from_url(server.url)
    runner = OutcomeRunner(stream_of(SPEC), redis, settings, inputs=Inputs("127.0.0.1"))
    task = asyncio.create_task(runner.run())
    try:
        with caplog.at_level(logging.ERROR, "cascade.transcoder"):
            await wait_for("parts of the next run", lambda: len(parts(server.port, 1)) >= 3, 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
    assert runner.outcomes[0] == RunOutcome(reason, message, was_live=True)
    [reported] = runner.health_at_restart[:1]
    assert (reported.reason, reported.last_error, reported.restarts) == (reason, message, 1)
    health = Health.decode(hash_of(server.port, schema.health_key("outage")))
    assert (health.restarts, health.last_error) == (1, message)
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    if reason == "InternalError":
        assert record.exc_info is not None and record.exc_info[1] is error
    else:
        assert record.exc_info is None
    # The next run follows the last one: a new init, the next segment, a discontinuity.
    old, new = parts(server.port, 0), parts(server.port, 1)
    assert (new[0].msn, new[0].part, new[0].discontinuity) == (old[-1].msn + 1, 0, True)
