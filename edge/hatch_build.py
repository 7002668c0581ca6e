"""The edge's wheel carries hls.min.js beside its other static files, or is not built.

hls.js comes from npm (package.json pins it); `make setup` copies
node_modules/hls.js/dist/hls.min.js into cascade/edge/static/ (git-ignored). An editable
install needs no copy: the edge then falls back to the checkout's node_modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

HLSJS = Path("cascade", "edge", "static", "hls.min.js")


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        path = Path(self.root, HLSJS)
        if not path.is_file() or path.stat().st_size == 0:
            raise RuntimeError(
                f"{path} is missing: the edge's player needs hls.js. Run `make setup` "
                "(npm ci, then the copy), or `npm ci && cp node_modules/hls.js/dist/hls.min.js "
                f"{Path('edge', HLSJS)}` at the repository root."
            )
