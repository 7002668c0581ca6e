"""Settings read from the environment, one class per process kind.

The names operators know from the original edge design are kept as they were
(``PORT``, ``MAX_CONCURRENT_STREAMS``, ``STREAM_TIMEOUT``, ``VIEWER_TRACKING_ENABLED``,
``VIEWER_TIMEOUT_SECONDS``, ``REDIS_URL``); Cascade's own settings start with ``CASCADE_``.
Each field says its default and what it does to latency or load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class _Base(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="Redis holding every live part, stream state and viewer session.",
    )


class EdgeSettings(_Base):
    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "host"))
    port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("PORT", "port"),
        description="HTTP port of the edge.",
    )
    max_concurrent_streams: int = Field(
        default=25,
        ge=1,
        validation_alias=AliasChoices("MAX_CONCURRENT_STREAMS", "max_concurrent_streams"),
        description="Streams the edge follows at once (the design's ingest count); more are refused with 503.",
    )
    viewer_tracking_enabled: bool = Field(
        default=True,
        validation_alias=AliasChoices("VIEWER_TRACKING_ENABLED", "viewer_tracking_enabled"),
        description="Count viewers with anonymous sessions (no IP or user agent stored).",
    )
    viewer_timeout_seconds: int = Field(
        default=30,
        ge=1,
        validation_alias=AliasChoices("VIEWER_TIMEOUT_SECONDS", "viewer_timeout_seconds"),
        description="A viewer session expires this long after its last request.",
    )
    cors_allow_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("*",),
        validation_alias=AliasChoices("CASCADE_CORS_ALLOW_ORIGINS", "cors_allow_origins"),
        description="Origins allowed to play from another page (comma separated); * allows any.",
    )
    blocking_timeout_factor: float = Field(
        default=3.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_BLOCKING_TIMEOUT_FACTOR", "blocking_timeout_factor"),
        description="A blocking request waits at most this many target durations, then gets 503 (RFC 8216bis).",
    )
    stream_poll_seconds: float = Field(
        default=0.5,
        gt=0,
        validation_alias=AliasChoices("CASCADE_STREAM_POLL_SECONDS", "stream_poll_seconds"),
        description="How often the edge looks for new streams in Redis; bounds the first-play delay of a new stream.",
    )

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value


class TranscoderSettings(_Base):
    stream_timeout: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("STREAM_TIMEOUT", "stream_timeout"),
        description="Seconds without a part before the input counts as silent and FFmpeg is restarted.",
    )
    ffmpeg: str = Field(default="ffmpeg", validation_alias=AliasChoices("CASCADE_FFMPEG", "ffmpeg"))
    health_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_HEALTH_INTERVAL", "health_interval_seconds"),
    )
    backoff_initial_seconds: float = Field(
        default=0.5,
        gt=0,
        validation_alias=AliasChoices("CASCADE_BACKOFF_INITIAL", "backoff_initial_seconds"),
        description="First restart delay after FFmpeg exits; doubles up to backoff_max_seconds.",
    )
    backoff_max_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_BACKOFF_MAX", "backoff_max_seconds"),
    )


class LocalSettings(EdgeSettings):
    streams_dir: Path = Field(
        default=Path("examples/local"),
        validation_alias=AliasChoices("CASCADE_STREAMS_DIR", "streams_dir"),
        description="Folder of LiveStream YAML files reconciled into running streams.",
    )
    redis_port: int = Field(
        default=6379,
        validation_alias=AliasChoices("CASCADE_REDIS_PORT", "redis_port"),
        description="Port of the Redis server local mode starts (when REDIS_URL is not set).",
    )
