"""What the images run, without a Docker engine: each Dockerfile's ENTRYPOINT is the command
the chart (or the operator's pod builder) starts, and that program, started as a process
with the environment the chart renders, answers the probes the chart and the HEALTHCHECK
point at.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from cascade.core.manifest import parse_manifest
from cascade.operator.builders import build_transcoder_pod
from cascade.operator.settings import OperatorSettings

from ..conftest import free_port, wait_http
from .test_chart import render

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = {c: REPO / f"Dockerfile.{c}" for c in ("operator", "edge", "transcoder")}


def instruction(path: Path, name: str) -> str:
    """The last ``NAME ...`` instruction of a Dockerfile, continuation lines joined."""
    text = path.read_text().replace("\\\n", " ")
    found = [line[len(name) :].strip() for line in text.splitlines() if line.startswith(f"{name} ")]
    assert found, f"{path.name} has no {name}"
    return found[-1]


def entrypoint(component: str) -> list[str]:
    value: list[str] = json.loads(instruction(DOCKERFILES[component], "ENTRYPOINT"))
    return value


def chart_container(helm_bin: Path, component: str) -> dict[str, Any]:
    for doc in render(helm_bin, []):
        if doc["kind"] == "Deployment" and doc["metadata"]["name"].endswith(f"-{component}"):
            container: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
            return container
    raise AssertionError(component)


@pytest.mark.parametrize("component", ["operator", "edge"])
def test_the_chart_runs_the_images_entrypoint(helm: Path, component: str) -> None:
    assert chart_container(helm, component)["command"] == entrypoint(component)


def test_the_operator_starts_transcoders_with_the_images_entrypoint() -> None:
    stream = parse_manifest("metadata: {name: x}\nspec: {source: {type: test}}\n")
    pod = build_transcoder_pod(stream, OperatorSettings(), generation=1, redis_url="redis://r")

    container = pod["spec"]["containers"][0]
    assert container["command"] == entrypoint("transcoder")
    # The image's HEALTHCHECK asks what the pod's livenessProbe asks, on the same port.
    health = instruction(DOCKERFILES["transcoder"], "HEALTHCHECK")
    probe = container["livenessProbe"]["httpGet"]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == probe["port"])
    assert f"127.0.0.1:{port}{probe['path']}" in health


@pytest.mark.parametrize("component", DOCKERFILES)
def test_images_are_non_root_multi_stage_and_pinned(component: str) -> None:
    text = DOCKERFILES[component].read_text()
    bases = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert bases and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", bases[0])  # a patch release
    assert text.count("FROM ") == 2 and "COPY --from=build" in text
    assert instruction(DOCKERFILES[component], "USER") == "10001:10001"
    assert "HEALTHCHECK" in text


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(REPO / ".venv" / "bin")) or "hadolint"
    result = subprocess.run(
        [hadolint, *map(str, DOCKERFILES.values())], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_edge_as_the_chart_runs_it_answers_its_probes(
    helm: Path,
    redis_url: str,
) -> None:
    container = chart_container(helm, "edge")
    port = free_port()
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(REDIS_URL=redis_url, PORT=str(port), HOST="127.0.0.1")  # loopback, a free port
    health = instruction(DOCKERFILES["edge"], "HEALTHCHECK")
    program = shutil.which(container["command"][0], path=str(REPO / ".venv" / "bin"))
    assert program is not None
    proc = subprocess.Popen([program], env={**os.environ, **env})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/readyz")
        for probe in (container["readinessProbe"], container["livenessProbe"]):
            assert httpx.get(f"{base}{probe['httpGet']['path']}", timeout=2).status_code == 200
        assert "/livez" in health  # the image's own HEALTHCHECK asks the same endpoint
    finally:
        proc.terminate()
        assert proc.wait(15) == 0  # SIGTERM drains and exits cleanly
