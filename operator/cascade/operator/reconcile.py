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

``reconcile()`` is a list of steps, each a pure function tested on its own:

* ``validity_step``: the body's stream, or why it is refused (the shell runs it first: an
  ``Observed`` holds a valid stream);
* ``spec_step``: the desired Pod and Service (``Desired``);
* ``admission_step``: the lifecycle verdict and the capacity decision joined: the Active
  and CapacityAvailable conditions, and a ``Hold`` when no transcoder is wanted now;
* ``adopt_step``: the memory, with a pod it did not record taken as the stream's own;
* ``pod_step`` (a transcoder is wanted: create, roll on a spec-hash change, restart a lost
  or failed one after a backoff) or ``stop_step`` (the on-demand lifecycle's stop, or no
  capacity): a ``PodOutcome`` with the pod's actions, events, memory, Ready and Scheduled;
* ``service_step``: the ingest Service's actions;
* ``status_step``: the conditions merged, the phase derived, the complete status and the
  phase-change event;
* ``requeue_step``: when to look again.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from cascade.contract.lifecycle import ALWAYS_ON, Verdict
from cascade.contract.schema import Health
from cascade.contract.spec import (
    Activation,
    LiveStream,
    RtmpMode,
    SourceType,
    SrtMode,
    format_validation_error,
)
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


# ---- what the steps share ---------------------------------------------------------------


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


# ---- the steps --------------------------------------------------------------------------
#
# ``reconcile()`` is the steps below, in order. Each is pure: it takes what it reads and
# returns what it decided, and tests/operator/test_reconcile_steps.py tests it alone.


def parse_stream(body: Mapping[str, Any]) -> LiveStream:
    """The LiveStream model of a watched body (raises ``ValidationError``)."""
    meta = body.get("metadata", {})
    return LiveStream.model_validate(
        {
            "apiVersion": body.get("apiVersion", "cascade.dev/v1alpha1"),
            "kind": "LiveStream",
            "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace", "default")},
            "spec": dict(body.get("spec", {})),
        }
    )


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a LiveStream is not run at all until the user changes it (phase Failed)."""

    reason: str  # the Ready reason: InvalidSpec or NameConflict (see failed_status)
    message: str


def validity_step(body: Mapping[str, Any], *, name_holder: str | None) -> LiveStream | Refused:
    """The spec/validity step: the stream a body asks for, or why it is refused.

    The shell runs it before it observes anything (an ``Observed`` holds a valid stream)
    and writes a refusal with ``failed_status``. ``name_holder``: the namespace of an older
    LiveStream of the same name, None when the name is this one's.
    """
    try:
        stream = parse_stream(body)
    except ValidationError as exc:
        # The loc of a LiveStream error already starts with "spec".
        return Refused("InvalidSpec", "; ".join(format_validation_error(exc)))
    if name_holder is not None:
        return Refused(
            "NameConflict",
            f"the stream name {stream.name!r} is taken by the older LiveStream in namespace "
            f"{name_holder!r} (stream names are global: Redis keys and edge URLs); rename this one",
        )
    return stream


@dataclass(frozen=True, slots=True)
class Desired:
    """What the spec asks for now: the transcoder Pod and the ingest Service (None: none)."""

    pod: dict[str, Any]
    service: dict[str, Any] | None

    @property
    def pod_hash(self) -> str:
        return str(self.pod["metadata"]["annotations"][ANNOTATION_SPEC_HASH])


def spec_step(observed: Observed, settings: OperatorSettings, *, redis_url: str) -> Desired:
    """The spec step: the desired children, built by the pure builders."""
    stream = observed.stream
    return Desired(
        pod=build_transcoder_pod(
            stream, settings, generation=observed.generation, redis_url=redis_url
        ),
        service=build_ingest_service(stream, settings),
    )


@dataclass(frozen=True, slots=True)
class Hold:
    """No transcoder now, and why."""

    by_lifecycle: bool  # True: the on-demand rule stops it; False: no capacity for it
    ready: Condition  # Ready=False: NotActive or WaitingForCapacity
    why_no_pod: str  # the Scheduled condition's message while there is no pod


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether this stream should have a transcoder now, with the two conditions saying so."""

    active: Condition  # owner: the lifecycle rule
    capacity: Condition  # owner: the capacity planner
    hold: Hold | None = None  # None: a transcoder is wanted now


