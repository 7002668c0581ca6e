"""The chart's tests share the helm binary built with the test control plane."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm from scripts/cluster-build.sh (go install from the module proxy, then cached)."""
    out = subprocess.run(
        [str(REPO / "scripts" / "cluster-build.sh")], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "helm"
