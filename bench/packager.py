"""Packager benchmarks: CPU cost next to FFmpeg, FFmpeg-to-edge delay, 25 streams at once.

    .venv/bin/python bench/packager.py [--seconds N] [--streams 25] [--only cpu,delay,scale]

Prints ONE JSON object on stdout (progress on stderr). Everything runs on loopback with a
Redis server, an edge and FFmpeg processes started here and stopped at the end (also on
Ctrl-C or an error). See bench/README.md for what each figure means.

1. ``cpu``: the real transcoder program (``python -m cascade.transcoder.main``) on the
   demo spec (test pattern 1280x720 -> 640x360 libx264). CPU seconds (utime+stime from
   /proc) of the Python process (packager, Redis client, health loop) against its FFmpeg
   child over the same window.
2. ``delay``: a StreamRunner in a helper process (this file, ``--role runner``) with two
   hooks: the time each pipe read reaches the event loop (``data_received``) and the
   time each part's Redis pipeline returned. The edge serves the stream; this process
   long-polls the next part (``GET .../{msn}.{part}.m4s`` blocks until it exists) and
   stamps the response's last byte. Delay = response complete - pipe read of the
   fragment's last byte, joined on (msn, part).
3. ``scale``: k passthrough transcoders (SRT listeners) fed by k cheap SRT callers that
   loop a pre-encoded 640x360 H.264+AAC clip with ``-c copy``; Python CPU summed over
   the k transcoders for k = 1, 5, 25.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# `python bench/packager.py`: make `bench.common` importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO,
    Procs,
    children_named,
    cpu_seconds,
    free_udp_port,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    machine_busy_percent,
    machine_cpu,
    proc_stat,
    start_edge,
    start_redis,
    summary_ms,
    udp_port_bound,
)

DEMO_SPEC = REPO / "examples" / "local" / "demo.yaml"
PY = sys.executable
FFMPEG = shutil.which("ffmpeg") or "ffmpeg"


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def _entries_added(r: Any, key: str) -> int:
    """Entries ever added to a Redis stream (XINFO STREAM entries-added, Redis >= 7)."""
    try:
        info = r.xinfo_stream(key)
    except Exception:
        return 0
    return int(info.get("entries-added", info.get("length", 0)))


def _wait(cond: Any, seconds: float, what: str, step: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise TimeoutError(f"{what}: not after {seconds:g} s")


# =========================================================================================
# 1. Packager CPU as a share of FFmpeg's CPU
# =========================================================================================


HEVC_CLIP_SECONDS = 8


def _make_hevc_clip(workdir: Path) -> Path:
    """What the design's broadcasters send: 1080p30 HEVC at 20 Mbps with AAC, in MPEG-TS."""
    clip = workdir / "hevc1080.ts"
    log(f"cpu: encoding a {HEVC_CLIP_SECONDS} s 1080p HEVC clip (once; a source loops it)")
    subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(HEVC_CLIP_SECONDS),
         "-c:v", "libx265", "-preset", "ultrafast", "-b:v", "20M",
         "-x265-params", "log-level=error:keyint=30:bframes=0",
         "-c:a", "aac", "-b:a", "128k", "-f", "mpegts", str(clip)],
        check=True,
        timeout=300,
    )  # fmt: skip
    return clip


