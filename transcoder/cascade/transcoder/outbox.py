"""What the packager owes Redis: its ordered commands, kept until Redis surely has them. Pure.

The raw writer (:mod:`cascade.transcoder.resp`) appends parts with ``CLIENT REPLY OFF``:
no answer per part, so a part written to the socket is not known to be in Redis until a
later command that does answer (the health report every second, a segment boundary)
comes back. Three ways to lose parts follow, and the outbox covers each:

* **In flight**: written just before Redis died. Items written on a connection stay in
  ``sent`` until a reply confirms them, then ``retain_seconds`` longer.
* **Acknowledged, then lost**: a replica promoted before replication reached it, a restart
  from a dump older than the last writes. The retained tail covers ``retain_seconds``.
* **Produced while Redis is away**: queued in ``pending`` and written, in order and
  before anything newer, once a connection is back.

After a reconnect the writer reads the last entry of each Redis Stream concerned and
:meth:`Outbox.skip_delivered` drops every item up to the one equal to it (the entry's
fields, data included, are the end of the XADD as written): what Redis has
is not sent again, so a replay adds no duplicate entry (stream ids are assigned by the
server: a duplicate XADD would be a second entry, not an overwrite). What is replayed
beyond that (``SET`` of an init or an archived segment) is idempotent.

Memory is bounded: when the held bytes pass ``max_bytes``, or the oldest waiting segment
is older than ``max_seconds``, whole segments are dropped, oldest first, and counted. A
segment is never cut: one of which a part was already written (it may be in Redis) is
kept, as is the newest segment of each rendition (it is still growing). Inits and ends
(no segment) are never dropped: tiny, and every later part depends on its init.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

Arg = bytes | str | int
Segment = tuple[str, int]  # (rendition, msn)


def arg_bytes(arg: Arg) -> bytes:
    """One command argument as RESP carries it (what Redis stores and returns)."""
    return arg if isinstance(arg, bytes) else str(arg).encode()


def bulk_strings(values: Sequence[bytes]) -> bytes:
    """Values as RESP bulk strings: how an XADD written with them ends."""
    return b"".join(b"$%d\r\n%s\r\n" % (len(v), v) for v in values)


@dataclass(slots=True, eq=False)
class Item:
    """One ordered command: an XADD, or the SET of an init or an archived segment.

    Only the encoded command is kept (the bytes of a part once, not twice): the budget
    counts what is really held.
    """

    seq: int
    data: bytes  # the command, RESP-encoded
    at: float  # when the packager produced it (the writer's clock)
    segment: Segment | None  # what it belongs to; None: never dropped
    stream: str | None  # the Redis Stream an XADD appends to; None: not an XADD
    written: bool = False  # written to a connection at least once: it may be in Redis
    gone: bool = False  # dropped, or found in Redis already: never written again

    def appends(self, fields: Sequence[bytes]) -> bool:
        """Is this the XADD of an entry with exactly these fields (as XRANGE gives them)?"""
        return self.stream is not None and bool(fields) and self.data.endswith(bulk_strings(fields))


class Outbox:
    def __init__(self, *, max_bytes: int, max_seconds: float, retain_seconds: float) -> None:
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.retain_seconds = retain_seconds
        self._seq = 0
        # Written on the current connection, oldest first; confirmed up to _confirmed.
        self._sent: deque[Item] = deque()
        self._confirmed = -1
        # Not yet written on the current connection, oldest first (gone ones skipped).
        self._pending: deque[Item] = deque()
        self.pending_items = 0
        self.pending_bytes = 0
        self.bytes = 0  # everything held: sent (retained or unconfirmed) and pending
        # Never-written pending items by segment, in the order segments first appeared:
        # the candidates for dropping.
        self._droppable: dict[Segment, list[Item]] = {}
        self._newest: dict[str, int] = {}  # rendition -> newest msn queued
        self._last_written: dict[str, int] = {}  # rendition -> msn of the last item written
        self.last_written_seq = -1
        self.lost_segments = 0
        self.lost_bytes = 0
        self.skipped_items = 0  # replayed candidates that Redis had already

    # ---- items --------------------------------------------------------------------------

    def item(self, data: bytes, at: float, segment: Segment | None, stream: str | None) -> Item:
        self._seq += 1
        return Item(self._seq, data, at, segment, stream)

    @property
    def idle(self) -> bool:
        """Nothing waits to be written: new items may go straight to the connection."""
        return self.pending_items == 0

    @property
    def settled(self) -> bool:
        """Nothing waits, and Redis confirmed everything written."""
        return self.pending_items == 0 and (not self._sent or self._sent[-1].seq <= self._confirmed)

    # ---- the connected path ---------------------------------------------------------------

    def wrote(self, items: Iterable[Item], now: float) -> None:
        """Items just written to the connection (the hot path: no per-item scan)."""
        sent, last_written = self._sent, self._last_written
        for item in items:
            item.written = True
            sent.append(item)
            self.bytes += len(item.data)
            if item.segment is not None:
                last_written[item.segment[0]] = item.segment[1]
            self.last_written_seq = item.seq
        self._trim(now)

    def confirm(self, seq: int, now: float) -> None:
        """Redis answered a command written after item ``seq``: it has everything up to it."""
        if seq > self._confirmed:
            self._confirmed = seq
        self._trim(now)

    def _trim(self, now: float) -> None:
        sent, horizon = self._sent, now - self.retain_seconds
        while sent and sent[0].seq <= self._confirmed and sent[0].at < horizon:
            self.bytes -= len(sent.popleft().data)

    # ---- the disconnected path ------------------------------------------------------------

    def queue(self, items: Iterable[Item], now: float) -> list[Segment]:
        """Items to write once a connection takes them; returns the segments dropped."""
        for item in items:
            self._pending.append(item)
            self.pending_items += 1
            self.pending_bytes += len(item.data)
            self.bytes += len(item.data)
            seg = item.segment
            if seg is None:
                continue
            rendition, msn = seg
            if msn > self._newest.get(rendition, msn - 1):
                self._newest[rendition] = msn
            if msn > self._last_written.get(rendition, -1) and not item.written:
                self._droppable.setdefault(seg, []).append(item)
        return self._enforce(now)

    def _enforce(self, now: float) -> list[Segment]:
        dropped: list[Segment] = []
        while self._droppable:
            victim = next(
                (s for s in self._droppable if s[1] != self._newest.get(s[0])),
                None,
            )
            if victim is None:
                break
            oldest = self._droppable[victim][0]
            if self.bytes <= self.max_bytes and now - oldest.at <= self.max_seconds:
                break
            for item in self._droppable.pop(victim):
                self._forget(item)
                self.lost_bytes += len(item.data)
                item.data = b""  # the bytes are freed now, not when the deque reaches it
            self.lost_segments += 1
            dropped.append(victim)
        return dropped

    def _forget(self, item: Item) -> None:
        item.gone = True
        self.pending_items -= 1
        self.pending_bytes -= len(item.data)
        self.bytes -= len(item.data)

    def disconnected(self) -> None:
        """The connection is gone: whatever it was given may be in Redis or not."""
        if self._sent:
            self._sent.extend(self._pending)
            self._pending, self._sent = self._sent, deque()
            self.pending_items = sum(1 for i in self._pending if not i.gone)
            self.pending_bytes = sum(len(i.data) for i in self._pending if not i.gone)
        self._confirmed = -1
        self.last_written_seq = -1

    def streams_to_check(self) -> list[str]:
        """Streams with an item that may already be in Redis (its tail decides)."""
        seen: dict[str, None] = {}
        for item in self._pending:
            if item.written and not item.gone and (stream := item.stream) is not None:
                seen[stream] = None
        return list(seen)

    def skip_delivered(self, tails: Mapping[str, Sequence[bytes] | None]) -> int:
        """Drop the items Redis has: per stream, all up to the one equal to its last entry.

        ``tails``: each stream's last entry's fields (None: the stream is empty or gone,
        so nothing of it is there). Redis applies one connection's commands in order, and
        its snapshots and replicas hold a prefix of them, so an entry being there means
        every earlier one of the same stream is there too.
        """
        skipped = 0
        for stream, tail in tails.items():
            if not tail:
                continue
            candidates = [
                i for i in self._pending if i.written and not i.gone and i.stream == stream
            ]
            match = next((i for i in reversed(candidates) if i.appends(tail)), None)
            if match is None:
                continue
            for item in candidates:
                if item.seq > match.seq:
                    break
                self._forget(item)
                skipped += 1
        self.skipped_items += skipped
        return skipped

    def take(self, max_bytes: int) -> list[Item]:
        """The next pending items, oldest first, about ``max_bytes`` of them (at least one)."""
        out: list[Item] = []
        size = 0
        pending = self._pending
        while pending and (size < max_bytes or not out):
            item = pending.popleft()
            if item.gone:
                continue
            self.pending_items -= 1
            self.pending_bytes -= len(item.data)
            self.bytes -= len(item.data)  # wrote() counts it again, among the sent
            if item.segment is not None:
                # Part of it is about to be written: the rest is no longer droppable.
                self._droppable.pop(item.segment, None)
            out.append(item)
            size += len(item.data)
        return out
