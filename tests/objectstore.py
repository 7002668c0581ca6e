"""A real S3 server for the tests: Versity Gateway over a temporary directory, on loopback.

Built once by ``scripts/objectstore-build.sh`` (into ~/.cache/cascade; ``make test`` runs it
first, so a cold build shows its progress there, not inside a fixture). ``stop()`` and
``start()`` keep the port and the directory: what was written survives, as it does when a
real store restarts.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from cascade.contract.s3 import Credentials, S3Error
from cascade.transcoder.s3client import S3Client

REPO = Path(__file__).resolve().parents[1]
ACCESS_KEY = "cascade-test"
SECRET_KEY = "cascade-test-secret"
BUCKET = "cascade"


def versitygw_binary() -> str:
    result = subprocess.run(
        [str(REPO / "scripts/objectstore-build.sh")], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"scripts/objectstore-build.sh failed: {result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


class ObjectStoreServer:
    def __init__(self, tmp: Path, port: int) -> None:
        self.root = tmp / "gw"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.binary = versitygw_binary()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "versitygw.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> Credentials:
        return Credentials(ACCESS_KEY, SECRET_KEY)

    def env(self, prefix: str = "recordings/") -> dict[str, str]:
        """What a transcoder or an edge needs to find the store (the names a Secret uses)."""
        return {
            "CASCADE_S3_ENDPOINT": self.endpoint,
            "CASCADE_S3_BUCKET": BUCKET,
            "CASCADE_S3_PREFIX": prefix,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def client(self, *, timeout: float = 5.0) -> S3Client:
        return S3Client(self.endpoint, BUCKET, self.credentials, timeout=timeout)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "--port", f"127.0.0.1:{self.port}", "posix", str(self.root)],
                env={"ROOT_ACCESS_KEY": ACCESS_KEY, "ROOT_SECRET_KEY": SECRET_KEY},
                stdout=log,
                stderr=log,
            )
        client = self.client(timeout=1)
        deadline = time.monotonic() + 20
        try:
            while True:
                try:
                    client.create_bucket()
                    return
                except (OSError, S3Error):
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(
                            f"versitygw did not start: {self.log.read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
