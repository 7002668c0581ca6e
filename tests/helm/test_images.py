"""What the images run, without a Docker engine: each Dockerfile's ENTRYPOINT is the command
the chart (or the operator's pod builder) starts, and that program, started as a process
with the environment the chart renders, answers the probes the chart and the HEALTHCHECK
point at. Each image copies and installs only its own distribution and the workspace
distributions it requires (tests/packaging checks that they require what their code imports).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from cascade.contract.manifest import parse_manifest
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


def build_copies(component: str) -> set[str]:
    """What the Dockerfile copies from the build context (every COPY without ``--from``)."""
    text = DOCKERFILES[component].read_text().replace("\\\n", " ")
    sources: set[str] = set()
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources.update(line.split()[1:-1])
    return sources


def pip_installs(component: str) -> list[str]:
    """The arguments of the Dockerfile's ``pip install``."""
    found = re.findall(r"pip install (.+)$", DOCKERFILES[component].read_text(), re.MULTILINE)
    assert len(found) == 1, found
    args: list[str] = found[0].split()
    return args


def project(folder: str) -> dict[str, Any]:
    doc: dict[str, Any] = tomllib.loads((REPO / folder / "pyproject.toml").read_text())
    return doc


def workspace_folders_needed(folder: str) -> set[str]:
    """The folder and, transitively, the workspace folders whose distributions it requires."""
    members = project(".")["tool"]["uv"]["workspace"]["members"]
    folder_of = {project(m)["project"]["name"]: m for m in members}
    needed, todo = {folder}, [folder]
    while todo:
        for req in project(todo.pop())["project"]["dependencies"]:
            name = re.split(r"[\s\[=<>!~;]", req, maxsplit=1)[0]
            if name in folder_of and folder_of[name] not in needed:
                needed.add(folder_of[name])
                todo.append(folder_of[name])
    return needed


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


@pytest.mark.parametrize("component", DOCKERFILES)
def test_each_image_copies_and_installs_only_its_distribution(component: str) -> None:
    folders = workspace_folders_needed(component)
    assert folders == {"core", component}
    # The edge's player needs hls.js from npm beside its static files; nothing else is extra.
    extra = {"node_modules/hls.js/dist/hls.min.js"} if component == "edge" else set()
    assert build_copies(component) == folders | extra
    args = pip_installs(component)
    assert {a for a in args if not a.startswith("-")} == {f"./{f}" for f in folders}
    assert not {"-e", "--editable"} & set(args)  # the image holds built packages


def test_the_edge_image_gets_hlsjs_past_dockerignore() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "node_modules" in ignore and "!node_modules/hls.js/dist/hls.min.js" in ignore


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
