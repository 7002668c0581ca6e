"""The edge over real HTTP while its real Redis goes away, restarts or stalls its reader.

Each test owns its Redis server (restartable, on a port below the ephemeral range) so it
can stop, restart or empty it without touching the other tests' server. Viewers poll the
edge the whole time; a live stream must never answer 404 because Redis went and came back.
"""

from __future__ import annotations

import asyncio
import base64
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.schema import Health, PartEntry, StreamMeta, StreamState
from cascade.contract.settings import EdgeSettings
from cascade.edge.access import SigningKey, sign_url
from cascade.edge.app import create_app, create_server
from cascade.edge.hub import Hub
from cascade.hls.rules import check_media_playlist

from ..conftest import RedisServer, free_port
from .test_app_redis import RENDITIONS

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

KEY = SigningKey("k1", b"0123456789abcdefghijklmnopqrstuvwxyz-cascade-faults")
PLAYLIST = "/live/cam1/360p/index.m3u8"
# Parts of 0.1 s, segments of 0.5 s, a blocking timeout of 0.6 s (0.6 target durations).
WINDOW = 24


def part_entry(rendition: str, msn: int, index: int) -> PartEntry:
    return PartEntry(
        msn,
        index,
        0.1,
        index == 0,
        1.8e9 + msn * 0.5 + index * 0.1,
        f"{rendition}:{msn}.{index};".encode(),
    )


@dataclass
class Edge:
    server: RedisServer
    client: httpx.AsyncClient
    state: Any  # the FastAPI app's state: the hub is there
    redis: Redis
    access: str = "public"

    @property
    def hub(self) -> Hub:
        hub: Hub = self.state.hub
        return hub

    async def announce(self) -> None:
        """What a transcoder writes (and writes again with every health report)."""
        meta = StreamMeta(RENDITIONS, 0.1, 0.5, WINDOW, StreamState.LIVE, 0, access=self.access)
        await self.redis.hset(schema.meta_key("cam1"), mapping=meta.encode())  # type: ignore[arg-type]
        health = Health(StreamState.LIVE, input_bitrate_kbps=5000.0, fps=30.0)
        await self.redis.hset(schema.health_key("cam1"), mapping=health.encode())  # type: ignore[arg-type]
        for r in RENDITIONS:
            await self.redis.set(schema.init_key("cam1", r.name), b"init-" + r.name.encode())
        await self.redis.sadd(schema.STREAMS_SET, "cam1")

    async def publish(self, msn: int, index: int) -> None:
        for r in RENDITIONS:
            fields: Any = schema.encode_entry(part_entry(r.name, msn, index))
            await self.redis.xadd(schema.parts_key("cam1", r.name), fields)

    async def publish_segments(self, first: int, last: int) -> None:
        for msn in range(first, last + 1):
            for i in range(5):
                await self.publish(msn, i)

    async def reconnect(self) -> None:
        """The test's own client, after the server came back."""
        await self.redis.aclose()
        self.redis = Redis.from_url(self.server.url)


@asynccontextmanager
async def _serving(kind: str, settings: EdgeSettings) -> AsyncIterator[Any]:
    """The edge on a real socket (Cascade's server or uvicorn); yields the app's state."""
    if kind == "server":
        server = create_server(settings)
        await server.start("127.0.0.1", settings.port)
        try:
            yield server.state
        finally:
            await server.stop(grace=1)
        return
    app = create_app(settings)
    uv = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on"
        )
    )
    task = asyncio.create_task(uv.serve())
    for _ in range(500):  # uvicorn exposes no "started" event
        if uv.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield app.state
    finally:
        uv.should_exit = True
        await task


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def running_edge(
    server: RedisServer, kind: str, *, access: str = "public", **overrides: Any
) -> AsyncIterator[Edge]:
    """An edge following ``server``, with segments 0-10 and parts 11.0, 11.1 published."""
    port = free_port()
    settings = EdgeSettings(
        redis_url=server.url,
        port=port,
        stream_poll_seconds=0.05,
        blocking_timeout_factor=0.6,
        signing_keys=f"k1:{base64.b64encode(KEY.secret).decode()}",
        **overrides,
    )
    edge = None
    async with (
        _serving(kind, settings) as state,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client,
    ):
        edge = Edge(server, client, state, Redis.from_url(server.url), access)
        try:
            await edge.announce()
            await edge.publish_segments(0, 10)
            await edge.publish(11, 0)
            await edge.publish(11, 1)
            await until(lambda: _ok(client, "/live/cam1/360p/11.1.m4s"), "part 11.1")
            yield edge
        finally:
            await edge.redis.aclose()


