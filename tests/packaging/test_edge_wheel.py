"""The edge as a deployment installs it: its wheel and core's in a clean virtualenv, nothing
else from the workspace, started as ``cascade-edge`` against a real Redis.

What this shows: the player page and hls.js are served from inside the installed package
(no checkout, no node_modules above it, no CASCADE_HLSJS), and the edge's dependencies hold
no kopf and no Kubernetes client. The wheels are built from the source folders with the
workspace's own build backend (no network); their dependencies come from uv's cache, so
only a machine's first run downloads them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import free_port, wait_http

pytestmark = pytest.mark.slow  # builds two wheels, a virtualenv, and starts a process

REPO = Path(__file__).resolve().parents[2]
HLSJS = REPO / "node_modules" / "hls.js" / "dist" / "hls.min.js"


def run(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(map(str, argv)), cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


def install(venv: Path, wheels: list[Path], cwd: Path) -> None:
    """The wheels and their dependencies: from uv's cache if it has them, else from the index."""
    uv = Path(sys.executable).with_name("uv")
    argv = [str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
    argv += map(str, wheels)
    offline = subprocess.run([*argv, "--offline"], cwd=cwd, capture_output=True)
    if offline.returncode != 0:
        run(*argv, cwd=cwd)


def test_the_edge_wheel_alone_serves_its_player_and_hlsjs(tmp_path: Path, redis_url: str) -> None:
    started = time.monotonic()
    wheels = tmp_path / "wheels"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", wheels, REPO / "core", REPO / "edge", cwd=tmp_path)  # fmt: skip
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    install(venv, sorted(wheels.glob("*.whl")), cwd=tmp_path)

    listed = json.loads(run(venv / "bin" / "python", "-m", "pip", "list", "--format=json",
                            cwd=tmp_path).stdout)  # fmt: skip
    names = {p["name"].lower().replace("_", "-") for p in listed}
    assert {"cascade-live-core", "cascade-live-edge", "fastapi", "redis"} <= names
    assert not names & {"kopf", "kubernetes", "cascade-live-operator", "cascade-live-transcoder"}
    assert not names & {"cascade-live-cli", "uvicorn"}  # the edge serves with its own server
    run(venv / "bin" / "python", "-m", "pip", "check", cwd=tmp_path)
    where = run(venv / "bin" / "python", "-c", "import cascade.edge; print(cascade.edge.__file__)",
                cwd=tmp_path).stdout.strip()  # fmt: skip
    assert Path(where).is_relative_to(venv), where  # the installed edge, not the checkout

    port = free_port()
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "HOST": "127.0.0.1",
           "PORT": str(port), "CASCADE_LOG_LEVEL": "WARNING"}  # fmt: skip
    proc = subprocess.Popen([venv / "bin" / "cascade-edge"], cwd=tmp_path, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        page = httpx.get(f"{base}/watch/demo", timeout=5)
        assert page.status_code == 200 and '<script src="/static/hls.min.js">' in page.text
        hlsjs = httpx.get(f"{base}/static/hls.min.js", timeout=5)
        assert hlsjs.status_code == 200
        assert hlsjs.content == HLSJS.read_bytes()  # npm's hls.js, packed into the wheel
        assert httpx.get(f"{base}/static/player.js", timeout=5).status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    assert time.monotonic() - started < 60
