"""``cascade-edge``: the edge, configured from the environment.

Runs :class:`~cascade.edge.server.EdgeServer` on uvloop. SIGTERM (a rolling update) stops
accepting, lets held LL-HLS requests finish (they end within three target durations),
then closes; SIGINT does the same. With ``CASCADE_EDGE_PROCESSES`` above 1 this process
supervises that many edge processes on one port (:mod:`cascade.edge.processes`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys

import uvloop

from cascade.contract.settings import EdgeSettings
from cascade.edge.app import create_server
from cascade.edge.processes import WORKER_FLAG, supervise

DRAIN_SECONDS = 5.0
# The cyclic GC's first threshold. CPython counts tracked objects allocated minus freed,
# so what refcounting frees never brings a collection nearer; the held requests do: 1,500
# viewers blocked at once are ~15,000 live objects, which with the default (700) set off
# collections every burst and promoted each hold to the old generations, making full
# collections frequent (13 % of the edge's CPU at 1,500 viewers, py-spy, 2026-12-04).
# Above what a burst holds, only lasting growth (cyclic garbage, a real leak) collects.
GC_THRESHOLD = 50_000


async def serve(settings: EdgeSettings, *, reuse_port: bool = False) -> None:
    server = create_server(settings)
    await server.start(settings.host, settings.port, reuse_port=reuse_port)
    # What start-up built (the app, the routes, the modules) lives for the whole run: keep
    # it out of the cyclic GC's passes. Profiled at 1,000 viewers (bench/edge_profile.py),
    # collections triggered on the request path were 13 % of the edge's CPU.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=DRAIN_SECONDS)


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CASCADE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    settings = EdgeSettings()
    worker = WORKER_FLAG in sys.argv[1:]
    if settings.edge_processes > 1 and not worker:
        raise SystemExit(supervise(settings.edge_processes))
    uvloop.run(serve(settings, reuse_port=worker))


if __name__ == "__main__":
    main()
