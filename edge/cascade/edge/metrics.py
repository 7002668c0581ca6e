"""Prometheus metrics of one edge process (conventional names, seconds and bytes).

Request counts and latencies are kept in plain dicts and lists on the hot path (a
``Counter.labels(...).inc()`` per request costs more than answering a part does) and
turned into Prometheus families only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from cascade.edge.hub import Hub

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


class _Requests(Collector):
    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        # route -> [count per bucket..., +Inf count], sum of seconds
        self.buckets: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        counts = self.buckets.get(route)
        if counts is None:
            counts = self.buckets[route] = [0] * (len(BUCKETS) + 1)
        counts[bisect_left(BUCKETS, seconds)] += 1
        self.sums[route] = self.sums.get(route, 0.0) + seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        total = CounterMetricFamily(
            "cascade_edge_requests", "HTTP requests by route and status", labels=["route", "status"]
        )
        for (route, status), n in sorted(self.counts.items()):
            total.add_metric([route, str(status)], n)
        yield total
        latency = HistogramMetricFamily(
            "cascade_edge_request_duration_seconds",
            "Time to answer, blocking included",
            labels=["route"],
        )
        for route, counts in sorted(self.buckets.items()):
            cumulative, running = [], 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([route], cumulative, self.sums[route])
        yield latency


class _LimitHits(Collector):
    """Requests refused and connections closed by the HTTP server's limits, by limit."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, limit: str) -> None:
        self.counts[limit] = self.counts.get(limit, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "cascade_edge_limit_hits",
            "Requests refused or connections closed because a client reached a limit "
            "(request_line 414, header_bytes and header_fields 431, header_timeout 408, "
            "body_bytes 413, malformed 400, keep_alive_timeout, write_stalled, pipeline, "
            "connections 503)",
            labels=["limit"],
        )
        for limit, n in sorted(self.counts.items()):
            family.add_metric([limit], n)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = _Requests()
        self.registry.register(self._requests)
        self._limits = _LimitHits()
        self.registry.register(self._limits)
        self.connections = Gauge(
            "cascade_edge_connections",
            "Open HTTP connections (CASCADE_LIMIT_CONNECTIONS bounds them)",
            registry=self.registry,
        )
        # Requests held now: a plain int on the hot path (a Gauge's inc/dec takes a lock),
        # read when /metrics is scraped.
        self.held = 0
        self._blocked = Gauge(
            "cascade_edge_blocked_requests",
            "Blocking playlist and part requests waiting now",
            registry=self.registry,
        )
        self._blocked.set_function(lambda: self.held)
        self.streams = Gauge(
            "cascade_edge_streams", "Streams followed by this edge", registry=self.registry
        )
        self.redis_up = Gauge(
            "cascade_edge_redis_up", "1 when Redis answers", registry=self.registry
        )
        self.redis_errors = Gauge(
            "cascade_edge_redis_errors", "Failed Redis calls since start", registry=self.registry
        )
        self.redis_restarts = Gauge(
            "cascade_edge_redis_restarts",
            "Redis restarts seen since start (its run_id changed; a failover counts too)",
            registry=self.registry,
        )
        self.redis_replays = Gauge(
            "cascade_edge_redis_replays",
            "Renditions read again from the start after a Redis restart",
            registry=self.registry,
        )
        self.viewers = Gauge(
            "cascade_edge_viewers",
            "Viewers per stream (anonymous sessions seen within VIEWER_TIMEOUT_SECONDS)",
            ["stream"],
            registry=self.registry,
        )
        self.viewers_total = Gauge(
            "cascade_edge_viewers_total_current",
            "Viewers of any stream",
            registry=self.registry,
        )
        self.last_part_age = Gauge(
            "cascade_edge_stream_last_part_age_seconds",
            "Seconds since the newest part",
            ["stream"],
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self._requests.observe(route, status, seconds)

    def limit_hit(self, limit: str) -> None:
        self._limits.hit(limit)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    def collect(self, hub: Hub, viewers: dict[str, int] | None = None, total: int = 0) -> None:
        self.streams.set(len(hub.streams))
        self.redis_up.set(1 if hub.connected else 0)
        self.redis_errors.set(hub.redis_errors)
        self.redis_restarts.set(hub.restarts)
        self.redis_replays.set(hub.replays)
        self.viewers.clear()
        for name, count in (viewers or {}).items():
            self.viewers.labels(name).set(count)
        self.viewers_total.set(total)
        self.last_part_age.clear()
        for name, view in hub.streams.items():
            if view.health is not None and view.health.last_part_at:
                self.last_part_age.labels(name).set(
                    max(0.0, hub.clock() - view.health.last_part_at)
                )
