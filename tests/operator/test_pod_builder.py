"""Transcoder Pod and ingest Service as pure functions of the LiveStream: goldens, properties.

Goldens live in ``golden/<case>.pod.json`` and ``golden/<case>.service.json``. After an
intended change, regenerate them on purpose and review the diff::

    CASCADE_REGEN_GOLDEN=1 .venv/bin/pytest tests/operator/test_pod_builder.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cascade.contract.manifest import parse_manifest
from cascade.contract.spec import LiveStream
from cascade.operator.builders import (
    ANNOTATION_SPEC_HASH,
    build_ingest_service,
    build_transcoder_pod,
    passphrase_env_name,
)
from cascade.operator.settings import OperatorSettings

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("CASCADE_REGEN_GOLDEN") == "1"
REDIS = "redis://redis.cascade.svc:6379/0"

MANIFESTS: dict[str, str] = {
    "test_cpu_demo": """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: demo}
spec:
  source: {type: test, test: {pattern: testsrc2, width: 1280, height: 720, frameRate: 30}}
  transcode:
    renditions: [{name: 360p, width: 640, height: 360, videoBitrateKbps: 400}]
""",
    "srt_listener_nvenc_ladder": """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: studio-a, namespace: live}
spec:
  source:
    type: srt
    srt:
      mode: listener
      port: 9000
      passphraseSecretRef: {name: studio-a-srt, key: passphrase}
  transcode:
    hardware: nvenc
    renditions:
      - {name: 1080p, width: 1920, height: 1080, videoBitrateKbps: 6000}
      - {name: 720p, width: 1280, height: 720, videoBitrateKbps: 3000}
      - {name: 360p, width: 640, height: 360, videoBitrateKbps: 400}
  delivery: {segmentDurationMs: 1000, partDurationMs: 200}
  scheduling:
    gpus: 1
    nodeSelector: {nvidia.com/gpu.present: "true"}
""",
    "rtmp_pull": """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: origin-news}
spec:
  source: {type: rtmp, rtmp: {mode: pull, url: "rtmp://origin.example.com/live/news"}}
  activation: OnDemand
""",
    "rtmp_listen": """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: obs}
spec:
  source: {type: rtmp, rtmp: {mode: listen, port: 1935}}
""",
    "rtp": """
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata: {name: camera-7}
spec:
  source:
    type: rtp
    rtp:
      sdp: |
        v=0
        o=- 0 0 IN IP4 127.0.0.1
        s=camera
        c=IN IP4 0.0.0.0
        t=0 0
        m=video 5004 RTP/AVP 96
        a=rtpmap:96 H264/90000
        m=audio 5006 RTP/AVP 97
        a=rtpmap:97 MPEG4-GENERIC/48000/2
