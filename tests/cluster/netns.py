"""Enter the test cluster's network namespace from this process (setns(2) on the calling thread).

The cluster and its clients live in a network namespace of their own (scripts/cluster-up.sh).
The tests are its clients: their kubectl, helm, Redis and HTTP connections must start inside
it. setns(2) moves only the calling thread, and a child process or thread inherits the
namespace of the thread that made it, so entering it on the main thread (where pytest runs the
tests) covers everything they start. Python 3.11 has no os.setns, hence libc.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
# The namespace this process started in (the machine's own: pytest imports this module before
# any fixture enters the cluster's), held open so commands can be run there for comparison.
_HOST = os.open("/proc/thread-self/ns/net", os.O_RDONLY)


def in_host_namespace() -> list[str]:
    """A command prefix that runs the command in the machine's own network namespace."""
    return ["nsenter", f"--net=/proc/{os.getpid()}/fd/{_HOST}", "--"]


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET): {os.strerror(errno)}")


def current() -> int:
    """The inode of this thread's network namespace (what /proc/PID/ns/net links to)."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def namespace_of(state: Path) -> Path:
    """The bind mount of the cluster's namespace, named in <state>/netns by cluster-up.sh."""
    return Path("/run/netns") / (state / "netns").read_text().strip()


@contextlib.contextmanager
def entered(path: Path) -> Iterator[None]:
    """Run the body with this thread inside the namespace mounted at `path`, then come back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
