"""Fixtures shared by every tier: a real Redis server, free ports, leak checks."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .objectstore import ObjectStoreServer

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_server_port() -> int:
    """A free port below the ephemeral range, for a server the tests stop and restart.

    A port from bind(0) is an ephemeral port: while its server is down, a client
    reconnecting to it can be handed that very port as its own source port and connect to
    itself (a TCP self-connect), reading its own request back as the answer. A Redis client
    then "reaches" a Redis that is not there. Ports below the range are never handed out.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(20000, min(low, 32768)), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def wait_http(
    url: str, ok: Callable[[httpx.Response], bool] | None = None, *, timeout: float = 20.0
) -> httpx.Response:
    """GET ``url`` until the answer is 200 (or satisfies ``ok``): a process coming up."""
    deadline = time.monotonic() + timeout
    last: object = "no answer"
    while True:
        try:
            response = httpx.get(url, timeout=1)
            if (ok or (lambda r: r.status_code == 200))(response):
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"{url} not ready after {timeout:.0f}s (last: {last})")
        time.sleep(0.1)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """A real redis-server on loopback, owned by the test session."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_server_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed: `make test` installs it")
        self.proc = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.tmp),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database for each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def no_task_leaks(anyio_backend: str) -> AsyncIterator[None]:
    """Every asyncio task a test starts must be finished when it ends."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = {
        t
        for t in asyncio.all_tasks() - before - {asyncio.current_task()}
        # anyio's own runner tasks carry the tests themselves.
        if not t.done() and not getattr(t.get_coro(), "__qualname__", "").startswith("TestRunner.")
    }
    assert not leaked, f"tasks left running: {leaked}"


def ffmpeg_or_fail() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.fail("ffmpeg is not installed: `make test` installs it")
    return path


os.environ.setdefault("CASCADE_LOG_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStoreServer]:
    """A real S3 server (Versity Gateway) for the session; tests use their own key prefix."""
    server = ObjectStoreServer(tmp_path_factory.mktemp("objectstore"), free_server_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def store_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix no other test writes under."""
    return f"t{abs(hash(request.node.nodeid)) % 10**12}-{time.monotonic_ns()}/"
