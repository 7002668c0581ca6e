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
    """Bytes and video frames over the last ``window`` seconds."""

    window: float = 2.0
    _samples: deque[tuple[float, int, int]] = field(default_factory=deque)  # (t, bytes, frames)

    def add(self, now: float, size: int, frames: int) -> None:
        self._samples.append((now, size, frames))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()

    def bitrate_kbps(self, now: float) -> float:
        self._trim(now)
        return sum(s[1] for s in self._samples) * 8 / 1000 / self.window

    def fps(self, now: float) -> float:
        self._trim(now)
        return sum(s[2] for s in self._samples) / self.window


def speed(media_seconds: float, wall_seconds: float) -> float:
    """FFmpeg's 'speed': media produced per wall-clock second (1.0 keeps up with live)."""
    return media_seconds / wall_seconds if wall_seconds > 0 else 0.0
