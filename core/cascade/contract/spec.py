"""The LiveStream resource: the one source of its schema.

These pydantic models validate the YAML files of local mode, generate the CRD's
OpenAPI schema (the operator issue), and are what the transcoder and the edge read.
Field names are the Kubernetes camelCase ones; Python attributes are snake_case.
Every validation error names the field (pydantic's ``loc``) and the rule.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "cascade.dev/v1alpha1"
KIND = "LiveStream"

# RFC 1123 label: what Kubernetes accepts as a name, and what is safe in URLs and Redis keys.
# The pattern string goes into the CRD (where "$" ends the text); in Python "$" also
# matches before a final newline, so names are checked with fullmatch.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_NAME_RE = re.compile(NAME_PATTERN)


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields refused (a typo must not pass silently)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


class SecretKeyRef(Model):
    """A key of a Kubernetes Secret (in local mode: an environment variable named ``name``)."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    key: Annotated[str, Field(min_length=1, max_length=253)] = "passphrase"


Port = Annotated[int, Field(ge=1024, le=65535, description="Listening port (unprivileged)")]


class SrtMode(StrEnum):
    LISTENER = "listener"
    CALLER = "caller"


class SrtSource(Model):
    """SRT ingest. The scale design asks for a 120 ms latency buffer and MTU-friendly payloads."""

    mode: SrtMode = SrtMode.LISTENER
    port: Port = 9000
    host: str | None = Field(default=None, description="Caller mode: the encoder's host")
    latency_ms: Annotated[int, Field(ge=20, le=8000)] = 120
    # 1316 = 7 x 188-byte TS packets: fits a 1500-byte MTU with SRT and UDP/IP headers.
    payload_size: Annotated[int, Field(ge=188, le=1456)] = 1316
    stream_id: str | None = None
    passphrase_secret_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _caller_needs_host(self) -> Self:
        if self.mode is SrtMode.CALLER and not self.host:
            raise ValueError("srt.host is required when srt.mode is caller")
        return self


class RtmpMode(StrEnum):
    LISTEN = "listen"
    PULL = "pull"


class RtmpSource(Model):
    """RTMP ingest: listen for a publisher, or pull from an origin server."""

    mode: RtmpMode = RtmpMode.LISTEN
    port: Port = 1935
    app: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = "live"
    stream_key: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] = "stream"
    url: str | None = Field(default=None, description="Pull mode: rtmp:// or rtmps:// URL")

    @model_validator(mode="after")
    def _pull_needs_url(self) -> Self:
        if self.mode is RtmpMode.PULL:
            if not self.url:
                raise ValueError("rtmp.url is required when rtmp.mode is pull")
            if not self.url.startswith(("rtmp://", "rtmps://")):
                raise ValueError("rtmp.url must start with rtmp:// or rtmps://")
        return self


class RtpSource(Model):
    """RTP described by an SDP (inline text)."""

    sdp: Annotated[str, Field(min_length=10, max_length=16384)]

    @field_validator("sdp")
    @classmethod
    def _looks_like_sdp(cls, value: str) -> str:
        if "v=0" not in value or "m=" not in value:
            raise ValueError("rtp.sdp must be an SDP description with v=0 and at least one m= line")
        return value


class TestSource(Model):
    """A moving test pattern with a burnt-in wall clock and a tone: demos and tests."""

    pattern: Literal["testsrc2", "smptehdbars", "testsrc"] = "testsrc2"
    width: Annotated[int, Field(ge=64, le=3840)] = 1280
    height: Annotated[int, Field(ge=64, le=2160)] = 720
    frame_rate: Annotated[int, Field(ge=1, le=120)] = 30
    tone_hz: Annotated[int, Field(ge=20, le=20000)] = 440


class SourceType(StrEnum):
    SRT = "srt"
    RTMP = "rtmp"
    RTP = "rtp"
    TEST = "test"


