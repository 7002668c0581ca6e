"""Local mode's reconcile decisions: pure, from desired manifests and running fingerprints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from cascade.cli.reconcile import (
    Action,
    Verb,
    fingerprint,
    on_demand_names,
    on_demand_verdicts,
    plan,
)
from cascade.contract.lifecycle import AWAITING_VIEWERS, NO_VIEWERS, VIEWER_DEMAND, WATCHED
from cascade.contract.manifest import parse_manifest
from cascade.contract.spec import LiveStream

BASE = """\
apiVersion: cascade.dev/v1alpha1
kind: LiveStream
metadata:
  name: {name}
spec:
  source:
    type: test
  delivery:
    segmentDurationMs: {segment}
"""


def stream(name: str, *, segment: int = 500) -> LiveStream:
    return parse_manifest(BASE.format(name=name, segment=segment))


def on_demand(name: str, *, idle: int = 10) -> LiveStream:
    return parse_manifest(
        BASE.format(name=name, segment=500)
        + f"  activation: OnDemand\n  idleTimeoutSeconds: {idle}\n"
    )


def running_of(streams: Mapping[str, LiveStream]) -> dict[str, str]:
    return {name: fingerprint(s) for name, s in streams.items()}


def verbs(actions: list[Action]) -> list[tuple[Verb, str]]:
    return [(a.verb, a.name) for a in actions]


def test_nothing_desired_nothing_running() -> None:
    assert plan({}, {}) == []


def test_new_files_start_in_name_order() -> None:
    desired = {"b": stream("b"), "a": stream("a")}
    actions = plan(desired, {})
    assert verbs(actions) == [(Verb.START, "a"), (Verb.START, "b")]
    assert actions[0].stream is desired["a"]
    assert actions[1].stream is desired["b"]


def test_unchanged_spec_needs_no_action() -> None:
    desired = {"a": stream("a"), "b": stream("b")}
    assert plan(desired, running_of(desired)) == []


def test_reparsed_identical_file_needs_no_action() -> None:
    # A fresh parse of the same file (a new object) fingerprints the same.
    running = running_of({"a": stream("a")})
    assert plan({"a": stream("a")}, running) == []


def test_formatting_and_comments_change_nothing() -> None:
    reformatted = parse_manifest(
        "# a comment\nkind: LiveStream\napiVersion: cascade.dev/v1alpha1\n"
        "metadata: {name: a}\nspec: {delivery: {segmentDurationMs: 500}, source: {type: test}}\n"
    )
    assert fingerprint(reformatted) == fingerprint(stream("a"))


def test_explicit_defaults_fingerprint_like_omitted_ones() -> None:
    explicit = parse_manifest(
        BASE.format(name="a", segment=500) + "  activation: Always\n  idleTimeoutSeconds: 60\n"
    )
    assert fingerprint(explicit) == fingerprint(stream("a"))


def test_changed_spec_restarts_with_the_new_stream() -> None:
    running = running_of({"a": stream("a"), "b": stream("b")})
    changed = stream("a", segment=1000)
    actions = plan({"a": changed, "b": stream("b")}, running)
    assert verbs(actions) == [(Verb.RESTART, "a")]
    assert actions[0].stream is changed


def test_metadata_only_change_does_not_restart() -> None:
    running = running_of({"a": stream("a")})
    relabelled = parse_manifest(
        BASE.format(name="a", segment=500).replace(
            "  name: a\n", "  name: a\n  namespace: media\n  labels: {team: video}\n"
        )
    )
    assert relabelled.metadata.namespace == "media"
    assert plan({"a": relabelled}, running) == []


def test_status_change_does_not_restart() -> None:
    running = running_of({"a": stream("a")})
    with_status = parse_manifest(BASE.format(name="a", segment=500) + "status: {phase: Live}\n")
    assert plan({"a": with_status}, running) == []


def test_removed_file_stops_the_stream() -> None:
    running = running_of({"a": stream("a"), "b": stream("b")})
    actions = plan({"b": stream("b")}, running)
    assert actions == [Action(Verb.STOP, "a")]
    assert actions[0].stream is None


def test_broken_file_keeps_the_running_stream() -> None:
    running = running_of({"a": stream("a"), "b": stream("b")})
    # a.yaml no longer parses: it is not desired, but must not be stopped either.
    assert plan({"b": stream("b")}, running, broken=frozenset({"a"})) == []


def test_broken_file_of_a_stream_not_running_starts_nothing() -> None:
    assert plan({}, {}, broken=frozenset({"new"})) == []


def test_broken_file_does_not_shield_other_removals() -> None:
    running = running_of({"a": stream("a"), "b": stream("b"), "c": stream("c")})
    actions = plan({}, running, broken=frozenset({"b"}))
    assert verbs(actions) == [(Verb.STOP, "a"), (Verb.STOP, "c")]


def test_stops_come_before_starts_and_restarts() -> None:
    # Stopping first frees ports and GPU before a new process wants them.
    running = running_of({"old": stream("old"), "keep": stream("keep"), "edit": stream("edit")})
    desired = {
        "keep": stream("keep"),
        "edit": stream("edit", segment=1000),
        "new": stream("new"),
    }
    assert verbs(plan(desired, running)) == [
        (Verb.STOP, "old"),
        (Verb.RESTART, "edit"),
        (Verb.START, "new"),
    ]


def test_unknown_fingerprint_restarts() -> None:
    # A runner that lost track of what it started must converge to the file.
    assert verbs(plan({"a": stream("a")}, {"a": "0" * 16})) == [(Verb.RESTART, "a")]


def test_plan_is_idempotent_once_applied() -> None:
    desired = {"a": stream("a", segment=1000), "n": stream("n")}
    running = running_of({"a": stream("a"), "gone": stream("gone")})
    for action in plan(desired, running):
        if action.verb is Verb.STOP:
            del running[action.name]
        else:
            assert action.stream is not None
            running[action.name] = fingerprint(action.stream)
    assert plan(desired, running) == []


def test_fingerprint_is_short_hex_and_spec_sensitive() -> None:
    fp = fingerprint(stream("a"))
    assert len(fp) == 16
    int(fp, 16)
    assert fingerprint(stream("a", segment=1000)) != fp
    # The name is metadata: two files with one spec run the same thing.
    assert fingerprint(stream("z")) == fp


# ---- on-demand streams ------------------------------------------------------------------

NOW = 1_700_000_000.0


def test_a_dormant_on_demand_stream_is_not_started() -> None:
    desired = {"od": on_demand("od"), "a": stream("a")}
    assert verbs(plan(desired, {}, dormant=frozenset({"od"}))) == [(Verb.START, "a")]


def test_a_running_stream_that_turns_dormant_idles() -> None:
    desired = {"od": on_demand("od")}
    actions = plan(desired, running_of(desired), dormant=frozenset({"od"}))
    assert actions == [Action(Verb.IDLE, "od")]


def test_a_dormant_stream_with_a_changed_spec_idles_rather_than_restarts() -> None:
    running = running_of({"od": on_demand("od")})
    changed = {"od": on_demand("od", idle=30)}
    assert verbs(plan(changed, running, dormant=frozenset({"od"}))) == [(Verb.IDLE, "od")]


def test_an_on_demand_stream_that_should_run_starts_like_any_other() -> None:
    desired = {"od": on_demand("od")}
    actions = plan(desired, {})
    assert verbs(actions) == [(Verb.START, "od")]
    assert actions[0].stream is desired["od"]


def test_idle_stops_come_before_starts() -> None:
    desired = {"od": on_demand("od"), "new": stream("new")}
    running = running_of({"od": on_demand("od")})
    assert verbs(plan(desired, running, dormant=frozenset({"od"}))) == [
        (Verb.IDLE, "od"),
        (Verb.START, "new"),
    ]


def test_a_removed_dormant_stream_is_stopped_not_idled() -> None:
    running = running_of({"od": on_demand("od")})
    assert verbs(plan({}, running, dormant=frozenset({"od"}))) == [(Verb.STOP, "od")]


def test_on_demand_names_follow_the_files() -> None:
    desired = {"od": on_demand("od"), "a": stream("a")}
    assert on_demand_names(desired, frozenset(), frozenset()) == {"od"}
    # Becoming Always (or losing its file) takes it out of the set.
    assert on_demand_names({"od": stream("od")}, frozenset(), frozenset({"od"})) == set()
    assert on_demand_names({}, frozenset(), frozenset({"od"})) == set()
    # A file broken by an edit keeps what it had, like its running process.
    assert on_demand_names({}, frozenset({"od", "x"}), frozenset({"od"})) == {"od"}


def verdict_of(**kw: Any) -> tuple[bool, str]:
    args: dict[str, Any] = {
        "active_since": {},
        "stopped_at": {},
        "demand": {},
        "last_viewer": {},
        **kw,
    }
    verdicts = on_demand_verdicts(
        {"od": on_demand("od", idle=10), "a": stream("a")}, now=NOW, **args
    )
    assert set(verdicts) == {"od"}  # Always streams are not judged
    return verdicts["od"].run, verdicts["od"].reason


@pytest.mark.parametrize(
    ("readings", "run", "reason"),
    [
        ({}, False, AWAITING_VIEWERS),
        ({"demand": {"od": NOW - 1}}, True, VIEWER_DEMAND),
        ({"active_since": {"od": NOW - 5}}, True, VIEWER_DEMAND),
        ({"active_since": {"od": NOW - 60}, "last_viewer": {"od": NOW - 2}}, True, WATCHED),
        (
            {"active_since": {"od": NOW - 60}, "demand": {"od": NOW - 58}, "last_viewer": {}},
            False,
            NO_VIEWERS,
        ),
        # Stopped idle a moment ago: the demand that started that run does not restart it
        # (idleTimeoutSeconds 10 is under the 30 s demand window)...
        ({"stopped_at": {"od": NOW - 1}, "demand": {"od": NOW - 12}}, False, AWAITING_VIEWERS),
        # ...a request after the stop does.
        ({"stopped_at": {"od": NOW - 3}, "demand": {"od": NOW - 1}}, True, VIEWER_DEMAND),
    ],
)
def test_on_demand_verdicts(readings: dict[str, Any], run: bool, reason: str) -> None:
    assert verdict_of(**readings) == (run, reason)


def test_on_demand_cycle_converges() -> None:
    """Asked, started, watched, left alone, stopped, asked again: plan applied each second."""
    desired = {"od": on_demand("od", idle=10)}
    running: dict[str, str] = {}
    since: dict[str, float] = {}
    stopped: dict[str, float] = {}
    demand = {"od": NOW}
    last_viewer: dict[str, float] = {}
    seen: list[tuple[float, Verb]] = []
    for t in range(40):
        now = NOW + t
        if 2 <= t <= 5:
            last_viewer["od"] = now
        if t == 30:
            demand["od"] = now
        verdicts = on_demand_verdicts(desired, since, stopped, demand, last_viewer, now)
        dormant = frozenset(n for n, v in verdicts.items() if not v.run)
        for action in plan(desired, running, dormant=dormant):
            seen.append((t, action.verb))
            if action.verb is Verb.START:
                assert action.stream is not None
                running["od"], since["od"] = fingerprint(action.stream), now
            elif action.verb is Verb.IDLE:
                del running["od"], since["od"]
                stopped["od"] = now
    # Watched until t=5, stopped 10 s later, started again by the request at t=30.
    assert seen == [(0, Verb.START), (15, Verb.IDLE), (30, Verb.START)]
