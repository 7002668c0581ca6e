"""Admission of streams under the cluster's limits: pure, oldest first.

Two limits hold a stream in Pending with a ``CapacityAvailable=False`` condition:
``MAX_CONCURRENT_STREAMS`` (reason ``MaxConcurrentStreams``) and the NVENC session
budget, ``sum(GPUs of the GPU nodes) x nvenc_sessions_per_gpu`` (reason
``NvencSessionBudget``). An NVENC stream takes one session per rendition (one encoder
each). The budget is cluster-wide: whether the sessions fit on one node is the
scheduler's call (the ``Scheduled`` condition reports it).

Order: streams that already have a transcoder first (a stream that wakes up on demand
never evicts one that is running), then by creation time and name, so a waiting stream
starts as soon as an older one ends. NVENC admission is first come, first served: once an NVENC stream waits,
younger NVENC streams wait behind it even if they would fit, so a big ladder is not
starved by small ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

MAX_CONCURRENT_STREAMS = "MaxConcurrentStreams"
NVENC_SESSION_BUDGET = "NvencSessionBudget"


class StreamDemand(NamedTuple):
    name: str
    creation_ts: float  # Unix seconds of metadata.creationTimestamp
    gpus_requested: int
    nvenc: bool
    sessions: int = 1  # NVENC sessions: the number of renditions encoded
    running: bool = False  # it has a transcoder pod now


class GpuNode(NamedTuple):
    node: str
    gpus: int  # allocatable nvidia.com/gpu


@dataclass(frozen=True, slots=True)
class Admitted:
    pass


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str  # CamelCase, used as the CapacityAvailable condition's reason
    message: str


Decision = Admitted | Waiting


def plan_capacity(
    streams: Iterable[tuple[str, float, int, bool] | StreamDemand],
    *,
    max_streams: int,
    gpu_nodes: Iterable[tuple[str, int]],
    nvenc_sessions_per_gpu: int,
) -> dict[str, Decision]:
    demands = sorted(
        (StreamDemand(*s) for s in streams), key=lambda d: (not d.running, d.creation_ts, d.name)
    )
    total_gpus = sum(max(0, GpuNode(*n).gpus) for n in gpu_nodes)
    budget = total_gpus * nvenc_sessions_per_gpu
    used_sessions = 0
    running = 0
    nvenc_blocked_by: str | None = None
    decisions: dict[str, Decision] = {}
    for demand in demands:
        if running >= max_streams:
            decisions[demand.name] = Waiting(
                MAX_CONCURRENT_STREAMS,
                f"{running} of {max_streams} concurrent streams running "
                f"(MAX_CONCURRENT_STREAMS={max_streams}); waiting for one to end",
            )
            continue
        if demand.nvenc:
            needed = max(1, demand.sessions)
            if nvenc_blocked_by is not None:
                decisions[demand.name] = Waiting(
                    NVENC_SESSION_BUDGET,
                    f"needs {needed} NVENC sessions; queued behind older stream "
                    f"{nvenc_blocked_by} ({used_sessions} of {budget} sessions in use)",
                )
                continue
            if used_sessions + needed > budget:
                nvenc_blocked_by = demand.name
                decisions[demand.name] = Waiting(
                    NVENC_SESSION_BUDGET,
                    f"needs {needed} NVENC sessions, {budget - used_sessions} of {budget} "
                    f"free ({total_gpus} GPUs x {nvenc_sessions_per_gpu} sessions per GPU)",
                )
                continue
            used_sessions += needed
        running += 1
        decisions[demand.name] = Admitted()
    return decisions