class Source(Model):
    type: SourceType
    srt: SrtSource | None = None
    rtmp: RtmpSource | None = None
    rtp: RtpSource | None = None
    test: TestSource | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_settings(cls, data: Any) -> Any:
        # `type: srt` alone means an SRT listener with defaults: fill the block in.
        if isinstance(data, dict) and data.get("type") in ("srt", "rtmp", "test"):
            key = data["type"]
            if data.get(key) is None:
                return {**data, key: {}}
        return data

    @model_validator(mode="after")
    def _settings_match_type(self) -> Self:
        if getattr(self, self.type.value) is None:
            raise ValueError(
                f"source.{self.type.value} is required when source.type is {self.type.value}"
            )
        others = [t.value for t in SourceType if t is not self.type and getattr(self, t.value)]
        if others:
            raise ValueError(
                f"source.type is {self.type.value} but source.{others[0]} is set; set only the block of the declared type"
            )
        return self


class Hardware(StrEnum):
    NVENC = "nvenc"
    CPU = "cpu"


class Mode(StrEnum):
    TRANSCODE = "transcode"
    PASSTHROUGH = "passthrough"


class Rendition(Model):
    """One output rendition. The design default is 640x360 @ 400 kbps for multi-view."""

    # max_length repeats the pattern's limit for the CRD's CEL cost estimate (unique names).
    name: Annotated[str, Field(max_length=31, pattern=r"^[a-z0-9][a-z0-9_-]{0,30}$")] = "360p"
    width: Annotated[int, Field(ge=128, le=3840, multiple_of=2)] = 640
    height: Annotated[int, Field(ge=72, le=2160, multiple_of=2)] = 360
    video_bitrate_kbps: Annotated[int, Field(ge=100, le=50000)] = 400
    profile: Literal["baseline", "main", "high"] = "high"


class Audio(Model):
    enabled: bool = True
    bitrate_kbps: Annotated[int, Field(ge=16, le=512)] = 64
    sample_rate: Literal[44100, 48000] = 48000
    channels: Annotated[int, Field(ge=1, le=2)] = 2


class Transcode(Model):
    mode: Mode = Mode.TRANSCODE
    hardware: Hardware | None = Field(
        default=None, description="nvenc or cpu; unset: nvenc when a GPU is requested, else cpu"
    )
    frame_rate: Annotated[int, Field(ge=1, le=60)] = 30
    renditions: Annotated[list[Rendition], Field(min_length=1, max_length=8)] = Field(
        default_factory=lambda: [Rendition()]
    )
    audio: Audio = Field(default_factory=Audio)

    @model_validator(mode="after")
    def _unique_names(self) -> Self:
        names = [r.name for r in self.renditions]
        if len(set(names)) != len(names):
            raise ValueError("transcode.renditions[].name must be unique")
        if self.mode is Mode.PASSTHROUGH and len(self.renditions) != 1:
            raise ValueError(
                "transcode.renditions must hold exactly one rendition in passthrough mode"
            )
        return self


class Access(StrEnum):
    PUBLIC = "public"
    SIGNED = "signed"


class Delivery(Model):
    """LL-HLS timing. 500 ms segments with 100 ms parts is the ultra-low-latency profile."""

    segment_duration_ms: Annotated[int, Field(ge=200, le=10000)] = 500
    part_duration_ms: Annotated[int, Field(ge=50, le=2000)] = 100
    # 24 x 500 ms = 12 s: twice CAN-SKIP-UNTIL (6 target durations), so delta updates skip.
    window_segments: Annotated[int, Field(ge=3, le=600)] = 24
    access: Access = Access.PUBLIC

    @model_validator(mode="after")
    def _parts_divide_segments(self) -> Self:
        if self.part_duration_ms > self.segment_duration_ms:
            raise ValueError("delivery.partDurationMs must not exceed delivery.segmentDurationMs")
        if self.segment_duration_ms % self.part_duration_ms:
            raise ValueError("delivery.partDurationMs must divide delivery.segmentDurationMs")
        return self


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class Scheduling(Model):
    gpus: Annotated[int, Field(ge=0, le=8)] = 0
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    runtime_class_name: str | None = None


class Activation(StrEnum):
    ALWAYS = "Always"
    ON_DEMAND = "OnDemand"


class OnDelete(StrEnum):
    KEEP = "Keep"
    DELETE = "Delete"


