"""``cascade-shield-sessions``: viewers the shield answered from its cache, into Redis.

Requests the shield sends on to an edge are counted by that edge (with the CMCD sid in
the query, :mod:`cascade.edge.shield` adds it from the CMCD-Session header). Requests the
shield answers from its cache never reach an edge: this process counts those, so the
counts in /status, /health, the metrics and the LiveStream status are the same whatever
the hit ratio. It writes the same session keys as the edges, through the same
:class:`~cascade.edge.sessions.RedisSessionStore`, so Redis merges both (a ZADD of a
viewer id into the stream's set, with the same expiry): a viewer seen by both counts once.

Why Varnish's log and not a vmod: Debian's varnish has no Redis vmod, and the shared
memory log is made for this: ``varnishncsa`` prints one line per finished request, after
the answer was sent, and the shield's request path does no extra work. Only the sid's
digest is kept (:func:`cascade.edge.cmcd.viewer_id`); the log line read holds no client
address or user agent (:func:`cascade.edge.shield.varnishncsa_format`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time

import uvloop

from cascade.contract.settings import EdgeSettings
from cascade.contract.spec import is_valid_name
from cascade.edge import cmcd
from cascade.edge.live import parse_query
from cascade.edge.redisclient import redis_client
from cascade.edge.sessions import SessionFlusher, SessionStore, make_session_store
from cascade.edge.shield import HIT, varnishncsa_format

log = logging.getLogger("cascade.edge.shieldsessions")


def session_of_line(line: str) -> tuple[str, str] | None:
    """(stream, viewer id) of a varnishncsa line of a cache hit on a media playlist, else None.

    Playlists only, as the edges count: a viewer reloads its playlist every part.
    """
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 4 or fields[0] != HIT:
        return None
    _, path, query, header = fields
    parts = path.split("/")
    if len(parts) != 5 or parts[1] != "live" or not parts[4].endswith(".m3u8"):
        return None
    if not is_valid_name(parts[2]):
        return None
    query = query.removeprefix("?")
    params = parse_query(query.encode("latin-1", "replace")) if query and query != "-" else {}
    viewer = cmcd.viewer_from_request(
        params.get(cmcd.QUERY_PARAM), header if header and header != "-" else None
    )
    return (parts[2], viewer) if viewer is not None else None


async def count_lines(reader: asyncio.StreamReader, store: SessionStore) -> int:
    """Touch the store for every counted line until ``reader`` ends; lines read."""
    lines = 0
    while line := await reader.readline():
        lines += 1
        seen = session_of_line(line.decode("latin-1"))
        if seen is not None:
            store.touch(seen[1], seen[0], time.time())
    return lines


async def run(varnish_name: str, settings: EdgeSettings) -> None:
    redis = redis_client(settings.redis_url)
    store = make_session_store(settings, redis)
    flusher = SessionFlusher(store)
    await flusher.start()
    proc = await asyncio.create_subprocess_exec(
        "varnishncsa", "-n", varnish_name, "-F", varnishncsa_format(),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    reading = asyncio.ensure_future(count_lines(proc.stdout, store))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        reading.cancel()
        stopping.cancel()
        await asyncio.gather(reading, stopping, return_exceptions=True)
        await flusher.stop()
        await redis.aclose()
    if not stop.is_set():
        raise SystemExit(f"varnishncsa ended (exit {proc.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--varnish-name",
        default=os.environ.get("CASCADE_SHIELD_VARNISH_NAME", "/var/lib/varnish/shield"),
        help="varnishd's -n (working directory) to read the log of",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=os.environ.get("CASCADE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    uvloop.run(run(args.varnish_name, EdgeSettings()))


if __name__ == "__main__":
    main()
