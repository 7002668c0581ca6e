"""Edge hot path: requests/s serving a live part from memory, against nginx serving the same bytes.

    .venv/bin/python bench/edge_hotpath.py [--seconds 10] [--connections 64]

Each server runs on core 1 (``taskset -c 1``), the client (wrk, one thread) on core 0, one
server at a time, in one run: nginx serving the part from a file, a bare ASGI app on
uvicorn serving it from memory (the floor of any Python server here), and the Cascade edge
serving it from its live window (filled from a real Redis by the contract, as a transcoder
would). Prints one JSON object: requests/s of each and the ratios to nginx. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Procs,
    cpu_seconds,
    free_tcp_port,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    start_edge,
    start_redis,
    wait_tcp,
)

PY = sys.executable
STREAM, RENDITION, MSN, PART = "bench", "360p", 2, 0
PATH = f"/live/{STREAM}/{RENDITION}/{MSN}.{PART}.m4s"
PART_BYTES = 5000  # a 100 ms part at 400 kbps

BARE_ASGI = textwrap.dedent(
    """
    import os
    BODY = open(os.environ["BENCH_PART"], "rb").read()
    HEADERS = [(b"content-type", b"video/mp4"), (b"cache-control", b"public, max-age=30"),
               (b"content-length", str(len(BODY)).encode())]
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    """
)


def publish_stream(redis_url: str, part: bytes) -> None:
    """A live stream as a transcoder leaves it in Redis: meta, init, three segments of parts."""
    import redis

    from cascade.contract import schema
    from cascade.contract.schema import PartEntry, RenditionInfo, StreamMeta, StreamState

    r = redis.Redis.from_url(redis_url)
    meta = StreamMeta(
        (RenditionInfo(RENDITION, 510_400, "avc1.64001e,mp4a.40.2", 640, 360, 30.0),),
        0.1, 0.5, 24, StreamState.LIVE, 0,
    )  # fmt: skip
    r.hset(schema.meta_key(STREAM), mapping=meta.encode())  # type: ignore[arg-type]
    r.set(schema.init_key(STREAM, RENDITION), b"init")
    for msn in range(MSN + 1):
        for i in range(5):
            entry = PartEntry(msn, i, 0.1, i == 0, time.time(), part)
            r.xadd(schema.parts_key(STREAM, RENDITION), schema.encode_entry(entry))  # type: ignore[arg-type]
    r.sadd(schema.STREAMS_SET, STREAM)
    r.close()


def wrk(url: str, seconds: float, connections: int) -> dict[str, Any]:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("wrk is not installed (`make setup` installs it)")
    proc = subprocess.Popen(
        ["taskset", "-c", "0", exe, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    t0 = time.monotonic()
    out, _ = proc.communicate(timeout=seconds + 30)
    wall = time.monotonic() - t0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    return {
        "requests_per_second": rps,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
        "latency_p99": p99.group(1) if p99 else None,
        "wall_seconds": round(wall, 2),
    }


def server_cpu(pid: int, run: Any) -> tuple[dict[str, Any], float]:
    c0 = cpu_seconds(pid)
    t0 = time.monotonic()
    result = run()
    return result, (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as r:
        body: bytes = r.read()
        return body


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two cores: one for the server, one for the client")
    install_sigterm_as_interrupt()
    part = os.urandom(PART_BYTES)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "path": PATH,
        "part_bytes": PART_BYTES,
        "seconds": args.seconds,
        "connections": args.connections,
        "loadavg_at_start": loadavg(),
    }
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="cascade-hotpath-") as tmp:
        work = Path(tmp)
        try:
            # nginx: the same bytes from a file, one worker on core 1.
            root = work / "www"
            (root / PATH.lstrip("/")).parent.mkdir(parents=True)
            (root / PATH.lstrip("/")).write_bytes(part)
            port = free_tcp_port()
            conf = work / "nginx.conf"
            conf.write_text(textwrap.dedent(f"""
                worker_processes 1;
                {"user root;" if os.geteuid() == 0 else ""}
                daemon off;
                pid {work}/nginx.pid;
                error_log {work}/nginx-error.log warn;
                events {{ worker_connections 4096; }}
                http {{
                    access_log off;
                    keepalive_requests 1000000;
                    client_body_temp_path {work}/body;
                    proxy_temp_path {work}/proxy;
                    fastcgi_temp_path {work}/fastcgi;
                    uwsgi_temp_path {work}/uwsgi;
                    scgi_temp_path {work}/scgi;
                    types {{ video/mp4 m4s; }}
                    server {{
                        listen 127.0.0.1:{port};
                        root {root};
                        add_header Cache-Control "public, max-age=30";
                    }}
                }}
            """))  # fmt: skip
            nginx = procs.spawn(
                "nginx", ["taskset", "-c", "1", "nginx", "-c", str(conf), "-p", str(work)]
            )
            wait_tcp(port, 10, nginx)
            url = f"http://127.0.0.1:{port}{PATH}"
            assert fetch(url) == part
            log("hotpath: nginx")
            worker = next(
                int(p)
                for p in subprocess.check_output(["pgrep", "-P", str(nginx.pid)], text=True).split()
            )
            result["nginx"], cpu = server_cpu(
                worker, lambda: wrk(url, args.seconds, args.connections)
            )
            result["nginx"]["server_cpu_cores"] = round(cpu, 2)
            procs.stop(procs.find(nginx))

            # A bare ASGI app on uvicorn: what any Python server pays at the least.
            (work / "bare.py").write_text(BARE_ASGI)
            (work / "part.bin").write_bytes(part)
            port = free_tcp_port()
            bare = procs.spawn(
                "bare asgi",
                ["taskset", "-c", "1", PY, "-m", "uvicorn", "bare:app", "--port", str(port),
                 "--log-level", "warning", "--no-access-log", "--app-dir", str(work)],
                env={"BENCH_PART": str(work / "part.bin")},
            )  # fmt: skip
            wait_tcp(port, 20, bare)
            url = f"http://127.0.0.1:{port}{PATH}"
            assert fetch(url) == part
            log("hotpath: bare ASGI on uvicorn")
            result["bare_asgi_uvicorn"], cpu = server_cpu(
                bare.pid, lambda: wrk(url, args.seconds, args.connections)
            )
            result["bare_asgi_uvicorn"]["server_cpu_cores"] = round(cpu, 2)
            procs.stop(procs.find(bare))

            # The Cascade edge, its window filled from Redis.
            redis_url, _ = start_redis(procs, work)
            publish_stream(redis_url, part)
            port, edge = start_edge(procs, redis_url, cpu=1)
            url = f"http://127.0.0.1:{port}{PATH}"
            deadline = time.monotonic() + 10
            while True:
                try:
                    if fetch(url) == part:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the edge never served the part")
                time.sleep(0.1)
            log("hotpath: cascade edge")
            result["edge"], cpu = server_cpu(
                edge.pid, lambda: wrk(url, args.seconds, args.connections)
            )
            result["edge"]["server_cpu_cores"] = round(cpu, 2)
        finally:
            procs.stop_all()
    nginx_rps = result["nginx"]["requests_per_second"]
    result["ratio_edge_to_nginx"] = round(result["edge"]["requests_per_second"] / nginx_rps, 3)
    result["ratio_bare_asgi_to_nginx"] = round(
        result["bare_asgi_uvicorn"]["requests_per_second"] / nginx_rps, 3
    )
    result["target_ratio"] = 0.75
    result["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
