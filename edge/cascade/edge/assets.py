"""Static files of the player: our own, and hls.js installed from npm at set-up (never committed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9]+)+")  # fullmatch: "$" passes a final "\n"
# Longer than any file we ship: asking the file system about a longer name raises
# "File name too long" (ENAMETOOLONG), which must be a 404, not a 500.
_MAX_NAME = 64


def hlsjs_path() -> Path | None:
    """hls.min.js: ``CASCADE_HLSJS`` if set; else the copy beside the other static files (in
    the installed edge: its wheel refuses to build without it); else, in a source checkout
    without that copy, the nearest ``node_modules`` above the source."""
    env = os.environ.get("CASCADE_HLSJS")
    if env:
        return Path(env)
    packed = STATIC_DIR / "hls.min.js"
    if packed.is_file():
        return packed
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "node_modules" / "hls.js" / "dist" / "hls.min.js"
        if candidate.is_file():
            return candidate
    return None


def static_file(name: str) -> Path | None:
    """The file to serve for ``/static/{name}``; None for anything else (no path tricks)."""
    if len(name) > _MAX_NAME or not _NAME_RE.fullmatch(name):
        return None
    if name == "hls.min.js":
        return hlsjs_path()
    path = STATIC_DIR / name
    return path if path.is_file() else None
