"""Desired objects of one LiveStream: its transcoder Pod and its ingest Service.

Pure functions: the same stream and settings give the same dict, byte for byte once
JSON-dumped with sorted keys (golden-tested in ``tests/operator``). They add no owner
references: the reconciler adds the LiveStream as controller owner (so deletion
cascades through the garbage collector).

Probes: the transcoder answers ``/livez`` (its packager loop runs) and ``/readyz`` (FFmpeg
runs, so the ingest Service may send encoders to it) on ``PROBE_PORT``; its health for
users goes to Redis, which the operator turns into the ``Ingesting`` condition.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cascade.contract.spec import (
    Hardware,
    LiveStream,
    RtmpMode,
    SourceType,
    SrtMode,
    Toleration,
)
from cascade.operator.settings import OperatorSettings

APP_NAME = "cascade-transcoder"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_LIVESTREAM = "cascade.dev/livestream"
ANNOTATION_SPEC_HASH = "cascade.dev/spec-hash"
ANNOTATION_GENERATION = "cascade.dev/livestream-generation"
CONTAINER_NAME = "transcoder"
# The transcoder's /livez and /readyz (cascade.transcoder.probes).
PROBE_PORT = 8090
# Non-root user of the transcoder image.
RUN_AS_USER = 10001
# The container runtime injects NVENC only when the capabilities include "video".
NVIDIA_DRIVER_CAPABILITIES = "compute,utility,video"


def labels(stream: LiveStream) -> dict[str, str]:
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: stream.name,
        LABEL_MANAGED_BY: "cascade-operator",
        LABEL_LIVESTREAM: stream.name,
    }


def selector(stream: LiveStream) -> dict[str, str]:
    """The labels the Service selects on (a subset that never changes for a stream)."""
    return {LABEL_NAME: APP_NAME, LABEL_LIVESTREAM: stream.name}


def pod_name(stream: LiveStream) -> str:
    # Pod names are DNS subdomains (253 characters): a 63-character stream name fits.
    return f"{stream.name}-transcoder"


def service_name(stream: LiveStream) -> str:
    """``<stream>-ingest``, kept a valid DNS-1035 label (63 characters, starts with a letter)."""
    name = f"{stream.name}-ingest"
    if len(name) <= 63 and name[0].isalpha():
        return name
    digest = hashlib.sha256(stream.name.encode()).hexdigest()[:8]
    return f"ls-{stream.name[:40].rstrip('-')}-{digest}-ingest"


def livestream_json(stream: LiveStream) -> str:
    """What the transcoder reads from ``CASCADE_LIVESTREAM``: camelCase, without status."""
    data = stream.model_dump(mode="json", by_alias=True, exclude={"status"}, exclude_none=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def passphrase_env_name(secret_name: str) -> str:
    """The variable ``cascade-transcoder`` reads the SRT passphrase from (see its main)."""
    return secret_name.upper().replace("-", "_")


def ingest_ports(stream: LiveStream) -> list[dict[str, Any]]:
    """Inbound ports of the source; empty when nothing dials in (test, pull, caller)."""
    source = stream.spec.source
    if source.type is SourceType.SRT and source.srt and source.srt.mode is SrtMode.LISTENER:
        return [{"name": "srt", "port": source.srt.port, "protocol": "UDP"}]
    if source.type is SourceType.RTMP and source.rtmp and source.rtmp.mode is RtmpMode.LISTEN:
        return [{"name": "rtmp", "port": source.rtmp.port, "protocol": "TCP"}]
    if source.type is SourceType.RTP and source.rtp:
        return _sdp_ports(source.rtp.sdp)
    return []


def _sdp_ports(sdp: str) -> list[dict[str, Any]]:
    # "m=<media> <port> <proto> <fmt>": one UDP port per media line. RTCP (port + 1) is
    # not exposed: FFmpeg's RTP demuxer does not need receiver reports to play.
    ports: list[dict[str, Any]] = []
    for line in sdp.splitlines():
        if not line.startswith("m="):
            continue
        fields = line[2:].split()
        if len(fields) < 2 or not fields[1].split("/")[0].isdigit():
            continue
        media, port = fields[0].lower(), int(fields[1].split("/")[0])
        if any(p["port"] == port for p in ports):
            continue
        ports.append({"name": f"rtp-{media}"[:15], "port": port, "protocol": "UDP"})
    return ports


def _tolerations(stream: LiveStream, settings: OperatorSettings, gpu: bool) -> list[dict[str, Any]]:
    merged: list[Toleration] = list(settings.gpu_tolerations) if gpu else []
    for toleration in stream.spec.scheduling.tolerations:
        if toleration not in merged:
            merged.append(toleration)
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in merged]


def _resources(stream: LiveStream, settings: OperatorSettings, gpu: bool) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": settings.cpu_request, "memory": settings.memory_request}
    limits: dict[str, str] = {"memory": settings.memory_limit}
    if gpu:
        # Extended resources cannot be overcommitted: request and limit must be equal.
        count = str(stream.spec.scheduling.gpus)
        requests[settings.gpu_resource_name] = count
        limits[settings.gpu_resource_name] = count
    return {"requests": requests, "limits": limits}


def _store_env(stream: LiveStream, settings: OperatorSettings) -> list[dict[str, Any]]:
    """A recorded stream's store: where (values) and its credentials (from a Secret, never
    the spec). None for a stream that does not record, or without a store."""
    if not stream.spec.recorded_renditions or not settings.s3_enabled:
        return []
    env: list[dict[str, Any]] = [
        {"name": "CASCADE_S3_ENDPOINT", "value": settings.s3_endpoint},
        {"name": "CASCADE_S3_BUCKET", "value": settings.s3_bucket},
        {"name": "CASCADE_S3_PREFIX", "value": settings.s3_prefix},
        {"name": "CASCADE_S3_REGION", "value": settings.s3_region},
    ]
    if settings.s3_secret_name:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env.append(
                {
                    "name": key,
                    "valueFrom": {"secretKeyRef": {"name": settings.s3_secret_name, "key": key}},
                }
            )
    return env


def _env(stream: LiveStream, redis_url: str, gpu: bool) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "CASCADE_LIVESTREAM", "value": livestream_json(stream)},
        {"name": "REDIS_URL", "value": redis_url},
        {"name": "CASCADE_BIND_HOST", "value": "0.0.0.0"},
        {"name": "CASCADE_PROBE_PORT", "value": str(PROBE_PORT)},
    ]
    srt = stream.spec.source.srt
    if srt is not None and srt.passphrase_secret_ref is not None:
        ref = srt.passphrase_secret_ref
        env.append(
            {
                "name": passphrase_env_name(ref.name),
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
        )
    if gpu:
        # NVIDIA_VISIBLE_DEVICES is left to the runtime and device plugin (they pick the GPU).
        env.append({"name": "NVIDIA_DRIVER_CAPABILITIES", "value": NVIDIA_DRIVER_CAPABILITIES})
    return env


def _container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_pod_spec(
    stream: LiveStream, settings: OperatorSettings, *, redis_url: str
) -> dict[str, Any]:
    """The Pod's ``spec``: everything the spec hash covers."""
    gpu = stream.spec.hardware is Hardware.NVENC
    scheduling = stream.spec.scheduling
    container_ports = [
        {"name": p["name"], "containerPort": p["port"], "protocol": p["protocol"]}
        for p in ingest_ports(stream)
    ]
    container_ports.append({"name": "probes", "containerPort": PROBE_PORT, "protocol": "TCP"})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.transcoder_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["cascade-transcoder"],
        "env": _env(stream, redis_url, gpu) + _store_env(stream, settings),
        "resources": _resources(stream, settings, gpu),
        "securityContext": _container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        # A wedged packager loop stops answering: restarted after 30 s.
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "probes"},
            "initialDelaySeconds": 5,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        # Not ready while FFmpeg restarts: encoders are not sent to a pod not listening.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "probes"},
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 2,
        },
    }
    if container_ports:
        container["ports"] = container_ports
    spec: dict[str, Any] = {
        "containers": [container],
        "restartPolicy": "Always",
        # The transcoder never talks to the API server.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
    }
    node_selector = {**(settings.gpu_node_selector if gpu else {}), **scheduling.node_selector}
    if node_selector:
        spec["nodeSelector"] = dict(sorted(node_selector.items()))
    tolerations = _tolerations(stream, settings, gpu)
    if tolerations:
        spec["tolerations"] = tolerations
    runtime_class = scheduling.runtime_class_name or (
        settings.gpu_runtime_class_name if gpu else None
    )
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return spec


