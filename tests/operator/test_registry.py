"""The kopf registry, group by group: each ``register_*`` function adds its handlers alone,
and the indexers and wakers do what the daemons rely on (called as kopf calls them)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

import kopf
import pytest
import redis.asyncio as aioredis

from cascade.operator.builders import LABEL_LIVESTREAM, LABEL_MANAGED_BY
from cascade.operator.capacity import StreamDemand
from cascade.operator.controller import (
    FINALIZER,
    LIVESTREAMS,
    Key,
    Runtime,
    build_registry,
    register_clients,
    register_daemon,
    register_finalizer,
    register_indexes,
    register_wakers,
)
from cascade.operator.metrics import OperatorMetrics
from cascade.operator.reconcile import PodView, ServiceView
from cascade.operator.settings import OperatorSettings

from ..conftest import free_port

SETTINGS = OperatorSettings()
LABELS = {LABEL_MANAGED_BY: "cascade-operator", LABEL_LIVESTREAM: "cam1"}


def runtime() -> Runtime:
    return Runtime(SETTINGS, OperatorMetrics())


def parts(registry: kopf.OperatorRegistry) -> dict[str, list[Any]]:
    """The registry's handlers by kind, in registration order."""
    return {
        "activities": list(registry._activities.get_all_handlers()),
        "indexing": list(registry._indexing.get_all_handlers()),
        "watching": list(registry._watching.get_all_handlers()),
        "spawning": list(registry._spawning.get_all_handlers()),
        "changing": list(registry._changing.get_all_handlers()),
    }


def ids(handlers: Iterable[Any]) -> list[str]:
    return [str(h.id) for h in handlers]


def only(register: Callable[[kopf.OperatorRegistry], None]) -> dict[str, list[str]]:
    """The handler ids one register function adds to an empty registry, by kind."""
    registry = kopf.OperatorRegistry()
    register(registry)
    return {kind: ids(handlers) for kind, handlers in parts(registry).items() if handlers}


def fn(registry: kopf.OperatorRegistry, kind: str, handler_id: str) -> Callable[..., Any]:
    handler = next(h for h in parts(registry)[kind] if h.id == handler_id)
    return cast(Callable[..., Any], handler.fn)


def test_build_registry_is_the_groups_together() -> None:
    assert {kind: ids(h) for kind, h in parts(build_registry(runtime())).items()} == {
        "activities": ["startup", "login", "cleanup"],
        "indexing": ["transcoder_pods", "ingest_services", "gpu_nodes", "claims", "stream_names"],
        "watching": ["pod_event", "service_event", "stream_event"],
        "spawning": ["run_stream"],
        "changing": ["remove"],
    }


def test_each_group_registers_only_its_own_handlers() -> None:
    rt = runtime()

    assert only(lambda r: register_clients(r, rt)) == {
        "activities": ["startup", "login", "cleanup"]
    }
    assert only(lambda r: register_indexes(r, SETTINGS)) == {
        "indexing": ["transcoder_pods", "ingest_services", "gpu_nodes", "claims", "stream_names"]
    }
    assert only(lambda r: register_wakers(r, rt)) == {
        "watching": ["pod_event", "service_event", "stream_event"]
    }
    assert only(lambda r: register_daemon(r, rt)) == {"spawning": ["run_stream"]}
    assert only(lambda r: register_finalizer(r, rt)) == {"changing": ["remove"]}


def test_the_daemon_and_the_finalizer_watch_livestreams() -> None:
    registry = kopf.OperatorRegistry()
    register_daemon(registry, runtime())
    register_finalizer(registry, runtime())
    (daemon,) = parts(registry)["spawning"]
    (finalizer,) = parts(registry)["changing"]

    for handler in (daemon, finalizer):
        selector = handler.selector
        assert (selector.group, selector.version, selector.any_name) == LIVESTREAMS
    assert daemon.cancellation_timeout == 10.0
    assert finalizer.reason == kopf.Reason.DELETE
    assert finalizer.requires_finalizer
    assert finalizer.backoff == 1.0
    assert FINALIZER == "cascade.dev/cleanup"


# ---- the indexes ------------------------------------------------------------------------


@pytest.fixture
def indexes() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    register_indexes(registry, OperatorSettings(gpu_resource_name="nvidia.com/gpu"))
    return registry


