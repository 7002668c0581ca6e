"""The kopf shell: watches fill indexes, one daemon per LiveStream reconciles it.

Everything decided here is decided by pure functions (``reconcile``, ``plan_capacity``,
``on_demand_verdict``); this module reads what they need and applies what they return.

* Indexes (kopf keeps them from watch streams): the transcoder pods and ingest Services by
  stream, the GPU nodes, and every LiveStream's capacity claim.
* A daemon per LiveStream runs a reconcile pass, then sleeps until something about its
  stream changes (a watch event on the LiveStream or one of its children wakes it at once)
  or until the status is due for a refresh from Redis (``status_interval_seconds``), a
  backoff ends or an on-demand stream may go idle.
* ``on.delete`` (the finalizer) removes the stream's Redis keys with bounded retries: a
  Redis outage delays a deletion by seconds, never blocks it. The pod and Service go with
  the garbage collector (owner references).

The registry is built by a function (no handlers registered at import), one small function
per group of handlers: ``register_clients`` (startup, login, cleanup), ``register_indexes``,
``register_wakers``, ``register_daemon`` and ``register_finalizer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

import kopf
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from cascade.contract.lifecycle import Activity, on_demand_verdict
from cascade.contract.redisurl import redacted
from cascade.contract.schema import DEMAND
from cascade.contract.spec import Activation, Hardware
from cascade.operator import redisio
from cascade.operator.builders import LABEL_LIVESTREAM, LABEL_MANAGED_BY
from cascade.operator.capacity import Admitted, StreamDemand, plan_capacity
from cascade.operator.kube import GROUP, PLURAL, VERSION, Kube, KubeError, load_config
from cascade.operator.metrics import OperatorMetrics
from cascade.operator.reconcile import (
    ALWAYS,
    CreatePod,
    CreateService,
    DeletePod,
    DeleteService,
    ForgetStream,
    Memory,
    Observed,
    PatchService,
    Plan,
    PodView,
    Refused,
    ServiceView,
    failed_status,
    parse_time,
    reconcile,
    status_patch,
    validity_step,
)
from cascade.operator.settings import OperatorSettings

LIVESTREAMS = (GROUP, VERSION, PLURAL)
MANAGED = {LABEL_MANAGED_BY: "cascade-operator"}
FINALIZER = "cascade.dev/cleanup"
# How long to wait for the watch to show a pod we created or deleted before going on.
SETTLE_SECONDS = 10.0
# After a failed pass (API or Redis error), try again after this long.
ERROR_RETRY_SECONDS = 5.0

# A refused create (admission, unknown RuntimeClass, quota) is retried this often.
REJECTED_RETRY_SECONDS = 15.0

Key = tuple[str, str]  # (namespace, name)


class PodRejectedError(Exception):
    """The API server refused to create a child: shown in the status, retried slowly."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Runtime:
    """What the handlers share: settings, clients, metrics and the daemons' wake-up events."""

    def __init__(self, settings: OperatorSettings, metrics: OperatorMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.kube: Kube | None = None
        self.redis: aioredis.Redis | None = None
        self.wakers: dict[Key, asyncio.Event] = {}
        self.demand_task: asyncio.Task[None] | None = None

    def wake_name(self, name: str) -> None:
        """Wake every stream of that name (Redis knows names, not namespaces)."""
        for key, event in self.wakers.items():
            if key[1] == name:
                event.set()

    def wake(self, key: Key) -> None:
        event = self.wakers.get(key)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        for event in self.wakers.values():
            event.set()


# How often new viewer demand is looked for: a viewer waits about this much longer than
# the transcoder's start for an on-demand stream (the status interval is far longer).
DEMAND_POLL_SECONDS = 0.5


async def watch_demand(
    runtime: Runtime, redis: aioredis.Redis, poll: float = DEMAND_POLL_SECONDS
) -> None:
    """Wake on-demand streams as soon as an edge records demand for them.

    One ``ZRANGEBYSCORE`` per poll for demand newer than the newest seen: the reconcile
    pass does the rest (the lifecycle rule decides, capacity admits).
    """
    newest = time.time()
    while True:
        try:
            fresh = cast(
                list[tuple[bytes, float]],
                await redis.zrangebyscore(DEMAND, f"({newest}", "+inf", withscores=True),
            )
        except (RedisError, OSError, TimeoutError):
            fresh = []  # the passes report Redis trouble in the status
        for raw, score in fresh:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            runtime.wake_name(name)
            newest = max(newest, float(score))
        await asyncio.sleep(poll)


def _pick_pod(values: Iterable[PodView]) -> PodView | None:
    """The stream's pod: a live one over one being deleted (both exist during a roll)."""
    pods = sorted(values, key=lambda p: p.deleting)
    return pods[0] if pods else None


def _gpus(allocatable: Mapping[str, Any], resource: str) -> int:
    try:
        return int(str(allocatable.get(resource, "0")))
    except ValueError:
        return 0


def claim_of(body: Mapping[str, Any], *, own: bool = False) -> StreamDemand | None:
    """A LiveStream's claim on capacity, from its spec and the status last written.

    ``own``: the claim of the stream being reconciled, asked only when it wants a
    transcoder now; its last status (Active=False, Failed) is about to be decided again
    and does not remove the claim.
    """
    meta = body.get("metadata", {})
    if meta.get("deletionTimestamp"):
        return None
    status = body.get("status") or {}
    for cond in status.get("conditions", []) or []:
        if cond.get("type") == "Active" and cond.get("status") == "False" and not own:
            return None
    running = bool((status.get("transcoder") or {}).get("podUID"))
    if status.get("phase") == "Failed" and not running and not own:
        # Waiting for the user (a refused pod, a name conflict, an invalid spec): it holds
        # no transcoder, so it must not hold a slot another stream could use.
        return None
    spec = body.get("spec", {})
    gpus = int((spec.get("scheduling") or {}).get("gpus", 0) or 0)
    hardware = (spec.get("transcode") or {}).get("hardware")
    nvenc = hardware == Hardware.NVENC.value or (hardware is None and gpus > 0)
    renditions = (spec.get("transcode") or {}).get("renditions") or [{}]
    created = meta.get("creationTimestamp")
    return StreamDemand(
        name=f"{meta.get('namespace')}/{meta.get('name')}",
        creation_ts=parse_time(created) or 0.0,
        gpus_requested=gpus,
        nvenc=nvenc,
        sessions=len(renditions),
        running=running,
    )


def build_registry(runtime: Runtime) -> kopf.OperatorRegistry:
    """The operator's handlers, group by group; each group's function can be read alone."""
    registry = kopf.OperatorRegistry()
    register_clients(registry, runtime)
    register_indexes(registry, runtime.settings)
    register_wakers(registry, runtime)
    register_daemon(registry, runtime)
    register_finalizer(registry, runtime)
    return registry


def register_clients(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Startup (kopf's persistence and posting, the Kubernetes and Redis clients, the demand
    watcher), login, and cleanup (the watcher stopped, Redis closed)."""

    @kopf.on.startup(registry=registry, id="startup")
    async def startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
        # Progress and diff-base in annotations: a structural schema prunes status.kopf.
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="cascade.dev"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="cascade.dev", key="last-handled-configuration"
        )
        settings.posting.reporting_component = "cascade-operator"
        settings.posting.reporting_instance = socket.gethostname()
        settings.posting.event_name_prefix = "cascade-"
        runtime.kube = Kube(await asyncio.to_thread(load_config))
        runtime.redis = redisio.redis_client(
            runtime.settings.redis_url,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            health_check_interval=30,
        )
        runtime.demand_task = asyncio.create_task(watch_demand(runtime, runtime.redis))
        logger.info("operator started: redis %s", redacted(runtime.settings.redis_url))

    @kopf.on.login(registry=registry, id="login")
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own does not get kopf's default login handlers: the service
        # account inside a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config).
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.cleanup(registry=registry, id="cleanup")
    async def cleanup(**_: Any) -> None:
        if runtime.demand_task is not None:
            runtime.demand_task.cancel()
            await asyncio.gather(runtime.demand_task, return_exceptions=True)
        if runtime.redis is not None:
            await runtime.redis.aclose()


def register_indexes(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """What the watch streams keep: transcoder pods and ingest Services by stream, GPU nodes,
    every LiveStream's capacity claim and who holds each stream name.

    kopf passes each index to every handler as a keyword named after its id: the daemon
    (``_Indexes``) and the finalizer read them.
    """

    @kopf.index("pods", labels=MANAGED, registry=registry, id="transcoder_pods")
    def transcoder_pods(
        namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
    ) -> dict[Key, PodView]:
        return {(namespace or "", labels.get(LABEL_LIVESTREAM, "")): PodView.from_body(body)}

    @kopf.index("services", labels=MANAGED, registry=registry, id="ingest_services")
    def ingest_services(
        namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
    ) -> dict[Key, ServiceView]:
        return {(namespace or "", labels.get(LABEL_LIVESTREAM, "")): ServiceView.from_body(body)}

    @kopf.index("nodes", registry=registry, id="gpu_nodes")
    def gpu_nodes(name: str, body: kopf.Body, **_: Any) -> dict[str, tuple[str, int]]:
        if body.get("spec", {}).get("unschedulable"):
            return {}
        gpus = _gpus(body.get("status", {}).get("allocatable", {}), settings.gpu_resource_name)
        return {"gpu": (name, gpus)} if gpus > 0 else {}

    @kopf.index(*LIVESTREAMS, registry=registry, id="claims")
    def claims(body: kopf.Body, **_: Any) -> dict[str, StreamDemand]:
        claim = claim_of(body)
        return {"all": claim} if claim is not None else {}

    @kopf.index(*LIVESTREAMS, registry=registry, id="stream_names")
    def stream_names(
        name: str, namespace: str | None, meta: kopf.Meta, **_: Any
    ) -> dict[str, tuple[float, str]]:
        # Stream names are global in Redis (keys, edge URLs): who holds a name.
        created = parse_time(meta.get("creationTimestamp")) or 0.0
        return {name: (created, namespace or "")}


def register_wakers(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Watch handlers that wake a stream's daemon at once: an event of its pod or Service,
    a new spec; a deletion wakes every stream (the capacity freed may start one)."""

    @kopf.on.event("pods", labels=MANAGED, registry=registry, id="pod_event")
    def pod_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        runtime.wake((namespace or "", labels.get(LABEL_LIVESTREAM, "")))

    @kopf.on.event("services", labels=MANAGED, registry=registry, id="service_event")
    def service_event(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        runtime.wake((namespace or "", labels.get(LABEL_LIVESTREAM, "")))

    @kopf.on.event(*LIVESTREAMS, registry=registry, id="stream_event")
    def stream_event(
        type: str,
        namespace: str | None,
        name: str,
        meta: kopf.Meta,
        status: kopf.Status,
        **_: Any,
    ) -> None:
        if type == "DELETED" or meta.get("deletionTimestamp"):
            runtime.wake_all()  # capacity freed: waiting streams may start
        elif status.get("observedGeneration") != meta.get("generation"):
            # A new spec. Events of our own status writes (every status interval) change
            # nothing to do: waking on them would double every pass.
            runtime.wake((namespace or "", name))


def register_daemon(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """One daemon per LiveStream: a pass (``_pass``), then sleep until woken or due.

    A failed pass (Kubernetes, Redis, a bug) is counted and retried after a growing delay;
    it never ends the daemon.
    """
    metrics = runtime.metrics

    @kopf.daemon(*LIVESTREAMS, registry=registry, cancellation_timeout=10.0, id="run_stream")
    async def run_stream(
        stopped: kopf.DaemonStopped,
        name: str,
        namespace: str | None,
        body: kopf.Body,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        key = (namespace or "", name)
        waker = runtime.wakers.setdefault(key, asyncio.Event())
        # kopf passes each index as a keyword named after its handler.
        indexes = _Indexes(
            kwargs["transcoder_pods"],
            kwargs["ingest_services"],
            kwargs["gpu_nodes"],
            kwargs["claims"],
            kwargs["stream_names"],
        )
        last_written: dict[str, Any] | None = None
        failures = 0
        try:
            while not stopped:
                waker.clear()
                started = time.perf_counter()
                target = ""
                try:
                    delay, last_written = await _pass(
                        runtime, key, body, indexes, last_written, logger
                    )
                except (KubeError, RedisError, OSError, TimeoutError) as exc:
                    target = "kubernetes" if isinstance(exc, KubeError) else "redis"
                    error = str(exc)
                except Exception as exc:  # a bug must not stop this stream's reconciling
                    target, error = "internal", repr(exc)
                    logger.exception("reconcile pass failed")
                if target:
                    failures += 1
                    delay = min(ERROR_RETRY_SECONDS * failures, 60.0)
                    last_written = None
                    metrics.errors.labels(target).inc()
                    logger.warning(
                        "reconcile failed (%s), retrying in %.0fs: %s", target, delay, error
                    )
                else:
                    failures = 0
                metrics.reconciles.labels("error" if target else "ok").inc()
                metrics.duration.observe(time.perf_counter() - started)
                await _sleep(waker, stopped, delay)
        finally:
            if runtime.wakers.get(key) is waker:
                del runtime.wakers[key]


def register_finalizer(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """``on.delete`` (kopf's finalizer): remove the stream's Redis keys, with bounded retries.

    A Redis outage delays a deletion by seconds, never blocks it; keys of a name another
    namespace's LiveStream uses are kept. The pod and Service go with the garbage collector.
    """
    settings, metrics = runtime.settings, runtime.metrics

    @kopf.on.delete(*LIVESTREAMS, registry=registry, backoff=1.0, id="remove")
    async def remove(
        name: str,
        namespace: str | None,
        body: kopf.Body,
        retry: int,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        metrics.phases.pop(f"{namespace}/{name}", None)
        runtime.wake_all()
        assert runtime.redis is not None
        holders = {ns for _, ns in kwargs["stream_names"].get(name, [])}
        if holders - {namespace}:
            # Another namespace's LiveStream uses the name: its keys are not ours to remove.
            logger.info("stream name shared with %s: Redis keys kept", sorted(holders))
            return
        try:
            removed = await asyncio.wait_for(redisio.remove_stream(runtime.redis, name), 10.0)
        except (RedisError, OSError, TimeoutError) as exc:
            metrics.errors.labels("redis").inc()
            attempt = retry + 1
            if attempt < settings.cleanup_attempts:
                delay = min(2.0**retry, 30.0)
                raise kopf.TemporaryError(
                    f"Redis cleanup failed (attempt {attempt} of {settings.cleanup_attempts}): "
                    f"{exc}; retrying in {delay:.0f}s",
                    delay=delay,
                ) from exc
            message = (
                f"Redis unreachable after {attempt} attempts ({exc}); released without removing "
                f"the stream's keys (the transcoder's keys expire; viewer keys stay until the "
                f"stream name is reused)"
            )
            logger.warning(message)
            kopf.warn(body, reason="RedisCleanupSkipped", message=message)
            return
        kopf.info(body, reason="RedisCleaned", message=f"removed {removed} Redis keys")


class _Indexes:
    def __init__(
        self,
        pods: kopf.Index[Key, PodView],
        services: kopf.Index[Key, ServiceView],
        nodes: kopf.Index[str, tuple[str, int]],
        claims: kopf.Index[str, StreamDemand],
        names: kopf.Index[str, tuple[float, str]],
    ) -> None:
        self.names = names
        self.pods = pods
        self.services = services
        self.nodes = nodes
        self.claims = claims

    def holder(self, key: Key) -> str | None:
        """The namespace holding ``key``'s stream name when it is not ``key``'s own."""
        holders = sorted(self.names.get(key[1], []))
        if holders and holders[0][1] != key[0]:
            return holders[0][1]
        return None

    def pod(self, key: Key) -> PodView | None:
        return _pick_pod(self.pods.get(key, []))

    def service(self, key: Key) -> ServiceView | None:
        values = list(self.services.get(key, []))
        return values[0] if values else None


async def _sleep(waker: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    woken = asyncio.ensure_future(waker.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait(
            {woken, stopping}, timeout=max(0.0, delay), return_when="FIRST_COMPLETED"
        )
    finally:
        for task in (woken, stopping):
            task.cancel()
        await asyncio.gather(woken, stopping, return_exceptions=True)


async def _settle(waker: asyncio.Event | None, check: Callable[[], bool]) -> None:
    """Wait until the watch-fed indexes show what we just did (or give up quietly).

    Child watch events set the stream's waker, so this wakes on the event itself. Any
    other event that arrived meanwhile is kept: the waker is left set for the next pass.
    """
    if waker is None:
        return
    loop = asyncio.get_running_loop()
    end = loop.time() + SETTLE_SECONDS
    while not check():
        remaining = end - loop.time()
        if remaining <= 0:
            break
        waker.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waker.wait(), remaining)
    waker.set()


def _pod_is(indexes: _Indexes, key: Key, uid: str) -> Callable[[], bool]:
    def check() -> bool:
        pod = indexes.pod(key)
        return pod is not None and pod.uid == uid

    return check


def _pod_gone(indexes: _Indexes, key: Key, uid: str) -> Callable[[], bool]:
    def check() -> bool:
        pod = indexes.pod(key)
        return pod is None or pod.uid != uid or pod.deleting

    return check


async def _pass(
    runtime: Runtime,
    key: Key,
    body: kopf.Body,
    indexes: _Indexes,
    last_written: dict[str, Any] | None,
    logger: kopf.Logger,
) -> tuple[float, dict[str, Any] | None]:
    """One reconcile pass; returns when to look again and the status written (if any)."""
    settings, metrics = runtime.settings, runtime.metrics
    assert runtime.kube is not None and runtime.redis is not None
    kube, redis = runtime.kube, runtime.redis
    namespace, name = key
    now = time.time()
    status: Mapping[str, Any] = dict(body.get("status") or {})
    # The watch may not have shown our last status write yet: ours is newer (we are the
    # only writer), and stale memory would count a pod we removed on purpose as lost.
    if last_written is not None and status_patch(status, last_written):
        status = last_written
    generation = int(body.get("metadata", {}).get("generation", 1))

    stream = validity_step(body, name_holder=indexes.holder(key))
    if isinstance(stream, Refused):
        new_status = failed_status(status, generation, stream.reason, stream.message, now)
        await _write_status(kube, key, status, new_status)
        return settings.status_interval_seconds, new_status

    redis_error: str | None = None
    readings = None
    try:
        readings = await redisio.read_stream(
            redis,
            name,
            now=now,
            viewer_timeout=settings.viewer_timeout_seconds,
            on_demand=stream.spec.activation is Activation.ON_DEMAND,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        metrics.errors.labels("redis").inc()
        redis_error = f"Redis unavailable: {exc}"

    memory = Memory.from_status(status)
    verdict = ALWAYS
    if stream.spec.activation is Activation.ON_DEMAND:
        activity = Activity(
            active_since=memory.started_at,
            last_demand=readings.last_demand if readings else 0.0,
            last_viewer=readings.last_viewer if readings else 0.0,
            stopped_at=memory.stopped_at or 0.0,
        )
        if readings is None and memory.started_at is not None:
            # Without Redis nobody can tell whether it is watched: keep it running.
            activity = replace(activity, last_viewer=now)
        verdict = on_demand_verdict(activity, stream.spec.idle_timeout_seconds, now)

    pod = indexes.pod(key)
    me = f"{namespace}/{name}"
    claims = [c for c in indexes.claims.get("all", []) if c.name != me]
    if verdict.run:
        own = claim_of({**body, "status": status}, own=True)
        if own is not None:
            claims.append(own._replace(running=pod is not None and not pod.deleting))
    decisions = plan_capacity(
        claims,
        max_streams=settings.max_concurrent_streams,
        gpu_nodes=list(indexes.nodes.get("gpu", [])),
        nvenc_sessions_per_gpu=settings.nvenc_sessions_per_gpu,
    )
    observed = Observed(
        stream=stream,
        generation=generation,
        status=status,
        pod=pod,
        service=indexes.service(key),
        capacity=decisions.get(me, Admitted()),
        now=now,
        lifecycle=verdict,
        health=readings.health if readings else None,
        redis_error=redis_error,
        viewers=readings.viewers if readings else int(status.get("viewers", 0) or 0),
    )
    plan = reconcile(observed, settings, redis_url=settings.redis_url)
    delay = settings.status_interval_seconds
    try:
        new_status = await _apply(runtime, key, body, indexes, plan, logger)
    except PodRejectedError as exc:
        new_status = failed_status(plan.status, generation, "PodRejected", exc.message, now)
        delay = REJECTED_RETRY_SECONDS
    for event in plan.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    await _write_status(kube, key, status, new_status)
    metrics.phases[me] = str(new_status.get("phase", ""))
    if plan.requeue_after is not None:
        delay = min(delay, max(plan.requeue_after, 0.05))
    return delay, new_status


async def _apply(
    runtime: Runtime,
    key: Key,
    body: kopf.Body,
    indexes: _Indexes,
    plan: Plan,
    logger: kopf.Logger,
) -> dict[str, Any]:
    """Carry out the plan's actions; returns the status to write (with a created pod's uid)."""
    assert runtime.kube is not None and runtime.redis is not None
    kube, metrics = runtime.kube, runtime.metrics
    namespace, name = key
    status = plan.status
    for action in plan.actions:
        metrics.actions.labels(type(action).__name__).inc()
        if isinstance(action, CreatePod | CreateService):
            manifest = action.manifest
            kopf.append_owner_reference(
                manifest, owner=body, controller=True, block_owner_deletion=True
            )
            try:
                created = await kube.create(manifest)
            except KubeError as exc:
                if exc.status == 409:  # the watch has not shown it yet; the next pass adopts it
                    created = {}
                else:
                    what = f"{manifest['kind']} {manifest['metadata']['name']}"
                    kopf.event(
                        body, type="Warning", reason="CreateFailed", message=f"{what}: {exc}"
                    )
                    if 400 <= exc.status < 500 and exc.status != 429:
                        raise PodRejectedError(f"{what} refused: {exc.message}") from exc
                    raise
            if isinstance(action, CreatePod):
                uid = str(created.get("metadata", {}).get("uid", ""))
                transcoder = {**status["transcoder"], "podUID": uid}
                status = {**status, "transcoder": transcoder}
                logger.info("created pod %s (uid %s)", manifest["metadata"]["name"], uid)
                await _settle(runtime.wakers.get(key), _pod_is(indexes, key, uid))
        elif isinstance(action, DeletePod):
            await kube.delete_pod(namespace, action.name, action.uid)
            logger.info("deleted pod %s", action.name)
            await _settle(runtime.wakers.get(key), _pod_gone(indexes, key, action.uid))
        elif isinstance(action, PatchService):
            await kube.patch_service(namespace, action.name, action.patch)
        elif isinstance(action, DeleteService):
            await kube.delete_service(namespace, action.name)
        elif isinstance(action, ForgetStream):
            removed = await redisio.forget_live_state(runtime.redis, name)
            logger.info("stopped on demand: removed %d Redis keys", removed)
    return status


async def _write_status(kube: Kube, key: Key, old: Mapping[str, Any], new: dict[str, Any]) -> None:
    """Patch the status when it changed (the body view catches up through the watch)."""
    patch = status_patch(old, new)
    if patch:
        await kube.patch_status(key[0], key[1], patch)
