"""``cascade up``: the whole pipeline on one machine.

A Redis server (started here unless ``REDIS_URL`` is set), one edge process, and one
transcoder process per LiveStream file in a folder: the same programs a cluster runs
in pods. The folder is reconciled every second; Ctrl-C stops everything started here.
The Redis started here is supervised as the transcoders are: if it dies, it is started
again on the same port and data directory (empty: local mode keeps no dump), and the
programs find it there by themselves (the transcoders replay what they held meanwhile).

``activation: OnDemand`` streams are judged every second by the operator's rule
(:func:`cascade.contract.lifecycle.on_demand_verdict`): their names are kept in
``cascade:ondemand`` (so the edge answers 503 "starting", not 404), their transcoder is
started once the edge records a viewer's demand and stopped after ``idleTimeoutSeconds``
without viewers, its Redis state removed as when a file goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from cascade.cli.objectstore import LocalObjectStore
from cascade.cli.reconcile import (
    Verb,
    fingerprint,
    on_demand_names,
    on_demand_verdicts,
    plan,
)
from cascade.contract import schema
from cascade.contract.lifecycle import Verdict
from cascade.contract.manifest import ManifestError, parse_manifest
from cascade.contract.settings import LocalSettings
from cascade.contract.spec import LiveStream
from cascade.edge.shield import ShieldConfig, render_vcl, varnishd_command
from cascade.transcoder.redisclient import redis_client

log = logging.getLogger("cascade.local")

SCAN_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0
# A redis-server that ran this long before dying is restarted at once; quicker deaths back off.
REDIS_STABLE_SECONDS = 10.0


def _die_with_parent() -> None:
    """In the child: get SIGTERM if this process dies, so nothing outlives ``cascade up``."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(slots=True)
class Child:
    name: str
    proc: asyncio.subprocess.Process
    fingerprint: str = ""
    stream: LiveStream | None = None
    started_at: float = field(default_factory=time.monotonic)
    failures: int = 0
    # Wall clock of the first start (kept across restarts): the on-demand rule's start.
    active_since: float = field(default_factory=time.time)


