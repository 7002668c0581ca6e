"""Health figures from what FFmpeg reports: pure bookkeeping, no I/O.

FFmpeg's last output (``-c copy -f framecrc``) lists every compressed input packet:
``stream_index, dts, pts, duration, size, crc[, flags]``. Summing sizes over a sliding
window gives the true input bitrate; counting video packets gives the input frame rate.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Packet:
    stream: int
    dts: int
    size: int


def parse_packet_line(line: str) -> Packet | None:
    """One framecrc line, or None for comments and anything that is not a packet."""
    if not line or line.startswith("#"):
        return None
    cols = line.split(",")
    if len(cols) < 6:
        return None
    try:
        return Packet(stream=int(cols[0]), dts=int(cols[1]), size=int(cols[4]))
    except ValueError:
        return None


@dataclass(slots=True)
class RateMeter:
    """Bytes and video frames over the last ``window`` seconds.

    For the first ``window`` seconds after its first packet the meter has not seen a
    whole window: dividing by the window then read half the true rate one second in
    (``/status`` showed a fresh stream at half, or zero, bitrate and fps). Until then the
    rate is taken over the time the samples span: the packets after the first instant,
    over the time since it.
    """

    window: float = 2.0
    _samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # (t, bytes, frames)
    _since: float | None = None  # time of the first packet ever seen

    def add(self, now: float, size: int, frames: int) -> None:
        if self._since is None:
            self._since = now
        self._samples.append((now, size, frames))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()

    def _rate(self, now: float, column: int) -> float:
        self._trim(now)
        samples = self._samples
        if self._since is not None and now - self._since < self.window:
            first = samples[0][0] if samples else now
            span = samples[-1][0] - first if samples else 0.0
            if span <= 0:
                return 0.0  # one instant seen: no rate yet
            return sum(s[column] for s in samples if s[0] > first) / span
        return sum(s[column] for s in samples) / self.window

    def bitrate_kbps(self, now: float) -> float:
        return self._rate(now, 1) * 8 / 1000

    def fps(self, now: float) -> float:
        return self._rate(now, 2)


def speed(media_seconds: float, wall_seconds: float) -> float:
    """FFmpeg's 'speed': media produced per wall-clock second (1.0 keeps up with live)."""
    return media_seconds / wall_seconds if wall_seconds > 0 else 0.0
