"""LL-HLS numbers derived from target durations and positions: pure, one place.

The edge's window renders these values and answers blocking requests with them; the rule
checker (:mod:`cascade.hls.rules`) holds playlists to the same functions, and the renderer
(:mod:`cascade.hls.playlist`) drops old parts by one of them, so what is served and what is
checked cannot drift apart. Each function quotes the RFC 8216bis sentence behind it.

Durations are seconds; a position is a Media Sequence Number and a part index in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "advance_part_limit",
    "beyond_advance_limit",
    "max_blocking_msn",
    "min_can_skip_until",
    "min_part_duration",
    "min_part_hold_back",
    "next_parts",
    "part_retention",
    "recommended_part_hold_back",
    "rounded_duration",
    "target_duration",
]


# ---- the server's playlist: EXT-X-TARGETDURATION, EXT-X-SERVER-CONTROL, parts --------


def rounded_duration(duration: float) -> int:
    """An EXTINF duration "rounded to the nearest integer" (RFC 8216bis 4.4.3.1), halves up.

    Not :func:`round`, which rounds halves to even (2.5 to 2): a 2.5 s segment would then
    fit a target duration of 2, which the rule checker refuses.
    """
    return math.floor(duration + 0.5)


def target_duration(segment_target: float, durations: Iterable[float]) -> int:
    """EXT-X-TARGETDURATION for complete segments of ``durations`` cut at ``segment_target``.

    RFC 8216bis 4.4.3.1: "The EXTINF duration of each Media Segment in a Playlist file, when
    rounded to the nearest integer, MUST be less than or equal to the Target Duration." The
    configured target rounded up, raised by a longer segment (a missed keyframe deadline).
    """
    longest = max((rounded_duration(d) for d in durations), default=0)
    return max(1, math.ceil(segment_target - 1e-9), longest)


def min_part_hold_back(part_target: float) -> float:
    """The least PART-HOLD-BACK the RFC allows.

    RFC 8216bis 4.4.3.8 PART-HOLD-BACK: "Its value MUST be at least twice the Part Target
    Duration."
    """
    return 2 * part_target


def recommended_part_hold_back(part_target: float) -> float:
    """PART-HOLD-BACK as Cascade renders it, and the least its checker accepts.

    RFC 8216bis 4.4.3.8: "Its value SHOULD be at least three times the Part Target
    Duration." Cascade makes the SHOULD a rule: at twice, a single late part stalls players.
    """
    return 3 * part_target


def min_can_skip_until(target_duration: int) -> float:
    """The least Skip Boundary (CAN-SKIP-UNTIL); Cascade advertises exactly this.

    RFC 8216bis 4.4.3.8 CAN-SKIP-UNTIL: "The Skip Boundary MUST be at least six times the
    Target Duration."
    """
    return 6.0 * target_duration


def min_part_duration(part_target: float) -> float:
    """The least duration of a Partial Segment that is not exempt (see the rule checker).

    RFC 8216bis 4.4.4.9: "The duration of each Partial Segment MUST be at least 85% of the
    Part Target Duration, with the exception of Partial Segments with the INDEPENDENT=YES or
    GAP=YES attribute, Partial Segments that are immediately followed by a Partial Segment
    with a GAP=YES attribute, and the final Partial Segment of any Parent Segment."
    """
    return 0.85 * part_target


def part_retention(target_duration: int) -> float:
    """How far from the end of the playlist a segment's start may lie and keep its parts.

    RFC 8216bis 6.2.2: "EXT-X-PART tags SHOULD be removed from the Playlist after they are
    greater than three Target Durations from the end of the Playlist."
    """
    return 3 * target_duration


# ---- blocking requests: how far ahead of the newest part a request may be held --------


def advance_part_limit(part_target: float) -> int:
    """RFC 8216bis 6.2.5.2: "the Advance Part Limit ... is three divided by the Part Target
    Duration if the Part Target Duration is less than one second, or three otherwise"."""
    return math.floor(3 / part_target) if part_target < 1 else 3


def max_blocking_msn(last_msn: int) -> int:
    """The highest ``_HLS_msn`` held while ``last_msn`` is the newest segment.

    RFC 8216bis 6.2.5.2: "If the _HLS_msn is greater than the Media Sequence Number of the
    last Media Segment in the current Playlist plus two, ... then the server SHOULD
    immediately return Bad Request, such as HTTP 400."
    """
    return last_msn + 2


def beyond_advance_limit(
    msn: int,
    part: int | None,
    last_msn: int,
    last_part: int,
    *,
    part_target: float,
    parts_per_segment: int,
) -> bool:
    """Is a blocking reload for ``msn`` (``part``) too far ahead of the newest part?

    ``last_msn``/``last_part`` is the newest part, ``parts_per_segment`` how many parts its
    segment holds so far. RFC 8216bis 6.2.5.2: "If the _HLS_msn is greater than the Media
    Sequence Number of the last Media Segment in the current Playlist plus two, or if the
    _HLS_part exceeds the last Partial Segment in the current Playlist by the Advance Part
    Limit, then the server SHOULD immediately return Bad Request, such as HTTP 400."
    A part of a later segment counts the parts ahead as if segments were full, and is
    allowed one segment's worth more than the Advance Part Limit.
    """
    if msn > max_blocking_msn(last_msn):
        return True
    if part is None or msn < last_msn:
        return False
    limit = advance_part_limit(part_target)
    if msn == last_msn:
        return part - last_part > limit
    per_segment = max(1, parts_per_segment)
    ahead = (msn - last_msn) * per_segment + part - last_part
    return ahead > limit + per_segment


def next_parts(last_msn: int, last_part: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The parts that can follow the newest: the next of its segment, or the next segment's
    first. The preload hint names one of them and a part request for either is held.

    RFC 8216bis 4.4.5.3 URI: "It MUST match the URI that will be subsequently added to the
    Playlist as a non-hinted resource (for example, the URI of an EXT-X-PART tag)."
    """
    return (last_msn, last_part + 1), (last_msn + 1, 0)
