"""A blocking S3 client on :mod:`http.client`, for the uploader's thread (and the CLI).

Signing and reply parsing are the pure :mod:`cascade.contract.s3`; this holds one
keep-alive connection, sends a request, and turns a non-2xx reply into
:class:`~cascade.contract.s3.S3Error`. Not thread-safe: one client per thread.
"""

from __future__ import annotations

import hashlib
import http.client
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from cascade.contract import s3
from cascade.contract.s3 import Credentials, ListPage, S3Error

__all__ = ["S3Client"]


class S3Client:
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        credentials: Credentials,
        *,
        region: str = "us-east-1",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"the S3 endpoint must be an http(s) URL, not {endpoint!r}")
        self.https = url.scheme == "https"
        self.host = url.netloc
        self.hostname = url.hostname
        self.port = url.port
        self.bucket = bucket
        self.credentials = credentials
        self.region = region
        self.timeout = timeout
        self.clock = clock
        self.requests = 0  # sent, whatever the answer
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        key: str = "",
        *,
        query: Mapping[str, str] | None = None,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        bucket: bool = True,
    ) -> tuple[int, bytes]:
        """Send one request; the status and body of a 2xx reply, else raise S3Error.

        OSError and http.client's errors (the store unreachable, a connection reset) pass
        through; the connection is dropped so the next request makes a new one.
        """
        path = f"/{self.bucket}/{key}" if bucket else "/"
        query = dict(query or {})
        signed = s3.sign(
            method=method,
            host=self.host,
            path=path,
            query=query,
            headers=dict(headers or {}),
            payload_sha256=hashlib.sha256(body).hexdigest() if body else s3.EMPTY_SHA256,
            credentials=self.credentials,
            region=self.region,
            date=s3.amz_date(self.clock()),
        )
        target = s3.canonical_uri(path)
        if query:
            target += "?" + s3.canonical_query(query)
        conn = self._connection()
        self.requests += 1
        try:
            conn.request(method, target, body=body or None, headers=signed)
            reply = conn.getresponse()
            data = reply.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if reply.will_close:
            self.close()
        if not 200 <= reply.status < 300:
            raise s3.parse_error(reply.status, data)
        return reply.status, data

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self._conn = cls(self.hostname, self.port, timeout=self.timeout)
        return self._conn

    # ---- operations -----------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.request("PUT", key, body=data, headers={"content-type": content_type})

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        try:
            return self.request("GET", key)[1]
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise

    def delete(self, key: str) -> None:
        self.request("DELETE", key)

    def list_page(
        self, prefix: str, *, start_after: str = "", token: str | None = None, delimiter: str = ""
    ) -> ListPage:
        query = s3.list_query(prefix, start_after=start_after, token=token, delimiter=delimiter)
        return s3.parse_list_page(self.request("GET", query=query)[1])

    def create_bucket(self) -> None:
        """Create the bucket; one that exists already (and is ours) is fine."""
        try:
            self.request("PUT")
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
