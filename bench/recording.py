"""Recording benchmarks: what uploading to the object store costs the live path, and the store.

    .venv/bin/python bench/recording.py [--seconds 20] [--streams 25] [--only pair,scale]

Prints ONE JSON object on stdout (progress on stderr). Runs on loopback: a Redis server,
an object store (Versity Gateway, built by scripts/objectstore-build.sh) and passthrough
transcoders (``python -m cascade.transcoder.main``, SRT listeners) fed by cheap SRT callers
looping a pre-encoded 640x360 H.264+AAC clip (``-c copy``), as bench/packager.py's scale
step; all stopped at the end.

Part delay: for each part in Redis, the time of its ``XADD`` (the entry id is Redis's
clock in ms, the same machine's clock) minus the end of its media on the wall clock
(program date-time + duration, anchored when the run's first fragment arrived): the
packager's and the Redis writer's delay plus the arrival jitter. The reference is the
same figure for streams that do not record, measured at the same time.

1. ``pair``: 2 recorded and 2 unrecorded streams at once. Part delay p99 of each group;
   bytes stored per stream-hour and S3 requests (PUTs) per stream-minute, from the store's
   listing of the window; upload CPU as a share of the packager's: the transcoder
   processes' CPU (utime+stime), recorded minus unrecorded, over unrecorded.
2. ``scale``: ``--streams`` streams unrecorded, then the same number recorded: part delay
   p99 of each, CPU, live streams.
"""

from __future__ import annotations

import argparse
import json
import os
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO,
    Procs,
    free_tcp_port,
    free_udp_port,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    machine_busy_percent,
    machine_cpu,
    percentile,
    proc_stat,
    start_redis,
    udp_port_bound,
)
from bench.packager import FFMPEG, PY, _make_clip, _redis, _wait

ACCESS_KEY, SECRET_KEY, BUCKET = "bench", "bench-secret-key", "cascade"


