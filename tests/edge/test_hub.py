"""The hub against a real Redis that restarts: what it keeps, what it reads again; and the
rule that decides when held requests may expire (pure, on plain numbers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from cascade.contract import schema
from cascade.contract.schema import Health, PartEntry, StreamMeta, StreamState
from cascade.edge.hub import READ_STALL_SECONDS, STALL_GRACE_SECONDS, Hub, expiry_horizon

from ..conftest import RedisServer
from .test_app_redis import RENDITIONS

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

T0 = 1_800_000_000.0


async def announce(redis: Redis, *, generation: int = 0) -> None:
    meta = StreamMeta(RENDITIONS, 0.1, 0.5, 24, StreamState.LIVE, generation)
    await redis.hset(schema.meta_key("cam1"), mapping=meta.encode())  # type: ignore[arg-type]
    await redis.hset(schema.health_key("cam1"), mapping=Health(StreamState.LIVE).encode())  # type: ignore[arg-type]
    for r in RENDITIONS:
        await redis.set(schema.init_key("cam1", r.name), b"init")
    await redis.sadd(schema.STREAMS_SET, "cam1")


async def publish(redis: Redis, msn: int, parts: int = 5) -> None:
    for r in RENDITIONS:
        for i in range(parts):
            entry = PartEntry(msn, i, 0.1, i == 0, T0 + msn * 0.5 + i * 0.1, b"x")
            fields: Any = schema.encode_entry(entry)
            await redis.xadd(schema.parts_key("cam1", r.name), fields)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    s = RedisServer(tmp_path)
    s.start()
    yield s
    s.stop()


async def _refresh_until(hub: Hub, what: str, check: Any) -> None:
    """Refresh (as the discovery loop does) until ``check()``: a pooled connection to the
    old server fails once, then the client reconnects."""
    for _ in range(100):
        await hub.refresh()
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the hub never saw {what}")


async def test_a_stream_missing_after_a_restart_is_kept_for_the_grace_only(
    server: RedisServer,
) -> None:
    writer = Redis.from_url(server.url)
    await announce(writer)
    await publish(writer, 0)
    clock = Clock()
    hub = Hub(Redis.from_url(server.url), clock=clock, restart_grace_seconds=10.0)
    try:
        await hub.refresh()
        view = hub.streams["cam1"]
        before = hub.run_id
        server.restart()  # empty: no stream set, no meta, no parts
        await _refresh_until(hub, "the new server", lambda: hub.run_id not in (None, before))
        assert hub.restarts == 1 and hub.connected
        assert hub.streams["cam1"] is view, "a live stream vanished because Redis came back"
        clock.now += 9.9
        await hub.refresh()
        assert hub.streams["cam1"] is view
        clock.now += 0.2  # nobody put it back within the grace: it is gone
        await hub.refresh()
        assert "cam1" not in hub.streams
    finally:
        await hub.redis.aclose()
        await writer.aclose()


async def test_a_stream_put_back_after_a_restart_keeps_its_view_and_windows(
    server: RedisServer,
) -> None:
    writer = Redis.from_url(server.url)
    await announce(writer)
    await publish(writer, 0)
    hub = Hub(Redis.from_url(server.url), clock=Clock())
    try:
        await hub.refresh()
        view = hub.streams["cam1"]
        windows = [f.window for f in view.feeds.values()]
        before = hub.run_id
        server.restart()
        await _refresh_until(hub, "the new server", lambda: hub.run_id not in (None, before))
        await writer.aclose()
        writer = Redis.from_url(server.url)
        await announce(writer)
        await hub.refresh()
        assert hub.streams["cam1"] is view
        assert [f.window for f in view.feeds.values()] == windows
        # Its feeds' last entries are not on the new server: read again from the start.
        assert hub.replays == 2 and all(f.last_id == b"0-0" for f in view.feeds.values())
    finally:
        await hub.redis.aclose()
        await writer.aclose()


async def test_a_recreated_stream_is_swapped_in_whole(server: RedisServer) -> None:
    writer = Redis.from_url(server.url)
    await announce(writer, generation=3)
    await publish(writer, 0)
    reset: list[str] = []
    hub = Hub(Redis.from_url(server.url), clock=Clock(), on_stream_reset=reset.append)
    try:
        await hub.refresh()
        old = hub.streams["cam1"]
        await writer.delete(*(schema.parts_key("cam1", r.name) for r in RENDITIONS))
        await announce(writer, generation=0)  # deleted and created again
        await publish(writer, 0, parts=2)
        await hub.refresh()
        new = hub.streams["cam1"]
        assert new is not old and set(new.feeds) == {r.name for r in RENDITIONS}
        assert all(f.window.position is not None for f in new.feeds.values())
        assert reset == ["cam1"]
    finally:
        await hub.redis.aclose()
        await writer.aclose()


# ---- when held requests may expire (pure) ---------------------------------------------


def test_while_redis_is_down_deadlines_alone_decide() -> None:
    assert expiry_horizon(
        50.0, connected=False, caught_up_at=10.0, last_read_at=49.0, overdue_since=None
    ) == (50.0, None)


def test_while_reads_come_back_a_request_waits_for_the_hub_to_catch_up() -> None:
    assert expiry_horizon(
        50.0, connected=True, caught_up_at=49.5, last_read_at=49.9, overdue_since=None
    ) == (49.5, None)
    # Never later than now, whatever the clocks say.
    assert expiry_horizon(
        50.0, connected=True, caught_up_at=51.0, last_read_at=50.0, overdue_since=None
    ) == (50.0, None)


def test_after_a_pause_the_hub_gets_a_grace_to_apply_what_waited_in_the_socket() -> None:
    # The loop ran again at 53.5 after a 3.5 s pause: no read came back since 50.
    now = 50.0 + 3.5
    horizon, since = expiry_horizon(
        now, connected=True, caught_up_at=49.8, last_read_at=50.0, overdue_since=None
    )
    assert (horizon, since) == (49.8, now)
    # The hub applied the read that had been waiting: back to normal.
    assert expiry_horizon(
        now + 0.1, connected=True, caught_up_at=49.8, last_read_at=now + 0.05, overdue_since=since
    ) == (49.8, None)


def test_a_read_that_hangs_expires_requests_by_deadline_after_the_grace() -> None:
    last_read = 50.0
    first = last_read + READ_STALL_SECONDS + 0.1
    horizon, since = expiry_horizon(
        first, connected=True, caught_up_at=49.0, last_read_at=last_read, overdue_since=None
    )
    assert horizon == 49.0
    later = first + STALL_GRACE_SECONDS
    assert expiry_horizon(
        later, connected=True, caught_up_at=49.0, last_read_at=last_read, overdue_since=since
    ) == (later, first)
