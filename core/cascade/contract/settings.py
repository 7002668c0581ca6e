"""Settings read from the environment, one class per process kind.

The names operators know from the original edge design are kept as they were
(``PORT``, ``MAX_CONCURRENT_STREAMS``, ``STREAM_TIMEOUT``, ``VIEWER_TRACKING_ENABLED``,
``VIEWER_TIMEOUT_SECONDS``, ``REDIS_URL``); Cascade's own settings start with ``CASCADE_``.
Each field says its default and what it does to latency or load.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cascade.contract.redisurl import SENTINEL_SCHEME, parse_redis_url

# A signing key shorter than this is refused: HMAC-SHA256 wants 32 random bytes.
MIN_SIGNING_KEY_BYTES = 32
_KID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # fullmatch: "$" passes a final "\n"


class SigningKeyError(ValueError):
    """A signing key that is malformed or unsafe (the message never contains the secret)."""


def decode_signing_secret(kid: str, text: str) -> bytes:
    """The secret bytes of one key from base64 (standard or URL-safe, padding optional).

    Refuses obviously unsafe keys: shorter than 32 bytes, or so repetitive (fewer than 8
    distinct byte values) that it is a placeholder rather than random bytes.
    """
    if not _KID_RE.fullmatch(kid):
        raise SigningKeyError(
            f"signing key id {kid!r} must be 1-64 letters, digits, '_', '.' or '-'"
        )
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        secret = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"signing key {kid!r} is not base64") from None
    if len(secret) < MIN_SIGNING_KEY_BYTES:
        raise SigningKeyError(
            f"signing key {kid!r} has {len(secret)} bytes: at least {MIN_SIGNING_KEY_BYTES} "
            "random bytes are required (make one with `openssl rand -base64 32`)"
        )
    if len(set(secret)) < 8:
        raise SigningKeyError(f"signing key {kid!r} is a placeholder, not random bytes")
    return secret


def parse_signing_keys(text: str) -> dict[str, bytes]:
    """``"kid1:base64secret,kid2:base64secret"`` -> ``{kid: secret}`` (duplicates refused)."""
    keys: dict[str, bytes] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        kid, sep, secret = item.partition(":")
        if not sep:
            raise SigningKeyError("CASCADE_SIGNING_KEYS items must be kid:base64secret")
        kid = kid.strip()
        if kid in keys:
            raise SigningKeyError(f"signing key id {kid!r} appears twice")
        keys[kid] = decode_signing_secret(kid, secret)
    return keys


def read_signing_keys_dir(path: Path) -> dict[str, bytes]:
    """One file per key id holding the base64 secret: a mounted Kubernetes Secret.

    Entries starting with ``.`` are skipped (the Secret volume's ``..data`` links).
    """
    if not path.is_dir():
        raise SigningKeyError(f"CASCADE_SIGNING_KEYS_DIR {str(path)!r} is not a directory")
    return {
        entry.name: decode_signing_secret(entry.name, entry.read_text())
        for entry in sorted(path.iterdir(), key=lambda e: e.name)
        if not entry.name.startswith(".") and entry.is_file()
    }


class RedisSettings(BaseSettings):
    """``REDIS_URL``, read by every program (edge, transcoder, operator, local mode)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "redis_url"),
        description="Redis holding every live part, stream state and viewer session: "
        "redis://host:6379/0, or a Sentinel-watched primary as "
        "redis+sentinel://sentinel1:26379,sentinel2:26379/mymaster/0 (see core/redisurl.py).",
    )

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        # A malformed Sentinel URL fails at start, naming the part, not at the first
        # connect. Other schemes are left to the client as before (redis-py takes unix://).
        if value.lower().startswith(f"{SENTINEL_SCHEME}://"):
            parse_redis_url(value)
        return value


class StreamLimitSettings(BaseSettings):
    """``MAX_CONCURRENT_STREAMS``: the design's ingest count, for the edge and the operator."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    max_concurrent_streams: int = Field(
        default=25,
        ge=1,
        validation_alias=AliasChoices("MAX_CONCURRENT_STREAMS", "max_concurrent_streams"),
        description="The design's ingest count (default 25): an edge follows at most this "
        "many streams (more are refused with 503); the operator runs at most this many "
        "transcoders cluster-wide (more wait in Pending with reason MaxConcurrentStreams).",
    )


class ViewerTimeoutSettings(BaseSettings):
    """``VIEWER_TIMEOUT_SECONDS``: when a viewer stops counting, for the edge and the operator."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    viewer_timeout_seconds: int = Field(
        default=30,
        ge=1,
        validation_alias=AliasChoices("VIEWER_TIMEOUT_SECONDS", "viewer_timeout_seconds"),
        description="A viewer session expires, and stops counting, this long after its "
        "last request.",
    )