def admission_step(observed: Observed) -> Admission:
    """The capacity/admission step: the lifecycle verdict and the capacity decision, joined.

    A transcoder is wanted when the lifecycle says run and the planner admits the stream.
    """
    verdict, decision = observed.lifecycle, observed.capacity
    active_status: Status = "True" if verdict.run else "False"
    active = Condition(ACTIVE, active_status, verdict.reason, verdict.message)
    if not verdict.run:
        return Admission(
            active,
            Condition(CAPACITY_AVAILABLE, "True", "NotNeeded", "no transcoder wanted now"),
            Hold(
                by_lifecycle=True,
                ready=Condition(READY, "False", "NotActive", verdict.message),
                why_no_pod=f"no transcoder: {verdict.message}",
            ),
        )
    if isinstance(decision, Admitted):
        return Admission(active, Condition(CAPACITY_AVAILABLE, "True", "WithinLimits", ""))
    return Admission(
        active,
        Condition(CAPACITY_AVAILABLE, "False", decision.reason, decision.message),
        Hold(
            by_lifecycle=False,
            ready=Condition(READY, "False", "WaitingForCapacity", decision.message),
            why_no_pod=f"waiting for capacity: {decision.message}",
        ),
    )


def adopt_step(memory: Memory, pod: PodView | None, now: float) -> Memory:
    """The memory with a live pod it did not record taken as this stream's pod.

    Its creation outlived the status write, or an older operator made it: it is this
    stream's pod now, nothing failed.
    """
    if pod is None or pod.deleting or pod.uid == memory.pod_uid:
        return memory
    memory = replace(memory, pod=pod.name, pod_uid=pod.uid)
    if memory.started_at is None:
        memory = replace(memory, started_at=pod.started_at or now)
    return memory


@dataclass(frozen=True, slots=True)
class PodOutcome:
    """What the pod step (or the stop step) decided about the transcoder pod."""

    memory: Memory
    ready: Condition  # owner: the reconciler
    scheduled: Condition  # from the pod's PodScheduled, or why there is no pod
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    live_pod: PodView | None = None  # the running pod whose health and restarts count
    requeue: float | None = None


def scheduled_condition(pod: PodView | None, why_no_pod: str) -> Condition:
    if pod is None:
        return Condition(SCHEDULED, "False", "NoPod", why_no_pod)
    if pod.scheduled is not None and pod.scheduled[0] == "True":
        return Condition(SCHEDULED, "True", "PodScheduled", f"pod {pod.name} on node {pod.node}")
    if pod.scheduled is not None and pod.scheduled[0] == "False":
        reason = pod.scheduled[1] or "Unschedulable"
        return Condition(SCHEDULED, "False", reason, pod.scheduled[2])
    return Condition(SCHEDULED, "False", "WaitingForScheduler", f"pod {pod.name} not scheduled yet")


def stop_step(observed: Observed, memory: Memory, hold: Hold) -> PodOutcome:
    """The on-demand lifecycle step: no transcoder wanted now (nobody watches, or no capacity).

    A pod is deleted; once it is gone, a stream the lifecycle stopped on purpose has its
    live keys forgotten, so edges do not serve its last window as live.
    """
    pod, now = observed.pod, observed.now
    scheduled = scheduled_condition(pod, hold.why_no_pod)
    if pod is None:
        actions: list[Action] = []
        if memory.started_at is not None and hold.by_lifecycle:
            actions.append(ForgetStream())
        memory = replace(memory, pod_uid=None, started_at=None)
        return PodOutcome(memory, hold.ready, scheduled, actions)
    if pod.deleting:
        return PodOutcome(memory, hold.ready, scheduled, requeue=SHORT_REQUEUE_SECONDS)
    reason = "StoppedOnDemand" if hold.by_lifecycle else "CapacityRevoked"
    event = Event("Normal", reason, f"deleting pod {pod.name}: {hold.why_no_pod}")
    memory = replace(memory, pod_uid=None)
    if hold.by_lifecycle:
        memory = replace(memory, stopped_at=now)
    return PodOutcome(memory, hold.ready, scheduled, [DeletePod(pod.name, pod.uid)], [event])


def pod_step(
    observed: Observed, memory: Memory, desired: Desired, settings: OperatorSettings
) -> PodOutcome:
    """The pod step: a transcoder is wanted; make the observed pod the desired one.

    No pod: create it, or, when the memory says one was lost, count a restart and create it
    after the backoff. A terminating pod: wait. A pod of an older spec hash: delete it (a
    roll, not a restart). A failed pod: delete it, count a restart, back off. Otherwise
    report what the pod is doing.
    """
    pod = observed.pod
    if pod is None:
        return _missing_pod(observed, memory, desired, settings)
    if pod.deleting:
        why = f"old pod {pod.name} is terminating"
        ready = Condition(READY, "False", "WaitingForPod", why)
        return PodOutcome(
            memory, ready, scheduled_condition(None, why), requeue=SHORT_REQUEUE_SECONDS
        )
    if pod.spec_hash != desired.pod_hash:
        return _roll(observed, memory, pod)
    if pod.phase in ("Failed", "Succeeded"):
        return _failed_pod(observed, memory, pod, settings)
    return _present_pod(observed, memory, pod, settings)


