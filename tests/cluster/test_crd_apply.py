"""The generated CRD on a real API server: kubectl apply accepts the examples and refuses
invalid LiveStreams with a message naming the field.

Every refusal is checked on both sides: the API server (schema, CEL rules, strict field
validation) and the pydantic model refuse the same manifest, so the CRD and the spec agree.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from cascade.contract.crd import CRD_PATH, NAME, status_schema
from cascade.contract.spec import LiveStream

from .conftest import Kubectl, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [*sorted((REPO / "examples").glob("*.yaml")), REPO / "examples/local/demo.yaml"]


@pytest.fixture(scope="module")
def crd(kubectl: Kubectl) -> str:
    """The CRD of crds/, applied and Established (other modules may apply it too: same text)."""
    kubectl.run("apply", "-f", str(REPO / CRD_PATH))
    kubectl.run("wait", "--for=condition=Established", f"crd/{NAME}", "--timeout=60s")
    return NAME


@pytest.fixture(scope="module")
def streams(kubectl: Kubectl, crd: str) -> Iterator[Kubectl]:
    """kubectl in a namespace of this module's own, holding the applied examples."""
    name = f"crd-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    bound = kubectl.in_namespace(name)
    for path in EXAMPLES:
        bound.run("apply", "-f", str(path))
    yield bound
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


def manifest(spec: dict[str, Any], name: str = "bad") -> dict[str, Any]:
    return {
        "apiVersion": "cascade.dev/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": name},
        "spec": spec,
    }


TEST_SOURCE: dict[str, Any] = {"type": "test", "test": {}}


def spec_with(**sections: Any) -> dict[str, Any]:
    return {"source": copy.deepcopy(TEST_SOURCE), **sections}


def renditions(*names: str, **fields: Any) -> list[dict[str, Any]]:
    return [{"name": n, "width": 640, "height": 360, **fields} for n in names]