class ObjectStoreSettings(BaseSettings):
    """The S3-compatible store of recordings, for the transcoder (writes), the edge (DVR and
    VOD reads) and the operator (retention). Credentials come from the environment (in a
    cluster, a Secret mapped to these variables), never from a LiveStream."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    s3_endpoint: str = Field(
        default="",
        validation_alias=AliasChoices("CASCADE_S3_ENDPOINT", "s3_endpoint"),
        description="http(s)://host:port of the store (path-style requests); empty: no "
        "store, nothing is recorded and /vod answers 404.",
    )
    s3_bucket: str = Field(
        default="cascade",
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        validation_alias=AliasChoices("CASCADE_S3_BUCKET", "s3_bucket"),
    )
    s3_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("CASCADE_S3_REGION", "AWS_REGION", "s3_region"),
        description="The region the requests are signed for (any value for most S3-compatible stores).",
    )
    s3_prefix: str = Field(
        default="recordings/",
        pattern=r"^([A-Za-z0-9._-]+/)*$",
        validation_alias=AliasChoices("CASCADE_S3_PREFIX", "s3_prefix"),
        description="Every key starts with this (empty, or path segments each ending in /).",
    )
    s3_access_key_id: str = Field(
        default="", validation_alias=AliasChoices("AWS_ACCESS_KEY_ID", "s3_access_key_id")
    )
    s3_secret_access_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY", "s3_secret_access_key"),
    )
    recording_backlog_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        validation_alias=AliasChoices("CASCADE_RECORDING_BACKLOG_BYTES", "recording_backlog_bytes"),
        description="Segments waiting for the store are held up to this many bytes per "
        "transcoder; past it the oldest are dropped. 256 MiB is 77 minutes of store outage "
        "for a 464 kbit/s rendition, 4.6 minutes of a 7.5 Mbit/s ladder. Costs memory "
        "only while the store is slow or away.",
    )

    @property
    def s3_enabled(self) -> bool:
        return bool(self.s3_endpoint)

    @model_validator(mode="after")
    def _store_needs_credentials(self) -> Self:
        if self.s3_endpoint and not (
            self.s3_access_key_id and self.s3_secret_access_key.get_secret_value()
        ):
            raise ValueError(
                "CASCADE_S3_ENDPOINT is set but AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not"
            )
        if self.s3_endpoint and not self.s3_endpoint.startswith(("http://", "https://")):
            raise ValueError("CASCADE_S3_ENDPOINT must start with http:// or https://")
        return self


class EdgeSettings(RedisSettings, StreamLimitSettings, ViewerTimeoutSettings, ObjectStoreSettings):
    # Signing keys are validated here; never echo a refused value (it may be a secret).
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    host: str = Field(default="127.0.0.1", validation_alias=AliasChoices("HOST", "host"))
    port: int = Field(
        default=8080,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("PORT", "port"),
        description="HTTP port of the edge.",
    )
    viewer_tracking_enabled: bool = Field(
        default=True,
        validation_alias=AliasChoices("VIEWER_TRACKING_ENABLED", "viewer_tracking_enabled"),
        description="Count viewers with anonymous sessions (no IP or user agent stored).",
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
    on_demand_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_ON_DEMAND_POLL_SECONDS", "on_demand_poll_seconds"),
        description="How often the edge re-reads the set of on-demand streams (one SMEMBERS); "
        "a stream made on demand is answered 404 rather than 503 starting for up to this long.",
    )

    max_streams_per_viewer: int = Field(
        default=6,
        ge=1,
        le=64,
        validation_alias=AliasChoices("CASCADE_MAX_STREAMS_PER_VIEWER", "max_streams_per_viewer"),
        description="Streams one viewer (one hls_ctx) may watch at once; one more gets 429.",
    )
    session_flush_seconds: float = Field(
        default=2.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_SESSION_FLUSH_SECONDS", "session_flush_seconds"),
        description="Viewer heartbeats are batched and written to Redis this often; longer is "
        "fewer Redis commands, and a new viewer shows in the counts this much later.",
    )
    viewer_sessions: Literal["hls_ctx", "cmcd"] = Field(
        default="hls_ctx",
        validation_alias=AliasChoices("CASCADE_VIEWER_SESSIONS", "viewer_sessions"),
        description="Where a viewer's session id comes from. hls_ctx: put on the media "
        "playlist URIs (no cache in front). cmcd: the player's CMCD sid (CTA-5004), so "
        "public streams' playlist URLs are the same for every viewer and a cache in front "
        "(the shield, a CDN) shares them; players without CMCD still get hls_ctx.",
    )
    viewer_counts_cache_seconds: float = Field(
        default=1.0,
        ge=0,
        validation_alias=AliasChoices(
            "CASCADE_VIEWER_COUNTS_CACHE_SECONDS", "viewer_counts_cache_seconds"
        ),
        description="Viewer counts read from Redis are reused this long by /status and /metrics.",
    )
    signing_keys: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CASCADE_SIGNING_KEYS", "signing_keys"),
        description="Keys for signed playback URLs, 'kid1:base64secret,kid2:base64secret' "
        "(two during a rotation); each at least 32 random bytes. No default: none in code.",
    )
    signing_keys_dir: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("CASCADE_SIGNING_KEYS_DIR", "signing_keys_dir"),
        description="A directory with one file per key id holding its base64 secret (a "
        "mounted Kubernetes Secret); read at start, so a rotation needs a rolling restart.",
    )
    signing_key_id: str | None = Field(
        default=None,
        validation_alias=AliasChoices("CASCADE_SIGNING_KEY_ID", "signing_key_id"),
        description="The key `cascade sign` signs with when several are configured; every "
        "configured key verifies.",
    )
    cache_capacity_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        validation_alias=AliasChoices("CASCADE_CACHE_BYTES", "cache_capacity_bytes"),
        description="Bytes of media older than the live window kept in memory (TTL + LRU); "
        "0 turns the cache off, so every such request reads Redis.",
    )
    cache_ttl_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_CACHE_TTL_SECONDS", "cache_ttl_seconds"),
        description="How long a cached segment is served before it is read from Redis again.",
    )
    cache_max_item_bytes: int = Field(
        default=100 * 1000 * 1000,
        ge=1,
        validation_alias=AliasChoices("CASCADE_CACHE_MAX_ITEM_BYTES", "cache_max_item_bytes"),
        description="Larger items are served but never cached (the original design's 100 MB).",
    )
    api_docs_enabled: bool = Field(
        default=False,
        validation_alias=AliasChoices("CASCADE_API_DOCS", "api_docs_enabled"),
        description="Serve the OpenAPI schema (/openapi.json) and its page (/docs); off by "
        "default: they describe only the operations routes and tell a stranger what runs here.",
    )
    # ---- what one client may make the edge's HTTP server hold (issue 9) ----
    limit_request_line_bytes: int = Field(
        default=8192,
        ge=256,
        validation_alias=AliasChoices(
            "CASCADE_LIMIT_REQUEST_LINE_BYTES", "limit_request_line_bytes"
        ),
        description="Longest request target (URL with its query) in bytes; a longer one gets "
        "414 and the connection closes. 8 KiB as nginx's large_client_header_buffers; LL-HLS "
        "URLs with a signed token and hls_ctx are under 1 KiB.",
    )
    limit_request_header_bytes: int = Field(
        default=32768,
        ge=1024,
        validation_alias=AliasChoices(
            "CASCADE_LIMIT_REQUEST_HEADER_BYTES", "limit_request_header_bytes"
        ),
        description="Largest request header section in bytes (all fields); more gets 431 and "
        "the connection closes, refused while it arrives (nginx: 4 x 8 KiB buffers).",
    )
    limit_request_fields: int = Field(
        default=100,
        ge=1,
        validation_alias=AliasChoices("CASCADE_LIMIT_REQUEST_FIELDS", "limit_request_fields"),
        description="Most header fields in one request (gunicorn's limit_request_fields); "
        "one more gets 431 and the connection closes.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_HEADER_TIMEOUT_SECONDS", "header_timeout_seconds"),
        description="A request (head and body) must arrive within this long of its first "
        "byte, else 408 and close; a new connection must send its first byte within it too "
        "(nginx's client_header_timeout). Bounds what a slow client holds.",
    )
    keep_alive_timeout_seconds: float = Field(
        default=75.0,
        gt=0,
        validation_alias=AliasChoices(
            "CASCADE_KEEP_ALIVE_TIMEOUT_SECONDS", "keep_alive_timeout_seconds"
        ),
        description="An idle keep-alive connection is closed after this long (nginx's "
        "keepalive_timeout, 75 s), and so is one whose client reads none of its answers "
        "for this long. Players reuse theirs every part; shorter frees idle connections sooner.",
    )
    limit_pipelined_requests: int = Field(
        default=16,
        ge=1,
        validation_alias=AliasChoices(
            "CASCADE_LIMIT_PIPELINED_REQUESTS", "limit_pipelined_requests"
        ),
        description="Requests of one connection in flight at once (pipelined, answered in "
        "order); at the limit the edge stops reading that connection until one is answered. "
        "It starts at most this many per turn; pipelines wanting more take turns, one per "
        "event-loop iteration, so they cannot crowd out the viewers.",
    )
    limit_connections: int = Field(
        default=10000,
        ge=1,
        validation_alias=AliasChoices("CASCADE_LIMIT_CONNECTIONS", "limit_connections"),
        description="Open connections per edge process; one more gets 503 with Retry-After "
        "and is closed at once. 10,000 is ten times the viewers one edge core serves.",
    )
    edge_processes: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias=AliasChoices("CASCADE_EDGE_PROCESSES", "edge_processes"),
        description="Edge processes of one pod, all on the same port (SO_REUSEPORT: the "
        "kernel spreads new connections over them), each following Redis itself. One per "
        "core: one process is one event loop on one core.",
    )
    _signing_key_ring: dict[str, bytes] = PrivateAttr(default_factory=dict)

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @model_validator(mode="after")
    def _load_signing_keys(self) -> Self:
        ring = parse_signing_keys(self.signing_keys.get_secret_value()) if self.signing_keys else {}
        if self.signing_keys_dir is not None:
            for kid, secret in read_signing_keys_dir(self.signing_keys_dir).items():
                if kid in ring:
                    raise SigningKeyError(f"signing key id {kid!r} is set twice (env and dir)")
                ring[kid] = secret
        if self.signing_key_id is not None and self.signing_key_id not in ring:
            raise SigningKeyError(
                f"CASCADE_SIGNING_KEY_ID {self.signing_key_id!r} is not among the signing keys"
            )
        self._signing_key_ring = ring
        return self

    def signing_key_ring(self) -> dict[str, bytes]:
        """Every configured signing key, ``{kid: secret}``; empty when none is set."""
        return dict(self._signing_key_ring)


class TranscoderSettings(RedisSettings, ObjectStoreSettings):
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
    probe_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("CASCADE_PROBE_PORT", "probe_port"),
        description="Port of /livez and /readyz for the kubelet (0: off, as in local mode; "
        "the operator sets it in transcoder pods).",
    )
    archive_seconds: float = Field(
        default=120.0,
        ge=0,
        validation_alias=AliasChoices("CASCADE_ARCHIVE_SECONDS", "archive_seconds"),
        description="Complete segments are also kept in Redis (one key each, with this TTL) "
        "for requests older than the live window; 0 keeps none. Costs bitrate x seconds "
        "of Redis memory per rendition.",
    )
    outage_buffer_seconds: float = Field(
        default=30.0,
        ge=0,
        validation_alias=AliasChoices("CASCADE_OUTAGE_BUFFER_SECONDS", "outage_buffer_seconds"),
        description="While Redis is unreachable (restart, failover, a stall), parts are kept "
        "this long and published in order once it is back; older whole segments are dropped "
        "(counted in the health's lost_segments). 0 keeps none. Costs bitrate x seconds of "
        "transcoder memory during an outage only.",
    )
    outage_buffer_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=0,
        validation_alias=AliasChoices("CASCADE_OUTAGE_BUFFER_BYTES", "outage_buffer_bytes"),
        description="At most this many bytes of parts are held for Redis (the outage buffer "
        "plus the replay tail); past it the oldest whole segments are dropped. 128 MiB holds "
        "30 s of a 30 Mbit/s ladder, within the transcoder pod's 2 GiB limit.",
    )
    redis_replay_seconds: float = Field(
        default=5.0,
        ge=0,
        validation_alias=AliasChoices("CASCADE_REDIS_REPLAY_SECONDS", "redis_replay_seconds"),
        description="Parts Redis already acknowledged are kept this long too: after a "
        "reconnect, whatever of them the new Redis lacks (a replica promoted before it had "
        "them, a restart from an older dump) is sent again, without duplicates. Costs "
        "bitrate x seconds of memory at all times.",
    )
    redis_stall_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias=AliasChoices("CASCADE_REDIS_STALL_SECONDS", "redis_stall_seconds"),
        description="A Redis connection that answered nothing for this long while answers are "
        "due (a frozen server, a dead peer TCP has not noticed) is dropped and made again; "
        "parts meanwhile wait in the outage buffer.",
    )


class LocalSettings(EdgeSettings):
    shield: bool = Field(
        default=False,
        validation_alias=AliasChoices("CASCADE_SHIELD", "shield"),
        description="Put the origin shield (Varnish) on PORT and the edge behind it on "
        "CASCADE_EDGE_PORT; viewer sessions then come from CMCD.",
    )
    edge_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("CASCADE_EDGE_PORT", "edge_port"),
        description="The edge's port behind the shield (CASCADE_SHIELD=1); default PORT + 1.",
    )
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
    s3_port: int = Field(
        default=9200,
        ge=1,
        le=65535,
        validation_alias=AliasChoices("CASCADE_S3_PORT", "s3_port"),
        description="Port of the object store local mode starts (when CASCADE_S3_ENDPOINT is "
        "not set): Versity Gateway, built by scripts/objectstore-build.sh.",
    )
    s3_dir: Path = Field(
        default=Path.home() / ".cache/cascade/local-store",
        validation_alias=AliasChoices("CASCADE_S3_DIR", "s3_dir"),
        description="Where that store keeps its objects (recordings outlive `cascade up`).",
    )