def test_children_are_indexed_by_their_stream(indexes: kopf.OperatorRegistry) -> None:
    pod_body = {"metadata": {"name": "cam1-transcoder", "uid": "u"}, "status": {}}
    service_body = {"metadata": {"name": "cam1-ingest"}}

    pods = fn(indexes, "indexing", "transcoder_pods")(
        namespace="studio", labels=LABELS, body=pod_body
    )
    services = fn(indexes, "indexing", "ingest_services")(
        namespace="studio", labels=LABELS, body=service_body
    )

    assert pods == {("studio", "cam1"): PodView.from_body(pod_body)}
    assert services == {("studio", "cam1"): ServiceView.from_body(service_body)}


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"status": {"allocatable": {"nvidia.com/gpu": "4"}}}, {"gpu": ("n1", 4)}),
        ({"status": {"allocatable": {"cpu": "8"}}}, {}),
        ({"status": {"allocatable": {"nvidia.com/gpu": "lots"}}}, {}),
        (
            {"spec": {"unschedulable": True}, "status": {"allocatable": {"nvidia.com/gpu": "4"}}},
            {},
        ),
    ],
    ids=["gpus", "no-gpus", "unparsable", "cordoned"],
)
def test_gpu_nodes_are_the_schedulable_nodes_with_gpus(
    indexes: kopf.OperatorRegistry, node: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert fn(indexes, "indexing", "gpu_nodes")(name="n1", body=node) == expected


def test_claims_and_stream_names_come_from_the_livestreams(
    indexes: kopf.OperatorRegistry,
) -> None:
    meta = {"name": "cam1", "namespace": "studio", "creationTimestamp": "2027-01-15T08:00:00Z"}
    claims = fn(indexes, "indexing", "claims")
    names = fn(indexes, "indexing", "stream_names")

    assert claims(body={"metadata": meta, "spec": {}}) == {
        "all": StreamDemand("studio/cam1", 1_800_000_000.0, 0, False, 1, False)
    }
    assert claims(body={"metadata": {**meta, "deletionTimestamp": "x"}, "spec": {}}) == {}
    assert names(name="cam1", namespace="studio", meta=meta) == {
        "cam1": (1_800_000_000.0, "studio")
    }


# ---- the wakers -------------------------------------------------------------------------


@pytest.fixture
def woken() -> tuple[kopf.OperatorRegistry, dict[Key, asyncio.Event]]:
    rt = runtime()
    for key in (("studio", "cam1"), ("studio", "cam2"), ("other", "cam1")):
        rt.wakers[key] = asyncio.Event()
    registry = kopf.OperatorRegistry()
    register_wakers(registry, rt)
    return registry, rt.wakers


def awake(wakers: dict[Key, asyncio.Event]) -> set[Key]:
    return {key for key, event in wakers.items() if event.is_set()}


@pytest.mark.parametrize("handler_id", ["pod_event", "service_event"])
def test_a_child_event_wakes_its_stream_only(
    woken: tuple[kopf.OperatorRegistry, dict[Key, asyncio.Event]], handler_id: str
) -> None:
    registry, wakers = woken

    fn(registry, "watching", handler_id)(namespace="studio", labels=LABELS)

    assert awake(wakers) == {("studio", "cam1")}


def test_a_new_spec_wakes_the_stream_but_a_status_write_does_not(
    woken: tuple[kopf.OperatorRegistry, dict[Key, asyncio.Event]],
) -> None:
    registry, wakers = woken
    stream_event = fn(registry, "watching", "stream_event")
    event = {"type": "MODIFIED", "namespace": "studio", "name": "cam1"}

    stream_event(**event, meta={"generation": 3}, status={"observedGeneration": 3})
    assert awake(wakers) == set()

    stream_event(**event, meta={"generation": 4}, status={"observedGeneration": 3})
    assert awake(wakers) == {("studio", "cam1")}


@pytest.mark.parametrize(
    ("kind", "meta"),
    [("DELETED", {"generation": 1}), ("MODIFIED", {"generation": 1, "deletionTimestamp": "x"})],
    ids=["deleted", "deleting"],
)
def test_a_deletion_wakes_every_stream(
    woken: tuple[kopf.OperatorRegistry, dict[Key, asyncio.Event]],
    kind: str,
    meta: dict[str, Any],
) -> None:
    registry, wakers = woken

    fn(registry, "watching", "stream_event")(
        type=kind, namespace="studio", name="cam2", meta=meta, status={"observedGeneration": 1}
    )

    assert awake(wakers) == set(wakers)


# ---- the finalizer ----------------------------------------------------------------------


def finalizer(rt: Runtime) -> Callable[..., Any]:
    registry = kopf.OperatorRegistry()
    register_finalizer(registry, rt)
    return fn(registry, "changing", "remove")


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_the_finalizer_keeps_the_keys_of_a_name_shared_with_another_namespace() -> None:
    rt = runtime()
    # Never reached: a name another namespace uses is not this stream's to clean up.
    rt.redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    rt.metrics.phases["studio/cam1"] = "Live"
    waker = rt.wakers[("studio", "cam2")] = asyncio.Event()
    try:
        await finalizer(rt)(
            name="cam1",
            namespace="studio",
            body={},
            retry=0,
            logger=logging.getLogger("test"),
            stream_names={"cam1": [(1.0, "studio"), (0.5, "newsroom")]},
        )
    finally:
        await rt.redis.aclose()

    assert "studio/cam1" not in rt.metrics.phases
    assert waker.is_set()  # the capacity it held may start another stream


@pytest.mark.anyio
@pytest.mark.usefixtures("no_task_leaks")
async def test_the_finalizer_retries_while_redis_is_away() -> None:
    rt = Runtime(OperatorSettings(cleanup_attempts=3), OperatorMetrics())
    rt.redis = aioredis.Redis.from_url(
        f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1.0
    )
    try:
        with pytest.raises(kopf.TemporaryError) as raised:
            await finalizer(rt)(
                name="cam1",
                namespace="studio",
                body={},
                retry=1,
                logger=logging.getLogger("test"),
                stream_names={"cam1": [(1.0, "studio")]},
            )
    finally:
        await rt.redis.aclose()

    assert raised.value.delay == 2.0
    assert "attempt 2 of 3" in str(raised.value)
    errors = rt.metrics.registry.get_sample_value(
        "cascade_operator_errors_total", {"target": "redis"}
    )
    assert errors == 1
