"""Which LiveStreams hold a capacity slot, read from their spec and last status."""

from __future__ import annotations

from typing import Any

from cascade.operator.capacity import StreamDemand
from cascade.operator.controller import claim_of


def body(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "cam",
            "namespace": "studio",
            "creationTimestamp": "2027-01-15T08:00:00Z",
        },
        "spec": {"source": {"type": "test"}, **spec},
        "status": status or {},
    }


def active(value: str) -> dict[str, Any]:
    return {"conditions": [{"type": "Active", "status": value, "reason": "R"}]}


def test_a_new_stream_claims_a_cpu_slot() -> None:
    assert claim_of(body()) == StreamDemand("studio/cam", 1_800_000_000.0, 0, False, 1, False)


def test_an_nvenc_ladder_claims_one_session_per_rendition() -> None:
    ladder = {"renditions": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    claim = claim_of(body(scheduling={"gpus": 1}, transcode=ladder))

    assert claim is not None
    assert (claim.gpus_requested, claim.nvenc, claim.sessions) == (1, True, 3)
    cpu = claim_of(body(scheduling={"gpus": 1}, transcode={**ladder, "hardware": "cpu"}))
    assert cpu is not None and not cpu.nvenc


def test_streams_that_hold_no_transcoder_hold_no_slot() -> None:
    deleting = body()
    deleting["metadata"]["deletionTimestamp"] = "2027-01-15T08:01:00Z"

    assert claim_of(deleting) is None
    assert claim_of(body(active("False"))) is None  # an on-demand stream nobody watches
    assert claim_of(body({"phase": "Failed"})) is None  # waiting for the user


def test_a_failed_stream_with_a_pod_still_holds_its_slot() -> None:
    claim = claim_of(body({"phase": "Failed", "transcoder": {"podUID": "u"}}))

    assert claim is not None and claim.running


def test_the_stream_being_reconciled_always_claims() -> None:
    """Its last status is about to be decided again: waking up must pass capacity."""
    assert claim_of(body(active("False")), own=True) is not None
    assert claim_of(body({"phase": "Failed"}), own=True) is not None
