"""A real Redis Sentinel deployment on loopback for one test: a primary, a replica and
three sentinels (Debian's redis-sentinel), tuned to fail over in a few seconds.

``down-after-milliseconds`` 1000 and ``failover-timeout`` 3000: the primary counts as down
1 s after it stops answering, and a failed election is retried after twice 3 s (production
keeps Redis's 30 s / 180 s defaults). Quorum 2 of 3, as production should run: with two
sentinels both call the primary down at once and a split vote costs that retry (seen:
8.5 s instead of 2.3 s).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from .conftest import free_server_port

MASTER = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


@dataclass
class Node:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


class SentinelCluster:
    def __init__(self, tmp: Path, sentinels: int = 3) -> None:
        self.tmp = tmp
        self.sentinel_count = sentinels
        self.data: list[Node] = []
        self.sentinels: list[Node] = []

    # ---- start and stop ----------------------------------------------------------------

    def start(self) -> None:
        primary = self._data_node("primary", [])
        self._data_node("replica", ["--replicaof", "127.0.0.1", str(primary.port)])
        for i in range(self.sentinel_count):
            self._sentinel(i, primary.port)
        self._wait("the replica to sync", self._replica_synced, 15)
        self._wait("the sentinels to know the replica and each other", self._sentinels_ready, 20)

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            if node.proc.poll() is None:
                node.proc.terminate()
        for node in [*self.sentinels, *self.data]:
            try:
                node.proc.wait(10)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(5)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("wb")
        try:
            return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        finally:
            log.close()

    def _data_node(self, name: str, extra: list[str]) -> Node:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed: `make test` installs it")
        port = free_server_port()
        folder = self.tmp / name
        folder.mkdir()
        proc = self._spawn(
            name,
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder), "--loglevel", "warning", *extra],
        )  # fmt: skip
        node = Node(name, port, proc)
        self.data.append(node)
        self._wait(f"{name} to listen", lambda: _answers(port), 10)
        return node

    def _sentinel(self, index: int, primary_port: int) -> Node:
        binary = shutil.which("redis-sentinel")
        if binary is None:
            pytest.fail("redis-sentinel is not installed: `make test` installs it")
        port = free_server_port()
        conf = self.tmp / f"sentinel{index}.conf"  # the sentinel rewrites it: its own file
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.tmp}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {primary_port} {self.sentinel_count // 2 + 1}\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        node = Node(f"sentinel{index}", port, self._spawn(f"sentinel{index}", [binary, str(conf)]))
        self.sentinels.append(node)
        self._wait(f"sentinel {index} to listen", lambda: _answers(port), 10)
        return node

    # ---- what a test asks --------------------------------------------------------------

    def url(self, *, dead_first: bool = False) -> str:
        """``redis+sentinel://`` with every sentinel; ``dead_first``: a sentinel address
        where nothing listens comes first, as when one sentinel is down."""
        hosts = [f"127.0.0.1:{n.port}" for n in self.sentinels]
        if dead_first:
            hosts.insert(0, f"127.0.0.1:{free_server_port()}")
        return f"redis+sentinel://{','.join(hosts)}/{MASTER}/0"

    def primary_port(self) -> int:
        """The primary every running sentinel names (they agree, or this fails)."""
        ports = set()
        for node in self.sentinels:
            if node.proc.poll() is None:
                with _client(node.port) as r:
                    address: Any = r.sentinel_get_master_addr_by_name(MASTER)
                ports.add(int(address[1]))
        (port,) = ports
        return port

    def node(self, port: int) -> Node:
        return next(n for n in self.data if n.port == port)

    def kill_primary(self) -> Node:
        """SIGKILL the primary (no goodbye to clients, replicas or sentinels)."""
        node = self.node(self.primary_port())
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)
        return node

    def wait_failover(self, old: Node, timeout: float = 30) -> float:
        """Seconds until every sentinel names another primary and it says it is one."""
        start = time.monotonic()

        def promoted() -> bool:
            try:
                port = self.primary_port()
            except (ValueError, redis.RedisError):
                return False
            if port == old.port:
                return False
            with _client(port) as r:
                role: Any = r.role()
            return bool(role[0] == b"master")

        self._wait("the failover", promoted, timeout)
        return time.monotonic() - start

    # ---- waiting -------------------------------------------------------------------------

    def _replica_synced(self) -> bool:
        replica = next(n for n in self.data if n.name == "replica")
        with _client(replica.port) as r:
            info: Any = r.info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        for node in self.sentinels:
            with _client(node.port) as r:
                replicas: Any = r.sentinel_slaves(MASTER)
                peers: Any = r.sentinel_sentinels(MASTER)
            if len(replicas) != 1 or len(peers) != self.sentinel_count - 1:
                return False
        return True

    def _wait(self, what: str, check: Callable[[], bool], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if check():
                    return
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline:
                logs = {p.name: p.read_text()[-1500:] for p in self.tmp.glob("*.log")}
                pytest.fail(f"timed out after {seconds} s waiting for {what}; logs: {logs}")
            time.sleep(0.05)


@contextlib.contextmanager
def _client(port: int) -> Iterator[redis.Redis]:
    """A short-lived sync client, always closed."""
    r = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        yield r
    finally:
        r.close()


def _answers(port: int) -> bool:
    with _client(port) as r:
        return bool(r.ping())
