"""The uploader against a real S3 server: order, retries through an outage, the bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cascade.contract.recording import SegmentName
from cascade.transcoder.recorder import Upload
from cascade.transcoder.s3client import S3Client
from cascade.transcoder.uploader import Backlog, Uploader, outage_seconds_covered

from ..conftest import free_server_port
from ..objectstore import ObjectStoreServer


def seg(prefix: str, i: int, size: int = 1000) -> Upload:
    name = SegmentName(1_700_000_000_000 + i * 500, i, 0, 500_000, "0" * 16)
    return Upload(f"{prefix}seg/{name.name}", bytes([i % 256]) * size, "video/iso.segment", name)


def init(prefix: str) -> Upload:
    return Upload(f"{prefix}init/{'0' * 16}.mp4", b"init", "video/mp4")


def listed(client: S3Client, prefix: str) -> list[str]:
    keys: list[str] = []
    token = None
    while True:
        page = client.list_page(prefix, token=token)
        keys += [o.key for o in page.objects]
        if page.next_token is None:
            return keys
        token = page.next_token


def wait_drained(up: Uploader, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while up.stats().backlog_objects and time.monotonic() < deadline:
        time.sleep(0.02)
    assert up.stats().backlog_objects == 0


def test_backlog_drops_oldest_segments_never_inits() -> None:
    b = Backlog(max_bytes=2500)
    b.add([init("")])
    b.add([seg("", i) for i in range(4)])
    assert [u.segment.msn if u.segment else "init" for u in b.items] == ["init", 2, 3]
    assert (b.lost_segments, b.lost_bytes, b.bytes) == (2, 2000, 2004)


def test_outage_covered() -> None:
    assert outage_seconds_covered(256 * 2**20, 464_000) == pytest.approx(4628, rel=1e-3)


def test_uploads_in_order(object_store: ObjectStoreServer, store_prefix: str) -> None:
    up = Uploader(object_store.client(), backlog_bytes=10**7, name="t")
    up.start()
    items = [init(store_prefix), *(seg(store_prefix, i) for i in range(20))]
    up.submit(items)
    assert up.close(10)
    client = object_store.client()
    assert listed(client, store_prefix) == sorted(u.key for u in items)
    assert client.get(items[5].key) == items[5].data
    stats = up.stats()
    assert (stats.uploaded_objects, stats.uploaded_bytes) == (21, 4 + 20 * 1000)
    assert (stats.oldest_ms, stats.newest_ms) == (1_700_000_000_000, 1_700_000_009_500)


def test_refused_object_is_dropped_and_the_next_goes_up(
    object_store: ObjectStoreServer, store_prefix: str
) -> None:
    client = object_store.client()
    bad = S3Client(object_store.endpoint, "no-such-bucket", object_store.credentials)
    up = Uploader(bad, backlog_bytes=10**6, name="t")
    up.start()
    up.submit([seg(store_prefix, 0)])
    assert up.close(5)
    assert up.stats().refused == 1
    assert listed(client, store_prefix) == []


def test_store_away_then_back_nothing_lost(tmp_path: Path, store_prefix: str) -> None:
    store = ObjectStoreServer(tmp_path, free_server_port())
    store.start()
    up = Uploader(store.client(timeout=1), backlog_bytes=10**7, name="t")
    up.start()
    try:
        up.submit([init(store_prefix), seg(store_prefix, 0)])
        wait_drained(up, 5)
        store.stop()
        worst = 0.0
        for i in range(1, 31):  # 3 s of segments while the store is away
            t = time.perf_counter()
            up.submit([seg(store_prefix, i)])
            worst = max(worst, time.perf_counter() - t)
            time.sleep(0.1)
        assert worst < 0.01, "submit must never wait on the store"
        assert up.stats().backlog_objects >= 29 and up.stats().failures >= 1
        store.start()
        wait_drained(up, 15)
        assert listed(store.client(), store_prefix) == sorted(
            [init(store_prefix).key, *(seg(store_prefix, i).key for i in range(31))]
        )
        assert up.stats().lost_segments == 0
    finally:
        up.close(2)
        store.stop()