def _missing_pod(
    observed: Observed, memory: Memory, desired: Desired, settings: OperatorSettings
) -> PodOutcome:
    stream, now = observed.stream, observed.now
    events: list[Event] = []
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
    retry_at = (memory.last_failure or 0.0) + backoff_seconds(memory.consecutive_failures, settings)
    if memory.consecutive_failures and now < retry_at:
        wait = retry_at - now
        why = f"restarting after a failure in {math.ceil(wait)}s"
        ready = Condition(
            READY,
            "False",
            RESTARTING,
            f"{memory.consecutive_failures} consecutive failures; next attempt in "
            f"{math.ceil(wait)}s",
        )
        return PodOutcome(memory, ready, scheduled_condition(None, why), [], events, None, wait)
    events.append(Event("Normal", "CreatedPod", f"created transcoder pod {pod_name(stream)}"))
    memory = replace(memory, pod=pod_name(stream), pod_uid="", started_at=memory.started_at or now)
    why = f"creating pod {pod_name(stream)}"
    ready = Condition(READY, "False", "WaitingForPod", why)
    return PodOutcome(
        memory,
        ready,
        scheduled_condition(None, why),
        [CreatePod(desired.pod)],
        events,
        requeue=SHORT_REQUEUE_SECONDS,
    )


def _roll(observed: Observed, memory: Memory, pod: PodView) -> PodOutcome:
    event = Event(
        "Normal",
        "SpecChanged",
        f"pod spec changed (generation {observed.generation}): replacing {pod.name}",
    )
    return PodOutcome(
        replace(memory, pod_uid=None),
        Condition(READY, "False", "Updating", f"replacing pod {pod.name}"),
        scheduled_condition(pod, ""),
        [DeletePod(pod.name, pod.uid)],
        [event],
        requeue=SHORT_REQUEUE_SECONDS,
    )


def _failed_pod(
    observed: Observed, memory: Memory, pod: PodView, settings: OperatorSettings
) -> PodOutcome:
    memory = memory.failed(observed.now)
    delay = backoff_seconds(memory.consecutive_failures, settings)
    message = f"pod {pod.name} {pod.phase.lower()}"
    if pod.failure:
        message += f": {pod.failure}"
    return PodOutcome(
        memory,
        Condition(READY, "False", RESTARTING, f"{message}; next attempt in {delay:.0f}s"),
        scheduled_condition(pod, ""),
        [DeletePod(pod.name, pod.uid)],
        [Event("Warning", "TranscoderFailed", f"{message}; recreating in {delay:.0f}s")],
        requeue=delay,
    )


def _present_pod(
    observed: Observed, memory: Memory, pod: PodView, settings: OperatorSettings
) -> PodOutcome:
    """A pod of the current spec, not failed: pulling, starting or running."""
    now = observed.now
    scheduled = scheduled_condition(pod, "")
    if pod.waiting_reason in IMAGE_PULL_REASONS:
        ready = Condition(
            READY,
            "False",
            "ImagePullFailed",
            f"{pod.waiting_reason}: {pod.waiting_message or settings.transcoder_image}",
        )
        return PodOutcome(memory, ready, scheduled)
    if pod.phase == "Running" and pod.ready:
        ready = Condition(READY, "True", "TranscoderRunning", f"pod {pod.name} on {pod.node}")
        requeue: float | None = None
        if memory.consecutive_failures:
            # Up long enough: the next failure starts the backoff from the beginning.
            stable_at = (pod.started_at or now) + settings.stable_after_seconds
            if now >= stable_at:
                memory = replace(memory, consecutive_failures=0)
            else:
                requeue = stable_at - now
        return PodOutcome(memory, ready, scheduled, live_pod=pod, requeue=requeue)
    detail = f": {pod.waiting_reason}" if pod.waiting_reason else ""
    ready = Condition(READY, "False", "WaitingForPod", f"pod {pod.name} is {pod.phase}{detail}")
    return PodOutcome(memory, ready, scheduled, live_pod=pod if pod.phase == "Running" else None)


def service_step(current: ServiceView | None, desired: dict[str, Any] | None) -> list[Action]:
    """The Service step: create, patch (ports changed) or delete the ingest Service."""
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


