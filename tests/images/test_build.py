"""The three images built without Docker (scripts/images-build.sh, `make images`): buildah on
the local mmdebstrap base, each checked inside (the edge has hls.js in its installed package
and no kopf or Kubernetes client, the transcoder's FFmpeg has the NVENC encoders, the operator
has kopf), exported as OCI archives for `ctr import`, and not rebuilt on a warm run.

Cold, the build costs minutes (the base from Debian packages, pip from PyPI, FFmpeg from the
mirror); warm, seconds. Opt-in (CASCADE_TEST_IMAGES=1) until that cold cost is accepted into
`make test`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("buildah") is None, reason="buildah is not installed (make setup installs it)"
    ),
    pytest.mark.skipif(
        os.environ.get("CASCADE_TEST_IMAGES") != "1",
        reason="image builds are opt-in for now (cold: minutes): set CASCADE_TEST_IMAGES=1",
    ),
]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "images-build.sh"
COMPONENTS = ("edge", "operator", "transcoder")
CACHE = Path(os.environ.get("CASCADE_CACHE", Path.home() / ".cache" / "cascade"))


def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def built() -> dict[str, tuple[str, Path]]:
    run(timeout=3600)  # cold: the base, then the three builds, each checked before export
    index = (CACHE / "images" / "index.tsv").read_text().splitlines()
    rows = {line.split("\t")[0]: line.split("\t") for line in index}
    return {c: (rows[c][1], Path(rows[c][2])) for c in COMPONENTS}


def test_each_image_holds_what_its_program_needs(built: dict[str, tuple[str, Path]]) -> None:
    checked = run("--check", timeout=600).stderr
    for c in COMPONENTS:
        assert f"{c}: checks passed" in checked


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_image_is_an_oci_archive_for_ctr_import(
    built: dict[str, tuple[str, Path]], component: str
) -> None:
    image, archive = built[component]
    assert re.fullmatch(rf"localhost/cascade/{component}:[0-9a-f]{{16}}", image)
    assert archive.name == f"{component}-{image.rsplit(':', 1)[1]}.oci.tar"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        assert {"oci-layout", "index.json"} <= names
        index = tar.extractfile("index.json")
        assert index is not None and image.encode() in index.read()  # the name ctr import gives it


def test_a_warm_run_rebuilds_nothing(built: dict[str, tuple[str, Path]]) -> None:
    start = time.monotonic()
    log = run(timeout=300).stderr
    assert time.monotonic() - start < 60, log
    for c in COMPONENTS:
        assert f"{c}: up to date" in log
    assert "building" not in log and "mmdebstrap" not in log
