"""What one stream's packaged entries owe the object store, as uploads. Pure: no I/O, no clock.

The runner gives the recorder the same entries it publishes to Redis. A segment is
uploaded once it is complete, i.e. when the first part of the next one arrives (or the
run ends: :meth:`Recorder.flush`), as one object named by the layout of
:mod:`cascade.contract.recording`; each distinct init goes up once, before the first
segment that needs it (the uploader keeps their order). Renditions not recorded
(``spec.recording.renditions``) are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cascade.contract import recording
from cascade.contract.recording import SegmentName
from cascade.contract.schema import Entry, InitEntry, PartEntry

__all__ = ["Recorder", "Upload"]


@dataclass(frozen=True, slots=True)
class Upload:
    """One object to write. ``segment``: a media segment (droppable when the backlog is full;
    an init never is, segments after it need it)."""

    key: str
    data: bytes
    content_type: str
    segment: SegmentName | None = None


@dataclass(slots=True)
class _Open:
    """The segment being assembled on one rendition."""

    msn: int
    generation: int
    start: float
    init: str
    parts: list[bytes] = field(default_factory=list)
    duration: float = 0.0


class Recorder:
    def __init__(self, stream: str, renditions: Iterable[str], *, prefix: str) -> None:
        self.stream = stream
        self.renditions = frozenset(renditions)
        self.prefix = prefix
        self._init: dict[str, str] = {}  # rendition -> the name of its current init
        self._uploaded_inits: set[tuple[str, str]] = set()
        self._open: dict[str, _Open] = {}

    def entries(self, rendition: str, entries: Sequence[Entry]) -> list[Upload]:
        if rendition not in self.renditions:
            return []
        out: list[Upload] = []
        for entry in entries:
            if isinstance(entry, InitEntry):
                name = recording.init_name(entry.data)
                self._init[rendition] = name
                if (rendition, name) not in self._uploaded_inits:
                    self._uploaded_inits.add((rendition, name))
                    key = recording.init_key(self.prefix, self.stream, rendition, name)
                    out.append(Upload(key, entry.data, "video/mp4"))
            elif isinstance(entry, PartEntry):
                out += self._part(rendition, entry)
        return out

    def _part(self, rendition: str, part: PartEntry) -> list[Upload]:
        out: list[Upload] = []
        current = self._open.get(rendition)
        if current is not None and (
            current.msn != part.msn or current.generation != part.generation
        ):
            out += self._close(rendition)
            current = None
        if current is None:
            init = self._init.get(rendition)
            if init is None:
                return out  # a part before any init: nothing could decode it
            current = _Open(part.msn, part.generation, part.pdt, init.removesuffix(".mp4"))
            self._open[rendition] = current
        current.parts.append(part.data)
        current.duration += part.duration
        return out

    def _close(self, rendition: str) -> list[Upload]:
        current = self._open.pop(rendition, None)
        if current is None or not current.parts:
            return []
        name = SegmentName(
            start_ms=round(current.start * 1000),
            msn=current.msn,
            generation=current.generation,
            duration_us=round(current.duration * 1_000_000),
            init=current.init,
        )
        key = recording.segment_key(self.prefix, self.stream, rendition, name)
        return [Upload(key, b"".join(current.parts), "video/iso.segment", name)]

    def flush(self) -> list[Upload]:
        """The segments still open: the run ended, so they are complete."""
        out: list[Upload] = []
        for rendition in sorted(self._open):
            out += self._close(rendition)
        return out
