"""``cascade-edge``: one edge process (uvicorn), configured from the environment."""

from __future__ import annotations

import logging
import os

import uvicorn

from cascade.core.settings import EdgeSettings
from cascade.edge.app import create_app


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("CASCADE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    settings = EdgeSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        # Blocked LL-HLS requests finish within three target durations: let them.
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
