"""Redis Sentinel failover under a live stream: how long viewers wait, and what is lost.

    .venv/bin/python bench/redis_failover.py [--runs 3] [--down-after-ms 1000] [--sentinels 3]

Prints ONE JSON object on stdout (progress on stderr). Everything runs on loopback and is
stopped at the end (also on Ctrl-C or an error): a primary and a replica redis-server,
three redis-sentinel processes (quorum 2; ``--sentinels``), one transcoder (``python -m cascade.transcoder.main`` on a
320x180 test pattern, 100 ms parts) and one edge, both with
``REDIS_URL=redis+sentinel://...``.

Each run SIGKILLs the current primary and measures, from the kill:

* ``failover_seconds``: until every sentinel names the promoted replica (Sentinel's own
  work: ``down-after-milliseconds``, the election, the promotion);
* ``gap_seconds``: until the edge serves the first part that did not exist at the kill
  (a held request for it, asked again on 503): what a viewer waits. It adds the
  transcoder's and the edge's reconnects to the failover.

Then the killed server is started again (the sentinels make it a replica of the new
primary) before the next run. At the end the transcoder ends the stream and the parts in
Redis are checked: ``missing`` (a hole in the part numbers) and ``duplicated`` must be 0.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

# `python bench/redis_failover.py`: make `bench.common` importable from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Procs,
    Spawned,
    free_tcp_port,
    install_sigterm_as_interrupt,
    loadavg,
    log,
    wait_tcp,
)


def _server_port() -> int:
    """A free port below the ephemeral range, for a server that is killed and restarted: a
    client reconnecting meanwhile could otherwise get that port as its own and connect to
    itself (see tests/conftest.py free_server_port)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(20000, min(low, 32768)), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


MASTER = "mymaster"
PY = sys.executable
SPEC = """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: ha}
spec:
  source: {type: test, test: {width: 320, height: 180, frameRate: 20}}
  transcode:
    frameRate: 20
    renditions: [{name: low, width: 320, height: 180, videoBitrateKbps: 150}]
  delivery: {segmentDurationMs: 500, partDurationMs: 100}
"""


def _redis(port: int) -> Any:
    import redis

    return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)


def _wait(what: str, check: Callable[[], bool], seconds: float, step: float = 0.05) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # a server between states: ask again
            pass
        time.sleep(step)
    raise TimeoutError(f"{what}: not after {seconds:g} s")


class Cluster:
    def __init__(self, procs: Procs, workdir: Path, down_after_ms: int, sentinels: int) -> None:
        self.procs = procs
        self.workdir = workdir
        self.down_after_ms = down_after_ms
        self.sentinel_count = sentinels
        self.quorum = sentinels // 2 + 1  # a majority, as production should run
        self.data: dict[int, Spawned] = {}  # port -> process
        self.sentinels: list[int] = []

    def start_data(self, port: int, extra: list[str]) -> None:
        folder = self.workdir / f"redis-{port}"
        folder.mkdir(exist_ok=True)
        server = shutil.which("redis-server") or "redis-server"
        popen = self.procs.spawn(
            f"redis {port}",
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder), "--loglevel", "warning", *extra],
        )  # fmt: skip
        self.data[port] = self.procs.find(popen)
        wait_tcp(port, 10, popen)

    def start(self) -> None:
        primary, replica = _server_port(), _server_port()
        self.start_data(primary, [])
        self.start_data(replica, ["--replicaof", "127.0.0.1", str(primary)])
        binary = shutil.which("redis-sentinel")
        if binary is None:
            raise SystemExit("redis-sentinel is not installed (`make setup` installs it)")
        for i in range(self.sentinel_count):
            port = free_tcp_port()
            conf = self.workdir / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {primary} {self.quorum}\n"
                f"sentinel down-after-milliseconds {MASTER} {self.down_after_ms}\n"
                f"sentinel failover-timeout {MASTER} {max(3000, 3 * self.down_after_ms)}\n"
            )
            popen = self.procs.spawn(f"sentinel {i}", [binary, str(conf)])
            wait_tcp(port, 10, popen)
            self.sentinels.append(port)
        _wait("the sentinels to know the replica and each other", self.ready, 30)

    def ready(self) -> bool:
        for port in self.sentinels:
            r = _redis(port)
            try:
                replicas = [s for s in r.sentinel_slaves(MASTER) if not s.get("is_sdown")]
                peers = len(r.sentinel_sentinels(MASTER))
                ok = bool(replicas) and peers == self.sentinel_count - 1
            finally:
                r.close()
            if not ok:
                return False
        return True

    def synced(self, port: int) -> bool:
        """``port`` is a replica whose link to the primary is up (a full sync done)."""
        r = _redis(port)
        try:
            info = r.info("replication")
        finally:
            r.close()
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    @property
    def url(self) -> str:
        return (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{p}" for p in self.sentinels)
            + (f"/{MASTER}/0")
        )

    def primary(self) -> int:
        ports = set()
        for port in self.sentinels:
            r = _redis(port)
            try:
                ports.add(int(r.sentinel_get_master_addr_by_name(MASTER)[1]))
            finally:
                r.close()
        (port,) = ports
        return port

    def promoted(self, old: int) -> bool:
        port = self.primary()
        if port == old:
            return False
        r = _redis(port)
        try:
            return bool(r.role()[0] == b"master")
        finally:
            r.close()


def _hinted(base: str) -> tuple[int, int] | None:
    try:
        with urllib.request.urlopen(f"{base}/live/ha/low/index.m3u8", timeout=5) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith("#EXT-X-PRELOAD-HINT:"):
            msn, part, _ = line.split('URI="')[1].split(".", 2)
            return int(msn), int(part)
    return None


