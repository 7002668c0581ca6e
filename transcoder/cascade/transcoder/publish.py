"""What one stream's packaged entries owe Redis, as commands. Pure: no I/O, no clock.

The runner hands each rendition's entries (from its
:class:`~cascade.transcoder.packager.RenditionPackager`) to one :class:`StreamPublisher`
per stream and gives what comes back to the writer (:mod:`cascade.transcoder.resp`):

* every entry is appended to the rendition's parts stream: ``XADD ... MAXLEN ~ n``, the
  window plus slack (:func:`window_entries`);
* an init is also ``SET`` as the rendition's current init (edges joining read it);
* when a part starts a new segment the one before it is complete: its bytes are ``SET`` as
  the archived segment, with a TTL (``archive_seconds``; 0 archives nothing);
* the stream's meta (``HSET``) once every rendition's init of the generation is known (the
  codecs come from it) and, for passthrough, each rendition's peak bandwidth was measured
  over a whole segment; once per generation;
* the health report, with the re-asserts that make a Redis that restarted empty whole again
  within one health interval (:meth:`StreamPublisher.health`).

The ordered commands carry the segment they belong to (the outbox drops whole segments
in a long outage); inits and ends belong to none. One part's append alone is the steady
state, ten a second per rendition: it goes with replies off (see
:meth:`~cascade.transcoder.resp.RespWriter.publish`).

Where a restarted transcoder process goes on from is decided here too
(:func:`resume_point`), from what the runner read in Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cascade.cmaf import parse_init
from cascade.contract import schema
from cascade.contract.schema import (
    EndEntry,
    Entry,
    Health,
    InitEntry,
    PartEntry,
    RenditionInfo,
    StreamMeta,
    StreamState,
)
from cascade.contract.spec import LiveStream, Mode
from cascade.transcoder.outbox import Arg, Segment

__all__ = [
    "Command",
    "Ordered",
    "Publish",
    "Resume",
    "StreamPublisher",
    "health_ttl_seconds",
    "resume_point",
    "window_entries",
]

Command = list[Arg]
Ordered = tuple[Command, Segment | None]  # a command, and the segment it belongs to


def window_entries(stream: LiveStream) -> int:
    """The parts streams' ``MAXLEN ~``: the live window in entries, plus slack."""
    d = stream.spec.delivery
    parts_per_segment = max(1, d.segment_duration_ms // d.part_duration_ms)
    # The window plus slack: a segment longer than the target (passthrough) has more parts.
    return (d.window_segments + 2) * parts_per_segment * 2 + 8


def health_ttl_seconds(health_interval_seconds: float) -> int:
    """Stale health must vanish: a dead transcoder cannot claim to be live."""
    return max(5, int(health_interval_seconds * 10))


@dataclass(frozen=True, slots=True)
class Publish:
    """One batch for the writer: ordered commands, then state commands."""

    commands: list[Ordered]
    state: list[Command]  # latest value only (the meta): skipped while Redis is away
    replies: bool  # False: the steady state, one part's XADD, sent with replies off


def _hset(key: str, fields: dict[str, str]) -> Command:
    command: Command = ["HSET", key]
    for name, value in fields.items():
        command += (name, value)
    return command


class StreamPublisher:
    """The per-stream publishing state: inits, peak bandwidths, segments being archived."""

    def __init__(
        self, stream: LiveStream, *, archive_seconds: float, health_interval_seconds: float
    ) -> None:
        self.name = stream.name
        self.spec = stream.spec
        self.maxlen = window_entries(stream)
        self.archive_seconds = archive_seconds
        self.health_ttl = health_ttl_seconds(health_interval_seconds)
        d = self.spec.delivery
        self._archive_ttl = schema.archive_ttl_seconds(
            archive_seconds, d.segment_duration_ms / 1000, d.window_segments
        )
        self._passthrough = self.spec.transcode.mode is Mode.PASSTHROUGH
        self.inits: dict[str, bytes] = {}  # rendition -> its latest init
        self.peak_bps: dict[str, float] = {}  # rendition -> peak over whole segments
        self.meta: StreamMeta | None = None  # the last meta built (re-asserted with health)
        self._meta_gen = -1  # the generation the meta was last built for
        # rendition -> (msn, bytes of its parts so far): archived once the segment completes
        self._segment_parts: dict[str, tuple[int, list[bytes]]] = {}
        self._seg_bytes: dict[str, tuple[int, int, float]] = {}  # rendition -> (msn, bytes, dur)

    # ---- entries ----------------------------------------------------------------------

    def xadd(self, rendition: str, entry: Entry) -> Command:
        args: Command = [
            "XADD",
            schema.parts_key(self.name, rendition),
            "MAXLEN",
            "~",
            self.maxlen,
            "*",
        ]
        for name, value in schema.encode_entry(entry).items():
            args += (name, value)
        return args

    def entries(self, rendition: str, entries: Sequence[Entry]) -> Publish:
        """The commands for one rendition's entries (as one packager feed returned them).

        Each ordered command carries the segment it belongs to, so that a long outage drops
        whole segments; inits and ends belong to none and are always kept. The meta is
        state: skipped while Redis is away, re-asserted with every health report.
        """
        commands: list[Ordered] = []
        for entry in entries:
            segment: Segment | None = None
            if isinstance(entry, InitEntry):
                self.inits[rendition] = entry.data
                commands.append((["SET", schema.init_key(self.name, rendition), entry.data], None))
            elif isinstance(entry, PartEntry):
                self._track_bandwidth(rendition, entry)
                archive = self._archive(rendition, entry)
                if archive is not None:
                    commands.append(archive)
                segment = (rendition, entry.msn)
            commands.append((self.xadd(rendition, entry), segment))
        meta = self._meta_if_ready(entries[-1].generation) if entries else None
        state = [_hset(schema.meta_key(self.name), meta.encode())] if meta is not None else []
        steady = len(commands) == 1 and isinstance(entries[0], PartEntry) and meta is None
        return Publish(commands, state, replies=not steady)

    def end(self, generation: int) -> list[Ordered]:
        """The end of the stream (EXT-X-ENDLIST), on every rendition."""
        return [
            (self.xadd(r.name, EndEntry(generation)), None) for r in self.spec.transcode.renditions
        ]

    def _archive(self, rendition: str, part: PartEntry) -> Ordered | None:
        """When a segment completes, one key with its bytes for requests past the window."""
        if self.archive_seconds <= 0:
            return None
        msn, parts = self._segment_parts.get(rendition, (part.msn, []))
        command: Ordered | None = None
        if part.msn != msn and parts:
            key = schema.archive_segment_key(self.name, rendition, msn)
            command = (["SET", key, b"".join(parts), "EX", self._archive_ttl], (rendition, msn))
            parts = []
        parts.append(part.data)
        self._segment_parts[rendition] = (part.msn, parts)
        return command

    def _track_bandwidth(self, rendition: str, part: PartEntry) -> None:
        msn, size, dur = self._seg_bytes.get(rendition, (part.msn, 0, 0.0))
        if part.msn != msn:
            if dur > 0:
                self.peak_bps[rendition] = max(self.peak_bps.get(rendition, 0.0), size * 8 / dur)
            msn, size, dur = part.msn, 0, 0.0
        self._seg_bytes[rendition] = (msn, size + len(part.data), dur + part.duration)

    def _meta_if_ready(self, generation: int) -> StreamMeta | None:
        """The stream's meta once every rendition's init is known (codecs come from it)."""
        if self._meta_gen == generation:
            return None
        renditions = self.spec.transcode.renditions
        if any(r.name not in self.inits for r in renditions):
            return None
        if self._passthrough and any(r.name not in self.peak_bps for r in renditions):
            return None  # bandwidth unknown until a whole segment was measured
        transcode = self.spec.transcode
        audio = transcode.audio.bitrate_kbps * 1000 if transcode.audio.enabled else 0
        infos = []
        for r in renditions:
            init = parse_init(self.inits[r.name])
            configured = (
                0 if self._passthrough else int((r.video_bitrate_kbps * 1000 + audio) * 1.1)
            )
            peak = int(self.peak_bps.get(r.name, 0.0))
            video = init.video
            infos.append(
                RenditionInfo(
                    name=r.name,
                    bandwidth=max(configured, peak),
                    codecs=init.codecs,
                    width=(video.width if video is not None else None) or r.width,
                    height=(video.height if video is not None else None) or r.height,
                    frame_rate=float(transcode.frame_rate),
                )
            )
        self._meta_gen = generation
        d = self.spec.delivery
        self.meta = StreamMeta(
            renditions=tuple(infos),
            part_target=d.part_duration_ms / 1000,
            segment_target=d.segment_duration_ms / 1000,
            window_segments=d.window_segments,
            state=StreamState.LIVE,
            generation=generation,
            access=d.access.value,
        )
        return self.meta

    # ---- health -----------------------------------------------------------------------

    def health(self, health: Health) -> list[Command]:
        """The health report with a TTL, and what edges need to find the stream again.

        Re-asserted every health interval, so a Redis that restarted empty is whole again
        within one: the stream set, the meta, and each init (``NX``: never over a newer one).
        """
        key = schema.health_key(self.name)
        commands: list[Command] = [
            _hset(key, health.encode()),
            ["EXPIRE", key, self.health_ttl],
            ["SADD", schema.STREAMS_SET, self.name],
        ]
        if self.meta is not None:
            commands.append(_hset(schema.meta_key(self.name), self.meta.encode()))
        for rendition, init in self.inits.items():
            commands.append(["SET", schema.init_key(self.name, rendition), init, "NX"])
        return commands


# ---- where a restarted process goes on from -------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    """The first generation and segment number of a transcoder process."""

    generation: int
    first_msn: int


FRESH = Resume(generation=0, first_msn=0)


def resume_point(meta_generation: int | None, tails: Iterable[Sequence[Entry]]) -> Resume:
    """Where a transcoder process starts, from what Redis holds of its stream.

    ``meta_generation``: the stored meta's generation (None: no meta). ``tails``: per
    rendition, the newest entries of its parts stream, newest first, down to its last part
    (an end, or the inits of runs that never produced a part, may come after it).

    A process started again (a new pod, ``cascade up`` restarting it) must go on where the
    last one stopped: edges ignore parts at or below the msn they hold, so numbering from 0
    again freezes their playlists. The new generation is above every one Redis shows (the
    meta's, and the entries' own: a run's parts may come before its meta is written), so
    edges see a new init and an EXT-X-DISCONTINUITY; the first segment follows the newest
    one of any rendition. Nothing there (a new stream, or one whose keys were removed):
    generation 0, msn 0.
    """
    generations = [] if meta_generation is None else [meta_generation]
    msns: list[int] = []
    for tail in tails:
        for entry in tail:
            generations.append(entry.generation)
            if isinstance(entry, PartEntry):
                msns.append(entry.msn)
    return Resume(
        generation=max(generations) + 1 if generations else 0,
        first_msn=max(msns) + 1 if msns else 0,
    )