def bench_cpu_hevc(seconds: float, workdir: Path) -> dict[str, Any]:
    """The design's ingest: HEVC 1080p over SRT, decoded and re-encoded to 640x360 (CPU path)."""
    clip = _make_hevc_clip(workdir)
    port = free_udp_port()
    spec = workdir / "hevc.yaml"
    spec.write_text(
        json.dumps(
            {
                "apiVersion": "cascade.dev/v1alpha1",
                "kind": "LiveStream",
                "metadata": {"name": "hevc"},
                "spec": {"source": {"type": "srt", "srt": {"mode": "listener", "port": port}}},
            }
        )
    )

    def source(procs: Procs) -> None:
        _wait(lambda: udp_port_bound(port), 15, "the SRT listener")
        url = f"srt://127.0.0.1:{port}?mode=caller&latency=120000&pkt_size=1316&transtype=live"
        procs.spawn(
            "hevc source",
            [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
             "-stream_loop", "-1", "-i", str(clip), "-c", "copy", "-f", "mpegts", url],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    return bench_cpu(seconds, workdir, spec=spec, source=source)


def bench_cpu(
    seconds: float,
    workdir: Path,
    *,
    spec: Path = DEMO_SPEC,
    source: Callable[[Procs], None] | None = None,
) -> dict[str, Any]:
    from cascade.contract import schema
    from cascade.contract.manifest import parse_manifest

    stream = parse_manifest(spec.read_text(), source=str(spec))
    rendition = stream.spec.transcode.renditions[0].name
    procs = Procs()
    try:
        redis_url, redis_proc = start_redis(procs, workdir)
        r = _redis(redis_url)
        key = schema.parts_key(stream.name, rendition)
        log(f"cpu: starting the transcoder program on {spec.name} for {seconds:g} s")
        tx = procs.spawn(
            "transcoder",
            [PY, "-m", "cascade.transcoder.main", "--file", str(spec),
             "--bind-host", "127.0.0.1"],
            env={"REDIS_URL": redis_url, "CASCADE_LOG_LEVEL": "WARNING"},
            stop_signal=signal.SIGINT,
        )  # fmt: skip
        _wait(lambda: bool(children_named(tx.pid, "ffmpeg")), 15, "ffmpeg child")
        if source is not None:
            source(procs)
        _wait(lambda: _entries_added(r, key) > 5, 20, "first parts in Redis")
        time.sleep(2.0)  # warm-up: imports and FFmpeg's start are not the steady state
        (ff_pid,) = children_named(tx.pid, "ffmpeg")
        m0, la0 = machine_cpu(), loadavg()
        t0 = time.monotonic()
        py0, ff0, rd0 = cpu_seconds(tx.pid), cpu_seconds(ff_pid), cpu_seconds(redis_proc.pid)
        pys0 = proc_stat(tx.pid)
        parts0 = _entries_added(r, key)
        time.sleep(seconds)
        py1, ff1, rd1 = cpu_seconds(tx.pid), cpu_seconds(ff_pid), cpu_seconds(redis_proc.pid)
        pys1 = proc_stat(tx.pid)
        parts1 = _entries_added(r, key)
        wall = time.monotonic() - t0
        m1 = machine_cpu()
        if children_named(tx.pid, "ffmpeg") != [ff_pid]:
            raise RuntimeError("ffmpeg restarted during the measurement")
        health = {
            k.decode(): v.decode() for k, v in r.hgetall(schema.health_key(stream.name)).items()
        }
        r.close()
        packager, ffmpeg = py1 - py0, ff1 - ff0
        return {
            "spec": str(spec.relative_to(REPO)) if spec.is_relative_to(REPO) else spec.name,
            "wall_seconds": round(wall, 2),
            "packager_cpu_seconds": round(packager, 3),
            "ffmpeg_cpu_seconds": round(ffmpeg, 3),
            "packager_share_percent": round(100 * packager / ffmpeg, 2) if ffmpeg else None,
            "packager_cpu_percent_of_core": round(100 * packager / wall, 2),
            "packager_user_system_seconds": [
                round(pys1.user_seconds - pys0.user_seconds, 3),
                round(pys1.system_seconds - pys0.system_seconds, 3),
            ]
            if pys0 is not None and pys1 is not None
            else None,
            "packager_cpu_ms_per_part": round(1000 * packager / max(1, parts1 - parts0), 3),
            "ffmpeg_cpu_percent_of_core": round(100 * ffmpeg / wall, 2),
            "redis_cpu_seconds": round(rd1 - rd0, 3),
            "parts_published": parts1 - parts0,
            "parts_per_second": round((parts1 - parts0) / wall, 2),
            "transcoder_health": {k: health.get(k) for k in ("state", "fps", "speed", "restarts")},
            "cpu_clock_resolution_seconds": 1 / os.sysconf("SC_CLK_TCK"),
            "machine_busy_percent": round(machine_busy_percent(m0, m1), 1),
            "loadavg_before": la0,
        }
    finally:
        procs.stop_all()


# =========================================================================================
# 2. Delay from FFmpeg's write to the part being servable by the edge
# =========================================================================================


def runner_role(args: argparse.Namespace) -> int:
    """The helper process of ``delay``: a StreamRunner that stamps reads and publishes."""
    return asyncio.run(_runner_main(Path(args.spec), args.redis_url, Path(args.out)))


async def _runner_main(spec_path: Path, redis_url: str, out: Path) -> int:
    from redis.asyncio import Redis

    from cascade.contract.manifest import parse_manifest
    from cascade.contract.schema import PartEntry
    from cascade.contract.settings import TranscoderSettings
    from cascade.transcoder.argv import Inputs
    from cascade.transcoder.runner import StreamRunner

    stream = parse_manifest(spec_path.read_text(), source=str(spec_path))  # noqa: ASYNC240
    settings = TranscoderSettings(redis_url=redis_url)
    sink = out.open("w", buffering=1)

    class TimedRunner(StreamRunner):
        """StreamRunner, unchanged, plus timestamps around its two hot-path methods."""

        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.rx_at: dict[str, float] = {}  # rendition -> time of its last pipe read
            self.reads: dict[str, int] = {}  # rendition -> pipe reads since the last publish

        def _on_media(self, rendition: str, packager: Any, data: bytes) -> None:
            self.rx_at[rendition] = time.time()  # the loop just read() the pipe
            self.reads[rendition] = self.reads.get(rendition, 0) + 1
            super()._on_media(rendition, packager, data)

        def _publish(self, rendition: str, packager: Any, entries: list[Any]) -> None:
            t_rx = self.rx_at.get(rendition, 0.0)
            n_reads, self.reads[rendition] = self.reads.get(rendition, 0), 0
            t_read = packager.stats.last_part_at  # the runner's clock() when it fed the bytes
            super()._publish(rendition, packager, entries)
            t_pub = time.time()  # the XADD is written to the socket (not awaited)
            for e in entries:
                if isinstance(e, PartEntry):
                    sink.write(
                        json.dumps(
                            {"r": rendition, "msn": e.msn, "part": e.part, "rx": t_rx,
                             "read": t_read, "pub": t_pub, "bytes": len(e.data),
                             "reads": n_reads}
                        ) + "\n"
                    )  # fmt: skip

    redis = Redis.from_url(settings.redis_url)
    runner = TimedRunner(stream, redis, settings, inputs=Inputs(bind_host="127.0.0.1"))
    task = asyncio.create_task(runner.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await redis.aclose()
    sink.close()
    return 0


class Http:
    """A minimal HTTP/1.1 keep-alive client on raw asyncio streams (precise timing)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.all: list[asyncio.StreamWriter] = []

    async def get(self, path: str, limit: float) -> tuple[int, bytes, float]:
        """(status, body, time.time() when the body's last byte was read)."""
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.all.append(writer)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limit)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if m is None:
            raise RuntimeError(f"no content-length in response to {path}")
        body = await asyncio.wait_for(reader.readexactly(int(m.group(1))), limit)
        done = time.time()
        if b"connection: close" in head.lower():
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, body, done

    async def close(self) -> None:
        for w in self.all:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()


_HINT_RE = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="(\d+)\.(\d+)\.m4s"')


async def _follow_parts(
    port: int, stream: str, rendition: str, seconds: float
) -> dict[tuple[int, int], tuple[float, float]]:
    """Long-poll every next part for ``seconds``: (msn, part) -> (request sent, response done)."""
    http = Http(port)
    base = f"/live/{stream}/{rendition}"
    got: dict[tuple[int, int], tuple[float, float]] = {}
    pending: dict[tuple[int, int], asyncio.Task[None]] = {}
    errors: list[str] = []
    try:
        deadline = time.monotonic() + 30
        hint = None
        while hint is None:
            if time.monotonic() > deadline:
                raise TimeoutError("the edge never served a playlist with a preload hint")
            status, body, _ = await http.get(f"{base}/index.m3u8", 5)
            if status == 200 and (m := _HINT_RE.search(body.decode())):
                hint = (int(m.group(1)), int(m.group(2)))
            else:
                await asyncio.sleep(0.1)
        log(f"delay: edge serves {stream}/{rendition}; preload hint {hint[0]}.{hint[1]}")
        end = time.monotonic() + seconds

        async def fetch(key: tuple[int, int]) -> None:
            sent = time.time()
            try:
                status, _, done = await http.get(f"{base}/{key[0]}.{key[1]}.m4s", 5)
            except Exception as exc:
                errors.append(f"{key}: {exc!r}")
                return
            finally:
                pending.pop(key, None)
            if status == 200:
                got[key] = (sent, done)
                if time.monotonic() < end:
                    for nxt in ((key[0], key[1] + 1), (key[0] + 1, 0)):
                        if nxt not in got and nxt not in pending:
                            pending[nxt] = asyncio.create_task(fetch(nxt))
            elif status not in (404,):  # 404: the other candidate won (segment boundary)
                errors.append(f"{key}: HTTP {status}")

        for key in (hint, (hint[0] + 1, 0)):
            pending[key] = asyncio.create_task(fetch(key))
        resyncs = 0
        while time.monotonic() < end:
            await asyncio.sleep(0.2)
            if not pending:
                # Both candidates 404ed (e.g. the hint raced a segment boundary at start):
                # take a fresh hint from the playlist, as a player would.
                resyncs += 1
                if resyncs > 5:
                    raise RuntimeError(f"the client lost the stream: {errors[-3:]}")
                status, body, _ = await http.get(f"{base}/index.m3u8", 5)
                if status == 200 and (m := _HINT_RE.search(body.decode())):
                    hint = (int(m.group(1)), int(m.group(2)))
                    for key in (hint, (hint[0] + 1, 0)):
                        pending[key] = asyncio.create_task(fetch(key))
                log(f"delay: resynchronised on the playlist ({resyncs})")
        for t in list(pending.values()):
            t.cancel()
        await asyncio.gather(*pending.values(), return_exceptions=True)
        if errors:
            log(f"delay: {len(errors)} request errors, e.g. {errors[:3]}")
        return got
    finally:
        await http.close()


def bench_delay(seconds: float, workdir: Path) -> dict[str, Any]:
    from cascade.contract.manifest import parse_manifest

    stream = parse_manifest(DEMO_SPEC.read_text(), source=str(DEMO_SPEC))
    rendition = stream.spec.transcode.renditions[0].name
    procs = Procs()
    out = workdir / "parts.jsonl"
    try:
        redis_url, _ = start_redis(procs, workdir)
        edge_port, _ = start_edge(procs, redis_url)
        log(f"delay: edge on 127.0.0.1:{edge_port}; starting the timed runner")
        runner = procs.spawn(
            "runner",
            [PY, str(Path(__file__).resolve()), "--role", "runner", "--spec", str(DEMO_SPEC),
             "--redis-url", redis_url, "--out", str(out)],
            env={"CASCADE_LOG_LEVEL": "WARNING"},
            stop_signal=signal.SIGTERM,
        )  # fmt: skip
        la0, m0 = loadavg(), machine_cpu()
        got = asyncio.run(_follow_parts(edge_port, stream.name, rendition, seconds))
        m1 = machine_cpu()
        procs.stop(procs.find(runner))
    finally:
        procs.stop_all()
    published: dict[tuple[int, int], dict[str, float]] = {}
    for line in out.read_text().splitlines():
        rec = json.loads(line)
        if rec["r"] == rendition:
            published[(rec["msn"], rec["part"])] = rec
    total, to_pub, to_edge, loop_lag = [], [], [], []
    reads = [rec.get("reads", 0) for rec in published.values()]
    already = unmatched = 0
    for key in sorted(got):
        sent, done = got[key]
        rec = published.get(key)
        if rec is None:
            unmatched += 1
            continue
        if sent > rec["rx"]:
            already += 1  # the part existed before it was asked for: not a blocking sample
            continue
        total.append(done - rec["rx"])
        to_pub.append(rec["pub"] - rec["rx"])
        to_edge.append(done - rec["pub"])
        loop_lag.append(rec["read"] - rec["rx"])
    return {
        "spec": str(DEMO_SPEC.relative_to(REPO)),
        "seconds": seconds,
        "parts_received": len(got),
        "samples": len(total),
        "excluded_already_available": already,
        "excluded_unmatched": unmatched,
        "pipe_to_edge_response_ms": summary_ms(total),
        "split_pipe_to_xadd_written_ms": summary_ms(to_pub),
        "split_xadd_written_to_edge_response_ms": summary_ms(to_edge),
        "pipe_read_to_packager_feed_ms": summary_ms(loop_lag),
        "pipe_reads_per_part_mean": round(statistics.mean(reads), 2) if reads else None,
        "part_bytes_median": statistics.median(r["bytes"] for r in published.values())
        if published
        else None,
        "machine_busy_percent": round(machine_busy_percent(m0, m1), 1),
        "loadavg_before": la0,
    }


# =========================================================================================
# 3. Many passthrough streams at once
# =========================================================================================

CLIP_SECONDS = 16  # 480 video frames and exactly 750 AAC frames: loops without a gap


def _make_clip(workdir: Path) -> Path:
    clip = workdir / "clip.ts"
    log(f"scale: encoding a {CLIP_SECONDS} s 640x360 H.264+AAC clip (once, looped by sources)")
    subprocess.run(
        [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", str(CLIP_SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15",
         "-keyint_min", "15", "-sc_threshold", "0", "-bf", "0",
         "-b:v", "400k", "-maxrate", "400k", "-bufsize", "200k", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k", "-ac", "2", "-f", "mpegts", str(clip)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return clip


def _passthrough_spec(name: str, port: int) -> str:
    return json.dumps(
        {
            "apiVersion": "cascade.dev/v1alpha1",
            "kind": "LiveStream",
            "metadata": {"name": name},
            "spec": {
                "source": {"type": "srt", "srt": {"mode": "listener", "port": port}},
                "transcode": {"mode": "passthrough", "renditions": [{"name": "src"}]},
                "delivery": {"segmentDurationMs": 500, "partDurationMs": 100},
            },
        }
    )


class PassthroughStream:
    def __init__(self, procs: Procs, index: int, redis_url: str, clip: Path) -> None:
        self.procs = procs
        self.name = f"bench-{index:02d}"
        self.port = free_udp_port()
        self.clip = clip
        self.source: subprocess.Popen[bytes] | None = None
        self.source_starts = 0
        self.tx = procs.spawn(
            f"transcoder {self.name}",
            [PY, "-m", "cascade.transcoder.main", "--bind-host", "127.0.0.1"],
            env={"REDIS_URL": redis_url, "CASCADE_LIVESTREAM": _passthrough_spec(self.name, self.port),
                 "CASCADE_LOG_LEVEL": "WARNING"},
            stop_signal=signal.SIGTERM,
        )  # fmt: skip

    def listening(self) -> bool:
        return udp_port_bound(self.port)

    def start_source(self) -> None:
        self.source_starts += 1
        url = f"srt://127.0.0.1:{self.port}?mode=caller&latency=120000&pkt_size=1316&transtype=live"
        self.source = self.procs.spawn(
            f"source {self.name}",
            [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
             "-stream_loop", "-1", "-i", str(self.clip), "-c", "copy", "-f", "mpegts", url],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @property
    def key(self) -> str:
        from cascade.contract import schema

        return schema.parts_key(self.name, "src")


def _cpu_or_zero(pid: int) -> float:
    st = proc_stat(pid)
    return st.cpu_seconds if st is not None else 0.0


def bench_scale(seconds: float, max_streams: int, workdir: Path) -> dict[str, Any]:
    from cascade.contract import schema

    steps = sorted({k for k in (1, 5, max_streams) if 1 <= k <= max_streams})
    procs = Procs()
    streams: list[PassthroughStream] = []
    results = []
    try:
        clip = _make_clip(workdir)
        redis_url, redis_proc = start_redis(procs, workdir)
        r = _redis(redis_url)
        for k in steps:
            new = [PassthroughStream(procs, i, redis_url, clip) for i in range(len(streams), k)]
            streams += new
            log(f"scale: {k} streams: waiting for {len(new)} new SRT listeners")
            _wait(lambda new=new: all(s.listening() for s in new), 30, "SRT listeners bound")
            for s in new:
                s.start_source()
            # Live: parts flowing for every stream (a source that lost the race restarts).
            deadline = time.monotonic() + 30
            while True:
                for s in new:
                    if s.source is not None and s.source.poll() is not None and s.source_starts < 4:
                        s.start_source()
                if all(_entries_added(r, s.key) > 10 for s in streams):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.25)
            time.sleep(2.0)  # warm-up
            tx_pids = {s.name: s.tx.pid for s in streams}
            ff_pids = [p for s in streams for p in children_named(s.tx.pid, "ffmpeg")]
            src_pids = [s.source.pid for s in streams if s.source is not None]
            added0 = {s.name: _entries_added(r, s.key) for s in streams}
            m0, la0 = machine_cpu(), loadavg()
            t0 = time.monotonic()
            py0 = {n: _cpu_or_zero(p) for n, p in tx_pids.items()}
            ff0 = sum(_cpu_or_zero(p) for p in ff_pids)
            src0 = sum(_cpu_or_zero(p) for p in src_pids)
            rd0 = _cpu_or_zero(redis_proc.pid)
            log(f"scale: {k} streams: measuring for {seconds:g} s")
            time.sleep(seconds)
            py1 = {n: _cpu_or_zero(p) for n, p in tx_pids.items()}
            ff1 = sum(_cpu_or_zero(p) for p in ff_pids)
            src1 = sum(_cpu_or_zero(p) for p in src_pids)
            rd1 = _cpu_or_zero(redis_proc.pid)
            wall = time.monotonic() - t0
            m1, la1 = machine_cpu(), loadavg()
            added1 = {s.name: _entries_added(r, s.key) for s in streams}
            rates = sorted((added1[n] - added0[n]) / wall for n in added0)
            live = sum(1 for x in rates if x >= 5)  # 10 parts/s expected (100 ms parts)
            restarts = 0
            for s in streams:
                h = r.hget(schema.health_key(s.name), "restarts")
                restarts += int(h) if h else 0
            py_total = sum(py1[n] - py0[n] for n in py0)
            per_stream_pct = sorted(100 * (py1[n] - py0[n]) / wall for n in py0)
            step = {
                "streams": k,
                "live_streams": live,
                "packager_cpu_percent_total": round(100 * py_total / wall, 2),
                "per_stream": round(100 * py_total / wall / k, 3),
                "per_stream_min_max": [round(per_stream_pct[0], 2), round(per_stream_pct[-1], 2)],
                "ffmpeg_passthrough_cpu_percent_total": round(100 * (ff1 - ff0) / wall, 2),
                "sources_cpu_percent_total": round(100 * (src1 - src0) / wall, 2),
                "redis_cpu_percent": round(100 * (rd1 - rd0) / wall, 2),
                "parts_per_second_per_stream": {
                    "min": round(rates[0], 2),
                    "median": round(statistics.median(rates), 2),
                },
                "transcoder_restarts": restarts,
                "machine_busy_percent": round(machine_busy_percent(m0, m1), 1),
                "loadavg_before_after": [la0[0], la1[0]],
                "wall_seconds": round(wall, 2),
            }
            log(f"scale: {json.dumps(step)}")
            results.append(step)
        r.close()
    finally:
        # Sources and transcoders together (each transcoder ends its stream in Redis), then
        # Redis last.
        procs.stop_many([i for i in procs.items if i.name != "redis"])
        procs.stop_all()
    return {"unit": "percent of one core", "steps": results}


# =========================================================================================


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="measurement window of each benchmark"
    )
    parser.add_argument("--streams", type=int, default=25, help="streams of the last scale step")
    parser.add_argument("--only", default="cpu,hevc,delay,scale", help="comma-separated subset")
    # Internal: the helper process of the delay benchmark.
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "runner":
        return runner_role(args)
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    if not 1 <= args.streams <= 50:
        parser.error("--streams must be in [1, 50]")
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = wanted - {"cpu", "hevc", "delay", "scale"}
    if unknown:
        parser.error(f"unknown benchmark(s): {sorted(unknown)}")
    install_sigterm_as_interrupt()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": loadavg()},
        "seconds": args.seconds,
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        work = Path(tmp)
        runs: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
            "packager_cpu": ("cpu", lambda: bench_cpu(args.seconds, work)),
            "packager_cpu_hevc_ingest": ("hevc", lambda: bench_cpu_hevc(args.seconds, work)),
            "delay": ("delay", lambda: bench_delay(args.seconds, work)),
            "passthrough_scale": ("scale", lambda: bench_scale(args.seconds, args.streams, work)),
        }
        for key, (name, run) in runs.items():
            if name not in wanted:
                continue
            try:
                result[key] = run()
            except Exception as exc:  # report it and go on with the other benchmarks
                failed = True
                log(f"{name}: FAILED: {exc!r}\n{traceback.format_exc()}")
                result[key] = {"error": repr(exc)}
            else:
                log(f"{name}: done")
    result["machine"]["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        log("interrupted: everything started here was stopped")
        raise SystemExit(130) from None
