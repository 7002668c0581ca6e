"""The transcoder's I/O shell: runs FFmpeg, feeds the packager, hands commands to Redis.

One :class:`StreamRunner` per LiveStream. Each FFmpeg run is a *generation*: when the
input drops or FFmpeg dies, the runner restarts it with exponential backoff, and the
next run continues the segment numbering after an ``EXT-X-DISCONTINUITY``. A new process
(a new pod, ``cascade up`` starting it again) goes on from what Redis holds of the stream
(:func:`read_resume`), so edges see the next segment of a new generation.

What the packaged entries owe Redis (appends, inits, archived segments, the meta, the
health report and its re-asserts) is built by :mod:`cascade.transcoder.publish`; the
runner supervises FFmpeg, plumbs its pipes and gives the commands to the writer.

Bad media from FFmpeg (:class:`~cascade.transcoder.packager.MediaError`) ends the run like
an FFmpeg failure. Any other exception while packaging is a bug: logged with its
traceback, reported in health as ``InternalError``, and the run is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cascade.contract import schema
from cascade.contract.s3 import Credentials
from cascade.contract.schema import Entry, Health, PartEntry, SchemaError, StreamState
from cascade.contract.settings import TranscoderSettings
from cascade.contract.spec import LiveStream, SourceType
from cascade.transcoder.argv import Inputs, build_argv
from cascade.transcoder.health import RateMeter, parse_packet_line, speed
from cascade.transcoder.packager import MediaError, RenditionPackager, Timeline
from cascade.transcoder.publish import FRESH, Resume, StreamPublisher, resume_point
from cascade.transcoder.recorder import Recorder
from cascade.transcoder.resp import RespWriter
from cascade.transcoder.s3client import S3Client
from cascade.transcoder.uploader import Uploader

log = logging.getLogger("cascade.transcoder")

READ_CHUNK = 1 << 20
# How long a starting process waits for Redis to say where its stream stopped.
RESUME_TIMEOUT_SECONDS = 5.0
# Entries read per step, past the newest one, when a parts stream does not end in a part.
RESUME_PAGE = 16
# How long a stopping process waits for the object store to take its last segments.
UPLOAD_DRAIN_SECONDS = 5.0


@dataclass(slots=True)
class RunOutcome:
    reason: str  # CamelCase, e.g. "InputSilent", "FFmpegExited", "InternalError"
    message: str
    was_live: bool


def run_outcome(
    *,
    internal_error: str | None,
    silent_for: float | None,
    returncode: int | None,
    tail: str,
    was_live: bool,
) -> RunOutcome:
    """Why one FFmpeg run ended, from what the runner saw. Pure.

    A bug of ours first (the runner killed FFmpeg for it), then silence (it killed FFmpeg
    for that), then how FFmpeg exited, with its last words.
    """
    if internal_error is not None:
        return RunOutcome("InternalError", internal_error, was_live)
    if silent_for is not None:
        return RunOutcome("InputSilent", f"no media from the input for {silent_for:g} s", was_live)
    if returncode == 0:
        return RunOutcome("InputEnded", tail or "the input ended", was_live)
    how = (
        f"signal {-returncode}"
        if returncode is not None and returncode < 0
        else f"code {returncode}"
    )
    return RunOutcome(
        "FFmpegExited", f"ffmpeg exited with {how}" + (f": {tail}" if tail else ""), was_live
    )


async def read_resume(redis: Redis, stream: str, renditions: Sequence[str]) -> Resume:
    """Where a new process of ``stream`` goes on from (:func:`~cascade.transcoder.publish.resume_point`).

    One round trip: the meta's generation and each parts stream's newest entry
    (``XREVRANGE ... COUNT 1``). A stream that ends in entries other than a part (an end,
    inits of runs that never produced one) is read on, a few entries at a time, to its
    last part. Raises what redis-py raises when Redis cannot be read.
    """
    keys = [schema.parts_key(stream, r) for r in renditions]
    pipe = redis.pipeline(transaction=False)
    pipe.hget(schema.meta_key(stream), "generation")
    for key in keys:
        pipe.xrevrange(key, count=1)
    raw = await pipe.execute()
    try:
        meta_generation = None if raw[0] is None else int(raw[0])
    except ValueError:
        log.warning("stream %s: meta generation %r is not a number", stream, raw[0])
        meta_generation = None
    tails = [await _tail(redis, key, raw[1 + i]) for i, key in enumerate(keys)]
    return resume_point(meta_generation, tails)


async def _tail(redis: Redis, key: str, newest: list[Any]) -> list[Entry]:
    """The stream's entries, newest first, down to its last part (or its start)."""
    out: list[Entry] = []
    page, asked = newest, 1
    while True:
        for entry_id, fields in page:
            try:
                entry = schema.decode_entry(fields)
            except SchemaError as exc:
                log.warning("%s %s: %s", key, entry_id, exc)
                continue
            out.append(entry)
            if isinstance(entry, PartEntry):
                return out
        if len(page) < asked:
            return out  # the whole stream was read
        before = cast(bytes, page[-1][0]).decode()
        asked = RESUME_PAGE
        page = cast(list[Any], await redis.xrevrange(key, max=f"({before}", count=asked))


