"""The operator's demand watcher against a real Redis: new demand wakes that stream at once."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from cascade.contract.schema import DEMAND
from cascade.operator.controller import Runtime, watch_demand
from cascade.operator.metrics import OperatorMetrics
from cascade.operator.settings import OperatorSettings

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]


async def test_new_demand_wakes_the_streams_of_that_name(redis_url: str) -> None:
    runtime = Runtime(OperatorSettings(), OperatorMetrics())
    wanted = runtime.wakers[("studio", "news")] = asyncio.Event()
    also = runtime.wakers[("other", "news")] = asyncio.Event()
    other = runtime.wakers[("studio", "sports")] = asyncio.Event()
    redis = Redis.from_url(redis_url)
    await redis.zadd(DEMAND, {"sports": time.time() - 60})  # old demand: nothing to do
    task = asyncio.create_task(watch_demand(runtime, redis, poll=0.05))
    try:
        await asyncio.sleep(0.2)
        assert not other.is_set()
        await redis.zadd(DEMAND, {"news": time.time() + 0.01})
        await asyncio.wait_for(wanted.wait(), 2)
        assert also.is_set()
        assert not other.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await redis.aclose()