def _servable(base: str, msn: int, part: int, seconds: float) -> float:
    """When the edge served part msn.part (held until it exists; asked again on 503)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/live/ha/low/{msn}.{part}.m4s", timeout=5) as r:
                if r.status == 200:
                    r.read()
                    return time.monotonic()
        except (urllib.error.URLError, OSError):
            time.sleep(0.02)
    raise TimeoutError(f"part {msn}.{part} not servable after {seconds:g} s")


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 3),
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def bench(runs: int, down_after_ms: int, sentinels: int, workdir: Path) -> dict[str, Any]:
    from cascade.contract import schema
    from cascade.contract.schema import EndEntry, PartEntry

    procs = Procs()
    try:
        cluster = Cluster(procs, workdir, down_after_ms, sentinels)
        cluster.start()
        spec = workdir / "ha.yaml"
        spec.write_text(SPEC)
        port = free_tcp_port()
        base = f"http://127.0.0.1:{port}"
        env = {"REDIS_URL": cluster.url, "CASCADE_LOG_LEVEL": "WARNING"}
        edge = procs.spawn(
            "edge",
            [PY, "-m", "cascade.edge.main"],
            env={**env, "PORT": str(port), "HOST": "127.0.0.1"},
        )
        transcoder = procs.spawn(
            "transcoder",
            [PY, "-m", "cascade.transcoder.main", "--file", str(spec), "--bind-host", "127.0.0.1"],
            env=env,
        )
        wait_tcp(port, 20, edge)
        _wait("the edge to serve the stream", lambda: _hinted(base) is not None, 60)
        time.sleep(2.0)
        results = []
        for run in range(runs):
            old = cluster.primary()
            before = _hinted(base)
            assert before is not None
            log(f"run {run + 1}/{runs}: SIGKILL of the primary on port {old}, next part {before}")
            killed = cluster.data.pop(old)
            os.kill(killed.popen.pid, signal.SIGKILL)
            killed.popen.wait(10)
            procs.items.remove(killed)
            killed_at = time.monotonic()
            with ThreadPoolExecutor(1) as pool:  # both clocks run from the kill
                promoted = pool.submit(_wait, "the failover", partial(cluster.promoted, old), 60)
                served_at = _servable(base, *before, seconds=60)
                failover = promoted.result(60)
            results.append(
                {
                    "failover_seconds": round(failover, 3),
                    "gap_seconds": round(served_at - killed_at, 3),
                }
            )
            log(f"run {run + 1}: {json.dumps(results[-1])}")
            # The killed server comes back (empty) and the sentinels make it a replica of
            # the new one: only after it reported "master" for 8 s (Sentinel's guard
            # against flapping), then it syncs. Until then it is no replica to fail over to.
            cluster.start_data(old, [])
            took = _wait(
                "the old primary to rejoin as a synced replica", partial(cluster.synced, old), 90
            )
            log(f"run {run + 1}: the killed server is a synced replica again after {took:.1f} s")
            _wait("the sentinels to see it", cluster.ready, 30)
            time.sleep(1.0)
        procs.stop(procs.find(transcoder), timeout=20)  # SIGTERM: ends the stream
        r = _redis(cluster.primary())
        try:
            raw = r.xrange(schema.parts_key("ha", "low"))
        finally:
            r.close()
        entries = [schema.decode_entry(fields) for _, fields in raw]
        parts = [(e.msn, e.part) for e in entries if isinstance(e, PartEntry)]
        holes = [
            [[m0, p0], [m1, p1]]
            for (m0, p0), (m1, p1) in itertools.pairwise(parts)
            if not ((m1, p1) == (m0, p0 + 1) or (m1 == m0 + 1 and p1 == 0))
        ]
        gaps = [x["gap_seconds"] for x in results]
        failovers = [x["failover_seconds"] for x in results]
        return {
            "settings": {
                "sentinels": sentinels,
                "quorum": cluster.quorum,
                "down_after_milliseconds": down_after_ms,
                "parts_per_second": 10,
            },
            "runs": results,
            "gap_seconds": _spread(gaps),
            "failover_seconds": _spread(failovers),
            "parts_in_redis": len(parts),
            "holes": holes,  # [part before, part after] where parts are missing
            "parts_duplicated": len(parts) - len(set(parts)),
            "stream_ended": bool(entries) and isinstance(entries[-1], EndEntry),
        }
    finally:
        procs.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="failovers to measure (1-10)")
    parser.add_argument(
        "--down-after-ms", type=int, default=1000, help="sentinel down-after-milliseconds"
    )
    parser.add_argument("--sentinels", type=int, default=3, help="sentinels (quorum: a majority)")
    args = parser.parse_args()
    if not 1 <= args.runs <= 10:
        parser.error("--runs must be in [1, 10]")
    if not 1 <= args.sentinels <= 5:
        parser.error("--sentinels must be in [1, 5]")
    if not 100 <= args.down_after_ms <= 30000:
        parser.error("--down-after-ms must be in [100, 30000]")
    install_sigterm_as_interrupt()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": loadavg()},
    }
    with tempfile.TemporaryDirectory(prefix="cascade-bench-") as tmp:
        try:
            result["failover"] = bench(args.runs, args.down_after_ms, args.sentinels, Path(tmp))
            failed = False
        except Exception as exc:
            log(f"FAILED: {exc!r}")
            result["failover"] = {"error": repr(exc)}
            failed = True
    result["machine"]["loadavg_at_end"] = loadavg()
    print(json.dumps(result, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        log("interrupted: everything started here was stopped")
        raise SystemExit(130) from None