@dataclass(slots=True)
class _Status:
    state: StreamState = StreamState.STARTING
    reason: str = "Starting"
    restarts: int = 0
    last_error: str = ""
    last_part_at: float = 0.0
    last_input_at: float = 0.0
    started_at: float = 0.0
    run_started_at: float = 0.0
    run_media: float = 0.0
    input_meter: RateMeter = field(default_factory=RateMeter)


class StreamRunner:
    def __init__(
        self,
        stream: LiveStream,
        redis: Redis,
        settings: TranscoderSettings,
        *,
        inputs: Inputs | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream
        self.name = stream.name
        self.spec = stream.spec
        self.redis = redis
        self.settings = settings
        self.inputs = inputs if inputs is not None else Inputs()
        self.clock = clock
        self.status = _Status()
        # Where this process starts: read from Redis when it runs (see read_resume).
        self.generation = FRESH.generation
        self.next_msn = FRESH.first_msn
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=20)
        # This run's bug, if one ended it, and the renditions no longer fed (their
        # packager raised: its state is not to be trusted).
        self._internal_error: str | None = None
        self._failed: set[str] = set()
        self.publisher = StreamPublisher(
            stream,
            archive_seconds=settings.archive_seconds,
            health_interval_seconds=settings.health_interval_seconds,
        )
        self.writer = RespWriter(
            settings.redis_url,
            buffer_seconds=settings.outage_buffer_seconds,
            buffer_bytes=settings.outage_buffer_bytes,
            replay_seconds=settings.redis_replay_seconds,
            stall_seconds=settings.redis_stall_seconds,
            name=self.name,
        )
        # Recording: the recorder says what to upload, the uploader's thread writes it.
        self.recorder: Recorder | None = None
        self.uploader: Uploader | None = None
        recorded = self.spec.recorded_renditions
        if recorded and settings.s3_enabled:
            self.recorder = Recorder(self.name, recorded, prefix=settings.s3_prefix)
            client = S3Client(
                settings.s3_endpoint,
                settings.s3_bucket,
                Credentials(
                    settings.s3_access_key_id, settings.s3_secret_access_key.get_secret_value()
                ),
                region=settings.s3_region,
            )
            self.uploader = Uploader(
                client, backlog_bytes=settings.recording_backlog_bytes, name=self.name
            )
        elif recorded:
            log.warning(
                "stream %s: spec.recording is enabled but no object store is configured "
                "(CASCADE_S3_ENDPOINT): nothing is recorded",
                self.name,
            )

    # ---- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; then end the stream cleanly (EXT-X-ENDLIST)."""
        self.status.started_at = self.clock()
        await self._resume()
        try:
            await self.redis.sadd(schema.STREAMS_SET, self.name)
        except (RedisError, OSError) as exc:  # the health loop adds it again, every interval
            log.warning("stream %s: redis not reachable yet: %s", self.name, exc)
        # Parts produced before the connection is up wait in the writer's outbox.
        await self.writer.start()
        if self.uploader is not None:
            self.uploader.start()
        health_task = asyncio.create_task(self._health_loop(), name=f"health:{self.name}")
        backoff = self.settings.backoff_initial_seconds
        try:
            while True:
                outcome = await self._run_once()
                self.status.restarts += 1
                self.status.state = StreamState.RECONNECTING
                self.status.reason = outcome.reason
                self.status.last_error = outcome.message
                log.warning(
                    "stream %s: %s (%s); restarting in %.1fs",
                    self.name,
                    outcome.reason,
                    outcome.message,
                    backoff,
                )
                await self._write_health()
                await asyncio.sleep(backoff)
                backoff = (
                    self.settings.backoff_initial_seconds
                    if outcome.was_live
                    else min(backoff * 2, self.settings.backoff_max_seconds)
                )
                self.generation += 1
        finally:
            health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await health_task
            await self._kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(self._end())
            await self.writer.close()
            if self.uploader is not None:
                self._record_flush()
                await asyncio.shield(asyncio.to_thread(self.uploader.close, UPLOAD_DRAIN_SECONDS))

    async def _resume(self) -> None:
        """Go on from where the last process of this stream stopped, as Redis holds it."""
        renditions = [r.name for r in self.spec.transcode.renditions]
        try:
            resume = await asyncio.wait_for(
                read_resume(self.redis, self.name, renditions), RESUME_TIMEOUT_SECONDS
            )
        except (RedisError, OSError, TimeoutError) as exc:
            # Right for a new stream, or a Redis that comes back empty. If it comes back
            # holding this stream's segments, edges ignore these parts until their
            # numbers pass the old ones: restart the transcoder once Redis is reachable.
            log.warning(
                "stream %s: redis not reachable at start (%s): numbering from generation 0, "
                "segment 0",
                self.name,
                exc or type(exc).__name__,
            )
            return
        self.generation, self.next_msn = resume.generation, resume.first_msn
        if resume != FRESH:
            log.info(
                "stream %s: going on from redis: generation %d, segment %d",
                self.name,
                resume.generation,
                resume.first_msn,
            )

    async def _end(self) -> None:
        self.status.state = StreamState.ENDED
        self.status.reason = "Stopped"
        # On the parts' own connection, so the end never overtakes the last part.
        self.writer.publish(self.publisher.end(self.generation))
        if not await self.writer.flush(2):
            log.warning("stream %s: ended before redis confirmed its last parts", self.name)
        await self.redis.hset(schema.health_key(self.name), mapping=self._health().encode())  # type: ignore[arg-type]

    async def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # ---- one FFmpeg run --------------------------------------------------------------

    async def _run_once(self) -> RunOutcome:
        renditions = self.spec.transcode.renditions
        timeline = Timeline()
        packagers = {
            r.name: RenditionPackager(
                segment_target=self.spec.delivery.segment_duration_ms / 1000,
                timeline=timeline,
                first_msn=self.next_msn,
                generation=self.generation,
            )
            for r in renditions
        }
        pipes = [os.pipe() for _ in range(len(renditions) + 1)]
        read_fds = [r for r, _ in pipes]
        write_fds = [w for _, w in pipes]
        sdp_file = None
        inputs = self.inputs
        if self.spec.source.type is SourceType.RTP:
            assert self.spec.source.rtp is not None
            sdp_file = tempfile.NamedTemporaryFile("w", suffix=".sdp", delete=False)  # noqa: SIM115
            sdp_file.write(self.spec.source.rtp.sdp)
            sdp_file.close()
            inputs = dataclasses.replace(inputs, sdp_path=sdp_file.name)
        argv = build_argv(
            self.spec, inputs, ffmpeg=self.settings.ffmpeg, fds=(write_fds[:-1], write_fds[-1])
        )
        self.status.state = StreamState.STARTING
        self.status.reason = (
            "Starting" if self.spec.source.type is SourceType.TEST else "WaitingForInput"
        )
        self.status.run_started_at = self.clock()
        self._stderr_tail.clear()
        self._internal_error = None
        self._failed.clear()
        log.info("stream %s: starting ffmpeg (generation %d)", self.name, self.generation)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=write_fds,
                # Own process group: a Ctrl-C in the terminal reaches us, and we stop FFmpeg.
                start_new_session=True,
            )
        except OSError as exc:
            for fd in read_fds + write_fds:
                os.close(fd)
            return RunOutcome("FFmpegNotStarted", str(exc), was_live=False)
        for fd in write_fds:
            os.close(fd)
        proc = self._proc
        tasks: list[asyncio.Future[None]] = [
            await self._read_rendition(fd, r.name, packagers[r.name])
            for fd, r in zip(read_fds[:-1], renditions, strict=True)
        ]
        tasks.append(asyncio.create_task(self._read_packet_log(read_fds[-1])))
        stderr_task = asyncio.create_task(self._read_stderr(proc))
        watchdog = asyncio.create_task(self._watchdog())
        exit_wait = asyncio.create_task(proc.wait())
        try:
            done, _ = await asyncio.wait({watchdog, exit_wait}, return_when=asyncio.FIRST_COMPLETED)
            silent = watchdog in done and watchdog.result()
            if silent:
                await self._kill()
            # Drain what FFmpeg wrote before it went away: those parts are real.
            await asyncio.wait(tasks, timeout=2)
            await asyncio.wait({stderr_task}, timeout=1)
        finally:
            waits: list[asyncio.Future[Any]] = [*tasks, stderr_task, watchdog, exit_wait]
            for t in waits:
                t.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            await self._kill()
            self._record_flush()  # the run's last segments are complete now
            if sdp_file is not None:
                with contextlib.suppress(OSError):
                    os.unlink(sdp_file.name)
        self.next_msn = max(p.next_msn for p in packagers.values())
        return run_outcome(
            internal_error=self._internal_error,
            silent_for=self.settings.stream_timeout if silent else None,
            returncode=proc.returncode,
            tail=self._stderr_tail[-1] if self._stderr_tail else "",
            was_live=any(p.stats.parts for p in packagers.values()),
        )

    async def _watchdog(self) -> bool:
        """True when the input went silent (no part for STREAM_TIMEOUT after it was live)."""
        timeout = self.settings.stream_timeout
        idle_after = self.spec.idle_timeout_seconds
        while True:
            # Coarse on purpose: every wake-up costs the packager CPU; silence is detected
            # within a quarter of STREAM_TIMEOUT (at most 2 s) late.
            await asyncio.sleep(min(2.0, timeout / 4))
            now = self.clock()
            last = self.status.last_part_at
            if last >= self.status.run_started_at and last > 0:
                if now - last > timeout:
                    return True
                continue
            idle = idle_after and now - self.status.run_started_at > idle_after
            if idle and self.status.state is not StreamState.IDLE:
                self.status.state = StreamState.IDLE
                self.status.reason = "NoInput"
                self.status.last_error = f"no input for {idle_after} s"

    async def _open_reader(self, fd: int) -> asyncio.StreamReader:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_CHUNK * 4)
        pipe = os.fdopen(fd, "rb", buffering=0)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        return reader

    async def _read_rendition(
        self, fd: int, rendition: str, packager: RenditionPackager
    ) -> asyncio.Future[None]:
        """Feed the packager straight from the pipe's callback: no task switch per read.

        Returns a future that completes when FFmpeg closes the pipe.
        """
        loop = asyncio.get_running_loop()
        closed: asyncio.Future[None] = loop.create_future()
        runner = self

        class Pipe(asyncio.Protocol):
            def data_received(self, data: bytes) -> None:
                runner._on_media(rendition, packager, data)

            def connection_lost(self, exc: Exception | None) -> None:
                if not closed.done():
                    closed.set_result(None)

        await loop.connect_read_pipe(Pipe, os.fdopen(fd, "rb", buffering=0))
        return closed

    def _on_media(self, rendition: str, packager: RenditionPackager, data: bytes) -> None:
        if rendition in self._failed:
            return  # this run is ending
        try:
            entries = packager.feed(data, self.clock())
            if entries:
                self._publish(rendition, packager, entries)
        except MediaError as exc:  # a broken fragment from FFmpeg: end this run
            self._stderr_tail.append(f"packager: {exc}")
            log.error("stream %s/%s: %s", self.name, rendition, exc)
            self._end_run(rendition)
        except Exception as exc:  # a bug of ours, not bad media: say so, and start again
            log.exception("stream %s/%s: internal error while packaging", self.name, rendition)
            if self._internal_error is None:
                self._internal_error = f"{type(exc).__name__} in the packager: {exc}"
            self._end_run(rendition)

    def _end_run(self, rendition: str) -> None:
        """Stop feeding the rendition and kill FFmpeg: the run ends, the next one starts."""
        self._failed.add(rendition)
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()

    async def _read_packet_log(self, fd: int) -> None:
        reader = await self._open_reader(fd)
        meter = self.status.input_meter
        while line := await reader.readline():
            packet = parse_packet_line(line.decode(errors="replace"))
            if packet is not None:
                now = self.clock()
                meter.add(now, packet.size, 1 if packet.stream == 0 else 0)
                self.status.last_input_at = now

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").strip()
            if text:
                self._stderr_tail.append(text)
                log.debug("ffmpeg[%s]: %s", self.name, text)

    # ---- publishing ------------------------------------------------------------------

    def _publish(self, rendition: str, packager: RenditionPackager, entries: list[Entry]) -> None:
        """Hand the entries' commands (built by the publisher) to the writer, now."""
        out = self.publisher.entries(rendition, entries)
        if any(isinstance(e, PartEntry) for e in entries):
            self._note_part(packager)
        self.writer.publish(out.commands, replies=out.replies, state=out.state)
        if self.recorder is not None and self.uploader is not None:
            # Only a deque append: the uploader's thread does the I/O.
            self.uploader.submit(self.recorder.entries(rendition, entries))

    def _record_flush(self) -> None:
        if self.recorder is not None and self.uploader is not None:
            self.uploader.submit(self.recorder.flush())

    def _note_part(self, packager: RenditionPackager) -> None:
        self.status.last_part_at = packager.stats.last_part_at
        self.status.run_media = packager.stats.media_end
        if self.status.state is not StreamState.LIVE:
            self.status.state = StreamState.LIVE
            self.status.reason = "Ingesting"

    # ---- health ----------------------------------------------------------------------

    def _health(self) -> Health:
        now = self.clock()
        s = self.status
        return Health(
            state=s.state,
            input_bitrate_kbps=s.input_meter.bitrate_kbps(now),
            fps=s.input_meter.fps(now),
            speed=speed(s.run_media, now - s.run_started_at) if s.run_started_at else 0.0,
            last_part_at=s.last_part_at,
            restarts=s.restarts,
            last_error=s.last_error,
            reason=s.reason,
            updated_at=now,
            lost_segments=self.writer.outbox.lost_segments,
            redis_backlog_bytes=self.writer.outbox.pending_bytes,
            **self._recording_health(),
        )

    def _recording_health(self) -> dict[str, Any]:
        if self.uploader is None:
            return {}
        u = self.uploader.stats()
        return {
            "recording": True,
            "recording_bytes": u.uploaded_bytes,
            "recording_backlog_bytes": u.backlog_bytes,
            "recording_lost_segments": u.lost_segments,
            "recording_oldest": u.oldest_ms / 1000,
            "recording_newest": u.newest_ms / 1000,
        }

    async def _write_health(self) -> None:
        # On the parts' connection: no awaiting, and health never overtakes a part.
        self.writer.send_state(*self.publisher.health(self._health()))

    async def _health_loop(self) -> None:
        while True:
            await self._write_health()
            await asyncio.sleep(self.settings.health_interval_seconds)
