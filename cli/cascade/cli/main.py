"""The ``cascade`` command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from cascade.cli import crd, sign
from cascade.contract.manifest import ManifestError, parse_manifest
from cascade.contract.settings import LocalSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cascade", description="Cascade live streaming")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the whole pipeline locally with the streams of a folder")
    up.add_argument(
        "--streams-dir",
        type=Path,
        default=None,
        help="folder of LiveStream YAML files (env CASCADE_STREAMS_DIR; default examples/local)",
    )
    up.add_argument(
        "--port", type=int, default=None, help="edge HTTP port (env PORT; default 8080)"
    )
    up.add_argument("--log-level", default=os.environ.get("CASCADE_LOG_LEVEL", "WARNING"))
    check = sub.add_parser("check", help="validate LiveStream files; exit 1 on any error")
    check.add_argument("files", type=Path, nargs="+")
    sign.add_parser(sub)
    crd.add_parser(sub)
    args = parser.parse_args(argv)

    if args.command == "sign":
        return sign.run(args)
    if args.command == "crd":
        return crd.run(args)

    if args.command == "check":
        failed = False
        for path in args.files:
            try:
                stream = parse_manifest(path.read_text(), source=str(path))
                print(f"{path}: ok ({stream.name})")
            except ManifestError as exc:
                failed = True
                for problem in exc.problems:
                    print(f"{path}: {problem}", file=sys.stderr)
        return 1 if failed else 0

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    overrides: dict[str, object] = {}
    if args.streams_dir is not None:
        overrides["streams_dir"] = args.streams_dir
    if args.port is not None:
        overrides["port"] = args.port
    settings = LocalSettings(**overrides)  # type: ignore[arg-type]
    os.environ.setdefault("CASCADE_LOG_LEVEL", args.log_level)
    from cascade.cli.local import run

    return run(settings, redis_url=os.environ.get("REDIS_URL"))


if __name__ == "__main__":
    raise SystemExit(main())
