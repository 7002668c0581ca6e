"""The local stack end to end: `cascade up` as a user runs it, real FFmpeg, Redis, edge, Chromium.

One stack serves the whole module (starting it costs seconds); each test leaves the
streams folder as it found it. Figures (latency, recovery) are printed for the notes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cascade.hls.rules import check_media_playlist, check_multivariant_playlist

from ..conftest import REPO, free_port, free_server_port, free_udp_port

pytestmark = pytest.mark.slow

DEMO = (REPO / "examples" / "local" / "demo.yaml").read_text()


@dataclass
class Stack:
    proc: subprocess.Popen[str]
    base: str
    streams_dir: Path
    redis_port: int
    log: Path

    def get(self, path: str, timeout: float = 10) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError):
            return 0, b""  # not listening (yet)

    def text(self, path: str) -> str:
        status, body = self.get(path)
        assert status == 200, f"{path}: {status} {body[:200]!r}"
        return body.decode()

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.text("/status"))
        return result

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 30) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if check():
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; log:\n{self.log.read_text()[-3000:]}"
        )

    def stream_state(self, name: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.status()["streams"].get(name)
        return result


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, grandchildren...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def program(pid: int) -> str:
    """The first word of a process's command line; "" once it is gone (a process listed a
    moment ago, such as a redis-server just killed, may have exited by the time we read)."""
    args = cmdline(pid)
    return args[0] if args else ""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("streams")
    (folder / "demo.yaml").write_text(DEMO)
    log = tmp_path_factory.mktemp("log") / "cascade.log"
    # Below the ephemeral range: a test kills this Redis, and a client reconnecting while it
    # is down must never be handed its port (see free_server_port).
    port, redis_port = free_port(), free_server_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "CASCADE_REDIS_PORT": str(redis_port),
        "CASCADE_S3_PORT": str(free_server_port()),
        "CASCADE_S3_DIR": str(tmp_path_factory.mktemp("store")),
        "CASCADE_STREAMS_DIR": str(folder),
        "STREAM_TIMEOUT": "3",
    }
    env.pop("REDIS_URL", None)
    env.pop("CASCADE_S3_ENDPOINT", None)
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cascade.cli.main", "up"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    s = Stack(proc, f"http://127.0.0.1:{port}", folder, redis_port, log)
    try:
        s.wait("the demo stream", lambda: s.get("/live/demo/360p/index.m3u8")[0] == 200, timeout=60)
        yield s
    finally:
        tree = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    left = [(p, cmdline(p)[:3]) for p in tree if alive(p)]
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert not left, f"Ctrl-C left processes running: {left}"


def test_demo_playlists_pass_the_ll_hls_rule_check(stack: Stack) -> None:
    assert check_multivariant_playlist(stack.text("/live/demo.m3u8")) == []
    previous = None
    # Follow the stream as a player does: blocking reloads for the next part, for 3 s.
    text = stack.text("/live/demo/360p/index.m3u8")
    deadline = time.monotonic() + 3
    reloads = 0
    while time.monotonic() < deadline:
        violations = check_media_playlist(text, previous=previous)
        assert violations == [], "\n".join(map(str, violations)) + "\n" + text
        hints = [line for line in text.splitlines() if line.startswith("#EXT-X-PRELOAD-HINT")]
        assert hints, text
        hint = hints[0]
        msn, part = hint.split('URI="')[1].split(".m4s")[0].split(".")
        previous, text = (
            text,
            stack.text(f"/live/demo/360p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}"),
        )
        assert f'URI="{msn}.{part}.m4s"' in text
        reloads += 1
    assert reloads >= 20, f"only {reloads} blocking reloads in 3 s at 100 ms parts"


def play(
    stack: Stack, path: str, seconds: int, warmup: int = 5, **kw: Any
) -> subprocess.Popen[str]:
    node = shutil.which("node")
    assert node, "node is needed for the browser test"
    return subprocess.Popen(
        [
            node,
            str(REPO / "tests" / "browser" / "play.mjs"),
            "--url",
            stack.base + path,
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def result_of(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"play.mjs failed ({proc.returncode}): {err}"
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


@pytest.mark.browser
def test_hlsjs_in_chromium_plays_the_demo_under_a_second_and_a_half(stack: Stack) -> None:
    result = result_of(play(stack, "/watch/demo", seconds=20))
    demo = result["streams"]["demo"]
    print(
        f"\nglass-to-glass latency: median {demo['latency_median']:.3f} s, p90 {demo['latency_p90']:.3f} s "
        f"over {demo['latency_samples']} samples; stalls {demo['stalls']}"
    )
    assert demo["fatal_errors"] == []
    assert result["page_errors"] == []
    assert demo["played_seconds"] >= 18, demo
    assert demo["latency_samples"] >= 40
    assert demo["latency_median"] <= 1.5, demo


@pytest.mark.browser
def test_ffmpeg_killed_mid_stream_recovers_and_the_player_keeps_playing(stack: Stack) -> None:
    before = stack.stream_state("demo")
    assert before is not None
    player = play(stack, "/watch/demo", seconds=24, warmup=3)
    time.sleep(8)
    transcoders = [
        p for p in descendants(stack.proc.pid) if "cascade.transcoder.main" in " ".join(cmdline(p))
    ]
    ffmpegs = [
        p
        for t in transcoders
        for p in descendants(t)
        if program(p).endswith("ffmpeg") and any("testsrc2=size=1280x720" in a for a in cmdline(p))
    ]
    assert len(ffmpegs) == 1, ffmpegs
    killed_at = time.monotonic()
    os.kill(ffmpegs[0], signal.SIGKILL)
    recovered = stack.wait(
        "the demo to restart",
        lambda: (
            (s := stack.stream_state("demo")) is not None
            and s["restarts"] > before["restarts"]
            and s["state"] == "live"
        ),
        timeout=15,
    )
    text = stack.text("/live/demo/360p/index.m3u8")
    assert "#EXT-X-DISCONTINUITY" in text
    # Follow the playlist while the discontinuity slides out of the window (12 s at 24
    # segments of 500 ms): every reload must agree with the one before.
    previous, reloads = text, 0
    while player.poll() is None and reloads < 200:
        time.sleep(0.1)
        text = stack.text("/live/demo/360p/index.m3u8")
        assert check_media_playlist(text, previous=previous) == [], text
        previous, reloads = text, reloads + 1
    result = result_of(player)
    demo = result["streams"]["demo"]
    print(
        f"\nrecovery after SIGKILL of ffmpeg: live again {recovered:.2f} s after the kill "
        f"({time.monotonic() - killed_at:.1f} s ago); player: {demo}"
    )
    assert demo["status"] == "playing", demo
    assert demo["fatal_errors"] == [], demo
    assert demo["played_seconds"] >= 16, demo
    assert check_media_playlist(text) == []


def preload_hint(stack: Stack, name: str) -> tuple[int, int] | None:
    """(msn, part) of the part the media playlist hints next; None while not served."""
    status, body = stack.get(f"/live/{name}/360p/index.m3u8", timeout=5)
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith("#EXT-X-PRELOAD-HINT:"):
            msn, part, _ = line.split('URI="')[1].split(".", 2)
            return int(msn), int(part)
    return None


def redis_servers(stack: Stack) -> list[int]:
    # redis-server sets its title to "/usr/bin/redis-server 127.0.0.1:PORT" (one argument).
    return [p for p in descendants(stack.proc.pid) if "redis-server" in program(p)]


def test_redis_killed_is_restarted_on_its_port_and_the_demo_plays_on(stack: Stack) -> None:
    (old,) = redis_servers(stack)
    before = preload_hint(stack, "demo")
    assert before is not None
    killed_at = time.monotonic()
    os.kill(old, signal.SIGKILL)
    restarted = stack.wait(
        "a new redis-server",
        lambda: (
            len(new := [p for p in redis_servers(stack) if p != old]) == 1
            and alive(new[0])
            and f"127.0.0.1:{stack.redis_port}" in " ".join(cmdline(new[0]))
        ),
        timeout=15,
    )
    # The edge follows the new (empty) Redis and the transcoder goes on: new parts are
    # served, numbered on from before the kill.
    stack.wait(
        "new parts of the demo",
        lambda: (h := preload_hint(stack, "demo")) is not None and h[0] >= before[0] + 4,
        timeout=30,
    )
    back = time.monotonic() - killed_at
    text = stack.text("/live/demo/360p/index.m3u8")
    assert check_media_playlist(text) == [], text
    assert "redis-server exited" in stack.log.read_text()
    print(
        f"\nredis-server SIGKILLed: a new one on port {stack.redis_port} after "
        f"{restarted:.2f} s; new demo parts served {back:.2f} s after the kill"
    )


def write_stream(stack: Stack, name: str, source: dict[str, Any], **spec: Any) -> Path:
    path = stack.streams_dir / f"{name}.yaml"
    manifest = {
        "apiVersion": "cascade.dev/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": name},
        "spec": {
            "source": source,
            "transcode": {
                "renditions": [
                    {"name": "360p", "width": 640, "height": 360, "videoBitrateKbps": 400}
                ]
            },
            **spec,
        },
    }
    path.write_text(json.dumps(manifest))  # JSON is YAML
    return path


SENDER_VIDEO = [
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc2=size=320x180:rate=30",
    "-f",
    "lavfi",
    "-re",
    "-i",
    "sine=frequency=300:sample_rate=48000",
]


# What the RTMP and RTP senders encode: cheap H.264 with a keyframe a second, and AAC.
H264_AAC = ["-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-c:a", "aac"]


def sender(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *SENDER_VIDEO, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_sender(proc: subprocess.Popen[bytes]) -> None:
    with_signal = proc.poll() is None
    if with_signal:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def assert_plays(stack: Stack, name: str, timeout: float = 30) -> None:
    stack.wait(
        f"{name} to be live", lambda: stack.get(f"/live/{name}/360p/index.m3u8")[0] == 200, timeout
    )
    text = stack.text(f"/live/{name}/360p/index.m3u8")
    assert check_media_playlist(text) == [], text
    hint = next(line for line in text.splitlines() if "PRELOAD-HINT" in line)
    uri = hint.split('URI="')[1].rstrip('"')
    status, body = stack.get(f"/live/{name}/360p/{uri}")
    assert status == 200 and body[4:8] == b"moof", (status, body[:16])
    variant = stack.text(f"/live/{name}.m3u8")
    assert 'CODECS="avc1.' in variant


def remove_stream(stack: Stack, path: Path, name: str) -> None:
    path.unlink()
    stack.wait(f"{name} to stop", lambda: stack.get(f"/live/{name}.m3u8")[0] == 404, 15)
    import redis

    client = redis.Redis(port=stack.redis_port)
    try:
        stack.wait(
            f"{name}'s Redis keys to go",
            lambda: not list(client.scan_iter(f"cascade:stream:{name}:*")),
            10,
        )
        assert not client.sismember("cascade:streams", name)
    finally:
        client.close()


def test_srt_listener_with_hevc_input_plays_then_silence_is_reported(stack: Stack) -> None:
    port = free_udp_port()
    path = write_stream(stack, "srt1", {"type": "srt", "srt": {"mode": "listener", "port": port}})
    # What a broadcaster sends: HEVC in MPEG-TS over SRT.
    src = sender(
        [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:keyint=30",
            "-b:v",
            "1M",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
            f"srt://127.0.0.1:{port}?mode=caller&latency=120000",
        ]
    )
    try:
        assert_plays(stack, "srt1")
        os.killpg(src.pid, signal.SIGSTOP)  # the encoder goes silent without hanging up
        stack.wait(
            "the silence to be reported",
            lambda: (s := stack.stream_state("srt1")) is not None and s["reason"] == "InputSilent",
            timeout=15,
        )
        state = stack.stream_state("srt1")
        assert state is not None and "no media" in state["last_error"], state
        demo = stack.stream_state("demo")
        assert demo is not None and demo["state"] == "live", (
            "a silent stream must not disturb the others"
        )
    finally:
        os.killpg(src.pid, signal.SIGCONT)
        stop_sender(src)
    remove_stream(stack, path, "srt1")


def test_rtmp_listen_plays(stack: Stack) -> None:
    port = free_port()
    path = write_stream(
        stack,
        "rtmp1",
        {"type": "rtmp", "rtmp": {"mode": "listen", "port": port, "app": "live", "streamKey": "k"}},
    )
    time.sleep(2)  # the listener must be up before the publisher connects
    src = sender(
        [
            *H264_AAC,
            "-f",
            "flv",
            f"rtmp://127.0.0.1:{port}/live/k",
        ]
    )
    try:
        assert_plays(stack, "rtmp1")
    finally:
        stop_sender(src)
    remove_stream(stack, path, "rtmp1")


def test_rtmp_pull_plays(stack: Stack) -> None:
    port = free_port()
    # An origin server that serves one stream to whoever connects to play it.
    src = sender(
        [
            *H264_AAC,
            "-f",
            "flv",
            "-listen",
            "1",
            f"rtmp://127.0.0.1:{port}/live/origin",
        ]
    )
    try:
        time.sleep(1)
        path = write_stream(
            stack,
            "pull1",
            {
                "type": "rtmp",
                "rtmp": {"mode": "pull", "url": f"rtmp://127.0.0.1:{port}/live/origin"},
            },
        )
        assert_plays(stack, "pull1")
    finally:
        stop_sender(src)
    remove_stream(stack, path, "pull1")


def test_rtp_from_sdp_plays(stack: Stack) -> None:
    port = free_udp_port()
    sdp = f"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=cascade test\nc=IN IP4 127.0.0.1\nt=0 0\nm=video {port} RTP/AVP 33\na=rtpmap:33 MP2T/90000\n"
    path = write_stream(stack, "rtp1", {"type": "rtp", "rtp": {"sdp": sdp}})
    time.sleep(2)
    src = sender(
        [
            *H264_AAC,
            "-f",
            "rtp_mpegts",
            f"rtp://127.0.0.1:{port}",
        ]
    )
    try:
        assert_plays(stack, "rtp1")
    finally:
        stop_sender(src)
    remove_stream(stack, path, "rtp1")


def test_changed_file_restarts_the_stream_and_an_invalid_one_is_reported(stack: Stack) -> None:
    path = write_stream(stack, "t1", {"type": "test", "test": {"width": 320, "height": 180}})
    try:
        assert_plays(stack, "t1")
        assert "BANDWIDTH=510400" in stack.text("/live/t1.m3u8")
        manifest = json.loads(path.read_text())
        manifest["spec"]["transcode"]["renditions"][0]["videoBitrateKbps"] = 300
        path.write_text(json.dumps(manifest))
        stack.wait(
            "the new spec to be served",
            lambda: "BANDWIDTH=400400" in stack.get("/live/t1.m3u8")[1].decode(),
            30,
        )
        # A broken edit: reported with the field, and the running stream is kept.
        manifest["spec"]["delivery"] = {"segmentDurationMs": 500, "partDurationMs": 300}
        path.write_text(json.dumps(manifest))
        stack.wait(
            "the error to be reported",
            lambda: "partDurationMs must divide" in stack.log.read_text(),
            10,
        )
        time.sleep(1.5)
        assert stack.get("/live/t1.m3u8")[0] == 200
    finally:
        remove_stream(stack, path, "t1")


@pytest.mark.browser
def test_multi_view_page_plays_several_streams_at_once(stack: Stack) -> None:
    path = write_stream(stack, "mv2", {"type": "test", "test": {"width": 320, "height": 180}})
    try:
        assert_plays(stack, "mv2")
        result = result_of(play(stack, "/watch?streams=demo,mv2", seconds=10, warmup=3))
        for name in ("demo", "mv2"):
            s = result["streams"][name]
            assert s["fatal_errors"] == [], s
            assert s["played_seconds"] >= 8, s
            assert s["latency_median"] <= 1.5, s
        print(
            f"\nmulti-view latency: demo {result['streams']['demo']['latency_median']:.2f} s, "
            f"mv2 {result['streams']['mv2']['latency_median']:.2f} s"
        )
    finally:
        remove_stream(stack, path, "mv2")


def test_segments_older_than_the_window_are_served_from_the_archive(stack: Stack) -> None:
    def last_msn() -> int:
        state = stack.stream_state("demo")
        assert state is not None
        value: int = state["renditions"]["360p"]["last_msn"]
        return value

    # The window keeps 24 segments (12 s); by now the demo has run longer than that.
    stack.wait("the demo to outgrow its window", lambda: last_msn() > 30, timeout=30)
    old = last_msn() - 28
    text = stack.text("/live/demo/360p/index.m3u8")
    assert f"\n{old}.m4s\n" not in text  # not in the live window any more
    status, body = stack.get(f"/live/demo/360p/{old}.m4s")
    assert status == 200
    assert body[4:8] == b"moof", body[:16]


def get_with_headers(stack: Stack, path: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(stack.base + path, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def transcoders(stack: Stack) -> list[int]:
    return [
        p for p in descendants(stack.proc.pid) if "cascade.transcoder.main" in " ".join(cmdline(p))
    ]


def on_demand_stopped(stack: Stack, name: str) -> bool:
    state = stack.stream_state(name)
    return state is not None and state["state"] == "stopped" and state["on_demand"]


def test_on_demand_stream_starts_when_asked_and_stops_when_nobody_watches(stack: Stack) -> None:
    before = len(transcoders(stack))
    path = write_stream(
        stack,
        "od1",
        {"type": "test", "test": {"width": 320, "height": 180}},
        activation="OnDemand",
        idleTimeoutSeconds=4,
    )
    try:
        # Known to the edge as on demand; nobody asked, so no transcoder (only /status is
        # read here: it records no demand).
        stack.wait("od1 to be on demand", lambda: on_demand_stopped(stack, "od1"), 10)
        time.sleep(1.5)  # a reconcile or two
        assert len(transcoders(stack)) == before
        status, headers, body = get_with_headers(stack, "/live/od1.m3u8")
        assert status == 503, body
        assert headers["x-cascade-stream-state"] == "starting"
        assert headers["retry-after"] == "2"
        assert b"is starting (on demand)" in body
        # That request was the demand: the playlist is served within a few seconds.
        waited = stack.wait(
            "od1 to start on demand", lambda: stack.get("/live/od1.m3u8")[0] == 200, 15
        )
        print(f"\non-demand start: playlist served {waited:.2f} s after the first request")
        assert_plays(stack, "od1")
        assert len(transcoders(stack)) == before + 1
        # Nobody watches now: stopped idleTimeoutSeconds after the last viewer request.
        stack.wait("od1 to stop without viewers", lambda: on_demand_stopped(stack, "od1"), 15)
        assert "stream od1 stopped: no viewer for" in stack.log.read_text()
        assert len(transcoders(stack)) == before
        # The demand that started it is older than the stop: it does not start it again.
        time.sleep(2)
        assert on_demand_stopped(stack, "od1")
        assert len(transcoders(stack)) == before
    finally:
        remove_stream(stack, path, "od1")
    import redis

    client = redis.Redis(port=stack.redis_port)
    try:
        assert not client.sismember("cascade:ondemand", "od1")
    finally:
        client.close()


@pytest.mark.browser
def test_player_page_waits_for_an_on_demand_stream_to_start(stack: Stack) -> None:
    path = write_stream(
        stack,
        "od2",
        {"type": "test", "test": {"width": 320, "height": 180}},
        activation="OnDemand",
    )
    try:
        stack.wait("od2 to be on demand", lambda: on_demand_stopped(stack, "od2"), 10)
        result = result_of(play(stack, "/watch/od2", seconds=4, warmup=1))
        od2 = result["streams"]["od2"]
        assert od2["starting_retries"] >= 1, od2  # it was shown "starting…" first
        assert od2["fatal_errors"] == [], od2
        assert od2["played_seconds"] >= 3, od2
        assert result["page_errors"] == []
    finally:
        remove_stream(stack, path, "od2")
