"""Common Media Client Data (CTA-5004): the player's session id, read from a request.

Players send CMCD either as one query parameter, ``CMCD=<urlencoded payload>`` (hls.js's
``cmcd.useHeaders`` default is false: headers would make every cross-origin request
preflighted), or
in four headers, ``CMCD-Request``, ``CMCD-Object``, ``CMCD-Status`` and ``CMCD-Session``
(CTA-5004 3.2: ``sid`` and ``cid`` belong to CMCD-Session). The payload is a comma
separated list of ``key=value`` pairs; "String" values are in double quotes, "Token"
values (``ot=v``) are not, a Boolean key alone means true (CTA-5004 3.3).

Behind a cache, a viewer's session is its CMCD ``sid`` ("A GUID identifying the current
playback session ... maximum length is 64 characters", CTA-5004 table 1) rather than an
``hls_ctx`` in playlist URIs, which would give every viewer URLs of their own. What is
kept is :func:`viewer_id`: a 16-character digest of the ``sid``, of the same shape as an
``hls_ctx`` viewer id, so the session store, its counts and the 6-stream limit work the
same. The ``sid`` itself, the content id and every other key are read and dropped.
"""

from __future__ import annotations

import base64
import hashlib
import re

QUERY_PARAM = "CMCD"
SESSION_HEADER = "cmcd-session"
# A sid as players make them (hls.js: a UUID; AVPlayer, ExoPlayer: UUIDs or random
# tokens): printable, no quotes, at most 64 characters (CTA-5004). Anything else is not a
# session id and is not counted (an e-mail address would be refused by the "@").
_SID = re.compile(r"[A-Za-z0-9_.:+/=-]{8,64}")
# Domain separation of the digest: the stored id cannot be matched with a hash of the
# same sid made for another purpose.
_DIGEST_KEY = b"cascade-cmcd-sid-v1"


def parse(payload: str) -> dict[str, str | bool]:
    """``key=value,key="string",flag`` as a dict (strings unquoted, flags True).

    Malformed pairs are skipped rather than refused: CMCD is data a player volunteers,
    never a reason to refuse playback.
    """
    out: dict[str, str | bool] = {}
    i, n = 0, len(payload)
    while i < n:
        eq = _find_unquoted(payload, i, ("=", ","))
        if eq < n and payload[eq] == "=":
            key = payload[i:eq].strip()
            j = eq + 1
            if j < n and payload[j] == '"':
                close = payload.find('"', j + 1)
                while close != -1 and payload[close - 1] == "\\":
                    close = payload.find('"', close + 1)
                if close == -1:
                    break  # an unterminated string: nothing after it can be trusted
                value: str | bool = payload[j + 1 : close].replace('\\"', '"')
                end = payload.find(",", close + 1)
                end = n if end == -1 else end
            else:
                end = payload.find(",", j)
                end = n if end == -1 else end
                value = payload[j:end].strip()
        else:
            key, value, end = payload[i:eq].strip(), True, eq
        if key:
            out[key] = value
        i = end + 1
    return out


def _find_unquoted(text: str, start: int, chars: tuple[str, ...]) -> int:
    for k in range(start, len(text)):
        if text[k] in chars:
            return k
    return len(text)


def session_id(payload: str | None) -> str | None:
    """The ``sid`` of a CMCD payload when it has the shape of a session id, else None."""
    if not payload or "sid" not in payload:
        return None
    sid = parse(payload).get("sid")
    if isinstance(sid, str) and _SID.fullmatch(sid):
        return sid
    return None


def viewer_id(sid: str) -> str:
    """The viewer id kept for a ``sid``: 12 bytes of a keyed BLAKE2b, 16 URL-safe characters
    (the shape of :func:`cascade.edge.sessions.new_viewer_id`)."""
    digest = hashlib.blake2b(sid.encode(), digest_size=12, key=_DIGEST_KEY).digest()
    return base64.urlsafe_b64encode(digest).decode()


def viewer_from_request(query_value: str | None, session_header: str | None) -> str | None:
    """The viewer id of a request's CMCD: the query form first, then CMCD-Session."""
    sid = session_id(query_value) or session_id(session_header)
    return viewer_id(sid) if sid is not None else None
