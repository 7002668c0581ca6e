"""``cascade sign STREAM --ttl 3600 [--base URL] [--kid KID]``: print a signed playback URL.

Keys come from the environment like the edge's (``CASCADE_SIGNING_KEYS`` or
``CASCADE_SIGNING_KEYS_DIR``); the formula is in ``docs/signed-urls.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from cascade.contract.settings import EdgeSettings
from cascade.contract.spec import is_valid_name
from cascade.edge.access import SigningKey, key_ring, sign_url

DEFAULT_BASE = "http://127.0.0.1:8080"


def add_parser(subparsers: Any) -> None:
    """Add ``sign`` to the ``cascade`` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sign", help="print a signed playback URL for a stream with access: signed"
    )
    parser.add_argument("stream", help="the LiveStream name")
    parser.add_argument(
        "--ttl", type=int, default=3600, help="seconds the URL stays valid (default 3600)"
    )
    parser.add_argument(
        "--base", default=DEFAULT_BASE, help=f"the edge's public URL (default {DEFAULT_BASE})"
    )
    parser.add_argument(
        "--kid", default=None, help="key id to sign with (default CASCADE_SIGNING_KEY_ID)"
    )


def choose_key(keys: Mapping[str, SigningKey], kid: str | None) -> SigningKey:
    """``kid`` when given, else the only key; several keys and no choice is an error."""
    if not keys:
        raise ValueError(
            "no signing key: set CASCADE_SIGNING_KEYS=kid:base64secret or CASCADE_SIGNING_KEYS_DIR"
        )
    if kid is not None:
        if kid not in keys:
            raise ValueError(f"no signing key {kid!r} (keys: {', '.join(sorted(keys))})")
        return keys[kid]
    if len(keys) > 1:
        raise ValueError(
            f"several signing keys ({', '.join(sorted(keys))}): "
            "choose one with --kid or CASCADE_SIGNING_KEY_ID"
        )
    return next(iter(keys.values()))


def run(args: argparse.Namespace, *, clock: Callable[[], float] = time.time) -> int:
    if not is_valid_name(args.stream):
        print(f"cascade sign: {args.stream!r} is not a stream name", file=sys.stderr)
        return 2
    if args.ttl <= 0:
        print("cascade sign: --ttl must be positive seconds", file=sys.stderr)
        return 2
    try:
        settings = EdgeSettings()
        key = choose_key(key_ring(settings.signing_key_ring()), args.kid or settings.signing_key_id)
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        print(f"cascade sign: {problems}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"cascade sign: {exc}", file=sys.stderr)
        return 2
    print(sign_url(args.base, args.stream, int(clock()) + args.ttl, key))
    return 0
