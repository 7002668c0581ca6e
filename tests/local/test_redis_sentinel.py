"""Redis with Sentinel as a deployment: every program's client follows a failover, and a
transcoder publishing to an edge serving keep going when the primary is killed.

The failover gap (from the SIGKILL of the primary until a part produced after it is
servable by the edge) is printed for the notes; bench/redis_failover.py measures it over
several runs.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cascade.contract import schema
from cascade.contract.schema import EndEntry, PartEntry
from cascade.edge.redisclient import redis_client as edge_client
from cascade.hls.rules import check_media_playlist
from cascade.operator.redisio import redis_client as operator_client
from cascade.transcoder.redisclient import redis_client as transcoder_client
from cascade.transcoder.resp import RespWriter

from ..conftest import ffmpeg_or_fail, free_port, wait_http
from ..redis_sentinel import SentinelCluster

pytestmark = pytest.mark.slow

SPEC = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: ha}
spec:
  source: {type: test, test: {width: 320, height: 180, frameRate: 20}}
  transcode:
    frameRate: 20
    renditions: [{name: low, width: 320, height: 180, videoBitrateKbps: 150}]
  delivery: {segmentDurationMs: 500, partDurationMs: 100}
"""
KEY = schema.parts_key("ha", "low")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def retry(what: str, step: Callable[[], Awaitable[object]], seconds: float) -> object:
    """``step`` until it stops failing for want of a primary (bounded in time)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await step()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {seconds} s: {exc}") from exc
            await asyncio.sleep(0.1)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_every_programs_client_follows_a_failover(cluster: SentinelCluster) -> None:
    url = cluster.url(dead_first=True)
    clients: dict[str, Redis] = {
        "edge": edge_client(url),
        "operator": operator_client(url, socket_timeout=2.0, socket_connect_timeout=2.0),
        "transcoder": transcoder_client(url),
    }
    writer = RespWriter(url)
    try:
        await writer.connect()  # the raw writer resolves through the sentinels too
        first = cluster.primary_port()
        assert writer.address == ("127.0.0.1", first)
        for name, client in clients.items():
            await client.set(f"k:{name}", "before")
        old = cluster.kill_primary()
        took = await asyncio.to_thread(cluster.wait_failover, old)
        new = cluster.primary_port()
        assert new != first
        for name, client in clients.items():
            key = f"k:{name}"

            async def write(c: Redis = client, k: str = key) -> object:
                return await c.set(k, "after")

            await retry(name, write, 20)
            assert await client.get(key) == b"after"
        writer.publish([(["SET", "k:writer", "after"], None)])
        assert await writer.flush(20)
        assert writer.address == ("127.0.0.1", new)
        assert await clients["edge"].get("k:writer") == b"after"
        print(f"\nsentinel failover (primary SIGKILLed): a new primary named after {took:.2f} s")
    finally:
        await writer.close()
        for client in clients.values():
            await client.aclose()  # the sentinels' connections too (no leak warning)


def hinted_part(base: str) -> tuple[int, int] | None:
    try:
        with urllib.request.urlopen(f"{base}/live/ha/low/index.m3u8", timeout=5) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith("#EXT-X-PRELOAD-HINT:"):
            msn, part, _ = line.split('URI="')[1].split(".", 2)
            return int(msn), int(part)
    return None


def wait_servable(base: str, msn: int, part: int, seconds: float) -> float:
    """Ask for a part that does not exist yet (the edge holds the request until it does, or
    answers 503 after three targets: ask again); returns when it was served."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/live/ha/low/{msn}.{part}.m4s", timeout=5) as r:
                if r.status == 200 and r.read()[4:8] == b"moof":
                    return time.monotonic()
        except (urllib.error.URLError, OSError):
            time.sleep(0.02)
    raise AssertionError(f"part {msn}.{part} not servable after {seconds} s")


def stream_entries(port: int) -> list[Any]:
    client = sync_redis.Redis(port=port)
    try:
        raw: Any = client.xrange(KEY)
    finally:
        client.close()
    return [schema.decode_entry(fields) for _, fields in raw]


def test_a_transcoder_and_an_edge_ride_out_a_primary_killed(
    cluster: SentinelCluster, tmp_path: Path
) -> None:
    ffmpeg_or_fail()
    url = cluster.url(dead_first=True)
    spec = tmp_path / "ha.yaml"
    spec.write_text(SPEC)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "REDIS_URL": url, "CASCADE_LOG_LEVEL": "WARNING"}
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("edge", "transcoder")}
    edge = subprocess.Popen(
        [sys.executable, "-m", "cascade.edge.main"],
        env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
        stdout=logs["edge"],
        stderr=subprocess.STDOUT,
    )
    transcoder = subprocess.Popen(
        [sys.executable, "-m", "cascade.transcoder.main", "--file", str(spec),
         "--bind-host", "127.0.0.1"],
        env=env,
        stdout=logs["transcoder"],
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its FFmpeg is stopped by it, on SIGTERM
    )  # fmt: skip
    for f in logs.values():
        f.close()
    try:
        wait_http(f"{base}/live/ha/low/index.m3u8", timeout=60)
        time.sleep(1.0)
        before = hinted_part(base)
        assert before is not None
        with ThreadPoolExecutor(1) as pool:
            old = cluster.kill_primary()
            killed_at = time.monotonic()
            promoted = pool.submit(cluster.wait_failover, old)  # seconds from the kill
            # The first part that did not exist at the kill, served by the edge.
            served_at = wait_servable(base, *before, seconds=30)
            gap = served_at - killed_at
            failover = promoted.result(30)
        time.sleep(2.0)  # and it keeps going
        now = hinted_part(base)
        assert now is not None and now > before
        with urllib.request.urlopen(f"{base}/live/ha/low/index.m3u8", timeout=5) as r:
            playlist = r.read().decode()
        assert check_media_playlist(playlist) == [], playlist
    finally:
        transcoder.send_signal(signal.SIGTERM)  # ends the stream: the last entry is its end
        try:
            transcoder.wait(20)
        finally:
            if transcoder.poll() is None:
                os.killpg(transcoder.pid, signal.SIGKILL)
            edge.terminate()
            edge.wait(20)
    entries = stream_entries(cluster.primary_port())
    parts = [(e.msn, e.part) for e in entries if isinstance(e, PartEntry)]
    assert isinstance(entries[-1], EndEntry), (tmp_path / "transcoder.log").read_text()[-2000:]
    assert len(set(parts)) == len(parts), "no part twice"
    assert parts[0] < before, "the replica had what came before the kill"
    # One run of parts with no hole, across the failover: each the next of the one before.
    for (m0, p0), (m1, p1) in itertools.pairwise(parts):
        assert (m1, p1) == (m0, p0 + 1) or (m1 == m0 + 1 and p1 == 0), ((m0, p0), (m1, p1))
    print(
        f"\nprimary SIGKILLed: the sentinels named the promoted replica {failover:.2f} s after "
        f"(down-after 1 s); the first new part servable by the edge {gap:.2f} s after it; "
        f"{len(parts)} parts in the new primary, none missing, none twice"
    )