# id -> (manifest, what stderr must say: the field path first, then words of the rule)
INVALID: dict[str, tuple[dict[str, Any], list[str]]] = {
    "part-does-not-divide-segment": (
        manifest(spec_with(delivery={"segmentDurationMs": 500, "partDurationMs": 300})),
        ["spec.delivery.partDurationMs", "must divide delivery.segmentDurationMs"],
    ),
    "part-longer-than-segment": (
        manifest(spec_with(delivery={"segmentDurationMs": 500, "partDurationMs": 1000})),
        ["spec.delivery.partDurationMs", "must not exceed delivery.segmentDurationMs"],
    ),
    "missing-source-block": (
        manifest({"source": {"type": "rtp"}}),
        ["spec.source.rtp", "source.rtp is required when source.type is rtp"],
    ),
    "two-source-blocks": (
        manifest({"source": {"type": "srt", "srt": {}, "rtmp": {}}}),
        ["spec.source.rtmp", "source.type is srt but source.rtmp is set"],
    ),
    "srt-caller-without-host": (
        manifest({"source": {"type": "srt", "srt": {"mode": "caller"}}}),
        ["spec.source.srt.host", "srt.host is required when srt.mode is caller"],
    ),
    "rtmp-pull-without-url": (
        manifest({"source": {"type": "rtmp", "rtmp": {"mode": "pull"}}}),
        ["spec.source.rtmp.url", "rtmp.url is required when rtmp.mode is pull"],
    ),
    "rtmp-url-scheme": (
        manifest({"source": {"type": "rtmp", "rtmp": {"mode": "pull", "url": "http://o/x"}}}),
        ["spec.source.rtmp.url", "must start with rtmp:// or rtmps://"],
    ),
    "unknown-field": (
        manifest(spec_with(delivery={"partDuration": 100})),
        ['unknown field "spec.delivery.partDuration"'],
    ),
    "bitrate-out-of-range": (
        manifest(spec_with(transcode={"renditions": renditions("hd", videoBitrateKbps=60000)})),
        ["spec.transcode.renditions[0].videoBitrateKbps", "less than or equal to 50000"],
    ),
    "odd-width": (
        manifest(spec_with(transcode={"renditions": [{"name": "x", "width": 641}]})),
        ["spec.transcode.renditions[0].width", "multiple of 2"],
    ),
    "too-many-renditions": (
        manifest(spec_with(transcode={"renditions": renditions(*(f"r{i}" for i in range(9)))})),
        ["spec.transcode.renditions", "must have at most 8 items"],
    ),
    "duplicate-rendition-names": (
        manifest(spec_with(transcode={"renditions": renditions("360p", "360p")})),
        ["spec.transcode.renditions", "transcode.renditions[].name must be unique"],
    ),
    "passthrough-with-two-renditions": (
        manifest(spec_with(transcode={"mode": "passthrough", "renditions": renditions("a", "b")})),
        ["spec.transcode.renditions", "exactly one rendition in passthrough mode"],
    ),
    "nvenc-without-gpus": (
        manifest(spec_with(transcode={"hardware": "nvenc"})),
        ["spec.scheduling.gpus", "transcode.hardware nvenc requires scheduling.gpus >= 1"],
    ),
    "unknown-source-type": (
        manifest({"source": {"type": "webrtc"}}),
        ["spec.source.type", 'Unsupported value: "webrtc"'],
    ),
    "negative-idle-timeout": (
        manifest(spec_with(idleTimeoutSeconds=-1)),
        ["spec.idleTimeoutSeconds", "greater than or equal to 0"],
    ),
    "segment-not-whole-frames-at-25fps": (
        manifest(spec_with(transcode={"frameRate": 25})),
        [
            "spec.delivery.segmentDurationMs",
            "delivery.segmentDurationMs 500 is not a whole number of frames at "
            "transcode.frameRate 25",
        ],
    ),
    "part-not-whole-frames-at-30fps": (
        manifest(spec_with(delivery={"segmentDurationMs": 1000, "partDurationMs": 250})),
        ["spec.delivery.partDurationMs", "partDurationMs 250 is not a whole number of frames"],
    ),
    "name-not-a-label": (
        manifest(spec_with(), name="studio.a"),
        ["metadata.name", "should match"],
    ),
    "name-too-long": (
        manifest(spec_with(), name="a" * 64),
        ["metadata.name", "Too long"],
    ),
    "sdp-not-sdp": (
        manifest({"source": {"type": "rtp", "rtp": {"sdp": "hello world"}}}),
        ["spec.source.rtp.sdp", "v=0"],
    ),
    "missing-source": (
        manifest({"delivery": {}}),
        ["spec.source", "Required value"],
    ),
    "privileged-port": (
        manifest({"source": {"type": "srt", "srt": {"port": 80}}}),
        ["spec.source.srt.port", "greater than or equal to 1024"],
    ),
    "bad-enum-in-list": (
        manifest(spec_with(scheduling={"tolerations": [{"key": "k", "effect": "Never"}]})),
        ["spec.scheduling.tolerations[0].effect", 'Unsupported value: "Never"'],
    ),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_livestream_is_refused_naming_the_field(streams: Kubectl, case: str) -> None:
    body, expected = INVALID[case]
    body = copy.deepcopy(body)
    if body["metadata"]["name"] == "bad":
        body["metadata"]["name"] = case

    result = streams.run("apply", "-f", "-", stdin=json.dumps(body), check=False)

    assert result.returncode != 0, f"{case} was accepted: {result.stdout}"
    for words in expected:
        assert words in result.stderr, f"{words!r} not in: {result.stderr}"
    # The pydantic model refuses it too (local mode, the operator's own parse).
    with pytest.raises(ValidationError):
        LiveStream.model_validate(body)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted_and_defaulted_like_pydantic(streams: Kubectl, path: Path) -> None:
    written = yaml.safe_load(path.read_text())

    stored = streams.get("livestream", written["metadata"]["name"])

    expected = LiveStream.model_validate(written).spec
    assert stored["spec"] == expected.model_dump(by_alias=True, mode="json", exclude_none=True)
    # The status is the operator's (it runs on the test cluster): only declared fields.
    assert set(stored.get("status", {})) <= set(status_schema()["properties"])


def test_minimal_spec_gets_the_design_defaults(streams: Kubectl) -> None:
    streams.apply(manifest({"source": {"type": "test", "test": {}}}, name="minimal"))

    stored = streams.get("lstream", "minimal")["spec"]

    default = LiveStream.model_validate(manifest({"source": {"type": "test"}})).spec
    assert stored == default.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert stored["delivery"] == {
        "segmentDurationMs": 500,
        "partDurationMs": 100,
        "windowSegments": 24,
        "access": "public",
    }


def test_null_optional_fields_are_accepted(streams: Kubectl) -> None:
    # `X | None` in the model is `nullable` in the schema: an explicit null is no block.
    body = manifest(
        {"source": {"type": "test", "test": {}, "srt": None}, "transcode": {"hardware": None}},
        name="nulls",
    )
    LiveStream.model_validate(body)
    streams.apply(body)
    assert streams.get("lstream", "nulls")["spec"]["source"]["type"] == "test"


def test_users_cannot_write_status(streams: Kubectl) -> None:
    body = manifest(spec_with(), name="no-status")
    body["status"] = {"phase": "Running", "viewers": 7}
    streams.apply(body)
    # The main resource ignores status (the subresource is the operator's).
    status = streams.get("lstream", "no-status").get("status", {})
    assert status.get("viewers") != 7
    assert status.get("phase") != "Running"


def test_printer_columns_short_name_and_category(streams: Kubectl) -> None:
    ingest = f"srt://studio-a-ingest.{streams.namespace}.svc:9000?mode=caller"

    def filled() -> bool:
        return ingest in streams.run("get", "lstream", "studio-a").stdout

    # The operator of the test cluster fills the status the columns show.
    wait_for("the operator's status in the columns", filled, timeout=60)
    table = streams.run("get", "lstream").stdout.splitlines()

    assert table[0].split() == ["NAME", "PHASE", "VIEWERS", "BITRATE", "INGEST", "AGE"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert rows["studio-a"][1:4] == ["0", "0", ingest]
    assert rows["studio-a"][0] in {"Pending", "Starting", "Live"}
    examples = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in EXAMPLES}
    assert examples <= set(rows)
    # The category: `kubectl get cascade` lists LiveStreams with every other Cascade kind.
    in_category = streams.run("get", "cascade", "-o", "name").stdout.split()
    assert {f"livestream.cascade.dev/{name}" for name in examples} <= set(in_category)
    by_plural = streams.get("livestreams.cascade.dev")["items"]
    assert examples <= {item["metadata"]["name"] for item in by_plural}
