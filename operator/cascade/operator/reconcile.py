"""One LiveStream's reconcile decision: what is observed in, actions and status out. Pure.

``reconcile(observed, settings, redis_url=...)`` is level-based: it looks only at what
exists now (the pod and Service the watch streams show, the capacity plan, the on-demand
verdict, the transcoder's health in Redis) and at the operator's memory kept in
``status.transcoder``, and returns the actions that move the world towards the spec,
the complete new status and the events to post. Called again with the world after those
actions, it returns no actions: that is what makes a restarted operator change nothing
that was already right.

The memory in the status is what lets a restarted operator tell a lost pod (counted as a
restart, recreated after a backoff) from one it never made or removed on purpose (a spec
change, an on-demand stop), without any state of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cascade.core.lifecycle import ALWAYS_ON, Verdict
from cascade.core.schema import Health
from cascade.core.spec import Activation, LiveStream, RtmpMode, SourceType, SrtMode
from cascade.operator.builders import (
    ANNOTATION_SPEC_HASH,
    build_ingest_service,
    build_transcoder_pod,
    ingest_ports,
    pod_name,
    service_name,
)
from cascade.operator.capacity import Admitted, Decision
from cascade.operator.settings import OperatorSettings
from cascade.operator.status import (
    ACTIVE,
    CAPACITY_AVAILABLE,
    INGESTING,
    READY,
    RESTARTING,
    SCHEDULED,
    Condition,
    Status,
    derive_phase,
    health_conditions,
    rfc3339,
    set_condition,
)

CONDITION_ORDER = (READY, ACTIVE, CAPACITY_AVAILABLE, SCHEDULED, INGESTING)
# Container waiting reasons that need a change (image, registry credentials) to clear.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName"})
# While something is in flight (a pod terminating or being created), look again this soon.
SHORT_REQUEUE_SECONDS = 1.0
ALWAYS = Verdict(True, ALWAYS_ON, "activation is Always")


def parse_time(value: str | None) -> float | None:
    """Unix seconds of an RFC 3339 time from the API server (``...Z``), None if absent."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _time(ts: float) -> str:
    return rfc3339(datetime.fromtimestamp(ts, UTC))


# ---- what is observed -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PodView:
    """The parts of a transcoder Pod the decision reads."""

    name: str
    uid: str
    spec_hash: str
    phase: str = "Pending"  # Pending, Running, Succeeded, Failed, Unknown
    deleting: bool = False
    node: str = ""
    # The PodScheduled condition: (status, reason, message); None until the scheduler acts.
    scheduled: tuple[str, str, str] | None = None
    ready: bool = False
    container_restarts: int = 0
    started_at: float | None = None  # status.startTime
    waiting_reason: str = ""  # the container's state.waiting.reason (ErrImagePull ...)
    waiting_message: str = ""
    failure: str = ""  # why a Failed pod failed (pod reason/message, last termination)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PodView:
        meta = body.get("metadata", {})
        spec = body.get("spec", {})
        status = body.get("status", {}) or {}
        scheduled = None
        ready = False
        for cond in status.get("conditions", []) or []:
            if cond.get("type") == "PodScheduled":
                scheduled = (
                    str(cond.get("status", "Unknown")),
                    str(cond.get("reason", "")),
                    str(cond.get("message", "")),
                )
            elif cond.get("type") == "Ready":
                ready = cond.get("status") == "True"
        restarts = 0
        waiting_reason = waiting_message = terminated = ""
        for cs in status.get("containerStatuses", []) or []:
            restarts += int(cs.get("restartCount", 0))
            state = cs.get("state", {}) or {}
            waiting = state.get("waiting") or {}
            if waiting and not waiting_reason:
                waiting_reason = str(waiting.get("reason", ""))
                waiting_message = str(waiting.get("message", ""))
            term = state.get("terminated") or (cs.get("lastState", {}) or {}).get("terminated")
            if term and not terminated:
                terminated = (
                    f"container exited {term.get('exitCode', '?')} "
                    f"({term.get('reason', '')}) {term.get('message', '')}".strip()
                )
        failure = " ".join(
            p for p in (status.get("reason", ""), status.get("message", ""), terminated) if p
        )
        return cls(
            name=str(meta.get("name", "")),
            uid=str(meta.get("uid", "")),
            spec_hash=str((meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH, "")),
            phase=str(status.get("phase", "Pending")),
            deleting=bool(meta.get("deletionTimestamp")),
            node=str(spec.get("nodeName", "") or ""),
            scheduled=scheduled,
            ready=ready,
            container_restarts=restarts,
            started_at=parse_time(status.get("startTime")),
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            failure=failure,
        )


