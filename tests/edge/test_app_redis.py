"""The edge over real HTTP on loopback, fed through a real Redis server by the contract."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.schema import (
    EndEntry,
    Health,
    InitEntry,
    PartEntry,
    RenditionInfo,
    StreamMeta,
    StreamState,
)
from cascade.contract.settings import EdgeSettings
from cascade.edge.app import create_app, create_server
from cascade.hls.rules import check_media_playlist, check_multivariant_playlist

from ..conftest import RedisServer, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

RENDITIONS = (
    RenditionInfo("360p", 510_400, "avc1.64001e,mp4a.40.2", 640, 360, 30.0),
    RenditionInfo("720p", 2_300_000, "avc1.64001f,mp4a.40.2", 1280, 720, 30.0),
)


@dataclass
class Edge:
    base: str
    redis: Redis
    client: httpx.AsyncClient

    async def publish(self, rendition: str, *entries: schema.Entry) -> None:
        for entry in entries:
            await self.redis.xadd(
                schema.parts_key("cam1", rendition),
                schema.encode_entry(entry),  # type: ignore[arg-type]
            )

    async def publish_part(
        self, msn: int, index: int, renditions: tuple[str, ...] = ("360p", "720p")
    ) -> None:
        for r in renditions:
            await self.publish(
                r,
                PartEntry(
                    msn,
                    index,
                    0.1,
                    index == 0,
                    1.8e9 + msn * 0.5 + index * 0.1,
                    f"{r}:{msn}.{index};".encode(),
                ),
            )


async def _announce(redis: Redis) -> None:
    meta = StreamMeta(RENDITIONS, 0.1, 0.5, 24, StreamState.LIVE, 0)
    await redis.hset(schema.meta_key("cam1"), mapping=meta.encode())  # type: ignore[arg-type]
    health = Health(StreamState.LIVE, input_bitrate_kbps=5000.0, fps=30.0, reason="Ingesting")
    await redis.hset(schema.health_key("cam1"), mapping=health.encode())  # type: ignore[arg-type]
    for r in RENDITIONS:
        await redis.set(schema.init_key("cam1", r.name), b"init-" + r.name.encode())
    await redis.sadd(schema.STREAMS_SET, "cam1")


@asynccontextmanager
async def _running(kind: str, settings: EdgeSettings) -> AsyncIterator[None]:
    """The edge on a real socket: Cascade's own server, or the ASGI app on uvicorn."""
    if kind == "server":
        server = create_server(settings)
        await server.start("127.0.0.1", settings.port)
        try:
            yield
        finally:
            await server.stop(grace=1)
        return
    uv = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=settings.port,
            log_level="warning",
            lifespan="on",
        )
    )
    task = asyncio.create_task(uv.serve())
    for _ in range(500):  # uvicorn exposes no "started" event
        if uv.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        uv.should_exit = True
        await task


# Every test runs against both ways of serving the edge (as uvicorn tests both protocols).
@pytest.fixture(params=["server", "asgi"])
async def edge(redis_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Edge]:
    redis = Redis.from_url(redis_url)
    await _announce(redis)
    port = free_port()
    settings = EdgeSettings(
        redis_url=redis_url, port=port, stream_poll_seconds=0.05, blocking_timeout_factor=0.6
    )
    async with _running(request.param, settings):
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            e = Edge(base, redis, client)
            for msn in range(12):
                for i in range(5 if msn < 11 else 2):
                    await e.publish_part(msn, i)
            await _wait_for(client, "/live/cam1/360p/11.1.m4s")
            yield e
    await e.redis.aclose()


async def _wait_for(client: httpx.AsyncClient, path: str) -> None:
    for _ in range(200):
        if (await client.get(path)).status_code == 200:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


async def test_multivariant_lists_every_rendition(edge: Edge) -> None:
    r = await edge.client.get("/live/cam1.m3u8")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    # Each viewer gets its own session id on the media playlist URIs: private to them.
    assert r.headers["cache-control"] == "private, no-cache"
    assert check_multivariant_playlist(r.text) == []
    assert (
        'BANDWIDTH=510400,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,FRAME-RATE=30.000'
        in r.text
    )
    assert re.search(r"^cam1/720p/index\.m3u8\?hls_ctx=[A-Za-z0-9_-]{16}$", r.text, re.M)


async def test_media_playlist_follows_the_ll_hls_rules(edge: Edge) -> None:
    r = await edge.client.get("/live/cam1/360p/index.m3u8")
    assert r.status_code == 200
    assert check_media_playlist(r.text) == []
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in r.text
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="11.2.m4s"' in r.text
    assert '#EXT-X-RENDITION-REPORT:URI="../720p/index.m3u8",LAST-MSN=11,LAST-PART=1' in r.text


async def test_blocking_reload_waits_for_the_part(edge: Edge) -> None:
    request = asyncio.create_task(
        edge.client.get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=2")
    )
    await asyncio.sleep(0.15)
    assert not request.done(), "answered before the part existed"
    await edge.publish_part(11, 2)
    r = await request
    assert r.status_code == 200
    assert 'URI="11.2.m4s"' in r.text and '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="11.3.m4s"' in r.text


