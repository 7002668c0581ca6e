"""The edge's reader of the object store: GET an object, list keys. asyncio, no SDK.

Signing and reply parsing are :mod:`cascade.contract.s3` (pure, shared with the
transcoder's writer). One request per connection (``Connection: close``): the edge reads
the store only for what its caches miss (a VOD playlist's listing, a segment no viewer
asked for in the cache's lifetime), so a connection pool would buy little; every request
has a deadline (``timeout``), and a reply larger than ``max_bytes`` is refused rather
than buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from cascade.contract import s3
from cascade.contract.s3 import Credentials, ListPage, ObjectInfo, S3Error
from cascade.contract.settings import ObjectStoreSettings

__all__ = ["StoreReader"]

MAX_HEAD_BYTES = 64 * 1024


class StoreReader:
    def __init__(
        self,
        endpoint: str,
        bucket: str,
        credentials: Credentials,
        *,
        region: str = "us-east-1",
        timeout: float = 5.0,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        url = urlsplit(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"the S3 endpoint must be an http(s) URL, not {endpoint!r}")
        self.tls = url.scheme == "https"
        self.host = url.netloc
        self.hostname = url.hostname
        self.port = url.port or (443 if self.tls else 80)
        self.bucket = bucket
        self.credentials = credentials
        self.region = region
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.clock = clock
        self.requests = 0

    @classmethod
    def from_settings(cls, settings: ObjectStoreSettings) -> StoreReader:
        return cls(
            settings.s3_endpoint,
            settings.s3_bucket,
            Credentials(
                settings.s3_access_key_id, settings.s3_secret_access_key.get_secret_value()
            ),
            region=settings.s3_region,
        )

    async def get(self, key: str) -> bytes | None:
        """The object's bytes; None when there is no such key."""
        status, body = await self._request(f"/{self.bucket}/{key}", {})
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise s3.parse_error(status, body)
        return body

    async def list_page(
        self, prefix: str, *, start_after: str = "", token: str | None = None, delimiter: str = ""
    ) -> ListPage:
        query = s3.list_query(prefix, start_after=start_after, token=token, delimiter=delimiter)
        status, body = await self._request(f"/{self.bucket}", query)
        if not 200 <= status < 300:
            raise s3.parse_error(status, body)
        return s3.parse_list_page(body)

    async def list_all(
        self, prefix: str, *, start_after: str = "", max_objects: int = 1_000_000
    ) -> list[ObjectInfo]:
        out: list[ObjectInfo] = []
        token = None
        while True:
            page = await self.list_page(prefix, start_after=start_after, token=token)
            out += page.objects
            if page.next_token is None or len(out) >= max_objects:
                return out
            token = page.next_token

    async def prefixes(self, prefix: str) -> list[str]:
        page = await self.list_page(prefix, delimiter="/")
        return list(page.prefixes)

    async def _request(self, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        headers = s3.sign(
            method="GET",
            host=self.host,
            path=path,
            query=query,
            headers={},
            payload_sha256=hashlib.sha256(b"").hexdigest(),
            credentials=self.credentials,
            region=self.region,
            date=s3.amz_date(self.clock()),
        )
        target = s3.canonical_uri(path) + ("?" + s3.canonical_query(query) if query else "")
        head = f"GET {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += "connection: close\r\n\r\n"
        self.requests += 1
        try:
            return await asyncio.wait_for(self._exchange(head.encode()), self.timeout)
        except TimeoutError:
            raise S3Error(f"the store did not answer within {self.timeout:g} s") from None

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(
            self.hostname, self.port, ssl=True if self.tls else None, limit=MAX_HEAD_BYTES
        )
        try:
            writer.write(request)
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise S3Error(f"not an HTTP reply from the store: {status_line[:80]!r}")
            status = int(parts[1])
            length: int | None = None
            chunked = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
            if chunked:
                body = await self._read_chunked(reader)
            elif length is not None:
                if length > self.max_bytes:
                    raise S3Error(f"the store's reply is {length} bytes, over {self.max_bytes}")
                body = await reader.readexactly(length)
            else:
                body = await reader.read(self.max_bytes + 1)
                if len(body) > self.max_bytes:
                    raise S3Error(f"the store's reply is over {self.max_bytes} bytes")
            return status, body
        except (asyncio.IncompleteReadError, ValueError) as exc:
            raise S3Error(f"a broken reply from the store: {exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        out = bytearray()
        while True:
            size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            if len(out) + size > self.max_bytes:
                raise S3Error(f"the store's reply is over {self.max_bytes} bytes")
            out += await reader.readexactly(size)
            await reader.readexactly(2)