""",
}


def stream(case: str) -> LiveStream:
    return parse_manifest(MANIFESTS[case], source=case)


def settings() -> OperatorSettings:
    # Constructed explicitly: the test must not depend on the developer's environment.
    return OperatorSettings.model_validate({})


def check_golden(name: str, value: Any) -> None:
    path = GOLDEN / name
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    if REGEN:
        path.write_text(text)
    assert path.exists(), f"no golden {path}: run with CASCADE_REGEN_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CASCADE_TRANSCODER_IMAGE", "MAX_CONCURRENT_STREAMS", "REDIS_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_pod_matches_golden(case: str) -> None:
    pod = build_transcoder_pod(stream(case), settings(), generation=3, redis_url=REDIS)
    check_golden(f"{case}.pod.json", pod)


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_service_matches_golden(case: str) -> None:
    check_golden(f"{case}.service.json", build_ingest_service(stream(case), settings()))


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_builders_are_pure(case: str) -> None:
    one = build_transcoder_pod(stream(case), settings(), generation=1, redis_url=REDIS)
    two = build_transcoder_pod(stream(case), settings(), generation=1, redis_url=REDIS)
    assert one == two
    assert build_ingest_service(stream(case), settings()) == build_ingest_service(
        stream(case), settings()
    )


def container(pod: dict[str, Any]) -> dict[str, Any]:
    containers = pod["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container(pod)["env"]}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_gpu_resources_only_for_nvenc(case: str) -> None:
    s = stream(case)
    pod = build_transcoder_pod(s, settings(), generation=1, redis_url=REDIS)
    resources = container(pod)["resources"]
    nvenc = s.spec.hardware.value == "nvenc"
    for section in ("requests", "limits"):
        assert ("nvidia.com/gpu" in resources[section]) is nvenc
    assert ("NVIDIA_DRIVER_CAPABILITIES" in env(pod)) is nvenc
    assert "NVIDIA_VISIBLE_DEVICES" not in env(pod)
    assert ("runtimeClassName" in pod["spec"]) is nvenc
    if nvenc:
        assert resources["limits"]["nvidia.com/gpu"] == str(s.spec.scheduling.gpus)
        assert env(pod)["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "compute,utility,video"


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_security_context_is_hardened(case: str) -> None:
    pod = build_transcoder_pod(stream(case), settings(), generation=1, redis_url=REDIS)
    ctx = container(pod)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 10001
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container(pod)["volumeMounts"]
    assert pod["spec"]["restartPolicy"] == "Always"
    # The transcoder's own probes (cascade.transcoder.probes), on the port it is told.
    probes = container(pod)
    assert probes["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "probes"}
    assert probes["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "probes"}
    assert {"name": "CASCADE_PROBE_PORT", "value": "8090"} in probes["env"]
    assert {"name": "probes", "containerPort": 8090, "protocol": "TCP"} in probes["ports"]


def test_livestream_env_round_trips_to_the_same_stream() -> None:
    s = stream("srt_listener_nvenc_ladder")
    pod = build_transcoder_pod(s, settings(), generation=1, redis_url=REDIS)
    assert parse_manifest(env(pod)["CASCADE_LIVESTREAM"]["value"]) == s
    assert env(pod)["REDIS_URL"]["value"] == REDIS
    assert env(pod)["CASCADE_BIND_HOST"]["value"] == "0.0.0.0"


def test_passphrase_comes_from_the_secret_under_the_name_the_transcoder_reads() -> None:
    pod = build_transcoder_pod(
        stream("srt_listener_nvenc_ladder"), settings(), generation=1, redis_url=REDIS
    )
    # transcoder/cascade/transcoder/main.py reads NAME.upper().replace("-", "_").
    assert passphrase_env_name("studio-a-srt") == "STUDIO_A_SRT"
    assert env(pod)["STUDIO_A_SRT"]["valueFrom"] == {
        "secretKeyRef": {"name": "studio-a-srt", "key": "passphrase"}
    }


def spec_hash_of(text: str) -> str:
    pod = build_transcoder_pod(parse_manifest(text), settings(), generation=1, redis_url=REDIS)
    value: str = pod["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    return value


def test_spec_hash_follows_the_spec_and_not_the_metadata() -> None:
    base = MANIFESTS["srt_listener_nvenc_ladder"]
    original = spec_hash_of(base)
    assert spec_hash_of(base.replace("videoBitrateKbps: 400", "videoBitrateKbps: 500")) != original
    assert spec_hash_of(base.replace("gpus: 1", "gpus: 2")) != original
    relabelled = base.replace(
        "metadata: {name: studio-a, namespace: live}",
        "metadata: {name: studio-a, namespace: live, labels: {team: x}, generation: 9}",
    )
    assert spec_hash_of(relabelled) == original
    # The generation passed in is recorded but not hashed.
    s = stream("srt_listener_nvenc_ladder")
    one = build_transcoder_pod(s, settings(), generation=1, redis_url=REDIS)
    two = build_transcoder_pod(s, settings(), generation=2, redis_url=REDIS)
    assert one["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == original
    assert two["metadata"]["annotations"][ANNOTATION_SPEC_HASH] == original
    # A new image rolls the pod too.
    other = OperatorSettings.model_validate({"transcoder_image": "ghcr.io/cascade/transcoder:0.2"})
    three = build_transcoder_pod(s, other, generation=1, redis_url=REDIS)
    assert three["metadata"]["annotations"][ANNOTATION_SPEC_HASH] != original


def test_scheduling_merges_spec_and_settings() -> None:
    custom = OperatorSettings.model_validate(
        {"gpu_node_selector": {"pool": "gpu", "nvidia.com/gpu.present": "no"}}
    )
    pod = build_transcoder_pod(
        stream("srt_listener_nvenc_ladder"), custom, generation=1, redis_url=REDIS
    )
    # The spec's value wins over the operator's default for the same key.
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.present": "true", "pool": "gpu"}
    assert pod["spec"]["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["spec"]["runtimeClassName"] == "nvidia"


@pytest.mark.parametrize(
    ("case", "ports"),
    [
        ("test_cpu_demo", None),
        ("rtmp_pull", None),
        ("srt_listener_nvenc_ladder", [(9000, "UDP")]),
        ("rtmp_listen", [(1935, "TCP")]),
        ("rtp", [(5004, "UDP"), (5006, "UDP")]),
    ],
)
def test_service_ports(case: str, ports: list[tuple[int, str]] | None) -> None:
    service = build_ingest_service(stream(case), settings())
    if ports is None:
        assert service is None
        return
    assert service is not None
    assert [(p["port"], p["protocol"]) for p in service["spec"]["ports"]] == ports
    assert service["spec"]["selector"]["cascade.dev/livestream"] == stream(case).name


def test_srt_caller_has_no_service() -> None:
    text = MANIFESTS["srt_listener_nvenc_ladder"].replace(
        "mode: listener", "mode: caller\n      host: encoder.example.com"
    )
    assert build_ingest_service(parse_manifest(text), settings()) is None


def test_a_recorded_stream_gets_the_store_and_its_credentials_from_a_secret() -> None:
    recorded = parse_manifest(
        MANIFESTS["test_cpu_demo"].replace("spec:\n", "spec:\n  recording: {enabled: true}\n", 1),
        source="test",
    )
    store = OperatorSettings(
        s3_endpoint="https://s3.example.net",
        s3_access_key_id="AKID-not-in-pods",
        s3_secret_access_key="secret-not-in-pods",
        s3_secret_name="cascade-s3",
    )
    env = build_transcoder_pod(recorded, store, generation=1, redis_url=REDIS)["spec"][
        "containers"
    ][0]["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["CASCADE_S3_ENDPOINT"]["value"] == "https://s3.example.net"
    assert by_name["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "cascade-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert "not-in-pods" not in json.dumps(env)  # no credential in the pod spec
    # Not recorded, or no store: nothing about a store in the pod.
    plain = build_transcoder_pod(stream("test_cpu_demo"), store, generation=1, redis_url=REDIS)
    assert not [e for e in plain["spec"]["containers"][0]["env"] if "S3" in e["name"]]
