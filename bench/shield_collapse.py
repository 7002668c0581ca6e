"""Which cache collapses held LL-HLS requests: Varnish against nginx, in one run.

    .venv/bin/python bench/shield_collapse.py [--viewers 300] [--seconds 10]

The point of a shield is request collapsing: N players waiting for the same next part
(a blocking reload, then the preload-hinted part) must make one request to the edge, and
all N must get the answer the moment the edge sends it. The same synthetic stream
(Redis, one edge) and the same simulated viewers (``bench/viewersim``, delta updates,
CMCD sid) go through each cache in turn:

- Varnish 7.1 with the shield's generated VCL (:mod:`cascade.edge.shield`);
- nginx (Debian's nginx-light) configured to the same policy: the cache key is the path
  plus the three delivery directives, ``proxy_cache_lock on`` (one request per object
  to the origin, the others wait), lifetimes from the edge's Cache-Control.

Per cache: origin offload, part delay p50/p99/max, errors, CPU. Prints one JSON object.
Loopback only; everything started is stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Procs,
    free_tcp_port,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    start_edge,
    start_redis,
    wait_tcp,
)
from bench.shield_offload import Publisher, build_simulator, run_phase


def nginx_conf(*, listen: int, backend: int, work: Path) -> str:
    """nginx as a shield with the caching policy's key and request collapsing."""
    return f"""daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    proxy_cache_path {work}/cache levels=1:2 keys_zone=ll:32m max_size=256m inactive=60s;
    proxy_temp_path {work}/tmp;
    client_body_temp_path {work}/body;
    upstream edge {{ server 127.0.0.1:{backend}; keepalive 256; }}
    map $uri $ll_cache {{ ~^/live/[^/]+/[^/]+/[^/]+$ 1; default 0; }}
    server {{
        listen 127.0.0.1:{listen};
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://edge;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 15s;
            proxy_cache ll;
            proxy_cache_bypass $arg_hls_ctx;
            proxy_no_cache $arg_hls_ctx;
            # The caching policy's key: path + _HLS_msn, _HLS_part, _HLS_skip.
            proxy_cache_key "$uri?m=$arg__HLS_msn&p=$arg__HLS_part&s=$arg__HLS_skip";
            # Collapsing: one request per object reaches the edge, the others wait.
            proxy_cache_lock on;
            proxy_cache_lock_timeout 15s;
            proxy_cache_lock_age 15s;
            add_header X-Cascade-Shield $upstream_cache_status;
        }}
    }}
}}
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    install_sigterm_as_interrupt()
    from cascade.edge.shield import ShieldConfig, render_vcl, varnishd_command

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_at_start": loadavg(),
        "viewers": args.viewers,
        "setup": "one synthetic stream (5 kB parts / 100 ms), Redis, one edge; viewersim "
        "(-skip, CMCD) through each cache",
        "caches": {},
    }
    procs = Procs()
    with tempfile.TemporaryDirectory(prefix="cascade-collapse-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        exe = build_simulator()
        publisher = None
        try:
            redis_url, _ = start_redis(procs, work)
            publisher = Publisher(redis_url, ["c0"])
            publisher.announce()
            publisher.start()
            edge_port, edge = start_edge(procs, redis_url, env={"CASCADE_VIEWER_SESSIONS": "cmcd"})
            plan = [("c0", args.viewers, "collapse-")]
            expected = {"total": args.viewers, "c0": args.viewers}

            vcl = work / "shield.vcl"
            vcl.write_text(render_vcl(ShieldConfig(backend_port=edge_port)))
            port = free_tcp_port()
            varnish = procs.spawn(
                "varnishd",
                varnishd_command(vcl=str(vcl), workdir=str(work / "varnish"),
                                 listen=f"127.0.0.1:{port}", cache_mib=64),
            )  # fmt: skip
            wait_tcp(port, 20, varnish)
            time.sleep(1)
            step = run_phase("varnish", exe, port, plan, args.seconds,
                             {"shield": varnish.pid, "edge": edge.pid}, publisher, edge_port,
                             expected, edge_port)  # fmt: skip
            result["caches"]["varnish"] = step
            log(f"collapse: {json.dumps(step)}")
            procs.stop(procs.find(varnish))

            conf = work / "nginx.conf"
            port = free_tcp_port()
            conf.write_text(nginx_conf(listen=port, backend=edge_port, work=work))
            for d in ("cache", "tmp", "body"):  # written by nginx's worker (nobody, as root)
                (work / d).mkdir()
                (work / d).chmod(0o777)
            nginx = procs.spawn("nginx", ["nginx", "-c", str(conf), "-p", str(work)])
            wait_tcp(port, 20, nginx)
            time.sleep(1)
            step = run_phase("nginx", exe, port, plan, args.seconds,
                             {"shield": nginx.pid, "edge": edge.pid}, publisher, edge_port,
                             expected, edge_port)  # fmt: skip
            result["caches"]["nginx"] = step
            log(f"collapse: {json.dumps(step)}")
        finally:
            if publisher is not None:
                publisher.stop.set()
            procs.stop_all()
    v, n = result["caches"]["varnish"], result["caches"]["nginx"]
    result["varnish_to_nginx"] = {
        "p99_delay": round(v["delay_ms"]["p99"] / n["delay_ms"]["p99"], 3)
        if v["delay_ms"]["p99"] and n["delay_ms"]["p99"] else None,
        "origin_requests": round(v["edge_answered"] / n["edge_answered"], 3)
        if n["edge_answered"] else None,
    }  # fmt: skip
    result["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        raise SystemExit(130) from None