async def test_preload_hinted_part_blocks_until_ready(edge: Edge) -> None:
    request = asyncio.create_task(edge.client.get("/live/cam1/360p/11.2.m4s"))
    await asyncio.sleep(0.15)
    assert not request.done()
    await edge.publish_part(11, 2)
    r = await request
    assert r.status_code == 200 and r.content == b"360p:11.2;"
    assert r.headers["content-type"] == "video/mp4"


async def test_blocking_request_gets_503_after_three_target_durations(edge: Edge) -> None:
    # blocking_timeout_factor is 0.6 in this fixture (3 in production): 0.6 s here.
    r = await edge.client.get("/live/cam1/360p/index.m3u8?_HLS_msn=12&_HLS_part=0")
    assert r.status_code == 503
    r = await edge.client.get("/live/cam1/360p/11.2.m4s")
    assert r.status_code == 503


async def test_segments_and_init_come_from_memory(edge: Edge) -> None:
    r = await edge.client.get("/live/cam1/720p/3.m4s")
    assert r.status_code == 200
    assert r.content == b"".join(f"720p:3.{i};".encode() for i in range(5))
    assert (await edge.client.get("/live/cam1/720p/init-0.mp4")).content == b"init-720p"
    assert (await edge.client.get("/live/cam1/720p/init.mp4")).content == b"init-720p"


async def test_delta_update_skips_old_segments(edge: Edge) -> None:
    for msn in range(11, 30):
        for i in range(2 if msn == 11 else 0, 5):
            await edge.publish_part(msn, i, ("360p",))
    await _wait_for(edge.client, "/live/cam1/360p/29.4.m4s")
    full = (await edge.client.get("/live/cam1/360p/index.m3u8")).text
    delta = (await edge.client.get("/live/cam1/360p/index.m3u8?_HLS_skip=YES")).text
    assert "#EXT-X-SKIP:SKIPPED-SEGMENTS=" in delta
    assert len(delta) < len(full)
    assert check_media_playlist(delta) == []


async def test_end_of_stream_ends_the_playlist(edge: Edge) -> None:
    await edge.publish("360p", EndEntry())
    await asyncio.sleep(0.1)
    text = (await edge.client.get("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=4")).text
    assert text.rstrip().endswith("#EXT-X-ENDLIST")


async def test_new_generation_brings_its_init_and_a_discontinuity(edge: Edge) -> None:
    await edge.publish("360p", InitEntry(b"init-gen1", 1))
    await edge.publish(
        "360p", PartEntry(12, 0, 0.1, True, 1.8e9 + 10, b"x", discontinuity=True, generation=1)
    )
    r = await edge.client.get("/live/cam1/360p/index.m3u8?_HLS_msn=12&_HLS_part=0")
    assert "#EXT-X-DISCONTINUITY\n" in r.text and 'URI="init-1.mp4"' in r.text
    assert (await edge.client.get("/live/cam1/360p/init-1.mp4")).content == b"init-gen1"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/live/nope.m3u8", 404),
        ("/live/cam1/1080p/index.m3u8", 404),
        ("/live/cam1/360p/index.m3u8?_HLS_msn=99", 400),
        ("/live/cam1/360p/index.m3u8?_HLS_msn=-1", 400),
        ("/live/cam1/360p/index.m3u8?_HLS_msn=abc", 400),
        ("/live/cam1/360p/index.m3u8?_HLS_part=1", 400),
        ("/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=99", 400),
        ("/live/cam1/360p/index.m3u8?_HLS_msn=99999999999999999999999", 400),
        ("/live/cam1/360p/index.m3u8?_HLS_skip=maybe", 400),
        ("/live/cam1/360p/99.m4s", 404),
        ("/live/cam1/360p/99.0.m4s", 404),
        ("/live/cam1/360p/11.m4s", 404),  # still growing: not a segment yet
        ("/live/cam1/360p/1.9.m4s", 404),
        ("/live/cam1/360p/01.m4s", 404),
        ("/live/cam1/360p/x.m4s", 404),
        ("/live/cam1/360p/init-7.mp4", 404),
        ("/live/cam1/360p/..%2F..%2Fetc%2Fpasswd", 404),
        ("/live/..%2Fetc/360p/index.m3u8", 404),
        ("/live/CAM1.m3u8", 404),
        ("/static/..%2Fapp.py", 404),
        ("/static/nope.js", 404),
        ("/static/" + "a" * 300 + ".js", 404),  # ENAMETOOLONG from the file system was a 500
        ("/watch/Bad_Name", 404),
        ("/watch?streams=a,b,c,d,e,f,g", 400),
        ("/watch?streams=", 400),
    ],
)
async def test_bad_requests_get_a_specific_4xx(edge: Edge, path: str, status: int) -> None:
    r = await edge.client.get(path)
    assert r.status_code == status, r.text
    assert r.text.strip(), "a 4xx says why"


