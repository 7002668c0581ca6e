"""`CASCADE_SHIELD=1 cascade up`: Varnish on PORT, the edge behind it, real FFmpeg, Redis and
Chromium. Players go through the shield; the LL-HLS rule checker follows the demo through
it; /status counts the players, wherever their requests were answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from cascade.hls.rules import check_media_playlist, check_multivariant_playlist

from ..conftest import free_port, free_server_port
from .test_stack import (
    DEMO,
    Stack,
    alive,
    cmdline,
    descendants,
    play,
    remove_stream,
    result_of,
    write_stream,
)

pytestmark = pytest.mark.slow


@dataclass
class ShieldStack(Stack):
    edge_port: int = 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShieldStack]:
    folder = tmp_path_factory.mktemp("streams")
    (folder / "demo.yaml").write_text(DEMO)
    log = tmp_path_factory.mktemp("log") / "cascade.log"
    port, edge_port, redis_port = free_port(), free_port(), free_server_port()
    env = {
        **os.environ,
        "CASCADE_SHIELD": "1",
        "PORT": str(port),
        "CASCADE_EDGE_PORT": str(edge_port),
        "CASCADE_REDIS_PORT": str(redis_port),
        "CASCADE_STREAMS_DIR": str(folder),
        "STREAM_TIMEOUT": "3",
    }
    env.pop("REDIS_URL", None)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cascade.cli.main", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    s = ShieldStack(proc, f"http://127.0.0.1:{port}", folder, redis_port, log, edge_port)
    try:
        s.wait("the demo stream", lambda: s.get("/live/demo/360p/index.m3u8")[0] == 200, timeout=60)
        yield s
    finally:
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    left = [(p, cmdline(p)[:3]) for p in tree if alive(p)]
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert not left, f"Ctrl-C left processes running: {left}"


def headers_of(stack: Stack, path: str) -> dict[str, str]:
    with urllib.request.urlopen(stack.base + path, timeout=10) as r:
        r.read()
        return {k.lower(): v for k, v in r.headers.items()}


def test_the_shield_is_on_port_and_the_edge_behind_it(stack: ShieldStack) -> None:
    assert headers_of(stack, "/live/demo/360p/init.mp4")["x-cascade-shield"] in ("hit", "miss")
    edge = f"http://127.0.0.1:{stack.edge_port}"
    with urllib.request.urlopen(edge + "/health", timeout=10) as r:
        assert "x-cascade-shield" not in {k.lower() for k in r.headers}


def test_the_ll_hls_rules_hold_through_the_shield(stack: Stack) -> None:
    assert check_multivariant_playlist(stack.text("/live/demo.m3u8")) == []
    previous = None
    text = stack.text("/live/demo/360p/index.m3u8")
    deadline = time.monotonic() + 3
    reloads, hits = 0, 0
    while time.monotonic() < deadline:
        violations = check_media_playlist(text, previous=previous)
        assert violations == [], "\n".join(map(str, violations)) + "\n" + text
        hint = next(line for line in text.splitlines() if line.startswith("#EXT-X-PRELOAD-HINT"))
        msn, part = hint.split('URI="')[1].split(".m4s")[0].split(".")
        path = f"/live/demo/360p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"
        previous, text = text, stack.text(path)
        assert f'URI="{msn}.{part}.m4s"' in text
        # The same reload again: the shield's copy, the same playlist.
        again = headers_of(stack, path)
        hits += again["x-cascade-shield"] == "hit"
        assert "age" in again
        reloads += 1
    assert reloads >= 10, f"only {reloads} blocking reloads in 3 s through the shield"
    assert hits == reloads


def _viewers(stack: Stack, name: str) -> int:
    state = stack.stream_state(name)
    return int(state["viewers"]) if state else 0


@pytest.mark.browser
def test_two_players_through_the_shield_are_counted_as_two(stack: Stack) -> None:
    # The earlier tests' multivariant requests are viewers too until their sessions expire
    # (VIEWER_TIMEOUT_SECONDS, 30 s): start from none, or "two" could be one of those plus
    # the first player, and the second player then makes three.
    stack.wait("no viewers left by earlier tests", lambda: _viewers(stack, "demo") == 0, timeout=60)
    players = [play(stack, "/watch/demo", seconds=12, warmup=3) for _ in range(2)]
    try:
        stack.wait("two viewers of the demo", lambda: _viewers(stack, "demo") == 2, timeout=40)
        seen = []
        for _ in range(8):  # while both play: the count stays at two
            seen.append(_viewers(stack, "demo"))
            time.sleep(0.5)
        results = [result_of(p) for p in players]
    finally:
        for p in players:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert seen == [2] * 8, seen
    for result in results:
        demo = result["streams"]["demo"]
        assert demo["fatal_errors"] == [], demo
        assert demo["played_seconds"] >= 10, demo
        assert demo["latency_median"] <= 1.5, demo
        live = result["live"]
        # Every request carried CMCD; none an hls_ctx (the URLs are everyone's).
        assert live["cmcd"] == live["requests"] > 0, live
        assert live["hls_ctx"] == 0, live
    hits = sum(r["live"]["shield"].get("hit", 0) for r in results)
    total = sum(r["live"]["requests"] for r in results)
    print(f"\nthrough the shield: {hits} of {total} player requests answered from cache")
    assert hits > 0


@pytest.mark.browser
def test_multi_view_through_the_shield_counts_one_viewer_per_stream(stack: Stack) -> None:
    path = write_stream(stack, "mv2", {"type": "test", "test": {"width": 320, "height": 180}})
    try:
        stack.wait("mv2", lambda: stack.get("/live/mv2/360p/index.m3u8")[0] == 200, timeout=40)
        player = play(stack, "/watch?streams=demo,mv2", seconds=10, warmup=3)
        try:
            stack.wait(
                "one viewer on each stream",
                lambda: _viewers(stack, "demo") == 1 and _viewers(stack, "mv2") == 1,
                timeout=40,
            )
            total = stack.status()["viewers"]
            result = result_of(player)
        finally:
            if player.poll() is None:
                player.kill()
                player.communicate()
        assert total == 1, "one page, one viewer id for its streams"
        for name in ("demo", "mv2"):
            s = result["streams"][name]
            assert s["fatal_errors"] == [], s
            assert s["played_seconds"] >= 8, s
        assert result["live"]["hls_ctx"] == 0, result["live"]
    finally:
        remove_stream(stack, path, "mv2")


def test_without_cmcd_a_player_still_gets_an_hls_ctx_session_passed_to_the_edge(
    stack: Stack,
) -> None:
    text = stack.text("/live/demo.m3u8")
    uri = next(line for line in text.splitlines() if "hls_ctx=" in line)
    assert headers_of(stack, "/live/" + uri)["x-cascade-shield"] == "miss"