def spec_hash(pod_spec: dict[str, Any]) -> str:
    """A short digest of the pod spec: a different value means the pod must be replaced."""
    canonical = json.dumps(pod_spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def build_transcoder_pod(
    stream: LiveStream, settings: OperatorSettings, *, generation: int, redis_url: str
) -> dict[str, Any]:
    """The transcoder Pod of ``stream`` (owner reference added by the caller).

    The ``cascade.dev/spec-hash`` annotation digests the pod spec (which holds the
    LiveStream spec as JSON, the image and the scheduling): the reconciler replaces the
    pod when it differs, so a spec or image change rolls the pod, and a change of the
    LiveStream's labels, annotations or generation alone does not.
    """
    spec = build_pod_spec(stream, settings, redis_url=redis_url)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(stream),
            "namespace": stream.metadata.namespace,
            "labels": labels(stream),
            "annotations": {
                ANNOTATION_SPEC_HASH: spec_hash(spec),
                ANNOTATION_GENERATION: str(generation),
            },
        },
        "spec": spec,
    }


def build_ingest_service(stream: LiveStream, settings: OperatorSettings) -> dict[str, Any] | None:
    """The Service encoders send to, or None when nothing dials in.

    UDP for an SRT listener and RTP, TCP for an RTMP listener; None for the test source,
    an RTMP pull and an SRT caller (the transcoder dials out). Owner reference added by
    the caller.
    """
    ports = ingest_ports(stream)
    if not ports:
        return None
    spec: dict[str, Any] = {
        "type": settings.ingest_service_type,
        "selector": selector(stream),
        "ports": [
            {
                "name": p["name"],
                "port": p["port"],
                "targetPort": p["port"],
                "protocol": p["protocol"],
            }
            for p in ports
        ],
    }
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(stream),
            "namespace": stream.metadata.namespace,
            "labels": labels(stream),
            # The reconciler patches the Service when this differs (ports or type changed).
            "annotations": {ANNOTATION_SPEC_HASH: spec_hash(spec)},
        },
        "spec": spec,
    }
