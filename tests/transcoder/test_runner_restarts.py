"""A real transcoder (FFmpeg's test source, the packager, the raw writer, a real Redis)
started again: after a bug or bad media in one run, the next run follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import redis as sync_redis
from redis.asyncio import Redis

import cascade.transcoder.runner as runner_module
from cascade.core import schema
from cascade.core.schema import Entry, Health, PartEntry
from cascade.core.settings import TranscoderSettings
from cascade.transcoder.argv import Inputs
from cascade.transcoder.packager import MediaError, RenditionPackager
from cascade.transcoder.runner import RunOutcome, StreamRunner

from ..conftest import RedisServer, ffmpeg_or_fail
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
