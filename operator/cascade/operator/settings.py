"""The operator's settings, read from the environment.

``MAX_CONCURRENT_STREAMS`` and ``REDIS_URL`` keep the names of the original design;
Cascade's own settings start with ``CASCADE_``. Each field says its default and what it
does to load.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import SettingsConfigDict

from cascade.contract.settings import (
    ObjectStoreSettings,
    RedisSettings,
    StreamLimitSettings,
    ViewerTimeoutSettings,
)
from cascade.contract.spec import Toleration

# The NVIDIA device plugin's taint on GPU nodes in most clusters (GKE, EKS, the GPU
# operator): GPU pods tolerate it, CPU pods stay off the GPU nodes.
DEFAULT_GPU_TOLERATIONS = (
    Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"),
)


class OperatorSettings(
    RedisSettings, StreamLimitSettings, ViewerTimeoutSettings, ObjectStoreSettings
):
    """``REDIS_URL``, ``MAX_CONCURRENT_STREAMS`` and ``VIEWER_TIMEOUT_SECONDS`` are declared
    once, in :mod:`cascade.contract.settings`, for every program that reads them; so is the
    object store (``CASCADE_S3_*``), which recorded streams' transcoders are given."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    s3_secret_name: str = Field(
        default="",
        validation_alias=AliasChoices("CASCADE_S3_SECRET", "s3_secret_name"),
        description="The Secret (in the LiveStream's namespace) whose AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY a recording transcoder gets as its store credentials.",
    )

    transcoder_image: str = Field(
        default="ghcr.io/cascade/transcoder:0.1.0",
        validation_alias=AliasChoices("CASCADE_TRANSCODER_IMAGE", "transcoder_image"),
        description="Image of the transcoder pods. Changing it rolls every transcoder pod.",
    )
    gpu_resource_name: str = Field(
        default="nvidia.com/gpu",
        validation_alias=AliasChoices("CASCADE_GPU_RESOURCE", "gpu_resource_name"),
        description="Extended resource the NVIDIA device plugin advertises.",
    )
    nvenc_sessions_per_gpu: Annotated[int, Field(ge=1, le=64)] = Field(
        default=8,
        validation_alias=AliasChoices("CASCADE_NVENC_SESSIONS_PER_GPU", "nvenc_sessions_per_gpu"),
        description="Concurrent NVENC encode sessions one GPU takes (default 8: GeForce "
        "drivers allow 8 per system; datacenter cards are limited by their resources "
        "only, so raise it for them). One session per rendition.",
    )
    gpu_runtime_class_name: str | None = Field(
        default="nvidia",
        validation_alias=AliasChoices("CASCADE_GPU_RUNTIME_CLASS", "gpu_runtime_class_name"),
        description="runtimeClassName of NVENC pods unless the spec sets one (default "
        "nvidia: the NVIDIA container runtime injects the driver and NVENC libraries).",
    )
    gpu_node_selector: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("CASCADE_GPU_NODE_SELECTOR", "gpu_node_selector"),
        description="Node selector added to NVENC pods (JSON); the spec's keys win.",
    )
    gpu_tolerations: list[Toleration] = Field(
        default_factory=lambda: list(DEFAULT_GPU_TOLERATIONS),
        validation_alias=AliasChoices("CASCADE_GPU_TOLERATIONS", "gpu_tolerations"),
        description="Tolerations added to NVENC pods (JSON list), before the spec's own.",
    )
    namespace: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CASCADE_NAMESPACE", "namespace"),
        description="Namespace to watch; unset: all namespaces (cluster-wide).",
    )
    ingest_service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP",
        validation_alias=AliasChoices("CASCADE_INGEST_SERVICE_TYPE", "ingest_service_type"),
        description="Type of the ingest Services (the spec has no field for it yet).",
    )
    cpu_request: str = Field(
        default="1",
        validation_alias=AliasChoices("CASCADE_TRANSCODER_CPU_REQUEST", "cpu_request"),
        description="CPU request of a transcoder pod. No CPU limit is set: CFS throttling "
        "stalls FFmpeg mid-part and shows up as latency spikes.",
    )
    memory_request: str = Field(
        default="512Mi",
        validation_alias=AliasChoices("CASCADE_TRANSCODER_MEMORY_REQUEST", "memory_request"),
    )
    memory_limit: str = Field(
        default="2Gi",
        validation_alias=AliasChoices("CASCADE_TRANSCODER_MEMORY_LIMIT", "memory_limit"),
    )
    playback_base_url: str = Field(
        default="http://cascade-edge",
        validation_alias=AliasChoices("CASCADE_PLAYBACK_BASE_URL", "playback_base_url"),
        description="Public base URL of the edges; status.playbackURL is "
        "<base>/live/<stream>.m3u8.",
    )
    status_interval_seconds: Annotated[float, Field(gt=0, le=300)] = Field(
        default=5.0,
        validation_alias=AliasChoices("CASCADE_STATUS_INTERVAL_SECONDS", "status_interval_seconds"),
        description="How often each stream's status is refreshed from Redis (viewers, input "
        "bitrate, health) when nothing else happens. Pod and spec changes are handled at once. "
        "Lower: fresher status, one more Redis round trip and status patch per stream.",
    )
    restart_backoff_seconds: Annotated[float, Field(gt=0)] = Field(
        default=2.0,
        validation_alias=AliasChoices("CASCADE_RESTART_BACKOFF_SECONDS", "restart_backoff_seconds"),
        description="Delay before recreating a failed transcoder pod; doubles with each "
        "consecutive failure up to restart_backoff_max_seconds.",
    )
    restart_backoff_max_seconds: Annotated[float, Field(gt=0)] = Field(
        default=300.0,
        validation_alias=AliasChoices(
            "CASCADE_RESTART_BACKOFF_MAX_SECONDS", "restart_backoff_max_seconds"
        ),
    )
    stable_after_seconds: Annotated[float, Field(gt=0)] = Field(
        default=60.0,
        validation_alias=AliasChoices("CASCADE_STABLE_AFTER_SECONDS", "stable_after_seconds"),
        description="A pod running this long resets the consecutive failure count (and so "
        "the backoff).",
    )
    cleanup_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=5,
        validation_alias=AliasChoices("CASCADE_CLEANUP_ATTEMPTS", "cleanup_attempts"),
        description="Tries to remove a deleted stream's Redis keys before the finalizer lets "
        "go anyway (with a Warning event): deletion never hangs on a Redis outage.",
    )
    liveness_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=8080,
        validation_alias=AliasChoices("CASCADE_LIVENESS_PORT", "liveness_port"),
        description="Port of the liveness endpoint /healthz (kopf's; 0: off).",
    )
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        default=9090,
        validation_alias=AliasChoices("CASCADE_METRICS_PORT", "metrics_port"),
        description="Port of the Prometheus /metrics endpoint (0: off).",
    )
    bind_host: str = Field(
        default="0.0.0.0",
        validation_alias=AliasChoices("CASCADE_BIND_HOST", "bind_host"),
        description="Address the liveness and metrics endpoints listen on.",
    )
    log_format: Literal["json", "plain"] = Field(
        default="json",
        validation_alias=AliasChoices("CASCADE_LOG_FORMAT", "log_format"),
        description="json: one JSON object per line (for log pipelines); plain: for humans.",
    )
