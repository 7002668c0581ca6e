"""``cascade-transcoder``: the program of a transcoder pod (and of local mode's stream processes).

The LiveStream comes from a file (``--file``) or the ``CASCADE_LIVESTREAM`` environment
variable (JSON or YAML, as the operator sets it). SIGTERM or SIGINT end the stream cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path

import uvloop

from cascade.contract.manifest import ManifestError, parse_manifest
from cascade.contract.settings import TranscoderSettings
from cascade.contract.spec import LiveStream
from cascade.transcoder.argv import Inputs
from cascade.transcoder.probes import ProbeServer
from cascade.transcoder.redisclient import redis_client
from cascade.transcoder.runner import StreamRunner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cascade-transcoder", description=__doc__)
    parser.add_argument("--file", type=Path, help="LiveStream manifest (YAML or JSON)")
    parser.add_argument(
        "--bind-host",
        default=os.environ.get("CASCADE_BIND_HOST", "0.0.0.0"),
        help="address listeners (SRT, RTMP) bind to",
    )
    parser.add_argument("--log-level", default=os.environ.get("CASCADE_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.file is not None:
        text, source = args.file.read_text(), str(args.file)
    elif "CASCADE_LIVESTREAM" in os.environ:
        text, source = os.environ["CASCADE_LIVESTREAM"], "CASCADE_LIVESTREAM"
    else:
        parser.error("give --file or set CASCADE_LIVESTREAM")
    try:
        stream = parse_manifest(text, source=source)
    except ManifestError as exc:
        print(f"cascade-transcoder: {exc}", file=sys.stderr)
        return 2
    settings = TranscoderSettings()
    passphrase = None
    srt = stream.spec.source.srt
    if srt is not None and srt.passphrase_secret_ref is not None:
        # In a pod the Secret is mounted as this variable; locally, export it.
        passphrase = os.environ.get(srt.passphrase_secret_ref.name.upper().replace("-", "_"))
    inputs = Inputs(bind_host=args.bind_host, srt_passphrase=passphrase)
    # uvloop: the packager's cost is mostly event-loop and pipe overhead per 100 ms part
    # (profiled with py-spy); uvloop halves it. It ships with uvicorn[standard].
    # Everything built so far lives for the whole run: keep it out of the cyclic GC's
    # passes, which otherwise run every few hundred parts.
    gc.freeze()
    return uvloop.run(_run(stream, settings, inputs))


async def _run(stream: LiveStream, settings: TranscoderSettings, inputs: Inputs) -> int:
    redis = redis_client(settings.redis_url)
    runner = StreamRunner(stream, redis, settings, inputs=inputs)
    task = asyncio.create_task(runner.run())
    probes = ProbeServer(lambda: (runner.status.state, runner.status.reason, not task.done()))
    if settings.probe_port:
        await probes.start(inputs.bind_host, settings.probe_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await probes.stop()
        await redis.aclose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