async def _ok(client: httpx.AsyncClient, path: str) -> bool:
    return (await client.get(path)).status_code == 200


async def until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 10.0) -> None:
    """Poll ``check`` until it holds (bounded): a condition, not a sleep."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def ready(edge: Edge, status: int) -> None:
    async def check() -> bool:
        return (await edge.client.get("/readyz")).status_code == status

    await until(check, f"/readyz {status}")


_URI = re.compile(r'URI="([^"]+\.m4s)"')


@dataclass
class Viewer:
    """A player that never stops asking: multivariant, media playlist, the parts listed.

    Every answer that is not 200 is a failure, and so is every LL-HLS rule a playlist (or
    its update from the previous one) breaks.
    """

    client: httpx.AsyncClient
    failures: list[str] = field(default_factory=list)
    rounds: int = 0
    last: str = ""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _get(self, path: str) -> httpx.Response:
        r = await self.client.get(path)
        if r.status_code != 200:
            self.failures.append(f"round {self.rounds}: {path} -> {r.status_code} {r.text!r}")
        return r

    async def run(self) -> None:
        for _ in range(20_000):  # bounded: about 200 s at most
            if self._stop.is_set():
                return
            await self._get("/live/cam1.m3u8")
            r = await self._get(PLAYLIST)
            if r.status_code == 200:
                problems = check_media_playlist(r.text, previous=self.last or None)
                self.failures += [f"round {self.rounds}: {v}" for v in problems]
                self.last = r.text
                hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', r.text)
                listed = [u for u in _URI.findall(r.text) if hint is None or u != hint[1]]
                for uri in listed[-2:]:  # what a player fetches next: the newest parts
                    await self._get(f"/live/cam1/360p/{uri}")
                segments = [ln for ln in r.text.splitlines() if ln.endswith(".m4s")]
                if segments:  # URI lines: the tags' URIs end with a quote or an attribute
                    await self._get(f"/live/cam1/360p/{segments[-1]}")
            self.rounds += 1
            await asyncio.sleep(0.005)

    async def more_rounds(self, n: int = 3) -> None:
        target = self.rounds + n

        async def check() -> bool:
            return self.rounds >= target

        await until(check, f"{n} more viewer rounds")

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def watching(edge: Edge) -> AsyncIterator[Viewer]:
    viewer = Viewer(edge.client)
    task = asyncio.create_task(viewer.run())
    try:
        await viewer.more_rounds()
        yield viewer
    finally:
        viewer.stop()
        await task


def _playlist_lists(edge: Edge, uri: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return f'URI="{uri}"' in (await edge.client.get(PLAYLIST)).text

    return check


# ---- A: requests that need Redis while it is down --------------------------------------


@pytest.mark.parametrize("kind", ["server", "asgi"])
async def test_signed_playback_needing_redis_while_it_is_down_is_503_with_retry_after(
    own_redis: RedisServer, kind: str
) -> None:
    async with running_edge(own_redis, kind, access="signed") as edge:
        url = sign_url("", "cam1", int(time.time()) + 600, KEY)
        first = await edge.client.get(url)
        assert first.status_code == 200, first.text
        session = re.search(r"hls_ctx=([A-Za-z0-9_-]{16})", first.text)
        assert session is not None
        # F: one canonical exp; a zero-padded one is refused whatever the signature says.
        padded = url.replace("exp=", "exp=0")
        r = await edge.client.get(padded)
        assert r.status_code == 403
        assert "exp must be Unix seconds without leading zeros" in r.text
        own_redis.stop()
        await ready(edge, 503)
        for path in [
            url,  # a new session: its grant cannot be written for the other replicas
            f"{PLAYLIST}?hls_ctx={'A' * 16}",  # a session whose grant only Redis knows
        ]:
            r = await edge.client.get(path)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["retry-after"] == "1"
            assert r.text == "session store unavailable: Redis is not answering; retry in 1 s\n"
        # What this edge holds in memory still plays: the session it granted, the parts.
        r = await edge.client.get(f"{PLAYLIST}?hls_ctx={session.group(1)}")
        assert r.status_code == 200
        assert (await edge.client.get("/live/cam1/360p/11.1.m4s")).status_code == 200


@pytest.mark.parametrize("kind", ["server", "asgi"])
async def test_an_archived_segment_while_redis_is_down_is_503_with_retry_after(
    own_redis: RedisServer, kind: str
) -> None:
    async with running_edge(own_redis, kind) as edge:
        await edge.publish_segments(11, 40)  # segment 3 slides out of the 24-segment window
        await until(lambda: _ok(edge.client, "/live/cam1/360p/40.4.m4s"), "part 40.4")
        own_redis.stop()
        await ready(edge, 503)
        r = await edge.client.get("/live/cam1/360p/3.m4s")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.text == "segment archive unavailable: Redis is not answering; retry in 1 s\n"


# ---- B: Redis restarts, or drops its connections, under viewers ------------------------


def _windows(edge: Edge) -> dict[str, object]:
    return {name: feed.window for name, feed in edge.hub.streams["cam1"].feeds.items()}


@pytest.mark.parametrize("kind", ["server", "asgi"])
async def test_a_live_stream_never_404s_while_redis_restarts_empty(
    own_redis: RedisServer, kind: str
) -> None:
    async with running_edge(own_redis, kind) as edge, watching(edge) as viewer:
        own_redis.stop()
        await ready(edge, 503)
        await viewer.more_rounds()  # the window plays from memory meanwhile
        own_redis.start()  # same port, no data
        # The edge sees the new Redis before the transcoder has put its stream back.
        await ready(edge, 200)
        await viewer.more_rounds()
        assert viewer.failures == []
        await edge.reconnect()
        await edge.announce()
        # What the transcoder published while Redis was away is lost: a msn jump.
        await edge.publish_segments(15, 17)
        await until(_playlist_lists(edge, "17.4.m4s"), "the parts after the restart")
        await viewer.more_rounds()
        text = (await edge.client.get(PLAYLIST)).text
        assert "#EXT-X-MEDIA-SEQUENCE:15\n" in text and "#EXT-X-DISCONTINUITY\n" in text
        assert edge.hub.restarts == 1 and edge.hub.replays == 2
        metrics = (await edge.client.get("/metrics")).text
        assert "cascade_edge_redis_restarts 1.0" in metrics
        assert "cascade_edge_redis_replays 2.0" in metrics
    assert viewer.failures == []


async def test_redis_restarting_with_its_data_is_followed_without_a_rebuild(
    own_redis: RedisServer,
) -> None:
    async with running_edge(own_redis, "server") as edge, watching(edge) as viewer:
        windows = _windows(edge)
        await edge.redis.shutdown(save=True)  # writes its dump, loaded again at start
        assert own_redis.proc is not None
        own_redis.proc.wait(10)
        own_redis.proc = None
        await ready(edge, 503)
        own_redis.start()
        await ready(edge, 200)
        await edge.reconnect()
        for i in range(2, 5):
            await edge.publish(11, i)
        await edge.publish_segments(12, 13)
        await until(_playlist_lists(edge, "13.4.m4s"), "the parts after the restart")
        await viewer.more_rounds()
        # Its data intact: the same windows, read on from the last ids, no discontinuity.
        assert all(a is b for a, b in zip(_windows(edge).values(), windows.values(), strict=True))
        assert edge.hub.restarts == 1 and edge.hub.replays == 0
        assert "DISCONTINUITY" not in (await edge.client.get(PLAYLIST)).text
    assert viewer.failures == []


async def test_dropped_connections_are_followed_from_the_last_ids(
    own_redis: RedisServer,
) -> None:
    async with running_edge(own_redis, "server") as edge, watching(edge) as viewer:
        windows = _windows(edge)
        errors = edge.hub.redis_errors
        # The same server, briefly unreachable: every client connection cut (not ours).
        await edge.redis.client_kill_filter(_type="normal", skipme=True)
        await until(_async(lambda: edge.hub.redis_errors > errors), "the hub to notice")
        for i in range(2, 5):
            await edge.publish(11, i)
        await edge.publish_segments(12, 12)
        await until(_playlist_lists(edge, "12.4.m4s"), "the parts after the cut")
        await ready(edge, 200)
        await viewer.more_rounds()
        assert all(a is b for a, b in zip(_windows(edge).values(), windows.values(), strict=True))
        assert edge.hub.restarts == 0 and edge.hub.replays == 0
    assert viewer.failures == []


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


# ---- C: a paused event loop, held requests and the part already in Redis ---------------


def _blocked(edge: Edge, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        text = (await edge.client.get("/metrics")).text
        return f"cascade_edge_blocked_requests {float(n)}" in text

    return check


def _publish_from_another_process(url: str, after: float, part: tuple[int, int]) -> None:
    """What the transcoder does while the edge's loop is stuck: it goes on publishing."""
    time.sleep(after)
    client = redis.Redis.from_url(url)
    try:
        for r in RENDITIONS:
            fields: Any = schema.encode_entry(part_entry(r.name, *part))
            client.xadd(schema.parts_key("cam1", r.name), fields)
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["server", "asgi"])
async def test_held_requests_get_their_part_after_the_event_loop_was_paused(
    own_redis: RedisServer, kind: str
) -> None:
    async with running_edge(own_redis, kind) as edge:
        held = [
            asyncio.create_task(edge.client.get(f"{PLAYLIST}?_HLS_msn=11&_HLS_part=2")),
            asyncio.create_task(edge.client.get("/live/cam1/360p/11.2.m4s")),
            # Its part never comes: still a 503 in the end, once the edge has caught up.
            asyncio.create_task(edge.client.get(f"{PLAYLIST}?_HLS_msn=11&_HLS_part=4")),
        ]
        await until(_blocked(edge, 3), "the three requests held")
        # The deadlines (0.6 s) pass during a 3.5 s pause of the edge's event loop (a long
        # GC, a blocking call); part 11.2 reaches Redis one second into it.
        publisher = threading.Thread(
            target=_publish_from_another_process, args=(own_redis.url, 1.0, (11, 2))
        )
        publisher.start()
        asyncio.get_running_loop().call_soon(time.sleep, 3.5)
        answers = await asyncio.gather(*held)
        publisher.join(10)
        assert [r.status_code for r in answers] == [200, 200, 503], [r.text for r in answers]
        assert 'URI="11.2.m4s"' in answers[0].text
        assert answers[1].content == b"360p:11.2;"


@pytest.mark.parametrize("kind", ["server", "asgi"])
async def test_held_requests_expire_by_their_deadline_while_redis_is_down(
    own_redis: RedisServer, kind: str
) -> None:
    async with running_edge(own_redis, kind) as edge:
        own_redis.stop()
        await ready(edge, 503)
        started = time.monotonic()
        r = await edge.client.get(f"{PLAYLIST}?_HLS_msn=11&_HLS_part=2")
        assert r.status_code == 503 and r.text == "segment 11 part 2 did not arrive in time\n"
        assert time.monotonic() - started < 3.0  # 0.6 s here: nothing waits on a dead Redis
