"""The object store of ``cascade up``: Versity Gateway (an S3 server over a directory).

Started unless ``CASCADE_S3_ENDPOINT`` names a store already; supervised like the Redis
of local mode (started again on the same port and directory if it dies, so recordings
and the upload backlogs of the transcoders go on). Its credentials are made up for each
run and handed to the edge and the transcoders in their environment, the way a Secret
would be in a cluster. Without the binary (``make run`` builds it with
``scripts/objectstore-build.sh``) the stack runs without recording, and says so.
"""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cascade.contract.s3 import Credentials, S3Error
from cascade.contract.settings import LocalSettings
from cascade.transcoder.s3client import S3Client

__all__ = ["LocalObjectStore", "find_versitygw"]

BUCKET = "cascade"
Spawn = Callable[[str, list[str], dict[str, str]], Awaitable[asyncio.subprocess.Process]]
STABLE_SECONDS = 10.0


def find_versitygw() -> str | None:
    """``CASCADE_VERSITYGW``, else ``versitygw`` on PATH, else the newest one built into
    the cache by scripts/objectstore-build.sh."""
    explicit = os.environ.get("CASCADE_VERSITYGW")
    if explicit:
        return explicit
    on_path = shutil.which("versitygw")
    if on_path:
        return on_path
    cache = Path(os.environ.get("CASCADE_CACHE", Path.home() / ".cache/cascade"))
    built = sorted(glob.glob(str(cache / "tools/versitygw-*/versitygw")))
    return built[-1] if built else None


class LocalObjectStore:
    def __init__(self, settings: LocalSettings) -> None:
        self.settings = settings
        self.external = settings.s3_endpoint or None
        self.proc: asyncio.subprocess.Process | None = None
        self.credentials = Credentials(secrets.token_hex(10), secrets.token_hex(20))
        self._started_at = 0.0
        self._failures = 0

    @property
    def endpoint(self) -> str:
        return self.external or f"http://127.0.0.1:{self.settings.s3_port}"

    def env(self) -> dict[str, str]:
        """What the edge and the transcoders need to find the store (none: no recording)."""
        if self.external:
            return {}  # they read the same CASCADE_S3_* and AWS_* from the environment
        if self.proc is None:
            return {}
        return {
            "CASCADE_S3_ENDPOINT": self.endpoint,
            "CASCADE_S3_BUCKET": BUCKET,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
        }

    async def start(self, spawn: Spawn) -> str:
        """Start the store and create the bucket; "" when up, else what went wrong."""
        if self.external:
            return ""
        binary = find_versitygw()
        if binary is None:
            return (
                "versitygw not found: run `make run` (it builds it with "
                "scripts/objectstore-build.sh); streams run without recording"
            )
        root = self.settings.s3_dir
        root.mkdir(parents=True, exist_ok=True)
        self._started_at = time.monotonic()
        self.proc = await spawn(
            "objectstore",
            [binary, "--port", f"127.0.0.1:{self.settings.s3_port}", "posix", str(root)],
            {
                "ROOT_ACCESS_KEY": self.credentials.access_key,
                "ROOT_SECRET_KEY": self.credentials.secret_key,
            },
        )
        client = S3Client(self.endpoint, BUCKET, self.credentials, timeout=1)
        try:
            for _ in range(200):
                try:
                    await asyncio.to_thread(client.create_bucket)
                    return ""
                except (OSError, S3Error) as exc:
                    problem = str(exc)
                    if self.proc.returncode is not None:
                        self.proc = None
                        return (
                            f"versitygw exited; is port {self.settings.s3_port} taken? "
                            "(CASCADE_S3_PORT)"
                        )
                    await asyncio.sleep(0.05)
            return f"versitygw did not answer: {problem}"
        finally:
            client.close()

    async def supervise(self, spawn: Spawn) -> None:
        """Our store died: start it again on the same port and directory (with backoff)."""
        proc = self.proc
        if self.external or proc is None or proc.returncode is None:
            return
        lived = time.monotonic() - self._started_at
        if lived > STABLE_SECONDS:
            self._failures = 0
        delay = 0.0 if self._failures == 0 else min(30.0, 0.5 * 2**self._failures)
        if lived < delay:
            return
        print(
            f"cascade: the object store exited ({proc.returncode}); restarting it on port "
            f"{self.settings.s3_port}",
            file=sys.stderr,
            flush=True,
        )
        self._failures += 1
        problem = await self.start(spawn)
        if problem:
            print(f"cascade: object store restart failed: {problem}", file=sys.stderr, flush=True)
