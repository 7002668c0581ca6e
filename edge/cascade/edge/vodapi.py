"""Replay of recordings: ``/vod/...`` routes over the object store, through the edge's cache.

* ``GET /vod/{stream}``: the stream's recordings as JSON (id, start, end, duration,
  segments, discontinuities, and each recorded rendition's playlist URL);
* ``GET /vod/{stream}/{recording}/{rendition}.m3u8``: a whole recording as VOD;
* ``GET /vod/{stream}/{rendition}.m3u8?start=...&end=...``: the segments overlapping a
  range of program date-times (ISO 8601 with a time zone), at most :data:`MAX_RANGE_SECONDS`;
* ``GET /vod/{stream}/{rendition}/seg/{name}`` and ``.../init/{name}``: the objects.

Objects are written once and never changed (:mod:`cascade.contract.recording`), so they
go through a :class:`~cascade.edge.cache.ByteCache` (single-flight, bounded in bytes) and
are answered ``immutable``; playlists of a finished recording change only if the stream
continues it (a restart within the gap), so they are cached for a few seconds only.
Without a store (``CASCADE_S3_ENDPOINT`` unset) every ``/vod`` request is a 404 that says
so; a store that does not answer is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from cascade.contract import recording
from cascade.contract.recording import INIT_NAME_RE, SegmentName
from cascade.contract.s3 import S3Error
from cascade.contract.settings import EdgeSettings
from cascade.contract.spec import is_valid_name
from cascade.edge.cache import ByteCache, ObjectKey
from cascade.edge.objectstore import StoreReader
from cascade.edge.replies import HttpError
from cascade.edge.vod import Recording, in_range, recordings, render_vod_playlist
from cascade.hls.tags.primitives import TagError, parse_pdt

__all__ = ["MAX_RANGE_SECONDS", "RECORDING_GAP_SECONDS", "VodService", "vod_router"]

# A stream that stopped for longer than this starts a new recording; a transcoder restart
# (backoff at most 10 s by default) continues the one before, after a discontinuity.
RECORDING_GAP_SECONDS = 60.0
MAX_RANGE_SECONDS = 12 * 3600
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
RENDITION = re.compile(r"[a-z0-9][a-z0-9_-]{0,30}")  # spec.Rendition.name
OBJECT_TTL_SECONDS = 3600.0


class VodService:
    def __init__(self, settings: EdgeSettings, store: StoreReader) -> None:
        self.settings = settings
        self.store = store
        self.prefix = settings.s3_prefix
        self.cache = ByteCache(
            capacity_bytes=settings.cache_capacity_bytes,
            ttl=OBJECT_TTL_SECONDS,
            max_item_bytes=settings.cache_max_item_bytes,
        )

    async def aclose(self) -> None:
        await self.cache.aclose()

    # ---- reads ----------------------------------------------------------------------

    async def renditions(self, stream: str) -> list[str]:
        base = recording.stream_prefix(self.prefix, stream)
        found = await _store(self.store.prefixes(base))
        return sorted(p.removeprefix(base).rstrip("/") for p in found)

    async def segments(
        self, stream: str, rendition: str, *, start_ms: int = 0, end_ms: int | None = None
    ) -> list[SegmentName]:
        """The rendition's segments from ``start_ms`` (in name order) up to ``end_ms``."""
        base = recording.segments_prefix(self.prefix, stream, rendition)
        after = f"{base}{max(0, start_ms):013d}" if start_ms > 0 else ""
        out: list[SegmentName] = []
        token = None
        while True:
            page = await _store(self.store.list_page(base, start_after=after, token=token))
            for o in page.objects:
                name = SegmentName.parse(o.key.removeprefix(base))
                if name is None:
                    continue
                if end_ms is not None and name.start_ms >= end_ms:
                    return out
                out.append(name)
            if page.next_token is None:
                return out
            token = page.next_token

    async def object(self, stream: str, key: str) -> bytes | None:
        async def load() -> bytes | None:
            return await self.store.get(key)

        return await _store(self.cache.get_or_load(ObjectKey(stream, key), load))


T = TypeVar("T")


async def _store(awaitable: Awaitable[T]) -> T:
    """The store's answer; a store that is away or refuses is the client's 503."""
    try:
        return await awaitable
    except (S3Error, OSError) as exc:
        raise HttpError(
            503, f"the object store is not answering: {exc}", ((b"retry-after", b"2"),)
        ) from exc


def _check(stream: str, rendition: str | None = None) -> None:
    if not is_valid_name(stream):
        raise HttpError(404, f"no stream named {stream!r}")
    if rendition is not None and not RENDITION.fullmatch(rendition):
        raise HttpError(404, f"no rendition named {rendition!r}")


def _segment_uri(stream: str, rendition: str) -> Callable[[SegmentName], str]:
    return lambda s: f"/vod/{stream}/{rendition}/seg/{s.name}"


