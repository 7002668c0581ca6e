"""The transcoder's probes: the pure answer table, the responder over loopback, and the real
program (FFmpeg included) answering them."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from cascade.contract.schema import StreamState
from cascade.transcoder.probes import ProbeServer, probe_answer

from ..conftest import ffmpeg_or_fail, free_port, wait_http

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("path", "state", "running", "code"),
    [
        ("/livez", StreamState.LIVE, True, 200),
        ("/livez", StreamState.RECONNECTING, True, 200),  # FFmpeg restarting: still alive
        ("/livez", StreamState.LIVE, False, 503),  # the runner ended
        ("/readyz", StreamState.STARTING, True, 200),  # listening for the encoder
        ("/readyz", StreamState.LIVE, True, 200),
        ("/readyz", StreamState.IDLE, True, 200),
        ("/readyz", StreamState.RECONNECTING, True, 503),
        ("/readyz", StreamState.ENDED, True, 503),
        ("/metrics", StreamState.LIVE, True, 404),
    ],
)
def test_probe_answers(path: str, state: StreamState, running: bool, code: int) -> None:
    assert probe_answer(path, state, "Why", running)[0] == code


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_the_responder_over_loopback() -> None:
    state = [StreamState.LIVE]
    server = ProbeServer(lambda: (state[0], "PartsFlowing", True))
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            live = await client.get("/readyz")
            state[0] = StreamState.RECONNECTING
            down = await client.get("/readyz")
            wrong = await client.post("/livez")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"garbage\r\n\r\n")
        garbage = await reader.read()
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()

    assert (live.status_code, live.json()) == (200, {"state": "live", "reason": "PartsFlowing"})
    assert down.status_code == 503
    assert wrong.status_code == 405
    assert garbage.startswith(b"HTTP/1.0 400")


@pytest.mark.slow
def test_the_transcoder_program_answers_its_probes(redis_url: str) -> None:
    ffmpeg_or_fail()
    port = free_port()
    stream = {
        "metadata": {"name": "probed"},
        "spec": {"source": {"type": "test", "test": {"width": 320, "height": 180}}},
    }
    env = {
        **os.environ,
        "CASCADE_LIVESTREAM": json.dumps(stream),
        "REDIS_URL": redis_url,
        "CASCADE_PROBE_PORT": str(port),
        "CASCADE_BIND_HOST": "127.0.0.1",
    }
    program = shutil.which("cascade-transcoder", path=str(REPO / ".venv" / "bin"))
    assert program is not None
    proc = subprocess.Popen(
        [program], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Starting (ready: FFmpeg listens), then live once parts flow.
        ready = wait_http(f"http://127.0.0.1:{port}/readyz", lambda r: r.json()["state"] == "live")
        assert ready.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
