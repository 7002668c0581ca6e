"""What a shared cache (the shield, a CDN) may do with each LL-HLS answer: the policy.

Pure: Cache-Control per kind of answer, and the cache key a cache in front must use
(:func:`cache_key`). The edge's answers take their Cache-Control from here; the shield's
configuration (:mod:`cascade.edge.shield.vcl`) implements :func:`cache_key` in VCL, and
its tests check the real Varnish against this function.

Why each answer is safe to share. Every body below is the same for every viewer: part
and segment URIs are relative and carry no session, the rendition reports name other
renditions only, and a viewer's ``hls_ctx`` never appears in a media playlist. What
differs per viewer is only in the request: a session id (``hls_ctx`` or CMCD ``sid``) or
a signed-URL token. Those requests are the ones a cache must pass to the edge
(:func:`cache_key` returns None): admission (the multivariant playlist), a signed
stream's playlists (the grant check), anything with ``hls_ctx`` (counted by the edge).

The lifetimes, and what they rest on:

- A blocking reload's answer (``_HLS_msn``/``_HLS_part``): "the server MUST hold the
  request until a Playlist contains a Segment with the requested Media Sequence Number"
  (RFC 8216bis 6.2.5.2). Any later playlist satisfies the same request too, so the first
  answer stays correct: it is shared for a segment duration, far longer than the spread
  of the requests of N players waiting for the same part (a part duration), so N waiting
  players make one origin request. A straggler after that gets a fresh answer at once.
- A plain media playlist changes with every part: one second, the shortest lifetime
  Cache-Control can say (delta-seconds are whole seconds, RFC 9111 1.2.2), as AWS
  MediaPackage's CDN guidance sets for LL-HLS media playlists ("Media playlists (LL-HLS)
  - 1 second"). A player uses it once to find the live edge, then reloads with
  ``_HLS_msn``; the hint of a one-second-old playlist is answered at once. Caches add
  ``Age`` (RFC 9111 5.1: "the sender's estimate of the time since the response was
  generated ... at the origin server"), which hls.js reads to place its first request.
- Parts, segments and init sections never change once published (an init section of a
  new encoder generation has a new name): ``public, max-age=30``, longer than the live
  window a player can ask for.
- Errors: 404 is "heuristically cacheable" (RFC 9110 15.1): without explicit freshness a
  cache may keep it for a heuristic time, so it gets one second (a burst of requests for
  a part beyond the window costs the origin one a second). Every other refusal depends on
  the request (a token, a viewer's stream count, a bad directive) or on time (503:
  blocking timeout, Redis down, a stream starting): ``no-store`` (RFC 9111 5.2.2.5: "a
  cache MUST NOT store any part of either the immediate request or the response"). A
  503 must reach the player rather than a stale playlist: the shield gives playlists no
  grace (stale-serving) time.
- Viewer-specific answers (a multivariant playlist carrying ``hls_ctx``, a signed
  stream's media playlists): ``private, no-cache`` (RFC 9111 5.2.2.7: "a shared cache
  MUST NOT store the response").

Validators (ETag) are not sent: a playlist's lifetime is one second or a segment and it
never revalidates to "not modified" later (it changes every part); parts never change.
A conditional request would cost the origin the same request as a refetch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

# Answers of the edge, by kind.
MEDIA = b"public, max-age=30"
PLAIN_PLAYLIST = b"public, max-age=1"
# The multivariant playlist without a session id in it: the same for everyone, but every
# start should reach an edge (admission of the 6-stream limit, the CMCD session): a cache
# must revalidate it each time (RFC 9111 5.2.2.4 "no-cache": "MUST NOT be used to satisfy
# any other request without forwarding it for validation").
SHARED_MULTIVARIANT = b"no-cache"
PRIVATE = b"private, no-cache"
NO_STORE = b"no-store"
NOT_FOUND = b"public, max-age=1"

# The query parameters a cache key keeps: the delivery directives (RFC 8216bis 6.2.5);
# each changes the answer. Everything else (CMCD data, a player's cache buster) is dropped.
KEY_DIRECTIVES = ("_HLS_msn", "_HLS_part", "_HLS_skip")
# Requests that carry a viewer's session or grant: answered by the edge, never from cache.
PASS_PARAMS = ("hls_ctx", "exp", "kid", "sig")
# What the edge accepts as _HLS_msn/_HLS_part: no sign, no leading zero, at most 18 digits.
_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")


def blocking_playlist(segment_target: float) -> bytes:
    """Cache-Control of a blocking reload's answer: shared for one segment duration."""
    return b"public, max-age=%d" % max(1, math.ceil(segment_target))


def error(status: int) -> bytes:
    """Cache-Control of a refusal (see the module docstring)."""
    return NOT_FOUND if status == 404 else NO_STORE


def cache_key(path: str, params: Mapping[str, str]) -> str | None:
    """The key a shared cache stores ``GET path?params`` under, or None: pass it to the edge.

    Only LL-HLS media playlists and media files are shared; the multivariant playlist,
    the player page, /status and the rest always reach an edge. A directive with a value
    that is not a plain number (or YES/v2 for ``_HLS_skip``) is passed too: the edge's
    400 for it is never stored, and it must not share a key with a valid request.
    """
    if not path.startswith("/live/") or path.count("/") != 4:
        return None
    if any(name in params for name in PASS_PARAMS):
        return None
    key = path
    for name in KEY_DIRECTIVES:
        value = params.get(name)
        if value is None:
            continue
        if not path.endswith(".m3u8"):
            return None  # directives belong to playlists; the edge ignores them elsewhere
        if name == "_HLS_skip":
            if value not in ("YES", "v2"):
                return None
        elif not _NUMBER.fullmatch(value):
            return None
        key += f"&{name}={value}" if "?" in key else f"?{name}={value}"
    return key
