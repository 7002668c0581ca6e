"""``cascade up``'s Redis side of on-demand streams, against a real Redis (no processes)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from cascade.cli.local import LocalStack, read_activity
from cascade.contract import schema
from cascade.contract.settings import LocalSettings

from ..conftest import free_server_port

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

T0 = 1_700_000_000.0


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_read_activity_gives_the_last_demand_and_the_newest_viewer(redis: Redis) -> None:
    await redis.zadd(schema.DEMAND, {"od1": T0, "other": T0 + 5})
    await redis.zadd(schema.viewers_key("od1"), {"viewer-a": T0 + 1, "viewer-b": T0 + 3})

    demand, last_viewer = await read_activity(redis, ["od1", "od2"])

    assert demand == {"od1": T0}
    assert last_viewer == {"od1": T0 + 3}


def _write(folder: Path, name: str, activation: str) -> Path:
    path = folder / f"{name}.yaml"
    manifest = {
        "apiVersion": "cascade.dev/v1alpha1",
        "kind": "LiveStream",
        "metadata": {"name": name},
        "spec": {"source": {"type": "test"}, "activation": activation},
    }
    path.write_text(json.dumps(manifest))
    return path


async def test_an_on_demand_file_is_registered_and_nothing_starts_until_asked(
    redis: Redis, redis_url: str, tmp_path: Path
) -> None:
    path = _write(tmp_path, "od1", "OnDemand")
    stack = LocalStack(LocalSettings(streams_dir=tmp_path), redis_url=redis_url)
    try:
        await stack.reconcile(redis)
        assert await redis.smembers(schema.ON_DEMAND_STREAMS) == {b"od1"}
        assert stack.streams == {}  # no transcoder: nobody asked
        await redis.zadd(schema.DEMAND, {"od1": T0})  # long ago: does not count

        await stack.reconcile(redis)
        assert stack.streams == {}

        path.unlink()  # the file is gone: off the set, its demand forgotten
        await stack.reconcile(redis)
        assert await redis.smembers(schema.ON_DEMAND_STREAMS) == set()
        assert await redis.zscore(schema.DEMAND, "od1") is None
    finally:
        stack._tmp.cleanup()


async def test_the_redis_it_started_is_started_again_on_its_port_after_it_dies(
    tmp_path: Path,
) -> None:
    port = free_server_port()
    stack = LocalStack(LocalSettings(streams_dir=tmp_path, redis_port=port), redis_url=None)
    client = Redis(port=port)
    try:
        await stack._start_redis()
        assert stack.redis_proc is not None
        first = stack.redis_proc
        await client.set("k", "v")
        first.kill()
        await first.wait()

        await stack.supervise_redis()

        assert stack.redis_proc is not first and stack.redis_proc.returncode is None
        assert await client.ping()
        assert await client.get("k") is None  # local mode keeps no dump: it starts empty
        await stack.supervise_redis()  # alive: nothing to do
        assert stack.redis_proc.returncode is None
    finally:
        await client.aclose()
        if stack.redis_proc is not None:
            stack.redis_proc.terminate()
            await stack.redis_proc.wait()
        stack._tmp.cleanup()


def test_behind_the_shield_the_edge_takes_the_next_port_unless_told() -> None:
    from cascade.cli.local import edge_port
    from cascade.contract.settings import LocalSettings

    assert edge_port(LocalSettings(port=8080)) == 8080, "no shield: the edge is on PORT"
    assert edge_port(LocalSettings(port=8080, shield=True)) == 8081
    assert edge_port(LocalSettings(port=8080, shield=True, edge_port=9000)) == 9000
