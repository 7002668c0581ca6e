"""Two real edge processes on one real Redis: sessions, multi-view limit, signed URLs, archive.

Any replica answers any request (no sticky sessions): counts, limits and grants must
agree whichever one a request reaches.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from cascade.contract import schema
from cascade.contract.schema import Health, PartEntry, RenditionInfo, StreamMeta, StreamState
from cascade.edge.access import SigningKey, sign_url

from ..conftest import free_port, wait_http

pytestmark = pytest.mark.slow

KEY = SigningKey("k1", b"0123456789abcdefghijklmnopqrstuvwxyz-cascade-test")
PUBLIC = [f"pub{i}" for i in range(7)]
SIGNED = "paid"
TIMEOUT = 3  # VIEWER_TIMEOUT_SECONDS of these edges


def announce(r: redis.Redis, name: str, *, access: str = "public", segments: int = 6) -> None:
    meta = StreamMeta(
        (RenditionInfo("360p", 510_400, "avc1.64001e,mp4a.40.2", 640, 360, 30.0),),
        0.1, 0.5, 4, StreamState.LIVE, 0, access=access,
    )  # fmt: skip
    r.hset(schema.meta_key(name), mapping=meta.encode())  # type: ignore[arg-type]
    r.hset(schema.health_key(name), mapping=Health(StreamState.LIVE).encode())  # type: ignore[arg-type]
    r.set(schema.init_key(name, "360p"), b"init")
    for msn in range(segments):
        for i in range(5):
            entry = PartEntry(
                msn, i, 0.1, i == 0, 1.8e9 + msn * 0.5 + i * 0.1, f"{msn}.{i};".encode()
            )
            r.xadd(schema.parts_key(name, "360p"), schema.encode_entry(entry))  # type: ignore[arg-type]
    r.sadd(schema.STREAMS_SET, name)


@dataclass
class Replicas:
    urls: list[str]
    redis: redis.Redis

    def client(self, i: int) -> httpx.Client:
        return httpx.Client(base_url=self.urls[i], timeout=5)


@pytest.fixture(scope="module")
def replicas(redis_server: object) -> Iterator[Replicas]:
    url = redis_server.url  # type: ignore[attr-defined]
    r = redis.Redis.from_url(url)
    r.flushall()
    for name in PUBLIC:
        announce(r, name)
    announce(r, SIGNED, access="signed")
    procs, urls = [], []
    for _ in range(2):
        port = free_port()
        env = {
            **os.environ, "PORT": str(port), "HOST": "127.0.0.1", "REDIS_URL": url,
            "VIEWER_TIMEOUT_SECONDS": str(TIMEOUT), "CASCADE_SESSION_FLUSH_SECONDS": "0.2",
            "CASCADE_VIEWER_COUNTS_CACHE_SECONDS": "0.1", "CASCADE_STREAM_POLL_SECONDS": "0.1",
            "CASCADE_SIGNING_KEYS": f"k1:{base64.b64encode(KEY.secret).decode()}",
            "CASCADE_LOG_LEVEL": "WARNING",
        }  # fmt: skip
        procs.append(subprocess.Popen([sys.executable, "-m", "cascade.edge.main"], env=env))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for u in urls:
            wait_http(f"{u}/live/pub6/360p/5.4.m4s")
        yield Replicas(urls, r)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        r.close()


def ctx_of(multivariant: str) -> str:
    m = re.search(r"hls_ctx=([A-Za-z0-9_-]{16})", multivariant)
    assert m, multivariant
    return m.group(1)


def wait_for(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_replicas_serve_byte_identical_playlists(replicas: Replicas) -> None:
    with replicas.client(0) as a, replicas.client(1) as b:
        for path in ("/live/pub0/360p/index.m3u8", "/live/pub0/360p/index.m3u8?_HLS_skip=YES",
                     "/live/pub0/360p/index.m3u8?_HLS_msn=5&_HLS_part=4", "/live/pub0/360p/3.m4s"):  # fmt: skip
            ra, rb = a.get(path), b.get(path)
            assert ra.status_code == rb.status_code == 200
            assert ra.content == rb.content, path


def test_viewer_counts_agree_whichever_replica_answers(replicas: Replicas) -> None:
    with replicas.client(0) as a, replicas.client(1) as b:
        for i, client in enumerate([a, a, a, b, b]):
            ctx = ctx_of(client.get("/live/pub1.m3u8").text)
            # The viewer goes on with its media playlist on the *other* replica.
            other = b if client is a else a
            assert other.get(f"/live/pub1/360p/index.m3u8?hls_ctx={ctx}").status_code == 200, i
        wait_for(lambda: a.get("/status").json()["streams"]["pub1"]["viewers"] == 5)
        assert b.get("/status").json()["streams"]["pub1"]["viewers"] == 5
        assert a.get("/health").json()["viewers"] == b.get("/health").json()["viewers"] >= 5
        assert 'cascade_edge_viewers{stream="pub1"} 5.0' in b.get("/metrics").text
        # Sessions expire VIEWER_TIMEOUT_SECONDS after their last request.
        wait_for(lambda: a.get("/status").json()["streams"]["pub1"]["viewers"] == 0, TIMEOUT + 4)


def test_a_seventh_stream_is_refused_with_the_limit_whichever_replica(replicas: Replicas) -> None:
    with replicas.client(0) as a, replicas.client(1) as b:
        ctx = ctx_of(a.get("/live/pub0.m3u8").text)
        for i, name in enumerate(PUBLIC[1:6]):
            r = (a, b)[i % 2].get(f"/live/{name}.m3u8?hls_ctx={ctx}")
            assert r.status_code == 200, r.text
            assert f"hls_ctx={ctx}" in r.text  # one viewer id across the viewer's streams
        r = b.get(f"/live/pub6.m3u8?hls_ctx={ctx}")
        assert r.status_code == 429
        assert "6" in r.text and "limit" in r.text, r.text
        assert int(r.headers["retry-after"]) >= 1
        # Another viewer is not affected.
        assert b.get("/live/pub6.m3u8").status_code == 200


def test_signed_streams_need_a_valid_token_and_sessions_inherit_it(replicas: Replicas) -> None:
    now = int(time.time())
    with replicas.client(0) as a, replicas.client(1) as b:
        r = a.get(f"/live/{SIGNED}.m3u8")
        assert r.status_code == 403 and "missing token" in r.text
        good = sign_url("", SIGNED, now + 600, KEY)
        forged = re.sub(r"sig=[^&]+", "sig=" + "A" * 43, good)
        assert a.get(forged).status_code == 403
        assert "signature" in a.get(forged).text
        expired = sign_url("", SIGNED, now - 5, KEY)
        r = a.get(expired)
        assert r.status_code == 403 and "expired" in r.text
        r = a.get(good)
        assert r.status_code == 200, r.text
        ctx = ctx_of(r.text)
        # The session carries the grant to the media playlist, on any replica; parts and
        # segments need nothing (a CDN can cache them).
        assert b.get(f"/live/{SIGNED}/360p/index.m3u8?hls_ctx={ctx}").status_code == 200
        assert b.get(f"/live/{SIGNED}/360p/index.m3u8").status_code == 403
        assert b.get(f"/live/{SIGNED}/360p/3.m4s").status_code == 200


def test_segments_older_than_the_window_come_from_the_archive_through_the_cache(
    replicas: Replicas,
) -> None:
    replicas.redis.set(schema.archive_segment_key("pub2", "360p", 0), b"archived-0", ex=60)
    with replicas.client(0) as a:
        first = a.get("/live/pub2/360p/0.m4s")  # the window keeps 4 segments: 2..5
        assert first.status_code == 200 and first.content == b"archived-0"
        assert a.get("/live/pub2/360p/0.m4s").content == b"archived-0"
        metrics = a.get("/metrics").text
        assert re.search(r"cascade_edge_cache_hits_total \d", metrics)
        assert a.get("/live/pub2/360p/1.m4s").status_code == 404  # not archived


def test_nothing_identifying_is_stored_in_redis(replicas: Replicas) -> None:
    with replicas.client(0) as a:
        ctx = ctx_of(
            a.get("/live/pub3.m3u8", headers={"User-Agent": "Mozilla/5.0 SpyBrowser"}).text
        )
        a.get(f"/live/pub3/360p/index.m3u8?hls_ctx={ctx}")
    time.sleep(0.5)
    for key in replicas.redis.scan_iter("*"):
        kind = replicas.redis.type(key)
        blob = repr(key)
        if kind == b"zset":
            blob += repr(replicas.redis.zrange(key, 0, -1))
        elif kind == b"hash":
            blob += repr(replicas.redis.hgetall(key))
        elif kind == b"string":
            blob += repr(replicas.redis.get(key))
        elif kind == b"set":
            blob += repr(replicas.redis.smembers(key))
        assert "127.0.0.1" not in blob and "SpyBrowser" not in blob and "Mozilla" not in blob, key


def test_sigterm_drains_held_requests(redis_server: object) -> None:
    url = redis_server.url  # type: ignore[attr-defined]
    r = redis.Redis.from_url(url)
    announce(r, "drain")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "REDIS_URL": url,
           "CASCADE_LOG_LEVEL": "WARNING"}  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "cascade.edge.main"], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/live/drain/360p/5.4.m4s")
        assert httpx.get(f"{base}/livez").status_code == 200
        assert httpx.get(f"{base}/readyz").json()["ready"] is True
        with httpx.Client(base_url=base, timeout=10) as client:
            import concurrent.futures

            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                held = pool.submit(client.get, "/live/drain/360p/index.m3u8?_HLS_msn=6&_HLS_part=0")
                time.sleep(0.3)
                proc.send_signal(15)  # SIGTERM, as a rolling update does
                time.sleep(0.3)
                entry = PartEntry(6, 0, 0.1, True, 1.8e9 + 3.0, b"6.0;")
                r.xadd(schema.parts_key("drain", "360p"), schema.encode_entry(entry))  # type: ignore[arg-type]
                response = held.result(timeout=10)
        assert response.status_code == 200  # the held request was answered, not cut
        assert 'URI="6.0.m4s"' in response.text
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        r.close()
