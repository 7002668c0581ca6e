"""Signed playback URLs: who may open a ``signed`` stream, decided by pure functions.

A token is three query parameters on the multivariant playlist URL::

    /live/{stream}.m3u8?exp=1767225600&kid=k2025&sig=<base64url(HMAC-SHA256)>

    sig = base64url_nopad(HMAC-SHA256(secret[kid], "cascade-v1:{stream}:{exp}"))

``exp`` is a Unix time in whole seconds; ``kid`` names the key, so two keys verify at once
during a rotation (sign with the new one, keep the old one until its URLs expire).
``docs/signed-urls.md`` has the formula with an openssl one-liner.

What a grant covers, and the trade-off: the token is checked on the multivariant request
and the session created there inherits the grant (its expiry is stored with the session,
see :mod:`cascade.edge.sessions`), so media playlists carry only ``hls_ctx`` and need no
token. Parts, segments and init segments carry neither: they stay identical for every
viewer, so a CDN can cache them, at the price that anyone who learns a part URL can fetch
that part (not the playlists that list the next ones) while it is in the window or cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from urllib.parse import urlencode, urlsplit, urlunsplit

TOKEN_PARAMS = ("exp", "kid", "sig")
_MAX_EXP_DIGITS = 12  # Unix seconds until year 33658: refuse absurd numbers before int()


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    secret: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission to play ``stream`` until ``expires_at`` (Unix seconds)."""

    stream: str
    expires_at: int
    kid: str


class DenyReason(StrEnum):
    MISSING = "missing token"
    MALFORMED = "malformed token"
    UNKNOWN_KEY = "unknown key id"
    BAD_SIGNATURE = "bad signature"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Denied:
    """Why access is refused (the edge answers 403 with ``message``)."""

    reason: DenyReason
    message: str


def key_ring(keys: Mapping[str, bytes]) -> dict[str, SigningKey]:
    """``{kid: secret}`` from the settings as :class:`SigningKey` values."""
    return {kid: SigningKey(kid, secret) for kid, secret in keys.items()}


def message(stream: str, expires_at: int) -> bytes:
    """The signed bytes: a version tag, the stream and the expiry (``:`` never in a name)."""
    return f"cascade-v1:{stream}:{expires_at}".encode()


def signature(stream: str, expires_at: int, key: SigningKey) -> str:
    """base64url without padding of HMAC-SHA256 over :func:`message`."""
    mac = hmac.new(key.secret, message(stream, expires_at), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign_params(stream: str, expires_at: int, key: SigningKey) -> dict[str, str]:
    return {"exp": str(expires_at), "kid": key.kid, "sig": signature(stream, expires_at, key)}


def sign_url(base_url: str, stream: str, expires_at: int, key: SigningKey) -> str:
    """``{base_url}/live/{stream}.m3u8?exp=..&kid=..&sig=..`` (other query items kept)."""
    parts = urlsplit(base_url.rstrip("/"))
    path = f"{parts.path}/live/{stream}.m3u8"
    query = "&".join(q for q in (parts.query, urlencode(sign_params(stream, expires_at, key))) if q)
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def verify(
    stream: str, params: Mapping[str, str], keys: Mapping[str, SigningKey], now: float
) -> Grant | Denied:
    """Check a token from the query of a request for ``stream``.

    The signature is checked (in constant time) before the expiry, so a forged token is
    told "bad signature" and learns nothing about the expiry rule.
    """
    present = [p for p in TOKEN_PARAMS if params.get(p)]
    if not present:
        return Denied(
            DenyReason.MISSING,
            f"missing token: stream {stream!r} needs a signed URL (exp, kid and sig)",
        )
    if len(present) < len(TOKEN_PARAMS):
        absent = ", ".join(p for p in TOKEN_PARAMS if p not in present)
        return Denied(DenyReason.MALFORMED, f"malformed token: {absent} missing")
    exp_text, kid, sig = params["exp"], params["kid"], params["sig"]
    if not (exp_text.isascii() and exp_text.isdigit()) or len(exp_text) > _MAX_EXP_DIGITS:
        return Denied(DenyReason.MALFORMED, "malformed token: exp must be Unix seconds")
    if len(exp_text) > 1 and exp_text[0] == "0":
        # One canonical form: "0123" would verify with the signature of "123", so one token
        # would open many URLs (each a cache miss, each a different string in the logs).
        return Denied(
            DenyReason.MALFORMED, "malformed token: exp must be Unix seconds without leading zeros"
        )
    key = keys.get(kid)
    if key is None:
        return Denied(DenyReason.UNKNOWN_KEY, f"unknown key id {kid!r}")
    expires_at = int(exp_text)
    expected = signature(stream, expires_at, key).encode()
    if not hmac.compare_digest(expected, sig.encode("utf-8", "replace")):
        return Denied(DenyReason.BAD_SIGNATURE, f"bad signature for stream {stream!r}")
    if expires_at <= now:
        return Denied(DenyReason.EXPIRED, f"token expired {_when(expires_at, now)}")
    return Grant(stream, expires_at, kid)


def check_session_grant(stream: str, expires_at: float | None, now: float) -> Grant | Denied:
    """The grant a session inherited (its stored expiry, ``None`` when it has none)."""
    if expires_at is None:
        return Denied(
            DenyReason.MISSING,
            f"missing token: this session has no grant for stream {stream!r}; "
            "open the signed URL again",
        )
    if expires_at <= now:
        return Denied(DenyReason.EXPIRED, f"token expired {_when(int(expires_at), now)}")
    return Grant(stream, int(expires_at), kid="")


def _when(expires_at: int, now: float) -> str:
    stamp = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"at {stamp} ({max(0, round(now - expires_at))} s ago)"
