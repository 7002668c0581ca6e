"""The edge's /vod routes over a real S3 server (Versity Gateway), on Cascade's server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from cascade.contract import recording
from cascade.contract.recording import SegmentName
from cascade.contract.settings import EdgeSettings
from cascade.edge.app import create_server

from ..conftest import free_port
from ..objectstore import ObjectStoreServer

pytestmark = [pytest.mark.anyio]

T0 = 1_733_356_800_000  # 2024-12-05T00:00:00Z
INIT_A, INIT_B = b"init-a", b"init-b"


@dataclass
class Vod:
    client: httpx.AsyncClient
    names: list[SegmentName]


def put_recording(store: ObjectStoreServer, prefix: str) -> list[SegmentName]:
    """Two renditions: 6 segments, a restart (new generation and init), 4 more; then a
    second recording 10 minutes later."""
    c = store.client()
    a, b = recording.init_name(INIT_A), recording.init_name(INIT_B)
    names = [SegmentName(T0 + i * 500, i, 0, 500_000, a[:16]) for i in range(6)]
    names += [SegmentName(T0 + 5000 + i * 500, 6 + i, 1, 500_000, b[:16]) for i in range(4)]
    names += [SegmentName(T0 + 600_000 + i * 500, 10 + i, 2, 500_000, b[:16]) for i in range(2)]
    for rendition in ("360p", "720p"):
        c.put(recording.init_key(prefix, "cam", rendition, a), INIT_A, "video/mp4")
        c.put(recording.init_key(prefix, "cam", rendition, b), INIT_B, "video/mp4")
        for n in names:
            key = recording.segment_key(prefix, "cam", rendition, n)
            c.put(key, f"{rendition}-{n.msn}".encode(), "video/iso.segment")
    c.close()
    return names


@pytest.fixture
async def vod(
    object_store: ObjectStoreServer, store_prefix: str, redis_url: str
) -> AsyncIterator[Vod]:
    names = put_recording(object_store, store_prefix)
    env = object_store.env(store_prefix)
    port = free_port()
    settings = EdgeSettings(
        redis_url=redis_url,
        port=port,
        s3_endpoint=env["CASCADE_S3_ENDPOINT"],
        s3_bucket=env["CASCADE_S3_BUCKET"],
        s3_prefix=store_prefix,
        s3_access_key_id=env["AWS_ACCESS_KEY_ID"],
        s3_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    server = create_server(settings)
    await server.start("127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            yield Vod(client, names)
    finally:
        await server.stop(grace=1)


async def test_lists_recordings(vod: Vod) -> None:
    r = await vod.client.get("/vod/cam")
    assert r.status_code == 200
    body = r.json()
    assert body["renditions"] == ["360p", "720p"]
    first, second = body["recordings"]
    assert first == {
        "id": str(T0),
        "start": "2024-12-05T00:00:00.000Z",
        "end": "2024-12-05T00:00:07.000Z",
        "duration": 5.0,
        "segments": 10,
        "discontinuities": 1,
        "playlists": {n: f"/vod/cam/{T0}/{n}.m3u8" for n in ("360p", "720p")},
    }
    assert second["id"] == str(T0 + 600_000) and second["segments"] == 2


async def test_recording_playlist_and_its_objects(vod: Vod) -> None:
    r = await vod.client.get(f"/vod/cam/{T0}/720p.m3u8")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    text = r.text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.endswith("#EXT-X-ENDLIST\n")
    assert text.count("#EXTINF") == 10 and text.count("#EXT-X-DISCONTINUITY\n") == 1
    uris = [line for line in text.splitlines() if line.startswith("/vod/")]
    seg = await vod.client.get(uris[7])
    assert seg.status_code == 200 and seg.content == b"720p-7"
    assert "immutable" in seg.headers["cache-control"]
    maps = [line.split('"')[1] for line in text.splitlines() if line.startswith("#EXT-X-MAP")]
    assert [(await vod.client.get(m)).content for m in maps] == [INIT_A, INIT_B]


async def test_range_playlist(vod: Vod) -> None:
    r = await vod.client.get(
        "/vod/cam/360p.m3u8",
        params={"start": "2024-12-05T00:00:01.200Z", "end": "2024-12-05T00:00:02+00:00"},
    )
    assert r.status_code == 200
    assert [line for line in r.text.splitlines() if line.startswith("/vod/")] == [
        f"/vod/cam/360p/seg/{n.name}" for n in vod.names[2:4]
    ]
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-12-05T00:00:01.000Z" in r.text


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/vod/nobody", 404, "no recordings"),
        ("/vod/Bad_Name", 404, "no stream named"),
        (f"/vod/cam/{T0 + 3000}/360p.m3u8", 404, "no recording"),
        ("/vod/cam/abc/360p.m3u8", 404, "Unix milliseconds"),
        ("/vod/cam/360p.m3u8?start=yesterday&end=2024-12-05T00:00:02Z", 400, "start:"),
        ("/vod/cam/360p.m3u8?start=2024-12-05T00:00:02Z&end=2024-12-05T00:00:01Z", 400, "after"),
        ("/vod/cam/360p.m3u8?start=2024-12-01T00:00:00Z&end=2024-12-05T00:00:01Z", 400, "at most"),
        ("/vod/cam/360p.m3u8?start=2020-12-01T00:00:00Z&end=2020-12-01T00:00:01Z", 404, "nothing"),
        ("/vod/cam/360p.m3u8", 422, ""),
        ("/vod/cam/360p/seg/..%2F..%2Fx.m4s", 404, ""),
        (
            "/vod/cam/360p/seg/1733356800000_0000000099_000000_000500000_aaaaaaaaaaaaaaaa.m4s",
            404,
            "not in the object store",
        ),
        ("/vod/cam/360p/init/zz.mp4", 404, "no init"),
    ],
)
async def test_bad_requests_get_a_specific_4xx(vod: Vod, path: str, status: int, says: str) -> None:
    r = await vod.client.get(path)
    assert r.status_code == status, r.text
    assert says in r.text


async def test_store_away_is_a_503(vod: Vod, object_store: ObjectStoreServer) -> None:
    object_store.stop()
    try:
        r = await vod.client.get("/vod/cam")
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
    finally:
        object_store.start()