def _init_uri(stream: str, rendition: str) -> Callable[[str], str]:
    return lambda name: f"/vod/{stream}/{rendition}/init/{name}"


def _playlist(stream: str, rendition: str, segments: list[SegmentName]) -> Response:
    body = render_vod_playlist(
        segments,
        segment_uri=_segment_uri(stream, rendition),
        init_uri=_init_uri(stream, rendition),
    )
    return Response(body, media_type=PLAYLIST_TYPE, headers={"Cache-Control": "public, max-age=2"})


def _pdt(value: str, name: str) -> float:
    try:
        return parse_pdt(value)
    except TagError as exc:
        raise HttpError(400, f"{name}: {exc}") from exc


def vod_router(service: VodService | None) -> APIRouter:
    """The /vod routes; ``service`` None: no store configured, every route says so."""
    router = APIRouter()

    def svc() -> VodService:
        if service is None:
            raise HttpError(
                404, "recordings are off: this edge has no object store (CASCADE_S3_ENDPOINT)"
            )
        return service

    @router.get("/vod/{stream}")
    async def list_recordings(stream: str) -> Response:
        _check(stream)
        vod = svc()
        renditions = await vod.renditions(stream)
        if not renditions:
            raise HttpError(404, f"no recordings of {stream!r}")
        found = recordings(await vod.segments(stream, renditions[0]), gap=RECORDING_GAP_SECONDS)
        body = {
            "stream": stream,
            "renditions": renditions,
            "recordings": [
                {
                    **r.describe(),
                    "playlists": {n: f"/vod/{stream}/{r.id}/{n}.m3u8" for n in renditions},
                }
                for r in found
            ],
        }
        return JSONResponse(body, headers={"Cache-Control": "no-cache"})

    @router.get("/vod/{stream}/{recording_id}/{rendition}.m3u8")
    async def recording_playlist(stream: str, recording_id: str, rendition: str) -> Response:
        _check(stream, rendition)
        if not recording_id.isdigit() or len(recording_id) != 13:
            raise HttpError(404, f"no recording {recording_id!r}: ids are Unix milliseconds")
        vod = svc()
        start_ms = int(recording_id)
        # Listed from one gap (and a second) before the id: a recording starts at the id
        # only if nothing was recorded in that gap; another rendition's first segment may
        # start a frame from the one the id was taken from, so within a second is a match.
        since = start_ms - int(RECORDING_GAP_SECONDS * 1000) - 1000
        segments = await vod.segments(stream, rendition, start_ms=since)
        chosen: Recording | None = next(
            (
                r
                for r in recordings(segments, gap=RECORDING_GAP_SECONDS)
                if abs(r.segments[0].start_ms - start_ms) <= 1000
            ),
            None,
        )
        if chosen is None:
            raise HttpError(404, f"no recording {recording_id} of {stream}/{rendition}")
        return _playlist(stream, rendition, list(chosen.segments))

    @router.get("/vod/{stream}/{rendition}.m3u8")
    async def range_playlist(
        stream: str,
        rendition: str,
        start: Annotated[str, Query(max_length=40)],
        end: Annotated[str, Query(max_length=40)],
    ) -> Response:
        _check(stream, rendition)
        t0, t1 = _pdt(start, "start"), _pdt(end, "end")
        if t1 <= t0:
            raise HttpError(400, "end must be after start")
        if t1 - t0 > MAX_RANGE_SECONDS:
            raise HttpError(400, f"a range is at most {MAX_RANGE_SECONDS} s")
        vod = svc()
        # A segment that starts up to its target before the range still overlaps it.
        listed = await vod.segments(
            stream, rendition, start_ms=int(t0 * 1000) - 10_000, end_ms=int(t1 * 1000) + 1
        )
        segments = in_range(listed, t0, t1)
        if not segments:
            raise HttpError(404, f"nothing of {stream}/{rendition} was recorded in that range")
        return _playlist(stream, rendition, segments)

    @router.get("/vod/{stream}/{rendition}/seg/{name}")
    async def segment(stream: str, rendition: str, name: str) -> Response:
        _check(stream, rendition)
        parsed = SegmentName.parse(name)
        if parsed is None:
            raise HttpError(404, f"no segment named {name!r}")
        vod = svc()
        key = recording.segment_key(vod.prefix, stream, rendition, parsed)
        return _media(await vod.object(stream, key), name)

    @router.get("/vod/{stream}/{rendition}/init/{name}")
    async def init(stream: str, rendition: str, name: str) -> Response:
        _check(stream, rendition)
        if not INIT_NAME_RE.fullmatch(name):
            raise HttpError(404, f"no init named {name!r}")
        vod = svc()
        key = recording.init_key(vod.prefix, stream, rendition, name)
        return _media(await vod.object(stream, key), name)

    return router


def _media(data: bytes | None, name: str) -> Response:
    if data is None:
        raise HttpError(404, f"{name} is not in the object store")
    return Response(
        data,
        media_type="video/mp4",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
