"""Each top-level folder is one distribution, and declares exactly what its code imports.

The folders of the workspace (root pyproject.toml, ``[tool.uv.workspace]``) each have a
pyproject.toml; every third-party module a folder's ``cascade`` code imports comes from a
distribution that folder requires, every ``cascade.*`` package it imports from another
folder is that folder's distribution, and nothing is required that the code never imports.
So the edge cannot start importing kopf without the edge's image carrying it, and no image
carries what its code never uses.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject(folder: str) -> dict[str, Any]:
    return tomllib.loads((REPO / folder / "pyproject.toml").read_text())


@cache
def members() -> dict[str, str]:
    """Workspace folder -> its distribution's name."""
    folders = pyproject(".")["tool"]["uv"]["workspace"]["members"]
    return {folder: normalize(pyproject(folder)["project"]["name"]) for folder in folders}


def required(folder: str) -> set[str]:
    """The distributions a folder's pyproject.toml requires (names, extras and versions off)."""
    reqs = pyproject(folder)["project"]["dependencies"]
    return {normalize(re.match(r"[A-Za-z0-9._-]+", r)[0]) for r in reqs}  # type: ignore[index]


@cache
def owner_of_cascade_package() -> dict[str, str]:
    """``cascade.X`` -> the folder holding it (core holds cascade.contract, .cmaf and .hls)."""
    return {
        sub.name: folder
        for folder in members()
        for sub in (REPO / folder / "cascade").iterdir()
        if sub.is_dir() and sub.name != "__pycache__"
    }


def imported(folder: str) -> set[str]:
    """Top-level modules the folder's ``cascade`` code imports (``cascade.X`` kept as is)."""
    names: set[str] = set()
    for path in (REPO / folder / "cascade").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module]
            else:
                continue
            for name in found:
                parts = name.split(".")
                names.add(".".join(parts[:2]) if parts[0] == "cascade" else parts[0])
    return names - set(sys.stdlib_module_names) - {"__future__"}


def distributions_of(folder: str) -> set[str]:
    """The distributions the folder's imports come from: third-party and workspace ones."""
    dists = importlib.metadata.packages_distributions()
    found: set[str] = set()
    for module in imported(folder):
        if module.startswith("cascade."):
            owner = owner_of_cascade_package()[module.removeprefix("cascade.")]
            if owner != folder:
                found.add(members()[owner])
        else:
            assert module in dists, f"{folder}/ imports {module}: installed by no distribution"
            found.update(normalize(d) for d in dists[module])
    return found


def test_the_workspace_is_the_design_cards_folders() -> None:
    assert set(members()) == {"core", "transcoder", "edge", "operator", "cli"}
    assert all(name.startswith("cascade-live-") for name in members().values())


@pytest.mark.parametrize("folder", ["core", "transcoder", "edge", "operator", "cli"])
def test_each_distribution_requires_exactly_what_its_code_imports(folder: str) -> None:
    assert required(folder) == distributions_of(folder)


def test_the_edge_and_the_transcoder_never_carry_the_kubernetes_stack() -> None:
    def closure(folder: str) -> set[str]:
        by_name = {name: f for f, name in members().items()}
        seen: set[str] = set()
        todo = [folder]
        while todo:
            for name in required(todo.pop()) - seen:
                seen.add(name)
                if name in by_name:
                    todo.append(by_name[name])
        return seen

    for folder in ("edge", "transcoder"):
        assert not closure(folder) & {"kopf", "kubernetes", "cascade-live-operator"}, folder
    assert not closure("operator") & {"fastapi", "httptools", "uvloop", "cascade-live-edge"}


@pytest.mark.parametrize("folder", ["transcoder", "edge", "operator", "cli"])
def test_members_require_each_other_at_the_same_version(folder: str) -> None:
    version = pyproject(folder)["project"]["version"]
    for req in pyproject(folder)["project"]["dependencies"]:
        if req.startswith("cascade-live-"):
            assert req.endswith(f"=={version}"), req