def ingesting_condition(observed: Observed, live_pod: PodView | None) -> Condition:
    """Ingesting, from the transcoder's health in Redis (only while its pod runs)."""
    if live_pod is None:
        return Condition(INGESTING, "Unknown", "NoTranscoder", "no transcoder is running")
    if observed.redis_error is not None:
        return Condition(INGESTING, "Unknown", "RedisUnavailable", observed.redis_error)
    return health_conditions(observed.health, datetime.fromtimestamp(observed.now, UTC))[0]


def merge_conditions(
    old: Iterable[Condition], fresh: Iterable[Condition], *, generation: int, now: float
) -> list[Condition]:
    """``old`` with each ``fresh`` condition set (for this generation), in display order."""
    conditions = list(old)
    when = datetime.fromtimestamp(now, UTC)
    for cond in fresh:
        conditions = set_condition(conditions, replace(cond, observed_generation=generation), when)
    order = {t: i for i, t in enumerate(CONDITION_ORDER)}
    conditions.sort(key=lambda c: (order.get(c.type, len(order)), c.type))
    return conditions


def phase_event(
    old_phase: str | None, phase: str, ready: Condition, ingesting: Condition
) -> Event | None:
    """The event a phase change posts (a Warning for Failed and Restarting); None: no change."""
    if old_phase == phase:
        return None
    kind = "Warning" if phase in ("Failed", "Restarting") else "Normal"
    cause = ready.message if ready.status == "False" else ingesting.message
    return Event(kind, phase, f"phase {old_phase or 'none'} -> {phase}: {cause}")


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    status: dict[str, Any]  # the complete new status
    events: list[Event]  # the phase change, if any


def status_step(
    observed: Observed, settings: OperatorSettings, admission: Admission, pod: PodOutcome
) -> StatusOutcome:
    """The status/conditions step: each condition from its owner, the phase derived from them."""
    stream, health, live_pod = observed.stream, observed.health, pod.live_pod
    ingesting = ingesting_condition(observed, live_pod)
    conditions = merge_conditions(
        (Condition.from_dict(c) for c in observed.status.get("conditions", []) or []),
        [pod.ready, admission.active, admission.capacity, pod.scheduled, ingesting],
        generation=observed.generation,
        now=observed.now,
    )
    phase = derive_phase(conditions)
    event = phase_event(observed.status.get("phase"), phase, pod.ready, ingesting)
    live = ingesting.status == "True" and health is not None
    status: dict[str, Any] = {
        "observedGeneration": observed.generation,
        "conditions": [c.to_dict() for c in conditions],
        "phase": phase,
        "ingestURL": ingest_url(stream),
        "playbackURL": playback_url(stream, settings),
        "viewers": max(0, observed.viewers),
        "inputBitrateKbps": round(health.input_bitrate_kbps) if live and health else 0,
        "restarts": pod.memory.recreations + (live_pod.container_restarts if live_pod else 0),
        "transcoder": pod.memory.to_status(),
    }
    if health is not None and health.recording:
        status["recording"] = recording_status(health)
    return StatusOutcome(status, [event] if event is not None else [])


def recording_status(health: Health) -> dict[str, Any]:
    """What the transcoder reports of its recording (since its process started)."""

    def iso(unix: float) -> str:
        return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    out: dict[str, Any] = {
        "bytes": health.recording_bytes,
        "backlogBytes": health.recording_backlog_bytes,
        "lostSegments": health.recording_lost_segments,
    }
    if health.recording_oldest:
        out["oldest"] = iso(health.recording_oldest)
    if health.recording_newest:
        out["newest"] = iso(health.recording_newest)
    return out


def requeue_step(observed: Observed, requeue: float | None) -> float | None:
    """When to look again: the pod step's wish, or sooner when an on-demand verdict may flip."""
    verdict = observed.lifecycle
    if verdict.recheck_at is not None and observed.stream.spec.activation is Activation.ON_DEMAND:
        until = max(0.0, verdict.recheck_at - observed.now)
        return until if requeue is None else min(requeue, until)
    return requeue


def reconcile(observed: Observed, settings: OperatorSettings, *, redis_url: str) -> Plan:
    """The reconcile decision: the steps above, in order (``validity_step`` ran before)."""
    desired = spec_step(observed, settings, redis_url=redis_url)
    admission = admission_step(observed)
    memory = adopt_step(Memory.from_status(observed.status), observed.pod, observed.now)
    if admission.hold is None:
        pod = pod_step(observed, memory, desired, settings)
    else:
        pod = stop_step(observed, memory, admission.hold)
    service_actions = service_step(observed.service, desired.service)
    status = status_step(observed, settings, admission, pod)
    return Plan(
        actions=[*service_actions, *pod.actions],
        status=status.status,
        events=[*pod.events, *status.events],
        requeue_after=requeue_step(observed, pod.requeue),
    )


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
