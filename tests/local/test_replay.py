"""Record, restart, replay: a real transcoder records to a real S3 server, is stopped and
started again (a new generation), and the edge serves one recording with a discontinuity
that hls.js in Chromium plays to its end."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from cascade.contract.manifest import parse_manifest
from cascade.contract.settings import EdgeSettings, TranscoderSettings
from cascade.edge.app import create_server
from cascade.transcoder.argv import Inputs
from cascade.transcoder.runner import StreamRunner

from ..conftest import ffmpeg_or_fail, free_port
from ..objectstore import ObjectStoreServer

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

REPO = Path(__file__).resolve().parents[2]
SPEC = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: replay}
spec:
  source: {type: test, test: {width: 320, height: 180, frameRate: 20}}
  transcode:
    frameRate: 20
    renditions: [{name: low, width: 320, height: 180, videoBitrateKbps: 150}]
  delivery: {segmentDurationMs: 500, partDurationMs: 100}
  recording: {enabled: true}
"""


async def record_for(settings: TranscoderSettings, redis_url: str, seconds: float) -> int:
    """One transcoder process's life: runs, then stops cleanly. Its generation."""
    redis = Redis.from_url(redis_url)
    runner = StreamRunner(
        parse_manifest(SPEC, source="test"), redis, settings, inputs=Inputs("127.0.0.1")
    )
    task = asyncio.create_task(runner.run())
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
    assert runner.uploader is not None and runner.uploader.stats().backlog_objects == 0
    return runner.generation


@pytest.fixture
async def recorded(
    object_store: ObjectStoreServer, store_prefix: str, redis_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    env = object_store.env(store_prefix)
    store = {
        "s3_endpoint": env["CASCADE_S3_ENDPOINT"],
        "s3_bucket": env["CASCADE_S3_BUCKET"],
        "s3_prefix": store_prefix,
        "s3_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "s3_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }
    settings = TranscoderSettings.model_validate(
        {"redis_url": redis_url, "ffmpeg": ffmpeg_or_fail(), **store}
    )
    first = await record_for(settings, redis_url, 5)
    second = await record_for(settings, redis_url, 4)  # goes on from Redis: a new generation
    assert second > first
    port = free_port()
    server = create_server(
        EdgeSettings.model_validate({"redis_url": redis_url, "port": port, **store})
    )
    await server.start("127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield client
    finally:
        await server.stop(grace=1)


async def test_a_restart_continues_the_recording_and_hlsjs_plays_it_to_the_end(
    recorded: httpx.AsyncClient,
) -> None:
    listing = (await recorded.get("/vod/replay")).json()
    (rec,) = listing["recordings"]
    assert rec["discontinuities"] == 1, rec
    assert rec["duration"] > 5, rec
    playlist = (await recorded.get(rec["playlists"]["low"])).text
    assert playlist.count("#EXT-X-DISCONTINUITY\n") == 1
    assert playlist.endswith("#EXT-X-ENDLIST\n") and "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
    node = shutil.which("node")
    assert node, "node is needed for the browser test"
    proc = await asyncio.to_thread(
        subprocess.run,
        [
            node,
            str(REPO / "tests/browser/vod.mjs"),
            "--edge",
            str(recorded.base_url).rstrip("/"),
            "--playlist",
            rec["playlists"]["low"],
            "--rate",
            "2",
            "--timeout",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\nhls.js on the VOD playlist: {result}")
    assert result["ended"], result
    assert result["fatal_errors"] == 0, result
    assert result["discontinuities_crossed"] == 1, result
    assert abs(result["duration"] - rec["duration"]) < 1.0, (result, rec)
