"""Where the edge's CPU goes: LL-HLS viewers against one pinned edge, profiled.

    .venv/bin/python bench/edge_profile.py [--viewers 1000] [--seconds 15]
        [--profiler none|py-spy|py-spy-native] [--py-spy /path/to/py-spy] [--perf]
        [--wrk]   # also: plain playlist and multivariant alone, wrk at saturation

The setup of ``bench/edge_viewers.py`` (its synthetic publisher, a real Redis, the edge
on core 1, ``bench/viewersim`` on core 0), with sessions on (``-sessions``: the
multivariant playlist first, then ``hls_ctx`` on every playlist request). viewersim has
no delta-update option (it never sends ``_HLS_skip``), so the playlists are full ones.

Over the steady-state window (after the ramp and warm-up) it reads the edge's CPU from
``/proc`` (user and system apart) and its ``cascade_edge_requests`` counters by route
from ``/metrics``, and, if asked, records the edge with py-spy (an external tool, not a
project dependency: ``python -m venv /tmp/pyspyenv && /tmp/pyspyenv/bin/pip install
py-spy``) and counts its syscalls with ``perf stat``. The collapsed stacks are
attributed to categories (parse, decide part/playlist, held release, writes, hub, ...)
and to request kinds: µs per request = CPU share x edge CPU seconds / requests.

Prints one JSON object; the raw py-spy stacks are kept in ``--out``. Loopback only;
every process started is stopped; every wait is bounded.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Procs,
    install_sigterm_as_interrupt,
    proc_stat,
    start_edge,
    start_redis,
)
from bench.edge_viewers import RENDITION, STREAM, Publisher, build_simulator

SYSCALLS = ("read", "recvfrom", "write", "writev", "sendto", "epoll_wait", "epoll_pwait", "epoll_ctl",
            "accept4", "close", "getpid")  # fmt: skip

# Categories, first match wins, tested on the whole stack (root..leaf), most specific first.
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "held_release",
        ("wake (cascade/edge/server.py", "try_release (", "notify (cascade/edge/hub.py"),
    ),
    (
        "hub_xread_apply",
        ("_read_loop (cascade/edge/hub.py", "cascade/edge/redisclient.py", "redis/", "hiredis"),
    ),
    ("session_flush", ("cascade/edge/sessions.py",)),
    ("timers_sweep", ("_on_timer (", "_sweep (", "_next_turn (", "expire (cascade/edge/server.py")),
    ("decide_part", ("_media_file (",)),
    (
        "decide_playlist",
        (
            "_media_playlist (",
            "_render (",
            "_multivariant (",
            "parse_query (",
            "parse_viewer_id (",
            "_lookup (",
        ),
    ),
    ("decide_other", ("decide (",)),
    ("response_write", ("_write (cascade/edge/server.py",)),
    (
        "response_build",
        ("live_response (", "observe (cascade/edge/metrics.py", "_flush (", "_became_idle ("),
    ),
    (
        "parse",
        (
            "_parse (cascade/edge/server.py",
            "on_message_complete (",
            "on_url (",
            "on_header (",
            "on_message_begin (",
            "on_headers_complete (",
            "feed_data",
        ),
    ),
    (
        "receive_other",
        ("data_received (cascade/edge/server.py", "_pump (", "_settle (", "_may_parse ("),
    ),
    ("connection", ("connection_made (", "connection_lost (", "eof_received (")),
    ("metrics_endpoint", ("_asgi (", "prometheus_client")),
    ("gc", ("gc_collect", "collect_generations", "<gc>")),
]


def metrics(url: str) -> dict[str, float]:
    """cascade_edge_requests_total by route (all statuses), and the blocked gauge."""
    out: dict[str, float] = collections.defaultdict(float)
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            m = re.match(
                r'cascade_edge_requests_total\{route="([^"]*)",status="(\d+)"\} (\S+)', line
            )
            if m:
                out[m.group(1)] += float(m.group(3))
                if m.group(2) != "200":
                    out["non_200"] += float(m.group(3))
            elif line.startswith("cascade_edge_blocked_requests "):
                out["blocked_now"] = float(line.split()[1])
    return out


def cpu(pid: int) -> tuple[float, float]:
    st = proc_stat(pid)
    assert st is not None
    return st.user_seconds, st.system_seconds


def classify(frames: list[str]) -> str:
    stack = ";".join(frames)
    for name, needles in CATEGORIES:
        if any(n in stack for n in needles):
            return name
    if not any(".py:" in f for f in frames):
        return "event_loop_native"  # uvloop/libuv/kernel with no Python frame: the loop
    return "other_python"


def kind_of(frames: list[str]) -> str:
    """request kind : what, from one stack (the steady state has held reloads and parts)."""
    stack = ";".join(frames)
    leaf = re.sub(r" \(.*", "", frames[-1]) if frames else "?"
    syscall = leaf in ("write", "writev", "read", "__libc_write", "__libc_read")
    if "Condition.wait" in stack or leaf in ("epoll_pwait", "epoll_wait"):
        return "idle"
    if "gc_collect_main" in stack:
        if "data_received" in stack and "_media_file (" not in stack:
            return "held_reload:gc (triggered while holding)"
        return "any:gc (elsewhere)"
    if "FeedHolds.wake" in stack or "RenditionFeed.notify" in stack:
        if syscall or "UVStream" in stack:
            return "held_reload:release write (syscall + uvloop)"
        if "live_response" in stack or "reply_fields" in stack:
            return "held_reload:release build response"
        if "_render (" in stack:
            return "held_reload:release render"
        return "held_reload:release bookkeeping (try_release/answer/_flush/metrics)"
    if "_read_loop (cascade/edge/hub.py" in stack or "redis/" in stack or "redisclient" in stack:
        return "fixed:hub XREAD + apply"
    if "_media_file (" in stack:
        return "part:decide (_media_file)"
    if "sessions.py" in stack:
        return "held_reload:session touch"
    if (
        "_media_playlist (" in stack
        or "parse_query (" in stack
        or "EdgeServer.hold" in stack
        or "HttpProtocol._hold" in stack
    ):
        return "held_reload:decide + hold (_media_playlist, parse_query, HttpError)"
    if "data_received" in stack:
        if syscall or "UVStream" in stack:
            return "part:write (syscall + uvloop)"
        if "_flush (" in stack or "live_response" in stack:
            return "part:build response (_flush, live_response, metrics)"
        if (
            "feed_data" in stack
            or "on_message" in stack
            or "on_header" in stack
            or "on_url" in stack
            or "_parse (" in stack
        ):
            return "any:parse (httptools + callbacks)"
        return "any:dispatch (data_received/_pump/_start/decide/services)"
    if leaf in ("read", "__libc_read") or "uv__read" in stack:
        return "any:read (syscall + uvloop)"
    if "_on_timer" in stack or "_sweep (" in stack or "expire (" in stack:
        return "fixed:timers/sweep"
    if not any(".py:" in f for f in frames[8:]):
        return "fixed:event loop (uvloop/libuv)"
    return "other"


def leaf_python(frames: list[str]) -> str:
    for f in reversed(frames):
        if ".py:" in f:
            return re.sub(r" \(/.*?/(site-packages|edge)/", " (", f)
    return frames[-1] if frames else "?"


def analyse(raw: Path, top: int = 6) -> dict[str, Any]:
    """Collapsed stacks -> samples per category, per leaf frame and top leaves per category."""
    cats: collections.Counter[str] = collections.Counter()
    leaves: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    native_leaf: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        # Drop the thread/process header py-spy puts first.
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = frames[1:]
        if frames and frames[0].startswith(("process ", "thread ")):
            frames = frames[1:]
        kinds[kind_of(frames)] += count
        c = classify(frames)
        cats[c] += count
        leaves[c][leaf_python(frames)] += count
        native_leaf[re.sub(r" \(.*", "", frames[-1]) if frames else "?"] += count
        total += count
    return {
        "samples": total,
        "categories": {k: v for k, v in cats.most_common()},
        "kinds": {k: v for k, v in kinds.most_common()},
        "top_frames": {k: leaves[k].most_common(top) for k, _ in cats.most_common()},
        "top_leaf_frames_native": native_leaf.most_common(25),
    }


def wrk_alone(port: int, path: str, edge_pid: int, seconds: float, pyspy: str | None,
              out: Path, native: bool) -> dict[str, Any]:  # fmt: skip
    """One kind of request alone at saturation (wrk on core 0, 32 connections)."""
    murl = f"http://127.0.0.1:{port}/metrics"
    m0, (u0, s0), t0 = metrics(murl), cpu(edge_pid), time.monotonic()
    spy = None
    if pyspy:
        spy = subprocess.Popen(
            ["taskset", "-c", "0", pyspy, "record", "-p", str(edge_pid), "-r", "200",
             "-d", str(int(seconds)), "--format", "raw", "-o", str(out),
             *(["--native"] if native else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", "-c32", f"-d{int(seconds)}s", "--timeout", "5s",
         f"http://127.0.0.1:{port}{path}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=seconds + 30, check=False,
    )  # fmt: skip
    m1, (u1, s1), t1 = metrics(murl), cpu(edge_pid), time.monotonic()
    if spy is not None:
        spy.wait(timeout=60)
    n = sum(m1[k] - m0.get(k, 0) for k in m1 if k not in ("blocked_now", "non_200"))
    n -= 1  # this /metrics read is not counted yet; the first is: near enough
    res: dict[str, Any] = {
        "path": path,
        "requests": n,
        "requests_per_second": round(n / (t1 - t0)),
        "edge_cpu_cores": round((u1 + s1 - u0 - s0) / (t1 - t0), 2),
        "us_per_request": round((u1 + s1 - u0 - s0) / max(n, 1) * 1e6, 1),
        "system_share": round((s1 - s0) / max(u1 + s1 - u0 - s0, 1e-9), 2),
        "non_200": m1.get("non_200", 0) - m0.get("non_200", 0),
    }
    if pyspy and out.exists():
        res["profile"] = analyse(out)
    return res


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--viewers", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=15.0, help="the profiled window")
    p.add_argument("--profiler", choices=("none", "py-spy", "py-spy-native"), default="none")
    p.add_argument("--py-spy", default=shutil.which("py-spy") or "/tmp/pyspyenv/bin/py-spy")
    p.add_argument("--perf", action="store_true", help="perf stat the edge's syscalls")
    p.add_argument(
        "--wrk",
        action="store_true",
        help="then plain playlist and multivariant alone, wrk at saturation",
    )
    p.add_argument("--out", default="/tmp/edge-profile", help="where raw stacks are kept")
    args = p.parse_args()
    install_sigterm_as_interrupt()
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    pyspy = args.py_spy if args.profiler != "none" else None
    native = args.profiler == "py-spy-native"
    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                              "viewers": args.viewers, "sessions": True,
                              "delta_updates": "not available: viewersim never sends _HLS_skip",
                              "profiler": args.profiler}  # fmt: skip
    procs = Procs()
    publisher: Publisher | None = None
    with tempfile.TemporaryDirectory(prefix="cascade-profile-") as tmp:
        work = Path(tmp)
        exe = build_simulator(work)
        try:
            redis_url, _ = start_redis(procs, work)
            publisher = Publisher(redis_url)
            publisher.announce()
            publisher.start()
            port, edge = start_edge(procs, redis_url, cpu=1)
            time.sleep(1.5)
            base = f"http://127.0.0.1:{port}/live/{STREAM}/{RENDITION}/"
            murl = f"http://127.0.0.1:{port}/metrics"
            total = args.seconds + 4
            sim = subprocess.Popen(
                ["taskset", "-c", "0", str(exe), "-base", base, "-viewers", str(args.viewers),
                 "-duration", f"{total}s", "-ramp", "2s", "-warmup", "2s", "-sessions"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            time.sleep(5.0)  # ramp, warm-up, and a second more
            m0, (u0, s0), t0 = metrics(murl), cpu(edge.pid), time.monotonic()
            raw = outdir / f"viewers-{args.viewers}-{args.profiler}.txt"
            spy = perf = None
            if pyspy:
                spy = subprocess.Popen(
                    ["taskset", "-c", "0", pyspy, "record", "-p", str(edge.pid), "-r", "200",
                     "-d", str(int(args.seconds)), "--format", "raw", "-o", str(raw),
                     *(["--native"] if native else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
            if args.perf:
                events = ",".join(f"syscalls:sys_enter_{s}" for s in SYSCALLS)
                perf = subprocess.Popen(
                    ["taskset", "-c", "0", "perf", "stat", "-x", ",", "-e",
                     events + ",raw_syscalls:sys_enter,context-switches", "-p", str(edge.pid),
                     "--", "sleep", str(int(args.seconds))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                )  # fmt: skip
            time.sleep(args.seconds)
            m1, (u1, s1), t1 = metrics(murl), cpu(edge.pid), time.monotonic()
            if spy is not None:
                _, err = spy.communicate(timeout=60)
                if spy.returncode:
                    result["py_spy_error"] = err.decode()[-500:]
            if perf is not None:
                _, err = perf.communicate(timeout=60)
                counts = {}
                for line in err.decode().splitlines():
                    f = line.split(",")
                    if len(f) > 2 and f[0].strip().isdigit():
                        counts[f[2].replace("syscalls:sys_enter_", "")] = int(f[0])
                result["syscalls_per_second"] = {
                    k: round(v / args.seconds) for k, v in counts.items()
                }
            _, err = sim.communicate(timeout=total + 60)
            result["simulator"] = json.loads(err.decode().strip().splitlines()[-1])
            wall = t1 - t0
            cpu_s = (u1 + s1) - (u0 + s0)
            routes = {k: m1[k] - m0.get(k, 0) for k in m1 if k not in ("blocked_now",)}
            routes.pop("metrics", None)
            routes.pop("/metrics", None)
            n = sum(v for k, v in routes.items() if k != "non_200")
            result["window_seconds"] = round(wall, 2)
            result["edge_cpu_cores"] = round(cpu_s / wall, 3)
            result["edge_system_share"] = round((s1 - s0) / max(cpu_s, 1e-9), 3)
            result["requests_by_route"] = {k: int(v) for k, v in routes.items()}
            result["requests_per_second"] = round(n / wall)
            result["edge_us_per_request"] = round(cpu_s / max(n, 1) * 1e6, 1)
            result["blocked_now"] = m1.get("blocked_now")
            if "syscalls_per_second" in result:
                result["syscalls_per_request"] = round(
                    result["syscalls_per_second"].get("raw_syscalls:sys_enter", 0) / (n / wall), 2
                )
            if pyspy and raw.exists():
                prof = analyse(raw)
                result["profile"] = prof
                busy = prof["samples"]
                cats = prof["categories"]
                result["us_per_request_by_category"] = {
                    k: round(v / busy * cpu_s / max(n, 1) * 1e6, 2) for k, v in cats.items()
                }
                result["profile_raw"] = str(raw)
            if args.wrk:
                time.sleep(1.0)
                ctx = "?hls_ctx=AAAAAAAAAAAAAAAA"
                with urllib.request.urlopen(base + "index.m3u8", timeout=5) as r:
                    uris = re.findall(rb'#EXT-X-PART:[^\n]*URI="([0-9.]+m4s)"', r.read())
                newest = uris[-1].decode() if uris else "0.0.m4s"
                result["alone"] = {
                    "plain_playlist": wrk_alone(
                        port, f"/live/{STREAM}/{RENDITION}/index.m3u8{ctx}", edge.pid, 5,
                        pyspy, outdir / "alone-playlist.txt", native),
                    "part": wrk_alone(
                        port, f"/live/{STREAM}/{RENDITION}/{newest}", edge.pid, 5,
                        pyspy, outdir / "alone-part.txt", native),
                    "multivariant": wrk_alone(
                        port, f"/live/{STREAM}.m3u8", edge.pid, 5,
                        pyspy, outdir / "alone-multivariant.txt", native),
                }  # fmt: skip
        finally:
            if publisher is not None:
                publisher.stop.set()
            procs.stop_all()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
