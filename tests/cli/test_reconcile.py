"""Local mode's reconcile decisions: pure, from desired manifests and running fingerprints."""

from __future__ import annotations

from collections.abc import Mapping

from cascade.cli.reconcile import Action, Verb, fingerprint, plan
from cascade.core.manifest import parse_manifest
from cascade.core.spec import LiveStream

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