async def _spawn(name: str, argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    log.debug("starting %s: %s", name, " ".join(argv))
    return await asyncio.create_subprocess_exec(
        *argv,
        env={**os.environ, **env},
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


async def _stop(proc: asyncio.subprocess.Process, grace: float = STOP_GRACE_SECONDS) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def edge_port(settings: LocalSettings) -> int:
    """The edge's own port: PORT, or behind the shield CASCADE_EDGE_PORT (default PORT + 1)."""
    if not settings.shield:
        return settings.port
    return settings.edge_port or settings.port + 1


class LocalStack:
    def __init__(self, settings: LocalSettings, *, redis_url: str | None) -> None:
        self.settings = settings
        self.external_redis = redis_url
        self.redis_url = redis_url or f"redis://127.0.0.1:{settings.redis_port}/0"
        self.redis_proc: asyncio.subprocess.Process | None = None
        self.edge: asyncio.subprocess.Process | None = None
        self.shield: asyncio.subprocess.Process | None = None
        self.shield_sessions: asyncio.subprocess.Process | None = None
        self.streams: dict[str, Child] = {}
        self.errors: dict[str, str] = {}  # file -> last reported error
        self.file_names: dict[Path, str] = {}  # file -> stream name of its last good parse
        self.on_demand: frozenset[str] = frozenset()  # names last written to cascade:ondemand
        self.stopped_at: dict[str, float] = {}  # on-demand stream -> when it was stopped idle
        self._redis_ok = True  # to warn once per outage, not every second
        self._redis_started_at = 0.0  # monotonic time of the last start of our redis-server
        self._redis_failures = 0  # quick deaths in a row (backoff)
        self._tmp = tempfile.TemporaryDirectory(prefix="cascade-")
        self.store = LocalObjectStore(settings)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._start_redis()
            problem = await self.store.start(_spawn)
            if problem:
                print(f"cascade: {problem}", file=sys.stderr, flush=True)
            await self._start_edge()
            redis = redis_client(self.redis_url)
            try:
                base = f"http://{self.settings.host}:{self.settings.port}"
                if self.settings.shield:
                    edge = f"http://{self.settings.host}:{edge_port(self.settings)}"
                    print(f"cascade: shield on {base}, edge behind it on {edge}", flush=True)
                print(f"cascade: edge on {base}  (status {base}/status)", flush=True)
                print(f"cascade: streams from {self.settings.streams_dir.resolve()}", flush=True)
                if self.store.env() or self.store.external:
                    print(f"cascade: recordings in {self.store.endpoint}", flush=True)
                while not stop.is_set():
                    await self.supervise_redis()
                    await self.store.supervise(_spawn)
                    await self.reconcile(redis)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), SCAN_SECONDS)
                print("cascade: stopping", flush=True)
                await asyncio.gather(*(self._stop_stream(redis, n) for n in list(self.streams)))
                await self._sync_on_demand(redis, frozenset(), {})
            finally:
                await redis.aclose()
        finally:
            for name in list(self.streams):
                await _stop(self.streams.pop(name).proc)
            for proc in (self.shield_sessions, self.shield, self.edge):
                if proc is not None:
                    await _stop(proc)
            if self.redis_proc is not None:
                await _stop(self.redis_proc)
            if self.store.proc is not None:
                await _stop(self.store.proc)
            self._tmp.cleanup()

    # ---- services --------------------------------------------------------------------

    async def _start_redis(self) -> None:
        if self.external_redis:
            return
        problem = await self._spawn_redis()
        if problem:
            raise SystemExit(f"cascade: {problem}")

    async def _spawn_redis(self) -> str:
        """Start redis-server and wait for its PING; "" when up, else what went wrong."""
        server = shutil.which("redis-server")
        if server is None:
            return (
                "redis-server not found: run `make run` (it installs it) "
                "or set REDIS_URL to a running Redis"
            )
        self._redis_started_at = time.monotonic()
        self.redis_proc = await _spawn(
            "redis",
            [
                server,
                "--port",
                str(self.settings.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._tmp.name,
                "--loglevel",
                "warning",
            ],
            {},
        )
        redis = redis_client(self.redis_url)
        try:
            for _ in range(100):
                try:
                    await redis.ping()
                    return ""
                except OSError:
                    if self.redis_proc.returncode is not None:
                        return (
                            f"redis-server exited ({self.redis_proc.returncode}); "
                            f"is port {self.settings.redis_port} taken?"
                        )
                    await asyncio.sleep(0.05)
                except Exception:
                    await asyncio.sleep(0.05)
            return "redis-server did not answer"
        finally:
            await redis.aclose()

    async def supervise_redis(self) -> None:
        """Our redis-server died: start it again (same port, same directory), with backoff
        when it keeps dying at once (a taken port, a full disk)."""
        proc = self.redis_proc
        if self.external_redis or proc is None or proc.returncode is None:
            return
        lived = time.monotonic() - self._redis_started_at
        if lived > REDIS_STABLE_SECONDS:
            self._redis_failures = 0
        delay = 0.0 if self._redis_failures == 0 else min(30.0, 0.5 * 2**self._redis_failures)
        if lived < delay:
            return
        print(
            f"cascade: redis-server exited ({proc.returncode}); restarting it on port "
            f"{self.settings.redis_port}",
            file=sys.stderr,
            flush=True,
        )
        self._redis_failures += 1
        problem = await self._spawn_redis()
        if problem:
            print(f"cascade: redis-server restart failed: {problem}", file=sys.stderr, flush=True)

    async def _start_edge(self) -> None:
        port = edge_port(self.settings)
        env = {
            "PORT": str(port),
            "HOST": self.settings.host,
            "REDIS_URL": self.redis_url,
            **self.store.env(),
        }
        if self.settings.shield:
            # Behind a cache, sessions from CMCD: playlist URLs the same for every viewer.
            env["CASCADE_VIEWER_SESSIONS"] = "cmcd"
        self.edge = await _spawn("edge", [sys.executable, "-m", "cascade.edge.main"], env)
        await self._wait_healthy(self.edge, "edge", port)
        if self.settings.shield:
            await self._start_shield(port)

    async def _start_shield(self, backend_port: int) -> None:
        """varnishd on PORT in front of the edge, and the counter of its cache hits."""
        workdir = Path(self._tmp.name) / "shield"
        workdir.mkdir()
        vcl = workdir / "shield.vcl"
        vcl.write_text(render_vcl(ShieldConfig(self.settings.host, backend_port)))
        listen = f"{self.settings.host}:{self.settings.port}"
        cmd = varnishd_command(vcl=str(vcl), workdir=str(workdir / "varnish"), listen=listen)
        self.shield = await _spawn("shield", cmd, {})
        await self._wait_healthy(self.shield, "shield (varnishd)", self.settings.port)
        self.shield_sessions = await _spawn(
            "shield-sessions",
            [sys.executable, "-m", "cascade.edge.shieldsessions",
             "--varnish-name", str(workdir / "varnish")],
            {"REDIS_URL": self.redis_url},
        )  # fmt: skip

    async def _wait_healthy(self, proc: asyncio.subprocess.Process, what: str, port: int) -> None:
        url = f"http://{self.settings.host}:{port}/health"
        for _ in range(200):
            if proc.returncode is not None:
                raise SystemExit(
                    f"cascade: the {what} exited ({proc.returncode}); "
                    f"is port {port} taken? (PORT, CASCADE_EDGE_PORT set others)"
                )
            with contextlib.suppress(OSError):
                await asyncio.to_thread(urllib.request.urlopen, url, timeout=1)
                return
            await asyncio.sleep(0.1)
        raise SystemExit(f"cascade: the {what} did not become healthy")

    # ---- streams ---------------------------------------------------------------------

    def read_folder(self) -> tuple[dict[str, LiveStream], frozenset[str]]:
        desired: dict[str, LiveStream] = {}
        broken: set[str] = set()
        folder = self.settings.streams_dir
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
        current_errors: dict[str, str] = {}
        for path in files:
            try:
                stream = parse_manifest(path.read_text(), source=str(path))
            except (ManifestError, OSError, UnicodeDecodeError) as exc:
                current_errors[str(path)] = str(exc)
                # Keep the running stream of a file broken by an edit.
                broken.add(self.file_names.get(path, path.stem))
                continue
            self.file_names[path] = stream.name
            if stream.name in desired:
                current_errors[str(path)] = (
                    f"{path}: stream name {stream.name!r} is already used by another file"
                )
                continue
            desired[stream.name] = stream
        for source, message in current_errors.items():
            if self.errors.get(source) != message:
                print(f"cascade: error: {message}", file=sys.stderr, flush=True)
        self.errors = current_errors
        return desired, frozenset(broken)

    async def reconcile(self, redis: Redis) -> None:
        desired, broken = self.read_folder()
        on_demand = on_demand_names(desired, broken, self.on_demand)
        await self._sync_on_demand(redis, on_demand, desired)
        verdicts = await self._verdicts(redis, desired, on_demand)
        if verdicts is None:
            # Redis did not answer: on-demand streams stay as they are.
            dormant = frozenset(n for n in on_demand if n not in self.streams)
        else:
            dormant = frozenset(n for n, v in verdicts.items() if not v.run)
        running = {name: child.fingerprint for name, child in self.streams.items()}
        for action in plan(desired, running, broken, dormant):
            previous = self.streams.get(action.name)
            verdict = (verdicts or {}).get(action.name)
            if action.verb in (Verb.STOP, Verb.RESTART, Verb.IDLE):
                why = ""
                if action.verb is Verb.IDLE and verdict is not None:
                    why = verdict.message.removeprefix("stopped: ")
                    why += "; the next viewer starts it again"
                await self._stop_stream(
                    redis, action.name, remove_state=action.verb is not Verb.RESTART, why=why
                )
            if action.verb is Verb.IDLE:
                self.stopped_at[action.name] = time.time()
            if action.verb in (Verb.START, Verb.RESTART):
                assert action.stream is not None
                keep = previous.active_since if previous and action.verb is Verb.RESTART else None
                why = (
                    f"on demand: {verdict.message}" if verdict and action.verb is Verb.START else ""
                )
                await self._start_stream(action.stream, active_since=keep, why=why)
        await self._supervise()

    async def _sync_on_demand(
        self, redis: Redis, names: frozenset[str], desired: dict[str, LiveStream]
    ) -> None:
        """Keep ``cascade:ondemand`` to ``names`` (added every time: Redis may have
        restarted empty); a name that leaves it loses its recorded demand too."""
        gone = self.on_demand - names
        pipe = redis.pipeline(transaction=False)
        if names:
            pipe.sadd(schema.ON_DEMAND_STREAMS, *sorted(names))
        if gone:
            pipe.srem(schema.ON_DEMAND_STREAMS, *sorted(gone))
            pipe.zrem(schema.DEMAND, *sorted(gone))
        try:
            if names or gone:
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._redis_failed("on-demand streams not written", exc)
            return
        for name in sorted(names - self.on_demand):
            stream = desired.get(name)
            if stream is not None and name not in self.streams:
                idle = stream.spec.idle_timeout_seconds
                stops = f"stops after {idle} s without viewers" if idle else "then keeps running"
                print(
                    f"cascade: stream {name} is on demand: it starts when a viewer opens "
                    f"http://{self.settings.host}:{self.settings.port}/watch/{name} and {stops}",
                    flush=True,
                )
        for name in gone:
            self.stopped_at.pop(name, None)
        self.on_demand = names

    async def _verdicts(
        self, redis: Redis, desired: dict[str, LiveStream], on_demand: frozenset[str]
    ) -> dict[str, Verdict] | None:
        """The on-demand rule for every desired on-demand stream; None if Redis failed."""
        names = sorted(n for n in on_demand if n in desired)
        if not names:
            return {}
        try:
            demand, last_viewer = await read_activity(redis, names)
        except (RedisError, OSError) as exc:
            self._redis_failed("on-demand streams left as they are", exc)
            return None
        self._redis_ok = True
        active_since = {name: child.active_since for name, child in self.streams.items()}
        return on_demand_verdicts(
            desired, active_since, self.stopped_at, demand, last_viewer, time.time()
        )

    def _redis_failed(self, what: str, exc: BaseException) -> None:
        if self._redis_ok:
            log.warning("%s, redis failed: %s", what, exc)
        self._redis_ok = False

    async def _start_stream(
        self,
        stream: LiveStream,
        failures: int = 0,
        *,
        active_since: float | None = None,
        why: str = "",
    ) -> None:
        env = {
            "REDIS_URL": self.redis_url,
            "CASCADE_LIVESTREAM": stream.model_dump_json(by_alias=True, exclude_none=True),
            **self.store.env(),
        }
        proc = await _spawn(
            stream.name,
            [
                sys.executable,
                "-m",
                "cascade.transcoder.main",
                "--bind-host",
                "127.0.0.1",
            ],
            env,
        )
        child = Child(stream.name, proc, fingerprint(stream), stream, failures=failures)
        if active_since is not None:
            child.active_since = active_since
        self.streams[stream.name] = child
        print(
            f"cascade: stream {stream.name} started{f' ({why})' if why else ''}: "
            f"http://{self.settings.host}:{self.settings.port}/watch/{stream.name}",
            flush=True,
        )

    async def _supervise(self) -> None:
        """A transcoder process that died is started again, with backoff."""
        for name, child in list(self.streams.items()):
            if child.proc.returncode is None or child.stream is None:
                continue
            delay = min(30.0, 0.5 * 2**child.failures)
            if time.monotonic() - child.started_at < delay:
                continue
            print(
                f"cascade: stream {name}: transcoder exited ({child.proc.returncode}); restarting",
                file=sys.stderr,
                flush=True,
            )
            await self._start_stream(
                child.stream, failures=child.failures + 1, active_since=child.active_since
            )

    async def _stop_stream(
        self, redis: Redis, name: str, *, remove_state: bool = True, why: str = ""
    ) -> None:
        child = self.streams.pop(name, None)
        if child is not None:
            await _stop(child.proc)
        if remove_state:
            await remove_stream_state(redis, name)
            print(f"cascade: stream {name} stopped{f': {why}' if why else ''}", flush=True)


async def remove_stream_state(redis: Redis, name: str) -> int:
    """Delete every Redis key of a stream; returns how many."""
    keys = [k async for k in redis.scan_iter(match=schema.stream_key_pattern(name), count=500)]
    pipe = redis.pipeline(transaction=False)
    pipe.srem(schema.STREAMS_SET, name)
    if keys:
        pipe.delete(*keys)
    await pipe.execute()
    return len(keys)


async def read_activity(
    redis: Redis, names: list[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each stream's last demand (``cascade:demand``) and its newest viewer request
    (``cascade:viewers:{s}``), Unix seconds, in one pipeline; absent when never."""
    pipe = redis.pipeline(transaction=False)
    for name in names:
        pipe.zscore(schema.DEMAND, name)
        pipe.zrevrange(schema.viewers_key(name), 0, 0, withscores=True)
    raw = await pipe.execute()
    demand: dict[str, float] = {}
    last_viewer: dict[str, float] = {}
    for i, name in enumerate(names):
        score, newest = raw[2 * i], raw[2 * i + 1]
        if score is not None:
            demand[name] = float(score)
        if newest:
            last_viewer[name] = float(newest[0][1])
    return demand, last_viewer


def run(settings: LocalSettings, *, redis_url: str | None) -> int:
    stack = LocalStack(settings, redis_url=redis_url)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stack.run(stop)

    asyncio.run(main())
    return 0


__all__ = ["LocalStack", "read_activity", "remove_stream_state", "run"]
