"""The LiveStream spec and its manifests: design defaults, the wire format, and every rule.

Invalid manifests go through ``parse_manifest`` as YAML text, the way a user's file does,
and each case names the field path the problem must be reported at and words of the rule.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cascade.contract.manifest import ManifestError, parse_manifest
from cascade.contract.spec import (
    API_VERSION,
    KIND,
    Activation,
    Hardware,
    LiveStream,
    LiveStreamSpec,
    Mode,
    SourceType,
    SrtMode,
    is_valid_name,
)

HEADER = f"apiVersion: {API_VERSION}\nkind: {KIND}\nmetadata:\n  name: demo\n"


def manifest(spec: str) -> str:
    """A manifest with a valid header around ``spec`` (YAML lines indented under ``spec:``)."""
    return HEADER + "spec:\n" + spec


TEST_SOURCE = "  source:\n    type: test\n"


# ---- defaults ---------------------------------------------------------------------------


def test_minimal_manifest_gets_the_design_defaults() -> None:
    stream = parse_manifest(manifest(TEST_SOURCE))
    spec = stream.spec

    assert stream.name == "demo"
    assert stream.metadata.namespace == "default"
    assert stream.api_version == API_VERSION
    assert stream.kind == KIND
    assert stream.status is None

    # One 640x360 rendition at 400 kbps: the multi-view default.
    assert len(spec.transcode.renditions) == 1
    r = spec.transcode.renditions[0]
    assert (r.name, r.width, r.height, r.video_bitrate_kbps, r.profile) == (
        "360p",
        640,
        360,
        400,
        "high",
    )
    assert spec.transcode.mode is Mode.TRANSCODE
    assert spec.transcode.frame_rate == 30
    assert spec.transcode.hardware is None
    assert spec.transcode.audio.enabled
    assert spec.transcode.audio.sample_rate == 48000

    # Ultra-low-latency timing: 500 ms segments of 100 ms parts.
    assert spec.delivery.segment_duration_ms == 500
    assert spec.delivery.part_duration_ms == 100
    assert spec.delivery.window_segments == 24
    assert spec.delivery.access.value == "public"

    assert spec.scheduling.gpus == 0
    assert spec.activation is Activation.ALWAYS
    assert spec.idle_timeout_seconds == 60


@pytest.mark.parametrize(
    ("kind", "attr"),
    [("srt", "srt"), ("rtmp", "rtmp"), ("test", "test")],
)
def test_type_alone_fills_the_source_block_with_defaults(kind: str, attr: str) -> None:
    spec = parse_manifest(manifest(f"  source:\n    type: {kind}\n")).spec
    assert spec.source.type is SourceType(kind)
    assert getattr(spec.source, attr) is not None
    others = [t.value for t in SourceType if t.value != attr]
    assert all(getattr(spec.source, o) is None for o in others)


def test_srt_defaults_are_a_listener_with_a_120ms_buffer() -> None:
    srt = parse_manifest(manifest("  source:\n    type: srt\n")).spec.source.srt
    assert srt is not None
    assert srt.mode is SrtMode.LISTENER
    assert (srt.port, srt.latency_ms, srt.payload_size) == (9000, 120, 1316)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("", Hardware.CPU),
        ("  scheduling:\n    gpus: 1\n", Hardware.NVENC),
        ("  scheduling:\n    gpus: 2\n", Hardware.NVENC),
        ("  transcode:\n    hardware: cpu\n  scheduling:\n    gpus: 1\n", Hardware.CPU),
        ("  transcode:\n    hardware: nvenc\n  scheduling:\n    gpus: 1\n", Hardware.NVENC),
        ("  transcode:\n    hardware: cpu\n", Hardware.CPU),
    ],
)
def test_hardware_resolves_from_gpus_unless_explicit(extra: str, expected: Hardware) -> None:
    assert parse_manifest(manifest(TEST_SOURCE + extra)).spec.hardware is expected


def test_passthrough_with_one_rendition_is_allowed() -> None:
    spec = parse_manifest(
        manifest("  source:\n    type: srt\n  transcode:\n    mode: passthrough\n")
    ).spec
    assert spec.transcode.mode is Mode.PASSTHROUGH
    assert len(spec.transcode.renditions) == 1


def test_passthrough_ignores_the_frame_alignment_of_the_transcoder() -> None:
    # Passthrough keeps the source's GOP, so frameRate x segment need not be whole frames.
    spec = parse_manifest(
        manifest(
            "  source:\n    type: srt\n  transcode:\n    mode: passthrough\n    frameRate: 25\n"
            "  delivery:\n    segmentDurationMs: 300\n"
        )
    ).spec
    assert spec.transcode.frame_rate * spec.delivery.segment_duration_ms % 1000 != 0


def test_status_and_extra_kubernetes_metadata_are_accepted() -> None:
    # kubectl get -o yaml output must parse: metadata carries much more than a name.
    text = (
        f"apiVersion: {API_VERSION}\nkind: {KIND}\n"
        "metadata:\n  name: cam-1\n  namespace: media\n  uid: abc\n  generation: 3\n"
        "  labels: {team: video}\n"
        "spec:\n" + TEST_SOURCE + "status:\n  observedGeneration: 3\n"
    )
    stream = parse_manifest(text)
    assert stream.name == "cam-1"
    assert stream.metadata.namespace == "media"
    assert stream.status == {"observedGeneration": 3}


def test_the_example_demo_manifest_is_valid() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "local" / "demo.yaml"
    stream = parse_manifest(path.read_text(), source=str(path))
    assert stream.name == "demo"
    assert stream.spec.hardware is Hardware.CPU
    assert stream.spec.source.type is SourceType.TEST


# ---- wire format ------------------------------------------------------------------------

FULL: dict[str, Any] = {
    "apiVersion": API_VERSION,
    "kind": KIND,
    "metadata": {"name": "cam-7", "namespace": "live"},
    "spec": {
        "source": {
            "type": "srt",
            "srt": {
                "mode": "caller",
                "host": "encoder.example",
                "port": 9001,
                "latencyMs": 200,
                "payloadSize": 1316,
                "streamId": "cam7",
                "passphraseSecretRef": {"name": "cam7-srt", "key": "pass"},
            },
        },
        "transcode": {
            "mode": "transcode",
            "hardware": "nvenc",
            "frameRate": 60,
            "renditions": [
                {"name": "1080p", "width": 1920, "height": 1080, "videoBitrateKbps": 6000},
                {"name": "360p", "width": 640, "height": 360, "videoBitrateKbps": 400},
            ],
            "audio": {"enabled": True, "bitrateKbps": 96, "sampleRate": 44100, "channels": 1},
        },
        "delivery": {
            "segmentDurationMs": 1000,
            "partDurationMs": 200,
            "windowSegments": 6,
            "access": "signed",
        },
        "scheduling": {
            "gpus": 1,
            "nodeSelector": {"gpu": "l4"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            "runtimeClassName": "nvidia",
        },
        "activation": "OnDemand",
        "idleTimeoutSeconds": 300,
    },
}


def test_camel_case_wire_round_trip() -> None:
    stream = LiveStream.model_validate(FULL)
    wire = stream.model_dump(by_alias=True, mode="json")

    # The wire names are the Kubernetes camelCase ones, never the Python snake_case ones.
    assert wire["apiVersion"] == API_VERSION
    assert wire["spec"]["delivery"]["partDurationMs"] == 200
    assert wire["spec"]["source"]["srt"]["passphraseSecretRef"] == {
        "name": "cam7-srt",
        "key": "pass",
    }
    assert wire["spec"]["scheduling"]["runtimeClassName"] == "nvidia"
    assert wire["spec"]["idleTimeoutSeconds"] == 300
    assert "part_duration_ms" not in wire["spec"]["delivery"]

    again = LiveStream.model_validate(wire)
    assert again == stream
    assert again.model_dump(by_alias=True, mode="json") == wire


def test_round_trip_of_defaults_is_stable() -> None:
    stream = parse_manifest(manifest(TEST_SOURCE))
    wire = stream.model_dump(by_alias=True, mode="json")
    assert LiveStream.model_validate(wire) == stream


def test_snake_case_names_are_accepted_in_python() -> None:
    spec = LiveStreamSpec.model_validate(
        {"source": {"type": "test"}, "idle_timeout_seconds": 5, "delivery": {}}
    )
    assert spec.idle_timeout_seconds == 5


def test_models_are_frozen() -> None:
    spec = parse_manifest(manifest(TEST_SOURCE)).spec
    with pytest.raises(ValidationError, match="frozen"):
        spec.idle_timeout_seconds = 1  # type: ignore[misc]


# ---- invalid manifests ------------------------------------------------------------------

SDP_OK = "v=0\\no=- 0 0 IN IP4 127.0.0.1\\nm=video 5004 RTP/AVP 96\\n"

# (id, manifest text, field path of the problem, words of the rule)
INVALID: list[tuple[str, str, str, str]] = [
    (
        "part-does-not-divide-segment",
        manifest(
            TEST_SOURCE + "  delivery:\n    segmentDurationMs: 500\n    partDurationMs: 150\n"
        ),
        "spec.delivery",
        "delivery.partDurationMs must divide delivery.segmentDurationMs",
    ),
    (
        "part-longer-than-segment",
        manifest(
            TEST_SOURCE + "  delivery:\n    segmentDurationMs: 500\n    partDurationMs: 1000\n"
        ),
        "spec.delivery",
        "delivery.partDurationMs must not exceed delivery.segmentDurationMs",
    ),
    (
        "part-too-short",
        manifest(TEST_SOURCE + "  delivery:\n    partDurationMs: 10\n"),
        "spec.delivery.partDurationMs",
        "greater than or equal to 50",
    ),
    (
        "window-too-small",
        manifest(TEST_SOURCE + "  delivery:\n    windowSegments: 2\n"),
        "spec.delivery.windowSegments",
        "greater than or equal to 3",
    ),
    (
        "segment-not-whole-frames",
        manifest(
            TEST_SOURCE
            + "  transcode:\n    frameRate: 25\n  delivery:\n    segmentDurationMs: 500\n"
        ),
        "spec",
        "delivery.segmentDurationMs 500 is not a whole number of frames at transcode.frameRate 25",
    ),
    (
        "part-not-whole-frames",
        manifest(
            TEST_SOURCE
            + "  transcode:\n    frameRate: 25\n  delivery:\n    segmentDurationMs: 400\n"
        ),
        "spec",
        "delivery.partDurationMs 100 is not a whole number of frames at transcode.frameRate 25",
    ),
    (
        "rtp-without-rtp-block",
        manifest("  source:\n    type: rtp\n"),
        "spec.source",
        "source.rtp is required when source.type is rtp",
    ),
    (
        "two-source-blocks",
        manifest("  source:\n    type: srt\n    rtmp:\n      port: 1935\n"),
        "spec.source",
        "source.type is srt but source.rtmp is set",
    ),
    (
        "block-of-another-type-only",
        manifest("  source:\n    type: test\n    test: {}\n    srt: {}\n"),
        "spec.source",
        "source.type is test but source.srt is set",
    ),
    (
        "unknown-source-type",
        manifest("  source:\n    type: webrtc\n"),
        "spec.source.type",
        "'srt', 'rtmp', 'rtp' or 'test'",
    ),
    (
        "missing-source",
        manifest("  transcode: {}\n"),
        "spec.source",
        "Field required",
    ),
    (
        "srt-caller-without-host",
        manifest("  source:\n    type: srt\n    srt:\n      mode: caller\n"),
        "spec.source.srt",
        "srt.host is required when srt.mode is caller",
    ),
    (
        "srt-privileged-port",
        manifest("  source:\n    type: srt\n    srt:\n      port: 80\n"),
        "spec.source.srt.port",
        "greater than or equal to 1024",
    ),
    (
        "srt-payload-above-mtu",
        manifest("  source:\n    type: srt\n    srt:\n      payloadSize: 1500\n"),
        "spec.source.srt.payloadSize",
        "less than or equal to 1456",
    ),
    (
        "rtmp-pull-without-url",
        manifest("  source:\n    type: rtmp\n    rtmp:\n      mode: pull\n"),
        "spec.source.rtmp",
        "rtmp.url is required when rtmp.mode is pull",
    ),
    (
        "rtmp-pull-wrong-scheme",
        manifest(
            "  source:\n    type: rtmp\n    rtmp:\n      mode: pull\n      url: http://origin/live/x\n"
        ),
        "spec.source.rtmp",
        "rtmp.url must start with rtmp:// or rtmps://",
    ),
    (
        "rtmp-app-with-slash",
        manifest("  source:\n    type: rtmp\n    rtmp:\n      app: live/x\n"),
        "spec.source.rtmp.app",
        "should match pattern",
    ),
    (
        "rtp-sdp-not-sdp",
        manifest("  source:\n    type: rtp\n    rtp:\n      sdp: 'hello there, world'\n"),
        "spec.source.rtp.sdp",
        "rtp.sdp must be an SDP description with v=0 and at least one m= line",
    ),
    (
        "rtp-sdp-without-media-line",
        manifest('  source:\n    type: rtp\n    rtp:\n      sdp: "v=0\\no=- 0 0 IN IP4 ::1\\n"\n'),
        "spec.source.rtp.sdp",
        "at least one m= line",
    ),
    (
        "unknown-field-typo",
        manifest(TEST_SOURCE + "  delivery:\n    partDurationMS: 100\n"),
        "spec.delivery.partDurationMS",
        "Extra inputs are not permitted",
    ),
    (
        "snake-case-typo-at-top",
        manifest(TEST_SOURCE + "  idle_timeout_secs: 5\n"),
        "spec.idle_timeout_secs",
        "Extra inputs are not permitted",
    ),
    (
        "bitrate-too-low",
        manifest(TEST_SOURCE + "  transcode:\n    renditions:\n      - videoBitrateKbps: 10\n"),
        "spec.transcode.renditions.0.videoBitrateKbps",
        "greater than or equal to 100",
    ),
    (
        "bitrate-too-high",
        manifest(TEST_SOURCE + "  transcode:\n    renditions:\n      - videoBitrateKbps: 90000\n"),
        "spec.transcode.renditions.0.videoBitrateKbps",
        "less than or equal to 50000",
    ),
    (
        "odd-width",
        manifest(
            TEST_SOURCE
            + "  transcode:\n    renditions:\n      - name: a\n      - name: b\n        width: 641\n"
        ),
        "spec.transcode.renditions.1.width",
        "multiple of 2",
    ),
    (
        "odd-height",
        manifest(TEST_SOURCE + "  transcode:\n    renditions:\n      - height: 361\n"),
        "spec.transcode.renditions.0.height",
        "multiple of 2",
    ),
    (
        "too-many-renditions",
        manifest(
            TEST_SOURCE
            + "  transcode:\n    renditions: ["
            + ", ".join(f"{{name: r{i}}}" for i in range(9))
            + "]\n"
        ),
        "spec.transcode.renditions",
        "at most 8 items",
    ),
    (
        "no-renditions",
        manifest(TEST_SOURCE + "  transcode:\n    renditions: []\n"),
        "spec.transcode.renditions",
        "at least 1 item",
    ),
    (
        "duplicate-rendition-names",
        manifest(
            TEST_SOURCE
            + "  transcode:\n    renditions:\n      - name: hd\n      - name: hd\n        width: 1280\n"
        ),
        "spec.transcode",
        "transcode.renditions[].name must be unique",
    ),
    (
        "rendition-name-uppercase",
        manifest(TEST_SOURCE + "  transcode:\n    renditions:\n      - name: HD\n"),
        "spec.transcode.renditions.0.name",
        "should match pattern",
    ),
    (
        "passthrough-with-two-renditions",
        manifest(
            "  source:\n    type: srt\n  transcode:\n    mode: passthrough\n"
            "    renditions:\n      - name: a\n      - name: b\n"
        ),
        "spec.transcode",
        "exactly one rendition in passthrough mode",
    ),
    (
        "nvenc-without-gpus",
        manifest(TEST_SOURCE + "  transcode:\n    hardware: nvenc\n"),
        "spec",
        "transcode.hardware nvenc requires scheduling.gpus >= 1",
    ),
    (
        "unknown-hardware",
        manifest(TEST_SOURCE + "  transcode:\n    hardware: vaapi\n"),
        "spec.transcode.hardware",
        "'nvenc' or 'cpu'",
    ),
    (
        "too-many-gpus",
        manifest(TEST_SOURCE + "  scheduling:\n    gpus: 9\n"),
        "spec.scheduling.gpus",
        "less than or equal to 8",
    ),
    (
        "metadata-name-uppercase",
        HEADER.replace("name: demo", "name: Demo") + "spec:\n" + TEST_SOURCE,
        "metadata.name",
        "should match pattern",
    ),
    (
        "metadata-name-too-long",
        HEADER.replace("name: demo", "name: " + "a" * 64) + "spec:\n" + TEST_SOURCE,
        "metadata.name",
        "at most 63 characters",
    ),
    (
        "metadata-name-trailing-dash",
        HEADER.replace("name: demo", "name: demo-") + "spec:\n" + TEST_SOURCE,
        "metadata.name",
        "should match pattern",
    ),
    (
        "metadata-missing",
        f"apiVersion: {API_VERSION}\nkind: {KIND}\nspec:\n" + TEST_SOURCE,
        "metadata",
        "Field required",
    ),
    (
        "negative-idle-timeout",
        manifest(TEST_SOURCE + "  idleTimeoutSeconds: -1\n"),
        "spec.idleTimeoutSeconds",
        "greater than or equal to 0",
    ),
    (
        "bad-activation",
        manifest(TEST_SOURCE + "  activation: always\n"),
        "spec.activation",
        "'Always' or 'OnDemand'",
    ),
    (
        "wrong-api-version",
        HEADER.replace(API_VERSION, "cascade.dev/v1") + "spec:\n" + TEST_SOURCE,
        "apiVersion",
        "'cascade.dev/v1alpha1'",
    ),
    (
        "wrong-kind",
        HEADER.replace(f"kind: {KIND}", "kind: Livestream") + "spec:\n" + TEST_SOURCE,
        "kind",
        "'LiveStream'",
    ),
    (
        "source-is-a-string",
        manifest("  source: srt\n"),
        "spec.source",
        "valid dictionary",
    ),
]


@pytest.mark.parametrize(
    ("text", "path", "rule"),
    [pytest.param(text, path, rule, id=case) for case, text, path, rule in INVALID],
)
def test_invalid_manifest_names_the_field_and_the_rule(text: str, path: str, rule: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, source="streams/demo.yaml")
    error = caught.value
    assert error.source == "streams/demo.yaml"
    assert len(error.problems) == 1, error.problems
    where, _, message = error.problems[0].partition(": ")
    assert where == path
    assert rule in message
    # The exception text carries the file and the problem for a log line.
    assert str(error).startswith("streams/demo.yaml: invalid LiveStream: ")
    assert error.problems[0] in str(error)


def test_the_invalid_table_is_large_enough() -> None:
    assert len(INVALID) >= 20
    assert len({case for case, *_ in INVALID}) == len(INVALID)


def test_every_problem_is_reported_at_once() -> None:
    text = HEADER.replace(API_VERSION, "v1").replace("name: demo", "name: Demo") + (
        "spec:\n" + TEST_SOURCE + "  idleTimeoutSeconds: -5\n  activation: Never\n"
    )
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    wheres = sorted(p.partition(": ")[0] for p in caught.value.problems)
    assert wheres == ["apiVersion", "metadata.name", "spec.activation", "spec.idleTimeoutSeconds"]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        pytest.param("- type: test\n", "a LiveStream manifest must be a mapping", id="list"),
        pytest.param("just a string\n", "a LiveStream manifest must be a mapping", id="scalar"),
        pytest.param("", "a LiveStream manifest must be a mapping", id="empty"),
        pytest.param(
            "# only a comment\n", "a LiveStream manifest must be a mapping", id="comment-only"
        ),
        pytest.param("spec: [unclosed\n", "not valid YAML", id="unclosed-flow"),
        pytest.param("spec:\n  a: 1\n b: 2\n", "not valid YAML", id="bad-indent"),
        pytest.param("spec: {a: 1\n", "not valid YAML", id="unclosed-mapping"),
    ],
)
def test_text_that_is_not_a_manifest_mapping(text: str, rule: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text, source="x.yaml")
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(rule)
    assert isinstance(caught.value, ValueError)


def test_yaml_tags_that_build_objects_are_refused() -> None:
    # safe_load: a manifest must never construct Python objects.
    with pytest.raises(ManifestError, match="not valid YAML"):
        parse_manifest("!!python/object/apply:os.system ['true']\n")


def test_valid_rtp_manifest_with_inline_sdp() -> None:
    spec = parse_manifest(
        manifest(f'  source:\n    type: rtp\n    rtp:\n      sdp: "{SDP_OK}"\n')
    ).spec
    assert spec.source.rtp is not None
    assert spec.source.rtp.sdp.startswith("v=0\no=")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("demo", True),
        ("cam-1", True),
        ("a", True),
        ("0", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("Demo", False),
        ("-demo", False),
        ("demo-", False),
        ("de_mo", False),
        ("de.mo", False),
        ("", False),
        # Python's "$" matches before a final newline: names are checked with fullmatch.
        ("demo\n", False),
        ("\ndemo", False),
    ],
)
def test_is_valid_name_follows_rfc1123_labels(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid
