"""On-demand streams at the edge: "starting" (503) instead of "no such stream" (404).

A LiveStream with ``activation: OnDemand`` has no transcoder until a viewer asks for it
(the rule is :func:`cascade.contract.lifecycle.on_demand_verdict`, applied by whoever starts
transcoders: the operator, or ``cascade up``). The edge's part of the Redis contract
(:mod:`cascade.contract.schema`):

* It tells an on-demand stream without a transcoder from an unknown name by the
  ``cascade:ondemand`` set. LL-HLS requests are answered synchronously
  (:func:`cascade.edge.live.decide`) and never wait on Redis, so the edge keeps the set in
  memory, read with one ``SMEMBERS`` every ``CASCADE_ON_DEMAND_POLL_SECONDS`` (default 1 s).
  Staleness: a name added to the set is answered 404 for up to one poll interval (the
  player page retries a 404 too), a removed one 503 "starting" that long. While Redis is
  unreachable the last set read is kept: an outage does not turn "starting" into 404.
* It records demand in ``cascade:demand`` (stream -> Unix time) for the starter. A
  request only notes the time in memory (:meth:`OnDemand.starting`); the flush task writes
  what is due every :data:`FLUSH_TICK_SECONDS` in one ``ZADD`` for all streams, and at
  most once per stream per :data:`DEMAND_WRITE_INTERVAL_SECONDS`, so a burst of players
  (or one player's every retry) costs Redis one command a second, whatever its size. A
  write that fails stays pending for the next tick.

The request is answered 503 with ``Retry-After`` and ``X-Cascade-Stream-State: starting``
(:data:`STARTING_HEADERS`, ``Cache-Control: no-store``); the player page retries at that
pace, which also keeps the demand fresh (``DEMAND_WINDOW_SECONDS``) until the
transcoder's first parts arrive. Until the hub has the stream's meta (the transcoder is
starting) it is still answered "starting", so demand is also recorded then: harmless, it
only keeps the stream's new run alive a little longer.

Once served, a stream is kept running by its viewer sessions (``cascade:viewers:{s}``),
not by demand: with ``VIEWER_TRACKING_ENABLED=false`` there are none, and an on-demand
stream stops ``idleTimeoutSeconds`` after it started, watched or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cascade.contract import schema

log = logging.getLogger("cascade.edge.ondemand")

# The starter reconciles about once a second and a transcoder's first part follows its
# start within a second or two: a player asking again sooner would mostly hear "starting".
STARTING_RETRY_AFTER_SECONDS = 2
# At most one demand write per stream per edge in this time (the starter reads it once a
# second; a fresher time would change nothing).
DEMAND_WRITE_INTERVAL_SECONDS = 1.0
# How often the flush task looks for demand to write: a first request reaches Redis at
# most this late.
FLUSH_TICK_SECONDS = 0.25

STARTING_HEADERS = (
    (b"retry-after", str(STARTING_RETRY_AFTER_SECONDS).encode()),
    (b"x-cascade-stream-state", b"starting"),
    # A player page on another origin may read them (CORS hides other headers).
    (b"access-control-expose-headers", b"Retry-After, X-Cascade-Stream-State"),
)
# Never cached: the next answer for the same URL is the playlist itself.
STARTING_CACHE_CONTROL = b"no-store"


def starting_message(stream: str) -> str:
    return f"stream {stream!r} is starting (on demand); retry in {STARTING_RETRY_AFTER_SECONDS} s"


class DemandBuffer:
    """Demand seen by one edge, coalesced per stream before it is written. Pure, no I/O.

    ``add`` notes a request; ``take_due`` hands out what may be written now: each stream at
    most once per ``min_interval``, with the time of its latest request.
    """

    __slots__ = ("_pending", "_written", "min_interval")

    def __init__(self, min_interval: float = DEMAND_WRITE_INTERVAL_SECONDS) -> None:
        self.min_interval = min_interval
        self._pending: dict[str, float] = {}  # stream -> latest request not written yet
        self._written: dict[str, float] = {}  # stream -> when it was last handed out

    def add(self, stream: str, now: float) -> None:
        if now > self._pending.get(stream, -math.inf):
            self._pending[stream] = now

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take_due(self, now: float) -> dict[str, float]:
        ready = now - self.min_interval
        due = {s: t for s, t in self._pending.items() if self._written.get(s, -math.inf) <= ready}
        for stream in due:
            del self._pending[stream]
            self._written[stream] = now
        # Forget write times that no longer hold anything back: bounded by the streams
        # asked for within the last interval.
        for stream in [s for s, t in self._written.items() if t <= ready]:
            del self._written[stream]
        return due

    def give_back(self, taken: Mapping[str, float]) -> None:
        """A write failed: keep its demand for the next try (still one per interval)."""
        for stream, seen in taken.items():
            self.add(stream, seen)


class OnDemand:
    """The edge's view of on-demand streams and its demand writer; owned by the lifespan."""

    def __init__(
        self,
        redis: Redis,
        *,
        poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.poll_seconds = poll_seconds
        self.clock = clock
        self.names: frozenset[str] = frozenset()
        self.buffer = DemandBuffer()
        self.requests: dict[str, int] = {}  # stream -> requests answered "starting"
        self.demand_writes = 0
        self.redis_errors = 0
        self._healthy = True
        self._last_refresh = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ---- for requests (sync, memory only) ----------------------------------------------

    def starting(self, stream: str, now: float) -> bool:
        """True when ``stream`` is on demand; its demand is then noted (for the next flush).

        Called only for names the hub does not serve. ``now`` is Unix seconds.
        """
        if stream not in self.names:
            return False
        self.buffer.add(stream, now)
        self.requests[stream] = self.requests.get(stream, 0) + 1
        return True

    # ---- Redis -----------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the on-demand set; on failure keep the last one read."""
        self._last_refresh = self.clock()
        try:
            members = cast(set[bytes], await self.redis.smembers(schema.ON_DEMAND_STREAMS))
        except (RedisError, OSError) as exc:
            self._failed("on-demand streams kept from the last read", exc)
            return
        self.names = frozenset(m.decode() for m in members)
        self._recovered()

    async def flush(self) -> int:
        """Write the demand that is due in one ``ZADD``; returns how many streams."""
        due = self.buffer.take_due(self.clock())
        if not due:
            return 0
        try:
            await self.redis.zadd(schema.DEMAND, cast(Mapping[Any, float], due))
        except (RedisError, OSError) as exc:
            self.buffer.give_back(due)
            self._failed("viewer demand kept for the next flush", exc)
            return 0
        self.demand_writes += 1
        self._recovered()
        return len(due)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.redis_errors += 1
        if self._healthy:
            log.warning("%s, redis failed: %s", what, exc)
        self._healthy = False

    def _recovered(self) -> None:
        self._healthy = True

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="ondemand:poll")

    async def stop(self) -> None:
        """Stop, then write the demand that is due (best effort; what is held back is at
        most a second fresher than what Redis has)."""
        # As in the hub: redis-py can swallow a cancellation that lands inside a command.
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            while not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), 1)
        await self.flush()

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(FLUSH_TICK_SECONDS)
            await self.flush()
            if self.clock() - self._last_refresh >= self.poll_seconds:
                await self.refresh()


class OnDemandCollector(Collector):
    """Prometheus view of an :class:`OnDemand` (counted in dicts on the hot path)."""

    def __init__(self, on_demand: OnDemand) -> None:
        self.on_demand = on_demand

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        o = self.on_demand
        requests = CounterMetricFamily(
            "cascade_edge_on_demand_requests",
            "Requests for an on-demand stream without a transcoder (answered 503 starting)",
            labels=["stream"],
        )
        for stream, n in sorted(o.requests.items()):
            requests.add_metric([stream], n)
        yield requests
        yield CounterMetricFamily(
            "cascade_edge_on_demand_demand_writes",
            "ZADDs of viewer demand to Redis (one per flush, all streams at once)",
            o.demand_writes,
        )
        yield CounterMetricFamily(
            "cascade_edge_on_demand_redis_errors",
            "Failed Redis calls of the on-demand poller",
            o.redis_errors,
        )
        yield GaugeMetricFamily(
            "cascade_edge_on_demand_streams", "On-demand streams known to this edge", len(o.names)
        )