@dataclass(frozen=True, slots=True)
class ServiceView:
    name: str
    spec_hash: str
    deleting: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ServiceView:
        meta = body.get("metadata", {})
        return cls(
            name=str(meta.get("name", "")),
            spec_hash=str((meta.get("annotations") or {}).get(ANNOTATION_SPEC_HASH, "")),
            deleting=bool(meta.get("deletionTimestamp")),
        )


@dataclass(frozen=True, slots=True)
class Memory:
    """``status.transcoder``: what the operator did, kept where a restart finds it."""

    pod: str = ""
    # The uid of the pod this stream should have. "" after a create whose uid is not known
    # yet (never counted as lost); None when there should be none.
    pod_uid: str | None = None
    started_at: float | None = None  # when the transcoder was (re)started; None: stopped
    recreations: int = 0
    consecutive_failures: int = 0
    last_failure: float | None = None
    stopped_at: float | None = None  # last stop of an on-demand stream for want of viewers

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Memory:
        raw = status.get("transcoder") or {}
        return cls(
            pod=str(raw.get("pod", "")),
            pod_uid=raw.get("podUID"),
            started_at=parse_time(raw.get("startedAt")),
            recreations=int(raw.get("recreations", 0)),
            consecutive_failures=int(raw.get("consecutiveFailures", 0)),
            last_failure=parse_time(raw.get("lastFailureTime")),
            stopped_at=parse_time(raw.get("stoppedAt")),
        )

    def to_status(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "recreations": self.recreations,
            "consecutiveFailures": self.consecutive_failures,
        }
        if self.pod:
            data["pod"] = self.pod
        if self.pod_uid is not None:
            data["podUID"] = self.pod_uid
        if self.started_at is not None:
            data["startedAt"] = _time(self.started_at)
        if self.last_failure is not None:
            data["lastFailureTime"] = _time(self.last_failure)
        if self.stopped_at is not None:
            data["stoppedAt"] = _time(self.stopped_at)
        return data

    def failed(self, now: float) -> Memory:
        return replace(
            self,
            pod_uid=None,
            recreations=self.recreations + 1,
            consecutive_failures=self.consecutive_failures + 1,
            last_failure=now,
        )


@dataclass(frozen=True, slots=True)
class Observed:
    stream: LiveStream
    generation: int
    status: Mapping[str, Any]
    pod: PodView | None
    service: ServiceView | None
    capacity: Decision
    now: float
    lifecycle: Verdict = ALWAYS
    health: Health | None = None
    redis_error: str | None = None
    viewers: int = 0


# ---- what to do -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreatePod:
    manifest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DeletePod:
    name: str
    uid: str  # a precondition: never delete a pod that replaced this one


@dataclass(frozen=True, slots=True)
class CreateService:
    manifest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PatchService:
    name: str
    patch: dict[str, Any]  # JSON merge patch


@dataclass(frozen=True, slots=True)
class DeleteService:
    name: str


@dataclass(frozen=True, slots=True)
class ForgetStream:
    """Remove the stream's live keys from Redis (its transcoder was stopped on purpose)."""


Action = CreatePod | DeletePod | CreateService | PatchService | DeleteService | ForgetStream


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal or Warning
    reason: str  # CamelCase
    message: str


@dataclass(frozen=True, slots=True)
class Plan:
    actions: list[Action]
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None  # seconds; None: the regular status interval


# ---- the decision -----------------------------------------------------------------------


def backoff_seconds(failures: int, settings: OperatorSettings) -> float:
    """Delay before recreating after ``failures`` consecutive failures: base x 2^(n-1)."""
    if failures <= 0:
        return 0.0
    exponent = min(failures - 1, 30)
    return float(
        min(settings.restart_backoff_seconds * 2**exponent, settings.restart_backoff_max_seconds)
    )


