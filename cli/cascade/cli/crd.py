"""``cascade crd [--write]``: print the LiveStream CRD, or write it into ``crds/``.

The CRD is generated from the pydantic spec (``cascade.contract.crd``); ``--write`` refreshes
``crds/livestreams.cascade.dev.yaml`` and the chart's copy in ``helm/cascade/crds/``,
which ``tests/contract/test_crd.py`` compares with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cascade.contract.crd import CHART_CRD_PATH, CRD_PATH, render_crd

# cli/cascade/cli/crd.py -> the repository root.
REPO = Path(__file__).resolve().parents[3]


def add_parser(subparsers: Any) -> None:
    """Add ``crd`` to the ``cascade`` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "crd", help="print the LiveStream CustomResourceDefinition (generated from the spec)"
    )
    parser.add_argument(
        "--write",
        nargs="?",
        const=REPO / CRD_PATH,
        default=None,
        type=Path,
        metavar="PATH",
        help=f"write it to PATH instead of printing it (default {CRD_PATH} in the repository)",
    )


def run(args: argparse.Namespace) -> int:
    text = render_crd()
    if args.write is None:
        sys.stdout.write(text)
        return 0
    paths: list[Path] = [args.write]
    if args.write == REPO / CRD_PATH:
        paths.append(REPO / CHART_CRD_PATH)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0