async def test_cors_lets_a_player_on_another_origin_play(edge: Edge) -> None:
    r = await edge.client.get("/live/cam1.m3u8", headers={"Origin": "https://player.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    pre = await edge.client.options(
        "/live/cam1/360p/index.m3u8",
        headers={"Origin": "https://player.example", "Access-Control-Request-Method": "GET"},
    )
    assert pre.status_code == 200


async def test_health_status_and_metrics(edge: Edge) -> None:
    health = (await edge.client.get("/health")).json()
    assert health["status"] == "ok" and health["streams"] == 1 and health["streams_live"] == 1
    status = (await edge.client.get("/status")).json()
    cam = status["streams"]["cam1"]
    assert cam["state"] == "live" and cam["input_bitrate_kbps"] == 5000.0
    assert cam["renditions"]["360p"]["last_msn"] == 11
    metrics = (await edge.client.get("/metrics")).text
    assert "cascade_edge_requests_total" in metrics and "cascade_edge_redis_up 1.0" in metrics


async def test_status_shows_what_the_transcoder_lost_or_holds_after_a_redis_outage(
    edge: Edge,
) -> None:
    health = Health(StreamState.LIVE, reason="Ingesting", lost_segments=3, redis_backlog_bytes=4096)
    await edge.redis.hset(schema.health_key("cam1"), mapping=health.encode())  # type: ignore[arg-type]
    for _ in range(100):  # the hub re-reads health every stream poll (50 ms here)
        cam = (await edge.client.get("/status")).json()["streams"]["cam1"]
        if cam["lost_segments"] == 3:
            break
        await asyncio.sleep(0.02)
    assert cam["lost_segments"] == 3 and cam["redis_backlog_bytes"] == 4096


@pytest.mark.parametrize(
    "path", ["/metrics/", "/status/", "/health/", "/readyz/", "/watch/cam1/", "/livez/"]
)
async def test_the_host_header_never_reaches_a_redirect(edge: Edge, path: str) -> None:
    # Starlette's slash redirect built an absolute URL from the Host header.
    r = await edge.client.get(path, headers={"Host": "evil.example"})
    assert r.status_code == 404, r.headers
    assert "location" not in r.headers


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_the_api_schema_and_its_pages_are_off_by_default(edge: Edge, path: str) -> None:
    assert (await edge.client.get(path)).status_code == 404


async def test_the_api_schema_and_its_page_when_enabled(redis_url: str) -> None:
    port = free_port()
    settings = EdgeSettings(redis_url=redis_url, port=port, api_docs_enabled=True)
    async with (
        _running("server", settings),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client,
    ):
        schema_doc = await client.get("/openapi.json")
        assert schema_doc.status_code == 200 and "/status" in schema_doc.json()["paths"]
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/redoc")).status_code == 404


async def test_an_hls_ctx_with_a_final_newline_is_not_a_session(edge: Edge) -> None:
    r = await edge.client.get("/live/cam1.m3u8?hls_ctx=abcdefghijklmnop%0A")
    assert r.status_code == 200 and check_multivariant_playlist(r.text) == []
    ids = re.findall(r"hls_ctx=(.*)$", r.text, re.M)
    assert ids and all(re.fullmatch(r"[A-Za-z0-9_-]{16}", i) for i in ids), ids
    assert "abcdefghijklmnop" not in ids  # a new session, not the malformed one


async def test_stream_removed_from_redis_disappears(edge: Edge) -> None:
    await edge.redis.srem(schema.STREAMS_SET, "cam1")
    for _ in range(100):
        if (await edge.client.get("/live/cam1.m3u8")).status_code == 404:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the edge kept serving a removed stream")


async def test_edge_catches_up_by_itself_after_redis_restarts_empty(
    edge: Edge, redis_server: RedisServer
) -> None:
    await edge.redis.aclose()
    assert redis_server.proc is not None
    redis_server.proc.terminate()
    redis_server.proc.wait(10)
    # Redis down: not ready (no new parts can arrive), but alive (no restart wanted).
    for _ in range(200):
        if (await edge.client.get("/readyz")).status_code == 503:
            break
        await asyncio.sleep(0.02)
    assert (await edge.client.get("/readyz")).status_code == 503
    assert (await edge.client.get("/livez")).status_code == 200
    assert (await edge.client.get("/health")).status_code == 503
    assert (await edge.client.get("/live/cam1/360p/3.m4s")).status_code == 200  # from memory
    redis_server.start()  # same port, no data: stream ids start again from zero
    # The transcoders re-announce the stream and go on publishing (msn 12 onward).
    edge.redis = Redis.from_url(redis_server.url)
    await _announce(edge.redis)
    for i in range(3):
        await edge.publish_part(12, i)
    await _wait_for(edge.client, "/live/cam1/360p/12.2.m4s")
    await _wait_for(edge.client, "/health")  # pooled connections to the old server fail once each
    r = await edge.client.get("/live/cam1/360p/index.m3u8")
    assert '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="12.3.m4s"' in r.text
