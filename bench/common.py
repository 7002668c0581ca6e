"""Shared plumbing of the benchmarks: processes that are always cleaned up, CPU from /proc,
free loopback ports, a throwaway Redis server and edge, and percentiles.

Linux only (reads /proc). No dependency beyond the project's own.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*args: object) -> None:
    """Progress goes to stderr; stdout carries the JSON result only."""
    print("[bench]", *args, file=sys.stderr, flush=True)


# ---- ports ------------------------------------------------------------------------------


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def udp_port_bound(port: int) -> bool:
    """Is some socket bound to this UDP port (IPv4 or IPv6)? Read from /proc/net/udp*."""
    needle = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f, None)
            for line in f:
                local = line.split()[1]
                if local.endswith(needle):
                    return True
    return False


# ---- /proc ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    cpu_seconds: float  # utime + stime of every thread of the process
    user_seconds: float
    system_seconds: float
    start_ticks: int  # identifies the process (with the pid) against pid reuse


def proc_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    lp, rp = raw.index("("), raw.rindex(")")
    fields = raw[rp + 2 :].split()
    # fields[0] is field 3 (state); utime=14, stime=15, starttime=22 (1-based, man proc).
    return ProcStat(
        pid=pid,
        comm=raw[lp + 1 : rp],
        ppid=int(fields[1]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLK_TCK,
        user_seconds=int(fields[11]) / CLK_TCK,
        system_seconds=int(fields[12]) / CLK_TCK,
        start_ticks=int(fields[19]),
    )


def cpu_seconds(pid: int) -> float:
    st = proc_stat(pid)
    if st is None:
        raise ProcessLookupError(pid)
    return st.cpu_seconds


def all_stats() -> list[ProcStat]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := proc_stat(int(entry))) is not None:
            out.append(st)
    return out


def descendants(pid: int) -> list[ProcStat]:
    """Every live descendant of ``pid`` (whatever session or process group it is in)."""
    stats = all_stats()
    by_parent: dict[int, list[ProcStat]] = {}
    for st in stats:
        by_parent.setdefault(st.ppid, []).append(st)
    out: list[ProcStat] = []
    todo = [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def children_named(pid: int, comm: str) -> list[int]:
    return [st.pid for st in descendants(pid) if st.ppid == pid and st.comm == comm]


@dataclass(frozen=True, slots=True)
class MachineCpu:
    busy: int  # jiffies, all CPUs
    total: int


def memory_bytes(pid: int) -> dict[str, int]:
    """Resident memory of a process now (``rss``) and at its peak (``peak_rss``)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out["rss" if name == "VmRSS" else "peak_rss"] = int(value.split()[0]) * 1024
    return out


def machine_cpu() -> MachineCpu:
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    total = sum(parts[:8])  # guest time is already counted in user
    return MachineCpu(busy=total - idle, total=total)


def machine_busy_percent(a: MachineCpu, b: MachineCpu) -> float:
    """Share of the whole machine (all cores) that was busy between two samples."""
    total = b.total - a.total
    return 100.0 * (b.busy - a.busy) / total if total > 0 else 0.0


def loadavg() -> list[float]:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ---- processes --------------------------------------------------------------------------


@dataclass(slots=True)
class Spawned:
    name: str
    popen: subprocess.Popen[bytes]
    stop_signal: int = signal.SIGTERM


@dataclass(slots=True)
class Procs:
    """Every process a benchmark starts, stopped in reverse order by :meth:`stop_all`.

    Each child gets its own session (a Ctrl-C in the terminal reaches only the benchmark,
    which then stops its children in order). Grandchildren that live in their own
    sessions (the transcoder starts FFmpeg that way) are found through /proc before the
    parent is signalled, and killed by pid if the parent left them behind.
    """

    items: list[Spawned] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        stdout: int | None = subprocess.DEVNULL,
        stderr: int | object | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        full_env = {**os.environ, **(env or {})}
        popen = subprocess.Popen(
            list(argv),
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,  # type: ignore[arg-type]
            cwd=cwd or REPO,
            start_new_session=True,
        )
        self.items.append(Spawned(name, popen, stop_signal))
        return popen

    def stop(self, item: Spawned, timeout: float = 5.0) -> None:
        p = item.popen
        leftovers = [] if p.poll() is not None else descendants(p.pid)
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(item.stop_signal)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        for st in leftovers:
            now = proc_stat(st.pid)
            if now is not None and now.start_ticks == st.start_ticks:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(st.pid, signal.SIGKILL)
        if item in self.items:
            self.items.remove(item)

    def stop_many(self, items: Iterable[Spawned], timeout: float = 5.0) -> None:
        """Signal all at once, then wait: stopping 50 processes one by one takes too long."""
        items = list(items)
        leftovers = {id(i): descendants(i.popen.pid) for i in items if i.popen.poll() is None}
        for i in items:
            if i.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    i.popen.send_signal(i.stop_signal)
        deadline = time.monotonic() + timeout
        for i in items:
            with contextlib.suppress(subprocess.TimeoutExpired):
                i.popen.wait(max(0.05, deadline - time.monotonic()))
        for i in items:
            self.stop(i, timeout=1.0)  # kills what is still alive
            for st in leftovers.get(id(i), []):
                now = proc_stat(st.pid)
                if now is not None and now.start_ticks == st.start_ticks:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(st.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for item in reversed(list(self.items)):
            try:
                self.stop(item)
            except Exception as exc:  # keep cleaning up the others
                log(f"cleanup of {item.name} failed: {exc!r}")

    def find(self, popen: subprocess.Popen[bytes]) -> Spawned:
        return next(i for i in self.items if i.popen is popen)


def install_sigterm_as_interrupt() -> None:
    """SIGTERM and SIGHUP end the benchmark like Ctrl-C does, so every ``finally`` runs.

    SIGINT is set explicitly too: a shell starting us in the background may have left it
    ignored.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


# ---- services ---------------------------------------------------------------------------


def wait_tcp(port: int, seconds: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {seconds}s")


def start_redis(procs: Procs, workdir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is not installed (`make setup` installs it)")
    port = free_tcp_port()
    proc = procs.spawn(
        "redis",
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(workdir), "--loglevel", "warning"],
    )  # fmt: skip
    wait_tcp(port, 10, proc)
    return f"redis://127.0.0.1:{port}/0", proc


def start_edge(
    procs: Procs, redis_url: str, *, cpu: int | None = None, env: dict[str, str] | None = None
) -> tuple[int, subprocess.Popen[bytes]]:
    """One edge process on a free port; ``cpu`` pins it to that core (``taskset``);
    ``env`` adds settings (``CASCADE_...``)."""
    port = free_tcp_port()
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    proc = procs.spawn(
        "edge",
        [*pin, sys.executable, "-m", "cascade.edge.main"],
        env={"PORT": str(port), "HOST": "127.0.0.1", "REDIS_URL": redis_url,
             "CASCADE_LOG_LEVEL": "WARNING", **(env or {})},
    )  # fmt: skip
    wait_tcp(port, 20, proc)
    return port, proc


# ---- figures ----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(values_s: Iterable[float]) -> dict[str, float | int]:
    v = sorted(x * 1000 for x in values_s)
    if not v:
        return {"count": 0}
    return {
        "count": len(v),
        "p50": round(percentile(v, 50), 2),
        "p90": round(percentile(v, 90), 2),
        "p99": round(percentile(v, 99), 2),
        "max": round(v[-1], 2),
        "min": round(v[0], 2),
    }
