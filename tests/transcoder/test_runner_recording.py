"""A real transcoder recording to a real S3 server (Versity Gateway) through a 30 s outage
of the store: live parts keep their pace, and once the store is back the recording has
every segment, byte for byte what Redis archived.

Figures (the store's outage, the backlog, part intervals before and during it) are printed
for the notes.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis

from cascade.contract import recording, schema
from cascade.contract.recording import SegmentName
from cascade.contract.settings import TranscoderSettings
from cascade.transcoder.argv import Inputs
from cascade.transcoder.s3client import S3Client

from ..conftest import RedisServer, ffmpeg_or_fail, free_server_port
from ..objectstore import ObjectStoreServer
from .test_runner_redis import RecordingRunner, stream_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

SPEC = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: rec}
spec:
  source: {type: test, test: {width: 320, height: 180, frameRate: 20}}
  transcode:
    frameRate: 20
    renditions: [{name: low, width: 320, height: 180, videoBitrateKbps: 150}]
  delivery: {segmentDurationMs: 500, partDurationMs: 100}
  recording: {enabled: true}
"""
STORE_OUTAGE_SECONDS = 30.0


def stored_segments(client: S3Client, prefix: str) -> list[tuple[str, SegmentName]]:
    out: list[tuple[str, SegmentName]] = []
    token = None
    seg_prefix = recording.segments_prefix(prefix, "rec", "low")
    while True:
        page = client.list_page(seg_prefix, token=token)
        for o in page.objects:
            name = SegmentName.parse(o.key.removeprefix(seg_prefix))
            assert name is not None, o.key
            out.append((o.key, name))
        if page.next_token is None:
            return out
        token = page.next_token


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


async def test_store_away_30s_live_unaffected_and_no_hole(
    redis_server: RedisServer, redis_url: str, tmp_path: Path, store_prefix: str
) -> None:
    store = ObjectStoreServer(tmp_path, free_server_port())
    store.start()
    env = store.env(store_prefix)
    settings = TranscoderSettings(
        redis_url=redis_url,
        ffmpeg=ffmpeg_or_fail(),
        s3_endpoint=env["CASCADE_S3_ENDPOINT"],
        s3_bucket=env["CASCADE_S3_BUCKET"],
        s3_prefix=store_prefix,
        s3_access_key_id=env["AWS_ACCESS_KEY_ID"],
        s3_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    redis = Redis.from_url(redis_url)
    runner = RecordingRunner(stream_of(SPEC), redis, settings, inputs=Inputs("127.0.0.1"))
    assert runner.uploader is not None
    client = store.client()
    task = asyncio.create_task(runner.run())
    try:
        await wait_for(
            "4 segments stored", lambda: len(stored_segments(client, store_prefix)) >= 4, 30
        )
        store.stop()
        stopped_at = time.monotonic()
        await asyncio.sleep(STORE_OUTAGE_SECONDS)
        backlog = runner.uploader.stats()
        store.start()
        back_at = time.monotonic()
        await wait_for(
            "the backlog uploaded",
            lambda: runner.uploader is not None and runner.uploader.stats().backlog_objects == 0,
            20,
        )
        drained = time.monotonic() - back_at
        await asyncio.sleep(1.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
    try:
        stored = stored_segments(client, store_prefix)
        # Live: parts kept their pace while the store was away (the interval between
        # parts, as produced, is the same before and during the outage).
        times = runner.produced_at
        gaps_before = [b - a for a, b in itertools.pairwise(times) if b < stopped_at]
        gaps_during = [
            b - a for a, b in itertools.pairwise(times) if stopped_at < a and b < back_at
        ]
        assert len(gaps_during) > STORE_OUTAGE_SECONDS * 10 * 0.9
        assert p99(gaps_during) < 0.2, "a part was late while the store was away"
        parts_in_redis = _redis_parts(redis_server.port)
        assert parts_in_redis[-len(runner.produced) :] == runner.produced[-len(parts_in_redis) :]
        assert runner.writer.outbox.lost_segments == 0
        # The recording: every segment produced, once, in order, no hole.
        produced_msns = sorted({msn for msn, _ in runner.produced})
        msns = [name.msn for _, name in stored]
        assert msns == produced_msns, "a hole (or a duplicate) in the recording"
        assert runner.uploader.stats().lost_segments == 0
        # Byte for byte what Redis archived for the same segment, and its duration.
        r = sync_redis.Redis(port=redis_server.port)
        checked = 0
        for key, name in stored[:-1]:
            archived = r.get(schema.archive_segment_key("rec", "low", name.msn))
            if archived is not None:
                assert client.get(key) == archived
                checked += 1
            assert abs(name.duration - 0.5) < 0.06
        r.close()
        assert checked > 0
        # The segments' program date-times follow each other (no gap in media time).
        for (_, a), (_, b) in itertools.pairwise(stored):
            assert abs(b.start - a.end) < 0.06, (a, b)
        init = client.get(
            recording.init_key(store_prefix, "rec", "low", stored[0][1].init + ".mp4")
        )
        assert init is not None and b"moov" in init
    finally:
        store.stop()
    print(
        f"\nstore away {STORE_OUTAGE_SECONDS:.0f} s: {backlog.backlog_objects} segments "
        f"({backlog.backlog_bytes} bytes) held, {backlog.failures} failed attempts; uploaded "
        f"{drained:.2f} s after it was back; part interval p99 {p99(gaps_before) * 1000:.0f} ms "
        f"before, {p99(gaps_during) * 1000:.0f} ms during; {len(stored)} segments stored, none lost"
    )


def _redis_parts(port: int) -> list[tuple[int, int]]:
    client = sync_redis.Redis(port=port)
    try:
        raw: Any = client.xrange(schema.parts_key("rec", "low"))
    finally:
        client.close()
    entries = [schema.decode_entry(fields) for _, fields in raw]
    return [(e.msn, e.part) for e in entries if isinstance(e, schema.PartEntry)]