def ingest_url(stream: LiveStream) -> str:
    """Where the encoder sends to (through the ingest Service), or where the stream comes from."""
    source = stream.spec.source
    host = f"{service_name(stream)}.{stream.metadata.namespace}.svc"
    if source.type is SourceType.SRT and source.srt:
        if source.srt.mode is SrtMode.CALLER:
            return f"srt://{source.srt.host}:{source.srt.port} (the transcoder calls)"
        return f"srt://{host}:{source.srt.port}?mode=caller"
    if source.type is SourceType.RTMP and source.rtmp:
        if source.rtmp.mode is RtmpMode.PULL:
            return f"{source.rtmp.url} (pulled)"
        return f"rtmp://{host}:{source.rtmp.port}/{source.rtmp.app}/{source.rtmp.stream_key}"
    if source.type is SourceType.RTP:
        ports = ingest_ports(stream)
        return ", ".join(f"rtp://{host}:{p['port']}" for p in ports)
    return "test pattern (generated in the transcoder)"


def playback_url(stream: LiveStream, settings: OperatorSettings) -> str:
    return f"{settings.playback_base_url.rstrip('/')}/live/{stream.name}.m3u8"


def _service_actions(observed: Observed, settings: OperatorSettings) -> list[Action]:
    desired = build_ingest_service(observed.stream, settings)
    current = observed.service
    if desired is None:
        if current is not None and not current.deleting:
            return [DeleteService(current.name)]
        return []
    if current is None:
        return [CreateService(desired)]
    want_hash = desired["metadata"]["annotations"][ANNOTATION_SPEC_HASH]
    if current.spec_hash != want_hash and not current.deleting:
        # A merge patch replaces the ports list whole; the selector never changes.
        patch = {
            "metadata": {"annotations": {ANNOTATION_SPEC_HASH: want_hash}},
            "spec": {"type": desired["spec"]["type"], "ports": desired["spec"]["ports"]},
        }
        return [PatchService(current.name, patch)]
    return []


def _scheduled(pod: PodView | None, why_no_pod: str) -> Condition:
    if pod is None:
        return Condition(SCHEDULED, "False", "NoPod", why_no_pod)
    if pod.scheduled is not None and pod.scheduled[0] == "True":
        return Condition(SCHEDULED, "True", "PodScheduled", f"pod {pod.name} on node {pod.node}")
    if pod.scheduled is not None and pod.scheduled[0] == "False":
        reason = pod.scheduled[1] or "Unschedulable"
        return Condition(SCHEDULED, "False", reason, pod.scheduled[2])
    return Condition(SCHEDULED, "False", "WaitingForScheduler", f"pod {pod.name} not scheduled yet")


