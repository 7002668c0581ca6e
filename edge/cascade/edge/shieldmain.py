"""``cascade-shield``: the origin shield as one program, for its container.

Renders the VCL for the edge Service (``CASCADE_SHIELD_BACKEND``, host:port), runs
``varnishd`` in the foreground on ``HOST``:``PORT``, and counts the viewers it answers
from cache (:mod:`cascade.edge.shieldsessions`) into Redis (``REDIS_URL``). SIGTERM stops
the counter (flushing what it holds), then varnishd. Varnish resolves the backend's name
once, when the VCL loads: point it at a Service (a stable ClusterIP), not at pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
from pathlib import Path

import uvloop

from cascade.contract.settings import EdgeSettings
from cascade.edge import shieldsessions
from cascade.edge.shield import ShieldConfig, render_vcl, varnishd_command

log = logging.getLogger("cascade.edge.shieldmain")


def backend_of(value: str) -> tuple[str, int]:
    """``host:port`` of CASCADE_SHIELD_BACKEND, refused with a clear message if malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"CASCADE_SHIELD_BACKEND must be host:port, got {value!r}")
    return host, int(port)


async def serve(settings: EdgeSettings, backend: tuple[str, int], cache_mib: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cascade-shield-") as tmp:
        work = Path(tmp)
        vcl = work / "shield.vcl"
        vcl.write_text(render_vcl(ShieldConfig(*backend)))
        name = str(work / "varnish")
        cmd = varnishd_command(
            vcl=str(vcl), workdir=name, listen=f"{settings.host}:{settings.port}",
            cache_mib=cache_mib,
        )  # fmt: skip
        varnishd = await asyncio.create_subprocess_exec(*cmd)
        counter = asyncio.ensure_future(shieldsessions.run(name, settings))
        waiting = asyncio.ensure_future(varnishd.wait())
        try:
            await asyncio.wait({counter, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not counter.done():
                # The counter's own SIGTERM handler may not be installed yet: cancel.
                counter.cancel()
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await counter
            if varnishd.returncode is None:
                varnishd.send_signal(signal.SIGTERM)
            await waiting
    if varnishd.returncode not in (0, -signal.SIGTERM):
        raise SystemExit(f"varnishd exited ({varnishd.returncode})")


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CASCADE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    backend = backend_of(os.environ.get("CASCADE_SHIELD_BACKEND", "127.0.0.1:8081"))
    cache_mib = int(os.environ.get("CASCADE_SHIELD_CACHE_MIB", "256"))
    uvloop.run(serve(EdgeSettings(), backend, cache_mib))


if __name__ == "__main__":
    main()
