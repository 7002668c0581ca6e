"""What the edge answers an LL-HLS request with, and the one encoder of its head.

A :class:`Reply` (or the :class:`HttpError` that becomes one) is all a front door gets
from :mod:`cascade.edge.live`. Both front doors, the edge's own HTTP/1.1 server
(:mod:`cascade.edge.server`, which writes bytes) and the ASGI application
(:mod:`cascade.edge.asgi`, which sends header pairs), take its header fields from
:func:`reply_fields`, and the Access-Control-Allow-Origin to send from
:class:`AllowedOrigins`: a header added or changed here is added or changed for both.
The status line and the connection's own fields (``connection: close``) are each
server's framing, not the reply's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cascade.edge import caching

Headers = tuple[tuple[bytes, bytes], ...]
# Header fields flat, lowercase names: name, value, name, value, ... One list per answer,
# ready for an HTTP/1.1 head (one format) or ASGI pairs (:func:`field_pairs`).
Fields = list[bytes]

TEXT_TYPE = b"text/plain; charset=utf-8"

CONTENT_TYPE = b"content-type"
CACHE_CONTROL = b"cache-control"
CONTENT_LENGTH = b"content-length"
ALLOW_ORIGIN = b"access-control-allow-origin"
ANY_ORIGIN = b"*"
# An answer that names one allowed origin differs by the request's Origin: a shared
# cache must keep one copy per origin (Fetch standard, "CORS protocol and HTTP caches").
_VARY_ORIGIN = (b"vary", b"Origin")


class HttpError(Exception):
    """A request we refuse: the status and a message that says why."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: Headers = (),
        cache_control: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        # By default what caching says of the status: a cache in front may keep a 404 for
        # a second and must store no other refusal.
        self.cache_control = cache_control if cache_control is not None else caching.error(status)


@dataclass(slots=True)
class Reply:
    """An LL-HLS answer: status, the two fields every answer has, the body, the route it
    is counted under in metrics, and any fields of its own (Retry-After, ...).

    One reply is shared by every viewer given the same answer (a part, a rendered
    playlist: :class:`~cascade.edge.live.RenderCache`), so the HTTP/1.1 server keeps the
    bytes it wrote for it in ``wire`` (head and body in one buffer, for a keep-alive GET
    with Access-Control-Allow-Origin ``wire_origin``) and writes them again as they are.
    Its fields are never changed after it is made: only the memo is.
    """

    status: int
    content_type: bytes
    cache_control: bytes
    body: bytes
    route: str
    headers: Headers = ()
    wire: bytes | None = field(default=None, compare=False, repr=False)
    wire_origin: bytes | None = field(default=None, compare=False, repr=False)


def error_reply(exc: HttpError) -> Reply:
    body = (exc.message + "\n").encode()
    return Reply(exc.status, TEXT_TYPE, exc.cache_control, body, "error", exc.headers)


def reply_fields(reply: Reply, origin: bytes | None) -> Fields:
    """The header fields of ``reply``, for either front door: Content-Type, Cache-Control,
    Content-Length, the reply's own fields, then Access-Control-Allow-Origin when
    ``origin`` is set (what :meth:`AllowedOrigins.allow` said), with ``Vary: Origin``
    unless it is ``*``.

    Content-Length is the GET's for a HEAD too: "the server SHOULD send the same header
    fields in response to a HEAD request as it would have sent if the request method had
    been GET" (RFC 9110 9.3.2).
    """
    fields = [
        CONTENT_TYPE, reply.content_type,
        CACHE_CONTROL, reply.cache_control,
        CONTENT_LENGTH, b"%d" % len(reply.body),
    ]  # fmt: skip
    if reply.headers:
        for name, value in reply.headers:
            fields += (name, value)
    if origin is not None:
        fields.append(ALLOW_ORIGIN)
        fields.append(origin)
        if origin != ANY_ORIGIN:
            fields += _VARY_ORIGIN
    return fields


def field_pairs(fields: Fields) -> list[tuple[bytes, bytes]]:
    """``fields`` as (name, value) pairs, the shape of ASGI's ``headers``."""
    names_and_values = iter(fields)
    return list(zip(names_and_values, names_and_values, strict=True))


class AllowedOrigins:
    """Which pages may play from this edge (``cors_allow_origins``): the
    Access-Control-Allow-Origin an LL-HLS answer carries, if any."""

    __slots__ = ("_origins", "any")

    def __init__(self, origins: Iterable[str]) -> None:
        listed = tuple(origins)
        self.any = "*" in listed  # then the request's Origin need not even be read
        self._origins = frozenset(o.encode() for o in listed)

    def allow(self, origin: bytes | None) -> bytes | None:
        """``*`` when any origin may play, the request's ``origin`` when it is listed, else
        None (no header: the browser keeps the answer from the page)."""
        if self.any:
            return ANY_ORIGIN
        return origin if origin is not None and origin in self._origins else None