def reconcile(observed: Observed, settings: OperatorSettings, *, redis_url: str) -> Plan:
    stream, now = observed.stream, observed.now
    memory = Memory.from_status(observed.status)
    actions: list[Action] = _service_actions(observed, settings)
    events: list[Event] = []
    requeue: float | None = None
    pod = observed.pod
    verdict = observed.lifecycle
    admitted = isinstance(observed.capacity, Admitted)
    want = verdict.run and admitted
    desired = build_transcoder_pod(
        stream, settings, generation=observed.generation, redis_url=redis_url
    )

    if pod is not None and not pod.deleting and pod.uid != memory.pod_uid:
        # A pod we did not record (its creation outlived the status write, or an older
        # operator made it): it is this stream's pod now, nothing failed.
        memory = replace(memory, pod=pod.name, pod_uid=pod.uid)
        if memory.started_at is None:
            memory = replace(memory, started_at=pod.started_at or now)

    live_pod: PodView | None = None  # the pod whose health counts
    ready: Condition
    why_no_pod = ""
    if not want:
        if not verdict.run:
            why_no_pod = f"no transcoder: {verdict.message}"
            ready = Condition(READY, "False", "NotActive", verdict.message)
        else:
            assert not isinstance(observed.capacity, Admitted)
            why_no_pod = f"waiting for capacity: {observed.capacity.message}"
            ready = Condition(READY, "False", "WaitingForCapacity", observed.capacity.message)
        if pod is not None and not pod.deleting:
            actions.append(DeletePod(pod.name, pod.uid))
            reason = "StoppedOnDemand" if not verdict.run else "CapacityRevoked"
            events.append(Event("Normal", reason, f"deleting pod {pod.name}: {why_no_pod}"))
            memory = replace(memory, pod_uid=None)
            if not verdict.run:
                memory = replace(memory, stopped_at=now)
        elif pod is None:
            if memory.started_at is not None and not verdict.run:
                # Stopped on purpose and gone: edges must not serve its last window as live.
                actions.append(ForgetStream())
            memory = replace(memory, pod_uid=None, started_at=None)
        else:
            requeue = SHORT_REQUEUE_SECONDS
    elif pod is None:
        if memory.pod_uid:
            memory = memory.failed(now)
            delay = backoff_seconds(memory.consecutive_failures, settings)
            events.append(
                Event(
                    "Warning",
                    "TranscoderLost",
                    f"pod {memory.pod} disappeared; recreating in {delay:.0f}s "
                    f"(restart {memory.recreations})",
                )
            )
        retry_at = (memory.last_failure or 0.0) + backoff_seconds(
            memory.consecutive_failures, settings
        )
        if memory.consecutive_failures and now < retry_at:
            wait = retry_at - now
            why_no_pod = f"restarting after a failure in {math.ceil(wait)}s"
            ready = Condition(
                READY,
                "False",
                RESTARTING,
                f"{memory.consecutive_failures} consecutive failures; next attempt in "
                f"{math.ceil(wait)}s",
            )
            requeue = wait
        else:
            actions.append(CreatePod(desired))
            events.append(
                Event("Normal", "CreatedPod", f"created transcoder pod {pod_name(stream)}")
            )
            memory = replace(
                memory, pod=pod_name(stream), pod_uid="", started_at=memory.started_at or now
            )
            why_no_pod = f"creating pod {pod_name(stream)}"
            ready = Condition(READY, "False", "WaitingForPod", why_no_pod)
            requeue = SHORT_REQUEUE_SECONDS
    elif pod.deleting:
        why_no_pod = f"old pod {pod.name} is terminating"
        ready = Condition(READY, "False", "WaitingForPod", why_no_pod)
        requeue = SHORT_REQUEUE_SECONDS
        pod = None
    elif pod.spec_hash != desired["metadata"]["annotations"][ANNOTATION_SPEC_HASH]:
        actions.append(DeletePod(pod.name, pod.uid))
        events.append(
            Event(
                "Normal",
                "SpecChanged",
                f"pod spec changed (generation {observed.generation}): replacing {pod.name}",
            )
        )
        memory = replace(memory, pod_uid=None)
        ready = Condition(READY, "False", "Updating", f"replacing pod {pod.name}")
        requeue = SHORT_REQUEUE_SECONDS
    elif pod.phase in ("Failed", "Succeeded"):
        actions.append(DeletePod(pod.name, pod.uid))
        memory = memory.failed(now)
        delay = backoff_seconds(memory.consecutive_failures, settings)
        message = f"pod {pod.name} {pod.phase.lower()}"
        if pod.failure:
            message += f": {pod.failure}"
        events.append(
            Event("Warning", "TranscoderFailed", f"{message}; recreating in {delay:.0f}s")
        )
        ready = Condition(READY, "False", RESTARTING, f"{message}; next attempt in {delay:.0f}s")
        requeue = delay
    elif pod.waiting_reason in IMAGE_PULL_REASONS:
        ready = Condition(
            READY,
            "False",
            "ImagePullFailed",
            f"{pod.waiting_reason}: {pod.waiting_message or settings.transcoder_image}",
        )
    elif pod.phase == "Running" and pod.ready:
        ready = Condition(READY, "True", "TranscoderRunning", f"pod {pod.name} on {pod.node}")
        live_pod = pod
        if memory.consecutive_failures:
            stable_at = (pod.started_at or now) + settings.stable_after_seconds
            if now >= stable_at:
                memory = replace(memory, consecutive_failures=0)
            else:
                requeue = stable_at - now
    else:
        detail = f": {pod.waiting_reason}" if pod.waiting_reason else ""
        ready = Condition(READY, "False", "WaitingForPod", f"pod {pod.name} is {pod.phase}{detail}")
        if pod.phase == "Running":
            live_pod = pod

    # Conditions, each from its owner's view of the observation.
    gen = observed.generation
    if not verdict.run:
        capacity = Condition(CAPACITY_AVAILABLE, "True", "NotNeeded", "no transcoder wanted now")
    elif admitted:
        capacity = Condition(CAPACITY_AVAILABLE, "True", "WithinLimits", "")
    else:
        assert not isinstance(observed.capacity, Admitted)
        capacity = Condition(
            CAPACITY_AVAILABLE, "False", observed.capacity.reason, observed.capacity.message
        )
    active_status: Status = "True" if verdict.run else "False"
    active = Condition(ACTIVE, active_status, verdict.reason, verdict.message)
    if live_pod is None:
        ingesting = Condition(INGESTING, "Unknown", "NoTranscoder", "no transcoder is running")
    elif observed.redis_error is not None:
        ingesting = Condition(INGESTING, "Unknown", "RedisUnavailable", observed.redis_error)
    else:
        ingesting = health_conditions(observed.health, datetime.fromtimestamp(now, UTC))[0]
    fresh = [ready, active, capacity, _scheduled(pod, why_no_pod), ingesting]

    conditions = [Condition.from_dict(c) for c in observed.status.get("conditions", []) or []]
    when = datetime.fromtimestamp(now, UTC)
    for cond in fresh:
        conditions = set_condition(conditions, replace(cond, observed_generation=gen), when)
    order = {t: i for i, t in enumerate(CONDITION_ORDER)}
    conditions.sort(key=lambda c: (order.get(c.type, len(order)), c.type))
    phase = derive_phase(conditions)

    old_phase = observed.status.get("phase")
    if old_phase != phase:
        kind = "Warning" if phase in ("Failed", "Restarting") else "Normal"
        cause = ready.message if ready.status == "False" else ingesting.message
        events.append(Event(kind, phase, f"phase {old_phase or 'none'} -> {phase}: {cause}"))

    live = ingesting.status == "True" and observed.health is not None
    status: dict[str, Any] = {
        "observedGeneration": gen,
        "conditions": [c.to_dict() for c in conditions],
        "phase": phase,
        "ingestURL": ingest_url(stream),
        "playbackURL": playback_url(stream, settings),
        "viewers": max(0, observed.viewers),
        "inputBitrateKbps": round(observed.health.input_bitrate_kbps)
        if live and observed.health
        else 0,
        "restarts": memory.recreations + (live_pod.container_restarts if live_pod else 0),
        "transcoder": memory.to_status(),
    }
    if verdict.recheck_at is not None and stream.spec.activation is Activation.ON_DEMAND:
        until = max(0.0, verdict.recheck_at - now)
        requeue = until if requeue is None else min(requeue, until)
    return Plan(actions, status, events, requeue)


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``; {} when equal.

    Keys gone from ``new`` are sent as null, so they are removed (a merge patch merges
    objects key by key); lists are replaced whole.
    """
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            inner = status_patch(before, value)
            if inner:
                patch[key] = inner
        elif value != before or key not in old:
            patch[key] = value
    return patch


def failed_status(
    status: Mapping[str, Any], generation: int, reason: str, message: str, now: float
) -> dict[str, Any]:
    """``status`` with Ready False for a reason that needs the user (phase Failed).

    ``InvalidSpec``: a spec the API server took but the model refuses (the CRD's schema and
    CEL rules mirror the model, so only specs stored before a rule was added).
    ``PodRejected``: the API server or an admission controller refused the pod (an unknown
    RuntimeClass, a quota, a policy); retried, and shown here until it goes through.
    """
    conditions = [Condition.from_dict(c) for c in status.get("conditions", []) or []]
    failed = Condition(READY, "False", reason, message, observed_generation=generation)
    conditions = set_condition(conditions, failed, datetime.fromtimestamp(now, UTC))
    return {
        **status,
        "observedGeneration": generation,
        "conditions": [c.to_dict() for c in conditions],
        "phase": derive_phase(conditions),
    }