def start_store(procs: Procs, workdir: Path) -> str:
    from cascade.contract.s3 import Credentials, S3Error
    from cascade.transcoder.s3client import S3Client

    binary = subprocess.run(
        [str(REPO / "scripts/objectstore-build.sh")], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    root = workdir / "store"
    root.mkdir()
    port = free_tcp_port()
    procs.spawn(
        "objectstore",
        [binary, "--port", f"127.0.0.1:{port}", "posix", str(root)],
        env={"ROOT_ACCESS_KEY": ACCESS_KEY, "ROOT_SECRET_KEY": SECRET_KEY},
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = S3Client(endpoint, BUCKET, Credentials(ACCESS_KEY, SECRET_KEY), timeout=1)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.create_bucket()
            return endpoint
        except (OSError, S3Error):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _spec(name: str, port: int, recorded: bool) -> str:
    return json.dumps(
        {
            "apiVersion": "cascade.dev/v1alpha1",
            "kind": "LiveStream",
            "metadata": {"name": name},
            "spec": {
                "source": {"type": "srt", "srt": {"mode": "listener", "port": port}},
                "transcode": {"mode": "passthrough", "renditions": [{"name": "src"}]},
                "delivery": {"segmentDurationMs": 500, "partDurationMs": 100},
                "recording": {"enabled": recorded},
            },
        }
    )


class Stream:
    def __init__(
        self, procs: Procs, name: str, redis_url: str, store: str, clip: Path, recorded: bool
    ) -> None:
        self.procs, self.name, self.clip, self.recorded = procs, name, clip, recorded
        self.port = free_udp_port()
        self.source: subprocess.Popen[bytes] | None = None
        self.source_starts = 0
        self.tx = procs.spawn(
            f"transcoder {name}",
            [PY, "-m", "cascade.transcoder.main", "--bind-host", "127.0.0.1"],
            env={"REDIS_URL": redis_url, "CASCADE_LIVESTREAM": _spec(name, self.port, recorded),
                 "CASCADE_LOG_LEVEL": "WARNING", "CASCADE_S3_ENDPOINT": store,
                 "CASCADE_S3_BUCKET": BUCKET, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                 "AWS_SECRET_ACCESS_KEY": SECRET_KEY},
            stop_signal=signal.SIGTERM,
        )  # fmt: skip

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


def _cpu(pid: int) -> float:
    st = proc_stat(pid)
    return st.cpu_seconds if st is not None else 0.0


def _delays(r: Any, key: str, t0_ms: int, t1_ms: int) -> list[float]:
    from cascade.contract import schema

    out = []
    for entry_id, fields in r.xrange(key, min=t0_ms, max=t1_ms):
        entry = schema.decode_entry(fields)
        if isinstance(entry, schema.PartEntry):
            added = int(entry_id.split(b"-")[0]) / 1000
            out.append(added - (entry.pdt + entry.duration))
    return out


def _delay_summary(values: list[float]) -> dict[str, float | int]:
    v = sorted(values)
    if not v:
        return {"parts": 0}
    return {
        "parts": len(v),
        "p50_ms": round(percentile(v, 50) * 1000, 1),
        "p99_ms": round(percentile(v, 99) * 1000, 1),
        "max_ms": round(v[-1] * 1000, 1),
    }


def _stored(store: str, names: list[str], t0: float, t1: float) -> tuple[int, int]:
    """Objects and bytes of the streams' segments whose media starts in [t0, t1)."""
    from cascade.contract import recording
    from cascade.contract.recording import SegmentName
    from cascade.contract.s3 import Credentials
    from cascade.transcoder.s3client import S3Client

    client = S3Client(store, BUCKET, Credentials(ACCESS_KEY, SECRET_KEY))
    count = size = 0
    for name in names:
        prefix = recording.segments_prefix("recordings/", name, "src")
        token = None
        while True:
            page = client.list_page(prefix, token=token)
            for o in page.objects:
                seg = SegmentName.parse(o.key.removeprefix(prefix))
                if seg is not None and t0 <= seg.start < t1:
                    count += 1
                    size += o.size
            if page.next_token is None:
                break
            token = page.next_token
    client.close()
    return count, size


def _run(
    procs: Procs, redis_url: str, store: str, clip: Path, plan: list[bool], seconds: float, tag: str
) -> dict[str, Any]:
    """Streams (recorded or not, per ``plan``) at once; figures per group over ``seconds``."""
    r = _redis(redis_url)
    streams = [
        Stream(procs, f"{tag}-{i:02d}-{'rec' if rec else 'off'}", redis_url, store, clip, rec)
        for i, rec in enumerate(plan)
    ]
    try:
        _wait(lambda: all(udp_port_bound(s.port) for s in streams), 30, "SRT listeners bound")
        for s in streams:
            s.start_source()
        from bench.packager import _entries_added

        deadline = time.monotonic() + 40
        while not all(_entries_added(r, s.key) > 20 for s in streams):
            for s in streams:
                if s.source is not None and s.source.poll() is not None and s.source_starts < 4:
                    s.start_source()
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        time.sleep(3.0)  # warm-up: every stream's first segments uploaded
        cpu0 = {s.name: _cpu(s.tx.pid) for s in streams}
        m0 = machine_cpu()
        t0 = time.time()
        log(f"{tag}: {len(streams)} streams ({sum(plan)} recorded): measuring {seconds:g} s")
        time.sleep(seconds)
        t1 = time.time()
        cpu1 = {s.name: _cpu(s.tx.pid) for s in streams}
        m1 = machine_cpu()
        wall = t1 - t0
        groups: dict[str, Any] = {}
        for label, rec in (("recorded", True), ("unrecorded", False)):
            members = [s for s in streams if s.recorded is rec]
            if not members:
                continue
            delays: list[float] = []
            for s in members:
                delays += _delays(r, s.key, int(t0 * 1000), int(t1 * 1000))
            cpu = sorted(100 * (cpu1[s.name] - cpu0[s.name]) / wall for s in members)
            group: dict[str, Any] = {
                "streams": len(members),
                "part_delay": _delay_summary(delays),
                "transcoder_cpu_percent_per_stream": round(statistics.mean(cpu), 3),
            }
            if rec:
                # Segments starting in the window (less the last one still being cut).
                objects, size = _stored(store, [s.name for s in members], t0, t1 - 1.0)
                span = wall - 1.0
                group["bytes_per_stream_hour"] = round(size / len(members) / span * 3600)
                group["s3_puts_per_stream_minute"] = round(objects / len(members) / span * 60, 1)
            groups[label] = group
        groups["machine_busy_percent"] = round(machine_busy_percent(m0, m1), 1)
        groups["wall_seconds"] = round(wall, 2)
        return groups
    finally:
        r.close()
        procs.stop_many([i for i in procs.items if i.name.endswith(tuple(s.name for s in streams))])


def bench_pair(
    procs: Procs, redis_url: str, store: str, clip: Path, seconds: float
) -> dict[str, Any]:
    out = _run(procs, redis_url, store, clip, [True, False, True, False], seconds, "pair")
    rec, off = out["recorded"], out["unrecorded"]
    base = off["transcoder_cpu_percent_per_stream"]
    extra = rec["transcoder_cpu_percent_per_stream"] - base
    out["upload_cpu_share_of_packager"] = round(extra / base, 3) if base > 0 else None
    out["part_delay_p99_ratio_recorded_over_unrecorded"] = round(
        rec["part_delay"]["p99_ms"] / off["part_delay"]["p99_ms"], 3
    )
    return out


def bench_scale(
    procs: Procs, redis_url: str, store: str, clip: Path, seconds: float, streams: int
) -> dict[str, Any]:
    off = _run(procs, redis_url, store, clip, [False] * streams, seconds, "scale-off")
    rec = _run(procs, redis_url, store, clip, [True] * streams, seconds, "scale-rec")
    return {
        "unrecorded": off,
        "recorded": rec,
        "part_delay_p99_ratio_recorded_over_unrecorded": round(
            rec["recorded"]["part_delay"]["p99_ms"] / off["unrecorded"]["part_delay"]["p99_ms"], 3
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=25)
    parser.add_argument("--only", default="pair,scale")
    args = parser.parse_args()
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")
    if not 1 <= args.streams <= 50:
        parser.error("--streams must be in [1, 50]")
    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    if wanted - {"pair", "scale"}:
        parser.error(f"unknown benchmark(s): {sorted(wanted - {'pair', 'scale'})}")
    install_sigterm_as_interrupt()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": loadavg()},
        "seconds": args.seconds,
    }
    failed = False
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        work = Path(tmp)
        try:
            clip = _make_clip(work)
            redis_url, _ = start_redis(procs, work)
            store = start_store(procs, work)
            runs: dict[str, Callable[[], dict[str, Any]]] = {
                "pair": lambda: bench_pair(procs, redis_url, store, clip, args.seconds),
                "scale": lambda: bench_scale(
                    procs, redis_url, store, clip, args.seconds, args.streams
                ),
            }
            for name, run in runs.items():
                if name not in wanted:
                    continue
                try:
                    result[name] = run()
                except Exception as exc:
                    failed = True
                    log(f"{name}: FAILED: {exc!r}\n{traceback.format_exc()}")
                    result[name] = {"error": repr(exc)}
        finally:
            procs.stop_all()
    result["machine"]["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        log("interrupted: everything started here was stopped")
        raise SystemExit(130) from None