class Recording(Model):
    """Every complete segment also goes to the object store (S3-compatible), off the live
    path; edges serve it back as VOD (``/vod/{stream}``). The store itself (endpoint,
    bucket, credentials) is configured per installation, never in a spec."""

    enabled: bool = Field(
        default=False,
        description="Record this stream to the object store (costs storage, no latency)",
    )
    renditions: Annotated[list[str], Field(max_length=8)] = Field(
        default_factory=list,
        description="Names of the renditions to record; empty: every rendition",
    )
    retention_hours: Annotated[int, Field(ge=0, le=87600)] = Field(
        default=168,
        description="Recordings older than this are deleted (0: kept until deleted by hand)",
    )
    on_delete: OnDelete = Field(
        default=OnDelete.KEEP,
        description="Keep: recordings outlive the LiveStream (until retention); Delete: "
        "deleting the LiveStream deletes them",
    )


class LiveStreamSpec(Model):
    source: Source
    transcode: Transcode = Field(default_factory=Transcode)
    delivery: Delivery = Field(default_factory=Delivery)
    recording: Recording = Field(default_factory=Recording)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    activation: Activation = Activation.ALWAYS
    idle_timeout_seconds: Annotated[int, Field(ge=0, le=86400)] = 60

    @property
    def hardware(self) -> Hardware:
        """The encoder actually used: explicit, else NVENC exactly when a GPU is requested."""
        if self.transcode.hardware is not None:
            return self.transcode.hardware
        return Hardware.NVENC if self.scheduling.gpus > 0 else Hardware.CPU

    @property
    def recorded_renditions(self) -> list[str]:
        """The renditions written to the object store (none when recording is off)."""
        if not self.recording.enabled:
            return []
        names = [r.name for r in self.transcode.renditions]
        return [n for n in names if not self.recording.renditions or n in self.recording.renditions]

    @model_validator(mode="after")
    def _recorded_renditions_exist(self) -> Self:
        known = {r.name for r in self.transcode.renditions}
        for i, name in enumerate(self.recording.renditions):
            if name not in known:
                raise ValueError(
                    f"recording.renditions[{i}] {name!r} is not one of transcode.renditions[].name"
                )
        return self

    @model_validator(mode="after")
    def _nvenc_needs_gpu(self) -> Self:
        if self.transcode.hardware is Hardware.NVENC and self.scheduling.gpus == 0:
            raise ValueError("transcode.hardware nvenc requires scheduling.gpus >= 1")
        return self

    @model_validator(mode="after")
    def _segments_hold_whole_frames(self) -> Self:
        # The GOP is exactly one segment (every segment starts on an IDR), so a segment
        # must be a whole number of frames; refuse it here rather than crash the transcoder.
        frame_rate, segment_ms = self.transcode.frame_rate, self.delivery.segment_duration_ms
        if self.transcode.mode is Mode.TRANSCODE and (frame_rate * segment_ms) % 1000:
            raise ValueError(
                f"delivery.segmentDurationMs {segment_ms} is not a whole number of frames "
                f"at transcode.frameRate {frame_rate}"
            )
        # FFmpeg cuts a fragment (a part) after whole frames only: a part target that is
        # not a whole number of frames yields parts longer than EXT-X-PART-INF promises
        # ("each Partial Segment ... MUST NOT exceed the Part Target Duration").
        part_ms = self.delivery.part_duration_ms
        if self.transcode.mode is Mode.TRANSCODE and (frame_rate * part_ms) % 1000:
            raise ValueError(
                f"delivery.partDurationMs {part_ms} is not a whole number of frames "
                f"at transcode.frameRate {frame_rate}"
            )
        return self


class ObjectMeta(Model):
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=NAME_PATTERN)]
    namespace: str = "default"
    # Kubernetes adds much more metadata; local mode only reads the name.
    model_config = ConfigDict(
        extra="ignore", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class LiveStream(Model):
    api_version: Literal["cascade.dev/v1alpha1"] = "cascade.dev/v1alpha1"
    kind: Literal["LiveStream"] = "LiveStream"
    metadata: ObjectMeta
    spec: LiveStreamSpec
    # Status is written by the controller, never read from a user's file.
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name


def is_valid_name(name: str) -> bool:
    return len(name) <= 63 and _NAME_RE.fullmatch(name) is not None


def format_validation_error(error: Any, *, prefix: str = "") -> list[str]:
    """One line per problem, ``field.path: rule``, with camelCase wire names.

    ``error`` is a ``pydantic.ValidationError``; the loc already uses aliases because the
    models validate by alias.
    """
    lines = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(p) for p in item["loc"] if p != "__root__")
        where = ".".join(p for p in (prefix, loc) if p)
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return lines
