"""The operator's Prometheus metrics, on a registry of its own (no import-time globals)."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PHASES = ("Pending", "Starting", "Live", "Reconnecting", "Idle", "Ended", "Restarting", "Failed")


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "cascade_operator_reconciles_total",
            "Reconcile passes, by result (ok, error).",
            ["result"],
            registry=self.registry,
        )
        self.actions = Counter(
            "cascade_operator_actions_total",
            "Changes made to the cluster or Redis, by kind (CreatePod, DeletePod ...).",
            ["action"],
            registry=self.registry,
        )
        self.errors = Counter(
            "cascade_operator_errors_total",
            "Failed reconcile passes and calls, by where (kubernetes, redis, internal).",
            ["target"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "cascade_operator_reconcile_seconds",
            "Time of one reconcile pass (reads, decision, writes).",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        # key (namespace/name) -> phase, as last written; deleted streams are dropped.
        self.phases: dict[str, str] = {}
        self.registry.register(_PhaseCollector(self.phases))


class _PhaseCollector(Collector):
    def __init__(self, phases: dict[str, str]) -> None:
        self._phases = phases

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "cascade_operator_streams", "LiveStreams by phase.", labels=["phase"]
        )
        tally = Tally(self._phases.values())
        for phase in sorted(set(PHASES) | set(tally)):
            family.add_metric([phase], tally.get(phase, 0))
        yield family
