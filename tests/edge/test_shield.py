"""The shield's generated VCL in the real varnishd (Debian's varnish 7.1), in front of a
real edge on loopback: the cache key, request collapsing of held blocking reloads, what
is passed, CMCD forwarded on a miss."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cascade.contract.settings import EdgeSettings
from cascade.edge import caching, shieldmain, shieldsessions
from cascade.edge.live import parse_query
from cascade.edge.shield import ShieldConfig, render_vcl, varnishd_command

from ..conftest import free_port
from .live_edge import BASE, HELD_PART, HELD_RELOAD, LiveEdge, live_edge, read_response, request

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.usefixtures("no_task_leaks"),
    pytest.mark.skipif(shutil.which("varnishd") is None, reason="varnish (apt) not installed"),
]


@dataclass
class Shield:
    port: int
    workdir: Path
    edge: LiveEdge

    def stat(self, name: str) -> int:
        out = subprocess.run(
            ["varnishstat", "-n", str(self.workdir), "-1", "-j", "-f", name],
            check=True, capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
        counters = json.loads(out)["counters"]
        return int(counters[name]["value"])

    async def get(self, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request(path, headers=headers))
            r = await asyncio.wait_for(read_response(reader), 10)
            return r.status, r.headers, r.body
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def edge_requests(self, route: str) -> int:
        total = 0.0
        for metric in self.edge.server.metrics.registry.collect():
            for sample in metric.samples:
                if sample.name == "cascade_edge_requests_total" and sample.labels["route"] == route:
                    total += sample.value
        return int(total)


@contextlib.contextmanager
def varnish(tmp: Path, backend_port: int) -> Iterator[int]:
    vcl = tmp / "shield.vcl"
    vcl.write_text(render_vcl(ShieldConfig(backend_port=backend_port)))
    tmp.chmod(0o755)
    port = free_port()
    cmd = varnishd_command(
        vcl=str(vcl), workdir=str(tmp / "varnish"), listen=f"127.0.0.1:{port}", cache_mib=32
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


async def _wait_listening(port: int) -> None:
    for _ in range(300):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.02)
    raise AssertionError("varnishd did not start")


@pytest.fixture
async def shield(redis_url: str, tmp_path: Path) -> AsyncIterator[Shield]:
    async with live_edge(redis_url, viewer_sessions="cmcd", session_flush_seconds=0.05) as edge:
        with varnish(tmp_path, edge.port) as port:
            await _wait_listening(port)
            # The first answer through varnishd: its child is up and the VCL loaded.
            for _ in range(300):
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    r = await Shield(port, tmp_path / "varnish", edge).get("/livez")
                    if r[0] == 200:
                        break
                await asyncio.sleep(0.05)
            yield Shield(port, tmp_path / "varnish", edge)


def cmcd(sid: str) -> str:
    return "CMCD=" + urllib.parse.quote(f'br=510,ot=m,sid="{sid}",sf=h')


async def test_n_viewers_waiting_for_the_same_part_make_one_edge_request(shield: Shield) -> None:
    before = shield.edge_requests("media_playlist"), shield.edge_requests("part")
    n = 40
    waiting = [
        asyncio.ensure_future(shield.get(f"{HELD_RELOAD}&{cmcd(f'viewer-{i:06d}')}"))
        for i in range(n)
    ]
    parts = [asyncio.ensure_future(shield.get(HELD_PART)) for _ in range(n)]
    await asyncio.sleep(0.3)  # all of them reached varnishd and wait
    assert not any(w.done() for w in waiting + parts)
    await shield.edge.publish_part(11, 2)
    answers = await asyncio.gather(*waiting)
    media = await asyncio.gather(*parts)
    assert {status for status, _, _ in answers} == {200}
    assert len({body for _, _, body in answers}) == 1, "one answer, shared"
    assert '#EXT-X-PART:DURATION=0.1,URI="11.2.m4s"' in answers[0][2].decode()
    assert {(s, b) for s, _, b in media} == {(200, b"360p:11.2;")}
    assert shield.edge_requests("media_playlist") - before[0] == 1
    assert shield.edge_requests("part") - before[1] == 1
    hits = sum(1 for _, h, _ in answers if h["x-cascade-shield"] == "hit")
    assert hits == n - 1
    assert all("age" in h for _, h, _ in answers)


async def test_the_key_drops_cmcd_and_orders_the_directives(shield: Shield) -> None:
    first = await shield.get(f"{BASE}/index.m3u8?_HLS_msn=11&_HLS_part=1&{cmcd('viewer-000001')}")
    again = await shield.get(f"{BASE}/index.m3u8?{cmcd('viewer-000002')}&_HLS_part=1&_HLS_msn=11")
    assert first[1]["x-cascade-shield"] == "miss" and again[1]["x-cascade-shield"] == "hit"
    assert first[2] == again[2]
    skip = await shield.get(f"{BASE}/index.m3u8?_HLS_msn=11&_HLS_part=1&_HLS_skip=YES")
    assert skip[1]["x-cascade-shield"] == "miss", "a delta update is another object"


@pytest.mark.parametrize(
    "path",
    [
        "/live/cam1.m3u8",  # admission at the edge
        f"{BASE}/index.m3u8?hls_ctx=AAAAAAAAAAAAAAAA",
        f"{BASE}/index.m3u8?_HLS_msn=011",
        f"{BASE}/index.m3u8?_HLS_msn=11&_HLS_msn=3",
        f"{BASE}/3.1.m4s?_HLS_msn=3",
        "/status",
    ],
)
async def test_what_the_policy_passes_is_never_served_from_cache(shield: Shield, path: str) -> None:
    base, _, query = path.partition("?")
    if "&_HLS_msn=3" not in path:  # a dict cannot hold a repeated name; the VCL passes it
        assert caching.cache_key(base, parse_query(query.encode())) is None
    for _ in range(2):
        _, headers, _ = await shield.get(path)
        assert headers["x-cascade-shield"] == "miss", path


async def test_the_vcl_key_is_the_policy_key(shield: Shield) -> None:
    # Same policy key -> the second request is a hit; another key -> a miss.
    cases = [
        (f"{BASE}/3.1.m4s", f"{BASE}/3.1.m4s?{cmcd('viewer-000003')}", True),
        (f"{BASE}/3.2.m4s", f"{BASE}/3.3.m4s", False),
        (f"{BASE}/index.m3u8?_HLS_msn=10", f"{BASE}/index.m3u8?_HLS_msn=10&x=1", True),
        (f"{BASE}/index.m3u8?_HLS_msn=9&_HLS_part=0", f"{BASE}/index.m3u8?_HLS_msn=9", False),
    ]
    for a, b, same in cases:
        keys = [caching.cache_key(p.partition("?")[0], parse_query(p.partition("?")[2].encode()))
                for p in (a, b)]  # fmt: skip
        assert (keys[0] == keys[1]) is same
        await shield.get(a)
        _, headers, _ = await shield.get(b)
        assert headers["x-cascade-shield"] == ("hit" if same else "miss"), (a, b)


async def test_a_timed_out_reload_gives_every_waiter_the_503_not_a_stale_playlist(
    shield: Shield,
) -> None:
    before = shield.edge_requests("error")
    late = f"{BASE}/index.m3u8?_HLS_msn=11&_HLS_part=4"
    answers = await asyncio.gather(*(shield.get(late) for _ in range(10)))
    assert {s for s, _, _ in answers} == {503}
    assert {h["cache-control"] for _, h, _ in answers} == {"no-store"}
    assert shield.edge_requests("error") - before == 1, "one held request for ten waiters"
    await asyncio.sleep(0.2)
    status, headers, _ = await shield.get(late)
    assert headers["x-cascade-shield"] == "miss", "the 503 was kept only for its waiters"
    assert status == 503


async def test_a_cmcd_header_sid_reaches_the_edge_on_a_miss(shield: Shield) -> None:
    await shield.get(f"{BASE}/index.m3u8", headers='CMCD-Session: sid="header-sid-0001"\r\n')
    for _ in range(100):
        status = json.loads((await shield.get("/status"))[2])
        if status["streams"]["cam1"]["viewers"] == 1:
            break
        await asyncio.sleep(0.05)
    assert status["streams"]["cam1"]["viewers"] == 1


async def test_viewers_answered_from_cache_are_counted_by_the_shield(
    shield: Shield, redis_url: str
) -> None:
    # The edge sees one of the n held reloads; the other n - 1 are hits, counted from
    # varnishncsa by cascade-shield-sessions, into the same Redis sets.
    settings = EdgeSettings(redis_url=redis_url, session_flush_seconds=0.05)
    counter = asyncio.ensure_future(shieldsessions.run(str(shield.workdir), settings))
    try:
        await asyncio.sleep(0.5)  # varnishncsa attached to the log
        n = 12
        waiting = [
            asyncio.ensure_future(shield.get(f"{HELD_RELOAD}&{cmcd(f'counted-{i:06d}')}"))
            for i in range(n)
        ]
        await asyncio.sleep(0.3)
        await shield.edge.publish_part(11, 2)
        answers = await asyncio.gather(*waiting)
        assert sum(1 for _, h, _ in answers if h["x-cascade-shield"] == "hit") == n - 1
        seen = 0
        for _ in range(100):
            seen = json.loads((await shield.get("/status"))[2])["streams"]["cam1"]["viewers"]
            if seen == n:
                break
            await asyncio.sleep(0.05)
        assert seen == n
    finally:
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counter


def test_the_shield_backend_setting_is_host_and_port() -> None:
    assert shieldmain.backend_of("cascade-edge.live.svc:80") == ("cascade-edge.live.svc", 80)
    for bad in ("cascade-edge", ":80", "edge:http", "edge:0", "edge:70000"):
        with pytest.raises(SystemExit, match="CASCADE_SHIELD_BACKEND must be host:port"):
            shieldmain.backend_of(bad)


async def test_cascade_shield_serves_through_varnish_and_stops_on_sigterm(
    redis_url: str,
) -> None:
    # The container's program: VCL rendered, varnishd and the counter run, SIGTERM ends both.
    async with live_edge(redis_url, viewer_sessions="cmcd") as edge:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cascade.edge.shieldmain",
            env={**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "REDIS_URL": redis_url,
                 "CASCADE_SHIELD_BACKEND": f"127.0.0.1:{edge.port}",
                 "CASCADE_SHIELD_CACHE_MIB": "16", "CASCADE_LOG_LEVEL": "WARNING"},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            shield = Shield(port, Path("/nonexistent"), edge)
            for _ in range(300):
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    if (await shield.get(f"{BASE}/3.1.m4s"))[0] == 200:
                        break
                await asyncio.sleep(0.05)
            _, headers, body = await shield.get(f"{BASE}/3.1.m4s")
            assert headers["x-cascade-shield"] == "hit" and body == b"360p:3.1;"
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
