"""Local mode's reconcile decisions: folder of manifests vs running streams. Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cascade.core.spec import LiveStream


class Verb(StrEnum):
    START = "start"
    RESTART = "restart"  # the spec changed: stop the old process, start the new spec
    STOP = "stop"  # the file is gone: stop, and remove the stream's Redis state


@dataclass(frozen=True, slots=True)
class Action:
    verb: Verb
    name: str
    stream: LiveStream | None = None


def fingerprint(stream: LiveStream) -> str:
    """Identity of what runs: the spec only (file formatting or comments change nothing)."""
    return hashlib.sha256(stream.spec.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


def plan(
    desired: Mapping[str, LiveStream],
    running: Mapping[str, str],
    broken: frozenset[str] = frozenset(),
) -> list[Action]:
    """Actions that turn ``running`` (name -> fingerprint) into ``desired``.

    A name in ``broken`` has a file that no longer parses: its running stream is kept
    (a typo must not take a live stream down); the error is reported instead.
    """
    actions: list[Action] = []
    for name in sorted(running):
        if name not in desired and name not in broken:
            actions.append(Action(Verb.STOP, name))
    for name, stream in sorted(desired.items()):
        if name not in running:
            actions.append(Action(Verb.START, name, stream))
        elif running[name] != fingerprint(stream):
            actions.append(Action(Verb.RESTART, name, stream))
    return actions
