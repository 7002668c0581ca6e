"""Admission under MAX_CONCURRENT_STREAMS and the NVENC session budget, oldest first."""

from __future__ import annotations

from cascade.operator.capacity import (
    MAX_CONCURRENT_STREAMS,
    NVENC_SESSION_BUDGET,
    Admitted,
    StreamDemand,
    Waiting,
    plan_capacity,
)
from cascade.operator.settings import OperatorSettings

TWO_GPU_NODES = [("gpu-a", 1), ("gpu-b", 1)]


def test_settings_defaults() -> None:
    s = OperatorSettings.model_validate({})
    assert (s.max_concurrent_streams, s.nvenc_sessions_per_gpu) == (25, 8)
    assert s.transcoder_image == "ghcr.io/cascade/transcoder:0.1.0"
    assert s.gpu_resource_name == "nvidia.com/gpu"
    assert s.gpu_runtime_class_name == "nvidia"


def test_twenty_five_run_and_the_twenty_sixth_waits() -> None:
    # Listed newest first: the plan must sort by creation time, not by input order.
    streams = [(f"s{i:02d}", 1000.0 + i, 0, False) for i in reversed(range(26))]
    plan = plan_capacity(streams, max_streams=25, gpu_nodes=[], nvenc_sessions_per_gpu=8)
    assert sum(isinstance(d, Admitted) for d in plan.values()) == 25
    waiting = plan["s25"]
    assert isinstance(waiting, Waiting)
    assert waiting.reason == MAX_CONCURRENT_STREAMS
    assert "25 of 25" in waiting.message


def test_the_waiting_stream_starts_when_one_ends() -> None:
    streams = [(f"s{i:02d}", 1000.0 + i, 0, False) for i in range(26)]
    plan = plan_capacity(streams[1:], max_streams=25, gpu_nodes=[], nvenc_sessions_per_gpu=8)
    assert all(isinstance(d, Admitted) for d in plan.values())


def test_nvenc_session_budget() -> None:
    # 2 GPUs x 8 sessions = 16; each 3-rendition ladder takes 3 sessions: 5 fit (15).
    streams = [StreamDemand(f"gpu{i}", float(i), 1, True, 3) for i in range(6)]
    streams.append(StreamDemand("cpu", 99.0, 0, False))
    plan = plan_capacity(streams, max_streams=25, gpu_nodes=TWO_GPU_NODES, nvenc_sessions_per_gpu=8)
    assert [n for n, d in plan.items() if isinstance(d, Admitted)] == [
        "gpu0",
        "gpu1",
        "gpu2",
        "gpu3",
        "gpu4",
        "cpu",
    ]
    waiting = plan["gpu5"]
    assert isinstance(waiting, Waiting)
    assert waiting.reason == NVENC_SESSION_BUDGET
    assert waiting.message == "needs 3 NVENC sessions, 1 of 16 free (2 GPUs x 8 sessions per GPU)"


def test_nvenc_is_first_come_first_served() -> None:
    streams = [
        StreamDemand("old-ladder", 1.0, 1, True, 8),
        StreamDemand("big", 2.0, 1, True, 8),
        StreamDemand("small", 3.0, 1, True, 1),
    ]
    plan = plan_capacity(streams, max_streams=25, gpu_nodes=[("n", 1)], nvenc_sessions_per_gpu=8)
    assert isinstance(plan["old-ladder"], Admitted)
    small = plan["small"]
    assert isinstance(small, Waiting)
    assert "queued behind older stream big" in small.message


def test_no_gpu_nodes_holds_every_nvenc_stream() -> None:
    plan = plan_capacity(
        [("a", 1.0, 1, True)], max_streams=25, gpu_nodes=[], nvenc_sessions_per_gpu=8
    )
    assert plan == {
        "a": Waiting(
            NVENC_SESSION_BUDGET,
            "needs 1 NVENC sessions, 0 of 0 free (0 GPUs x 8 sessions per GPU)",
        )
    }


def test_a_running_stream_is_never_evicted_by_an_older_one_waking_up() -> None:
    streams = [
        StreamDemand("old-on-demand", 1.0, 0, False, running=False),
        StreamDemand("young-running", 2.0, 0, False, running=True),
    ]

    decisions = plan_capacity(streams, max_streams=1, gpu_nodes=[], nvenc_sessions_per_gpu=8)

    assert isinstance(decisions["young-running"], Admitted)
    assert isinstance(decisions["old-on-demand"], Waiting)
