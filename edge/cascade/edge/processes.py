"""One edge pod, N edge processes on one port: the supervisor of ``CASCADE_EDGE_PROCESSES``.

An edge process is one event loop, so it uses one core (``bench/edge_viewers.py``). A pod
given more cores runs one process per core, each bound to the same port with
SO_REUSEPORT: "the kernel distributes incoming connections ... across the sockets bound
to the port" (socket(7)), so viewers spread over the processes by connection, and each
process follows Redis on its own as a replica edge does (the windows are per process,
the sessions in Redis are shared). This parent serves nothing: it starts the processes,
passes SIGTERM/SIGINT on to each (every one drains its held requests), and when one of
them ends on its own it stops the others and exits with its code, so the kubelet
restarts the container whole rather than the pod serving on fewer cores than it asked.

Each process has its own ``/metrics`` (a scrape reaches one of them); what the HPA needs
from the pod, its CPU, the kubelet measures for the whole container.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("cascade.edge.processes")

WORKER_FLAG = "--worker"  # argv of a process the supervisor started: serve with SO_REUSEPORT
# After the first process ends on its own, the others get SIGTERM and this long to drain
# (their own drain is 5 s: DRAIN_SECONDS), then SIGKILL.
STOP_SECONDS = 10.0


def _die_with_parent() -> None:
    """In the child: SIGTERM if the supervisor dies (nothing keeps the port after it)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def exit_code(first: int, stopping: bool) -> int:
    """The supervisor's exit code from the first process to end (its return code:
    negative for a signal) and whether the supervisor was told to stop.

    Told to stop, a clean drain is success. Otherwise an edge process never ends on its
    own: its code if it failed, 1 if it ended "cleanly" (it should not have ended).
    """
    if stopping and first in (0, -signal.SIGTERM, -signal.SIGINT):
        return 0
    if first > 0:
        return first
    return 1 if first == 0 else 128 - first


def supervise(processes: int, argv: Sequence[str] | None = None) -> int:
    """Run ``processes`` edge processes until a signal or the first of them ends."""
    argv = list(argv or [sys.executable, "-m", "cascade.edge.main", WORKER_FLAG])
    children = [subprocess.Popen(argv, preexec_fn=_die_with_parent) for _ in range(processes)]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info("edge: %d processes on one port (SO_REUSEPORT)", processes)
    first: int | None = None
    while first is None:
        for child in children:
            code = child.poll()
            if code is not None:
                first = code
                break
        else:
            time.sleep(0.2)
    if not stopping:
        log.error("an edge process ended (%d): stopping the others", first)
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return exit_code(first, stopping)
