"""The S3 API as far as Cascade speaks it, pure: Signature Version 4 and ListObjectsV2 replies.

Cascade talks to any S3-compatible store (AWS S3, MinIO, Ceph RGW, SeaweedFS, Versity)
with five operations: PUT, GET and DELETE of one object, ListObjectsV2, and CreateBucket
(local mode and tests). That is too little to carry an SDK for: boto3 costs tens of MB
and a millisecond of CPU per request in the transcoder, whose CPU belongs to the packager.
So the signing is here, as pure functions checked against the examples AWS publishes
("Signature Calculations for the Authorization Header", S3 API reference), and each
service sends the requests with the HTTP client it already has.

Requests are path-style (``{endpoint}/{bucket}/{key}``), which every S3-compatible store
accepts; the payload is signed (its SHA-256 goes into ``x-amz-content-sha256``), so a
store can refuse a body damaged on the way.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

__all__ = [
    "EMPTY_SHA256",
    "Credentials",
    "ListPage",
    "ObjectInfo",
    "S3Error",
    "amz_date",
    "canonical_query",
    "canonical_uri",
    "list_query",
    "parse_error",
    "parse_list_page",
    "sign",
]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
ALGORITHM = "AWS4-HMAC-SHA256"


class S3Error(Exception):
    """A store answered with an error (status and S3 error code in the message), or a
    reply could not be read."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)


def amz_date(unix_seconds: float) -> str:
    """``YYYYMMDDTHHMMSSZ`` (UTC) for ``x-amz-date``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(unix_seconds))


def canonical_uri(path: str) -> str:
    """Each path segment URI-encoded once (S3 does not double-encode), slashes kept."""
    return quote(path, safe="/-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """``name=value`` pairs sorted by name, both URI-encoded (``/`` too), joined by ``&``."""
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_key: str, day: str, region: str, service: str = "s3") -> bytes:
    k = _hmac(("AWS4" + secret_key).encode(), day)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def sign(
    *,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str,
    credentials: Credentials,
    region: str,
    date: str,
) -> dict[str, str]:
    """The request's headers with ``Authorization``, ``x-amz-date`` and the payload hash.

    ``path`` is the unencoded path (``/bucket/key``); ``date`` is an :func:`amz_date`.
    Every header given is signed, with ``host``. Pure: the same input, the same headers.
    """
    out = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    out["host"] = host
    out["x-amz-date"] = date
    out["x-amz-content-sha256"] = payload_sha256
    names = sorted(out)
    canonical = "\n".join(
        [
            method,
            canonical_uri(path),
            canonical_query(query),
            "".join(f"{n}:{out[n]}\n" for n in names),
            ";".join(names),
            payload_sha256,
        ]
    )
    scope = f"{date[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join([ALGORITHM, date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = signing_key(credentials.secret_key, date[:8], region)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out


# ---- replies ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int


@dataclass(frozen=True, slots=True)
class ListPage:
    """One ListObjectsV2 reply: objects, common prefixes (with a delimiter), the next token."""

    objects: tuple[ObjectInfo, ...]
    prefixes: tuple[str, ...]
    next_token: str | None  # None: this was the last page


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c.tag) == name]


def _text(element: ET.Element, name: str) -> str:
    for c in element:
        if _local(c.tag) == name:
            return c.text or ""
    return ""


def _parse(body: bytes) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        # A store never sends a DTD; entity expansion is how XML replies attack a client.
        raise S3Error("the store's XML reply declares a DTD or entities")
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise S3Error(f"the store's reply is not XML: {exc}") from exc


def list_query(
    prefix: str, *, start_after: str = "", token: str | None = None, delimiter: str = ""
) -> dict[str, str]:
    """The query of a ListObjectsV2 request: the optional fields only when given."""
    query = {"list-type": "2", "prefix": prefix}
    if start_after:
        query["start-after"] = start_after
    if token:
        query["continuation-token"] = token
    if delimiter:
        query["delimiter"] = delimiter
    return query


def parse_list_page(body: bytes) -> ListPage:
    """A ``ListBucketResult`` (ListObjectsV2) as a :class:`ListPage`."""
    root = _parse(body)
    if _local(root.tag) != "ListBucketResult":
        raise S3Error(f"expected ListBucketResult, got {_local(root.tag)}")
    objects = []
    for c in _children(root, "Contents"):
        size = _text(c, "Size")
        objects.append(ObjectInfo(key=_text(c, "Key"), size=int(size) if size.isdigit() else 0))
    prefixes = tuple(_text(p, "Prefix") for p in _children(root, "CommonPrefixes"))
    truncated = _text(root, "IsTruncated").lower() == "true"
    token = _text(root, "NextContinuationToken") or None
    if truncated and token is None:
        raise S3Error("the list reply is truncated but has no NextContinuationToken")
    return ListPage(tuple(objects), prefixes, token if truncated else None)


def parse_error(status: int, body: bytes) -> S3Error:
    """The store's ``<Error><Code>..</Code><Message>..</Message></Error>`` as an exception."""
    code = message = ""
    if body.lstrip().startswith(b"<"):
        try:
            root = _parse(body)
            code, message = _text(root, "Code"), _text(root, "Message")
        except S3Error:
            pass
    text = f"HTTP {status}" + (f" {code}" if code else "") + (f": {message}" if message else "")
    return S3Error(text, status=status, code=code)
