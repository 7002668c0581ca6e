"""The transcoder's Kubernetes probes: ``GET /livez`` and ``GET /readyz`` on a small port.

The transcoder reports its health to Redis (what the operator's status and the edges read);
the kubelet needs a local answer too:

* ``/livez``: 200 while the packager runs. The answer comes from the event loop that moves
  every part, so a wedged loop times the probe out and the kubelet restarts the container;
  a runner that ended with an error answers 503.
* ``/readyz``: 200 while FFmpeg runs (states starting, live, idle): the ingest Service sends
  encoders only to a pod that is listening. 503 while FFmpeg restarts after a failure
  (reconnecting) and after the stream ended.

Off unless ``CASCADE_PROBE_PORT`` is set (local mode runs many transcoders on one machine);
the operator sets it in transcoder pods. ``probe_answer`` is the pure decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from cascade.contract.schema import StreamState

READY_STATES = frozenset({StreamState.STARTING, StreamState.LIVE, StreamState.IDLE})
# A probe request is one line and a few headers: anything longer is not the kubelet.
MAX_REQUEST_BYTES = 4096


def probe_answer(
    path: str, state: StreamState, reason: str, running: bool
) -> tuple[int, dict[str, str]]:
    """Status code and JSON body for one probe request."""
    body = {"state": state.value, "reason": reason}
    if path == "/livez":
        return (200 if running else 503), body
    if path == "/readyz":
        return (200 if running and state in READY_STATES else 503), body
    return 404, {"error": f"no probe at {path}; try /livez or /readyz"}


class ProbeServer:
    """A minimal HTTP/1.0 responder: one request per connection, then close."""

    def __init__(self, status: Callable[[], tuple[StreamState, str, bool]]) -> None:
        self._status = status
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            method, path, *_ = head[:MAX_REQUEST_BYTES].decode("latin-1").split(" ", 2)
            if method != "GET":
                code, body = 405, {"error": "probes answer GET only"}
            else:
                code, body = probe_answer(path.split("?", 1)[0], *self._status())
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            code, body = 400, {"error": "not an HTTP request"}
        payload = json.dumps(body).encode()
        phrase = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        writer.write(
            f"HTTP/1.0 {code} {phrase.get(code, 'Service Unavailable')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + payload
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
