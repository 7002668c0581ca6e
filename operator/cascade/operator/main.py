"""``cascade-operator``: the kopf operator, configured from the environment.

Endpoints: ``/healthz`` on ``CASCADE_LIVENESS_PORT`` (kopf's liveness probe: 200 while the
operator's watch loops run) and ``/metrics`` on ``CASCADE_METRICS_PORT``. Logs are JSON lines
by default (``CASCADE_LOG_FORMAT=plain`` for humans). One replica: there is no peering, so
run it as a Deployment with ``replicas: 1`` and ``strategy: Recreate``.
"""

from __future__ import annotations

import logging
import sys

import kopf
from prometheus_client import start_http_server
from pydantic import ValidationError

from cascade.contract.spec import format_validation_error
from cascade.operator.controller import Runtime, build_registry
from cascade.operator.metrics import OperatorMetrics
from cascade.operator.settings import OperatorSettings


class _QuietWatchers(logging.Filter):
    """Drop kopf's "Handler 'pod_event' succeeded." lines: one per watch event, no news."""

    NOISY = ("'pod_event'", "'service_event'", "'stream_event'")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not (message.endswith(" succeeded.") and any(n in message for n in self.NOISY))


def main() -> None:
    try:
        settings = OperatorSettings()
    except ValidationError as exc:
        for line in format_validation_error(exc):
            print(f"cascade-operator: bad setting: {line}", file=sys.stderr)
        raise SystemExit(2) from exc
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL,
        log_refkey="object" if settings.log_format == "json" else None,
    )
    logging.getLogger("kopf.objects").addFilter(_QuietWatchers())
    metrics = OperatorMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.bind_host, registry=metrics.registry)
    liveness = (
        f"http://{settings.bind_host}:{settings.liveness_port}/healthz"
        if settings.liveness_port
        else None
    )
    namespaces = [settings.namespace] if settings.namespace else []
    kopf.run(
        registry=build_registry(Runtime(settings, metrics)),
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=liveness,
        standalone=True,  # one replica by design: no peering objects needed
    )


if __name__ == "__main__":
    main()
