"""Prometheus metrics of one edge process (conventional names, seconds and bytes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from cascade.edge.hub import Hub


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cascade_edge_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cascade_edge_request_duration_seconds",
            "Time to answer, blocking included",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4),
        )
        self.blocked_now = Gauge(
            "cascade_edge_blocked_requests",
            "Blocking playlist and part requests waiting now",
            registry=self.registry,
        )
        self.streams = Gauge(
            "cascade_edge_streams", "Streams followed by this edge", registry=self.registry
        )
        self.redis_up = Gauge(
            "cascade_edge_redis_up", "1 when Redis answers", registry=self.registry
        )
        self.redis_errors = Gauge(
            "cascade_edge_redis_errors", "Failed Redis calls since start", registry=self.registry
        )
        self.last_part_age = Gauge(
            "cascade_edge_stream_last_part_age_seconds",
            "Seconds since the newest part",
            ["stream"],
            registry=self.registry,
        )

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    @contextmanager
    def blocked(self) -> Iterator[None]:
        self.blocked_now.inc()
        try:
            yield
        finally:
            self.blocked_now.dec()

    def collect(self, hub: Hub) -> None:
        self.streams.set(len(hub.streams))
        self.redis_up.set(1 if hub.connected else 0)
        self.redis_errors.set(hub.redis_errors)
        self.last_part_age.clear()
        for name, view in hub.streams.items():
            if view.health is not None and view.health.last_part_at:
                self.last_part_age.labels(name).set(
                    max(0.0, hub.clock() - view.health.last_part_at)
                )
