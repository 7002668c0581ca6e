"""Uploads to the object store, off the live path: a thread, a bounded backlog, retries.

The packager's callback only appends to the backlog (:meth:`Uploader.submit`: a lock and
a deque append, no I/O); one thread per stream writes the objects in order with a
blocking :class:`~cascade.transcoder.s3client.S3Client`. A slow or unreachable store
therefore never delays a part: it only grows the backlog.

* A failed upload (the store down, a timeout, a 5xx) is retried, the oldest first, after
  a backoff from :data:`RETRY_INITIAL_SECONDS` doubling to :data:`RETRY_MAX_SECONDS`; a
  4xx other than 408/429 is not going to change (a bad key, no such bucket, refused
  credentials): the object is dropped and counted, and the next one is tried.
* The backlog is bounded in bytes (``CASCADE_RECORDING_BACKLOG_BYTES``, default 256 MiB).
  Past it the oldest *segments* are dropped and counted (``lost_segments``); inits never
  are: the segments after them need them. At 464 kbit/s per rendition (the default
  360p ladder with audio) 256 MiB is 77 minutes of store outage without a hole; for a
  ladder of B bit/s it is 256 MiB x 8 / B seconds (:func:`outage_seconds_covered`).
* The backlog is memory: a transcoder process that ends during an outage loses what it
  still holds (it waits up to ``close(timeout)`` for the store first).
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cascade.contract.s3 import S3Error
from cascade.transcoder.recorder import Upload
from cascade.transcoder.s3client import S3Client

log = logging.getLogger("cascade.transcoder.uploader")

__all__ = ["Backlog", "Uploader", "UploaderStats", "outage_seconds_covered"]

RETRY_INITIAL_SECONDS = 0.25
RETRY_MAX_SECONDS = 5.0


def outage_seconds_covered(backlog_bytes: int, bits_per_second: float) -> float:
    """How long the store may be away with nothing lost, at a stream's total bitrate."""
    return backlog_bytes * 8 / bits_per_second if bits_per_second > 0 else float("inf")


class Backlog:
    """The uploads not written yet, oldest first, bounded in bytes. Pure; not thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.items: deque[Upload] = deque()
        self.bytes = 0
        self.lost_segments = 0
        self.lost_bytes = 0

    def add(self, uploads: Iterable[Upload]) -> None:
        for upload in uploads:
            self.items.append(upload)
            self.bytes += len(upload.data)
        while self.bytes > self.max_bytes and self._drop_oldest_segment():
            pass

    def _drop_oldest_segment(self) -> bool:
        for i, upload in enumerate(self.items):
            if upload.segment is not None:
                del self.items[i]
                self.bytes -= len(upload.data)
                self.lost_segments += 1
                self.lost_bytes += len(upload.data)
                return True
        return False  # only inits left: keep them whatever their size

    def head(self) -> Upload | None:
        return self.items[0] if self.items else None

    def done(self, upload: Upload) -> None:
        """The head was written (or refused for good): take it off."""
        if self.items and self.items[0] is upload:
            self.items.popleft()
            self.bytes -= len(upload.data)


@dataclass(frozen=True, slots=True)
class UploaderStats:
    uploaded_objects: int
    uploaded_bytes: int
    backlog_bytes: int
    backlog_objects: int
    lost_segments: int
    refused: int  # objects the store refused for good (4xx)
    failures: int  # attempts that failed and were retried
    requests: int
    oldest_ms: int  # program date-time of the oldest segment this process wrote (0: none)
    newest_ms: int


class Uploader:
    def __init__(
        self,
        client: S3Client,
        *,
        backlog_bytes: int,
        name: str,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self._backlog = Backlog(backlog_bytes)
        self._cond = threading.Condition()
        self._closing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._uploaded_objects = 0
        self._uploaded_bytes = 0
        self._refused = 0
        self._failures = 0
        self._oldest_ms = 0
        self._newest_ms = 0
        self._busy = False
        self._wait = sleep if sleep is not None else self._stop.wait

    # ---- the loop's side: never blocks on the store ------------------------------------

    def submit(self, uploads: list[Upload]) -> None:
        if not uploads:
            return
        with self._cond:
            self._backlog.add(uploads)
            self._cond.notify()

    def stats(self) -> UploaderStats:
        with self._cond:
            b = self._backlog
            return UploaderStats(
                uploaded_objects=self._uploaded_objects,
                uploaded_bytes=self._uploaded_bytes,
                backlog_bytes=b.bytes,
                backlog_objects=len(b.items),
                lost_segments=b.lost_segments,
                refused=self._refused,
                failures=self._failures,
                requests=self.client.requests,
                oldest_ms=self._oldest_ms,
                newest_ms=self._newest_ms,
            )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"upload:{self.name}", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> bool:
        """Write what is left for up to ``timeout`` seconds, then stop; True if all was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify()
            while (self._backlog.items or self._busy) and time.monotonic() < deadline:
                self._cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            drained = not self._backlog.items and not self._busy
        self._stop.set()
        with self._cond:
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, self.client.timeout + 1))
        self.client.close()
        if not drained:
            log.warning(
                "stream %s: %d objects not uploaded at exit",
                self.name,
                self.stats().backlog_objects,
            )
        return drained

    # ---- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        backoff = RETRY_INITIAL_SECONDS
        while not self._stop.is_set():
            with self._cond:
                while self._backlog.head() is None and not self._stop.is_set():
                    self._cond.wait()
                upload = self._backlog.head()
                self._busy = upload is not None
            if upload is None:
                continue
            try:
                self.client.put(upload.key, upload.data, upload.content_type)
            except S3Error as exc:
                if 400 <= exc.status < 500 and exc.status not in (408, 429):
                    log.error("stream %s: the store refused %s: %s", self.name, upload.key, exc)
                    self._finish(upload, written=False)
                    continue
                backoff = self._failed(upload, exc, backoff)
                continue
            except (OSError, http.client.HTTPException) as exc:
                backoff = self._failed(upload, exc, backoff)
                continue
            self._finish(upload, written=True)
            backoff = RETRY_INITIAL_SECONDS

    def _failed(self, upload: Upload, exc: Exception, backoff: float) -> float:
        with self._cond:
            self._failures += 1
            self._busy = False
            first = self._failures == 1 or backoff == RETRY_INITIAL_SECONDS
            self._cond.notify_all()
        if first:
            log.warning("stream %s: upload of %s failed (%s); retrying", self.name, upload.key, exc)
        self._wait(backoff)
        return min(backoff * 2, RETRY_MAX_SECONDS)

    def _finish(self, upload: Upload, *, written: bool) -> None:
        with self._cond:
            self._backlog.done(upload)
            self._busy = False
            if written:
                self._uploaded_objects += 1
                self._uploaded_bytes += len(upload.data)
                if upload.segment is not None:
                    ms = upload.segment.start_ms
                    self._oldest_ms = ms if not self._oldest_ms else min(self._oldest_ms, ms)
                    self._newest_ms = max(self._newest_ms, ms)
            else:
                self._refused += 1
            self._cond.notify_all()
