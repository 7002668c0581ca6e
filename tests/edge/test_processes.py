"""One pod, N edge processes on one port (CASCADE_EDGE_PROCESSES, SO_REUSEPORT): real
processes on a real Redis, over loopback.

The supervisor starts its processes on one port; the kernel spreads connections over
them and each serves the stream it follows from Redis; SIGTERM drains them all; one
that dies takes the others and the supervisor down (the container restarts whole).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from cascade.edge.processes import exit_code

from ..conftest import free_port, wait_http
from .test_replicas import announce

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("first", "stopping", "code"),
    [
        (0, True, 0),  # drained on SIGTERM
        (-signal.SIGTERM, True, 0),
        (3, True, 3),  # failed while draining: say so
        (0, False, 1),  # an edge never ends on its own: that is a failure
        (2, False, 2),
        (-signal.SIGKILL, False, 128 + signal.SIGKILL),  # as a shell reports a killed child
    ],
)
def test_the_supervisor_exit_code(first: int, stopping: bool, code: int) -> None:
    assert exit_code(first, stopping) == code


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def sockets_of(pid: int, port: int, state: str) -> int:
    """Sockets on ``port`` in ``state`` (01 established, 0A listening) that process ``pid``
    holds: its socket fds matched with /proc/net/tcp."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == state and fields[1].endswith(f":{port:04X}") and fields[9] in inodes:
            count += 1
    return count


def receive(s: socket.socket) -> bytes:
    """One whole answer (head and its Content-Length of body)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = s.recv(4096)
        assert chunk, answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    while len(body) < length:
        chunk = s.recv(4096)
        assert chunk, answer
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture
def pod(redis_server: object) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    url = redis_server.url  # type: ignore[attr-defined]
    r = redis.Redis.from_url(url)
    announce(r, "pod1")
    port = free_port()
    env = {
        **os.environ, "PORT": str(port), "HOST": "127.0.0.1", "REDIS_URL": url,
        "CASCADE_EDGE_PROCESSES": "2", "CASCADE_LOG_LEVEL": "WARNING",
        "CASCADE_STREAM_POLL_SECONDS": "0.1",
    }  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "cascade.edge.main"], env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=20)
        # Up: both processes listen on the port.
        deadline = time.monotonic() + 20
        while True:
            workers = children(proc.pid)
            if len(workers) == 2 and all(sockets_of(pid, port, "0A") for pid in workers):
                break
            assert time.monotonic() < deadline, "the two edge processes did not both listen"
            time.sleep(0.05)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for pid in children(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_two_processes_share_the_port_and_each_serves_the_stream(
    pod: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = pod
    workers = children(proc.pid)
    assert len(workers) == 2
    # Connections spread over both (SO_REUSEPORT hashes each new connection): of 40, each
    # process gets some (all 40 to one: probability 2**-39).
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            held = [sockets_of(pid, port, "01") for pid in workers]
            if sum(held) == 40:
                break
            time.sleep(0.05)
        assert sum(held) == 40 and min(held) > 0, held
        # Every connection is served, whichever process holds it: the stream it follows
        # from Redis (a process answers 404 until its hub has read the stream: asked again
        # on the same connection until then).
        for s in sockets:
            s.settimeout(5)
            deadline = time.monotonic() + 10
            while True:
                s.sendall(b"GET /live/pod1/360p/3.0.m4s HTTP/1.1\r\nHost: edge\r\n\r\n")
                answer = receive(s)
                if answer.startswith(b"HTTP/1.1 200 OK\r\n"):
                    assert answer.endswith(b"3.0;")
                    break
                assert answer.startswith(b"HTTP/1.1 404"), answer
                assert time.monotonic() < deadline, "a process never served the stream"
                time.sleep(0.1)
    finally:
        for s in sockets:
            s.close()


def test_sigterm_drains_every_process_and_the_supervisor_exits_0(
    pod: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = pod
    workers = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    # The supervisor waited for each (reaped: gone from /proc) before it exited.
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_a_process_that_dies_takes_the_pod_down(pod: tuple[subprocess.Popen[bytes], int]) -> None:
    proc, _ = pod
    first, second = children(proc.pid)
    os.kill(first, signal.SIGKILL)
    assert proc.wait(15) == 128 + signal.SIGKILL
    assert not Path(f"/proc/{second}").exists(), "the other process is stopped and reaped"
