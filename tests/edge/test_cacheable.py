"""The edge's answers as a shared cache sees them: Cache-Control per kind, no per-viewer
data in a cacheable URL or body, and CMCD sessions (viewer_sessions=cmcd). Real edge on
loopback, real Redis."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.settings import EdgeSettings
from cascade.edge import cmcd

from ..conftest import free_port
from .test_app_redis import Edge, _announce, _running, _wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

SID = "6e2fb550-c457-11e9-bb97-0800200c9a66"


def with_cmcd(path: str, sid: str = SID) -> str:
    payload = urllib.parse.quote(f'br=510,cid="cam1",ot=m,sid="{sid}",sf=h')
    return f"{path}{'&' if '?' in path else '?'}CMCD={payload}"


async def _edge(redis_url: str, sessions: str) -> AsyncIterator[Edge]:
    redis = Redis.from_url(redis_url)
    await _announce(redis)
    port = free_port()
    settings = EdgeSettings(
        redis_url=redis_url,
        port=port,
        stream_poll_seconds=0.05,
        blocking_timeout_factor=0.6,
        viewer_sessions=sessions,
        session_flush_seconds=0.05,
        viewer_counts_cache_seconds=0,
    )
    base = f"http://127.0.0.1:{port}"
    async with _running("server", settings), httpx.AsyncClient(base_url=base, timeout=5) as client:
        e = Edge(base, redis, client)
        for msn in range(12):
            for i in range(5 if msn < 11 else 2):
                await e.publish_part(msn, i)
        await _wait_for(client, "/live/cam1/360p/11.1.m4s")
        yield e
    await redis.aclose()


@pytest.fixture
async def edge(redis_url: str) -> AsyncIterator[Edge]:
    async for e in _edge(redis_url, "hls_ctx"):
        yield e


@pytest.fixture
async def cmcd_edge(redis_url: str) -> AsyncIterator[Edge]:
    async for e in _edge(redis_url, "cmcd"):
        yield e


async def test_cache_control_per_kind_of_answer(edge: Edge) -> None:
    get = edge.client.get
    plain = await get("/live/cam1/360p/index.m3u8")
    assert plain.headers["cache-control"] == "public, max-age=1"
    ready = await get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=1")
    assert ready.headers["cache-control"] == "public, max-age=1", "segment target 0.5 s"
    for media in ("/live/cam1/360p/3.1.m4s", "/live/cam1/360p/3.m4s", "/live/cam1/360p/init.mp4"):
        assert (await get(media)).headers["cache-control"] == "public, max-age=30", media
    gone = await get("/live/cam1/360p/99.0.m4s")
    assert (gone.status_code, gone.headers["cache-control"]) == (404, "public, max-age=1")
    bad = await get("/live/cam1/360p/index.m3u8?_HLS_part=1")
    assert (bad.status_code, bad.headers["cache-control"]) == (400, "no-store")
    late = await get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=4")  # held, then 503
    assert (late.status_code, late.headers["cache-control"]) == (503, "no-store")


async def test_a_held_reload_answer_is_shareable_and_the_same_for_every_viewer(edge: Edge) -> None:
    # Two viewers with their own sessions wait for the same part: one body, public.
    reload = "/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=2"
    a = asyncio.ensure_future(edge.client.get(reload + "&hls_ctx=AAAAAAAAAAAAAAAA"))
    b = asyncio.ensure_future(edge.client.get(with_cmcd(reload)))
    await asyncio.sleep(0.1)
    await edge.publish_part(11, 2)
    ra, rb = await a, await b
    assert ra.status_code == rb.status_code == 200
    assert ra.content == rb.content
    assert ra.headers["cache-control"] == "public, max-age=1"
    assert b"hls_ctx" not in ra.content and b"CMCD" not in ra.content


async def test_hls_ctx_sessions_stay_the_default_without_a_cache(edge: Edge) -> None:
    r = await edge.client.get(with_cmcd("/live/cam1.m3u8"))
    assert r.headers["cache-control"] == "private, no-cache"
    assert "index.m3u8?hls_ctx=" in r.text


async def test_with_cmcd_sessions_the_multivariant_is_the_same_for_everyone(
    cmcd_edge: Edge,
) -> None:
    r = await cmcd_edge.client.get(with_cmcd("/live/cam1.m3u8"))
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-cache", "shared, but every start reaches an edge"
    assert "hls_ctx" not in r.text and "cam1/360p/index.m3u8\n" in r.text
    other = await cmcd_edge.client.get(with_cmcd("/live/cam1.m3u8", "another-session-2"))
    assert other.text == r.text


async def test_a_player_without_cmcd_still_gets_an_hls_ctx_session(cmcd_edge: Edge) -> None:
    r = await cmcd_edge.client.get("/live/cam1.m3u8")
    assert r.headers["cache-control"] == "private, no-cache"
    assert "index.m3u8?hls_ctx=" in r.text


async def _viewers(client: httpx.AsyncClient, want: int) -> int:
    seen = -1
    for _ in range(100):
        seen = (await client.get("/status")).json()["streams"]["cam1"]["viewers"]
        if seen == want:
            break
        await asyncio.sleep(0.05)
    return seen


async def test_cmcd_sessions_are_counted_and_only_a_digest_is_kept(cmcd_edge: Edge) -> None:
    client = cmcd_edge.client
    await client.get(with_cmcd("/live/cam1/360p/index.m3u8", "viewer-one-0001"))
    await client.get(
        with_cmcd("/live/cam1/720p/index.m3u8?_HLS_msn=11&_HLS_part=1", "viewer-two-0002")
    )
    await client.get(with_cmcd("/live/cam1/360p/index.m3u8", "viewer-one-0001"))
    await client.get("/live/cam1/360p/index.m3u8?CMCD=br%3D3")  # no sid: not counted
    assert await _viewers(client, 2) == 2
    keys = [k async for k in cmcd_edge.redis.scan_iter("cascade:*")]
    stored = b" ".join(keys)
    for k in keys:
        if (await cmcd_edge.redis.type(k)) == b"zset":
            members = await cmcd_edge.redis.zrange(k, 0, -1)
            stored += b" ".join(m for m in members if isinstance(m, bytes))
    assert cmcd.viewer_id("viewer-one-0001").encode() in stored
    assert b"viewer-one" not in stored and b"viewer-two" not in stored


async def test_cmcd_admission_applies_the_six_stream_limit(cmcd_edge: Edge) -> None:
    # The limit is checked on the multivariant request (passed through any cache).
    sid = "limit-tester-01"
    viewer = cmcd.viewer_id(sid)
    now = time.time()
    for n in range(6):  # six streams this viewer watches, as other edges wrote them
        await cmcd_edge.redis.zadd(schema.viewers_key(f"other{n}"), {viewer: now})
        await cmcd_edge.redis.zadd(schema.VIEWED_STREAMS, {f"other{n}": now})
    r = await cmcd_edge.client.get(with_cmcd("/live/cam1.m3u8", sid))
    assert r.status_code == 429
    assert r.headers["cache-control"] == "no-store"
