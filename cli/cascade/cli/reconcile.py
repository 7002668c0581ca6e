"""Local mode's reconcile decisions: folder of manifests vs running streams. Pure.

``activation: OnDemand`` streams follow the rule the operator applies
(:func:`cascade.contract.lifecycle.on_demand_verdict`): :func:`on_demand_verdicts` judges
them from what ``cascade up`` read in Redis, and the ones that should have no
transcoder are ``dormant`` for :func:`plan`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from cascade.contract.lifecycle import Activity, Verdict, on_demand_verdict
from cascade.contract.spec import Activation, LiveStream


class Verb(StrEnum):
    START = "start"
    RESTART = "restart"  # the spec changed: stop the old process, start the new spec
    STOP = "stop"  # the file is gone: stop, and remove the stream's Redis state
    # An on-demand stream nobody watches: stop, remove its Redis state, keep it on demand.
    IDLE = "idle"


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
    dormant: frozenset[str] = frozenset(),
) -> list[Action]:
    """Actions that turn ``running`` (name -> fingerprint) into ``desired``.

    A name in ``broken`` has a file that no longer parses: its running stream is kept
    (a typo must not take a live stream down); the error is reported instead. A name in
    ``dormant`` is desired without a transcoder (an on-demand stream nobody asks for):
    it is not started, and stopped (``IDLE``) if it runs.
    """
    actions: list[Action] = []
    for name in sorted(running):
        if name not in desired and name not in broken:
            actions.append(Action(Verb.STOP, name))
        elif name in desired and name in dormant:
            actions.append(Action(Verb.IDLE, name))
    for name, stream in sorted(desired.items()):
        if name in dormant:
            continue
        if name not in running:
            actions.append(Action(Verb.START, name, stream))
        elif running[name] != fingerprint(stream):
            actions.append(Action(Verb.RESTART, name, stream))
    return actions


def on_demand_names(
    desired: Mapping[str, LiveStream], broken: frozenset[str], previous: frozenset[str]
) -> frozenset[str]:
    """The names for ``cascade:ondemand``: desired on-demand streams, and those of files
    broken by an edit that were on demand before (kept as they were, like their process)."""
    names = {n for n, s in desired.items() if s.spec.activation is Activation.ON_DEMAND}
    return frozenset(names | (broken & previous))


def on_demand_verdicts(
    desired: Mapping[str, LiveStream],
    active_since: Mapping[str, float],
    stopped_at: Mapping[str, float],
    demand: Mapping[str, float],
    last_viewer: Mapping[str, float],
    now: float,
) -> dict[str, Verdict]:
    """The lifecycle verdict of every desired on-demand stream (Unix seconds throughout).

    ``active_since``: when each running transcoder was started; ``stopped_at``: when local
    mode last stopped a stream for want of viewers; ``demand`` and ``last_viewer``: the
    scores read from ``cascade:demand`` and ``cascade:viewers:{s}``.
    """
    verdicts: dict[str, Verdict] = {}
    for name, stream in desired.items():
        if stream.spec.activation is not Activation.ON_DEMAND:
            continue
        activity = Activity(
            active_since.get(name),
            demand.get(name, 0.0),
            last_viewer.get(name, 0.0),
            stopped_at=stopped_at.get(name, 0.0),
        )
        verdicts[name] = on_demand_verdict(activity, stream.spec.idle_timeout_seconds, now)
    return verdicts
