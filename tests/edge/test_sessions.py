"""Viewer sessions: one contract suite over every SessionStore, Redis-only facts after it.

Every test runs on a fake clock: ``now`` is passed explicitly, starting at ``T0``.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from cascade.contract import schema
from cascade.contract.settings import EdgeSettings
from cascade.edge.sessions import (
    HLS_CTX,
    Admission,
    MemoryBackend,
    MemorySessionStore,
    RedisSessionStore,
    SessionConfig,
    SessionFlusher,
    SessionStore,
    commands_per_viewer_second,
    decide_admission,
    flush_commands,
    media_playlist_uri,
    new_viewer_id,
    parse_viewer_id,
    session_for_request,
)

from ..conftest import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]

T0 = 1_700_000_000.0
CONFIG = SessionConfig(timeout=30.0, flush_interval=2.0, counts_cache_seconds=0.0)
V1, V2, V3 = "viewer1-aaaaaaaa", "viewer2-bbbbbbbb", "viewer3-cccccccc"

# A factory of replicas: each call is one more edge process on the same shared state.
Replicas = Callable[[SessionConfig], SessionStore]


@pytest.fixture(params=["memory", "redis"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    if request.param == "memory":
        backend = MemoryBackend.empty()
        yield lambda config: MemorySessionStore(config, backend)
        return
    url: str = request.getfixturevalue("redis_url")
    clients: list[Redis] = []

    def make(config: SessionConfig) -> SessionStore:
        client = Redis.from_url(url)
        clients.append(client)
        return RedisSessionStore(client, config)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


# ---- pure helpers ---------------------------------------------------------------------


def test_viewer_ids_are_random_and_url_safe() -> None:
    ids = {new_viewer_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(parse_viewer_id(i) == i for i in ids)


@pytest.mark.parametrize(
    "value",
    [
        None, "", "short", "x" * 17, "has space 123456", "someone@mail.org", "é" * 16,
        # "$" in a pattern also matches before a final newline: the id is fullmatched.
        "abcdefghijklmnop\n", "\nabcdefghijklmnop", "abcdefghijklmno\n",
    ],
)  # fmt: skip
def test_malformed_hls_ctx_is_no_viewer_id(value: str | None) -> None:
    assert parse_viewer_id(value) is None


def test_a_multivariant_request_keeps_a_well_formed_hls_ctx() -> None:
    def fresh() -> str:
        return "new-id-000000000"

    assert session_for_request(V1, tracking=True, signed=False, new_id=fresh) == V1
    assert session_for_request("junk", tracking=True, signed=False, new_id=fresh) == fresh()
    assert session_for_request(None, tracking=True, signed=False, new_id=fresh) == fresh()
    # Tracking off: no session for a public stream; a signed one still needs its grant.
    assert session_for_request(V1, tracking=False, signed=False, new_id=fresh) is None
    assert session_for_request(None, tracking=False, signed=True, new_id=fresh) == fresh()


def test_the_session_rides_on_media_playlist_uris_only() -> None:
    assert media_playlist_uri("cam1", "720p", V1) == f"cam1/720p/index.m3u8?{HLS_CTX}={V1}"
    assert media_playlist_uri("cam1", "720p", None) == "cam1/720p/index.m3u8"


def test_admission_rule_and_message() -> None:
    five = [f"s{i}" for i in range(5)]
    assert decide_admission("s9", five, 6, 30) == Admission(True, 6, 6)
    refused = decide_admission("s9", [*five, "s5"], 6, 30)
    assert not refused.allowed
    assert refused.message == "viewer already watches 6 streams (the limit is 6): close one first"
    assert refused.retry_after == 30
    assert decide_admission("s0", [*five, "s5"], 6, 30).allowed  # already watched


def test_config_from_settings() -> None:
    settings = EdgeSettings(
        viewer_timeout_seconds=45,
        viewer_tracking_enabled=False,
        max_streams_per_viewer=4,
        session_flush_seconds=3.0,
    )
    config = SessionConfig.from_settings(settings)
    assert (config.timeout, config.tracking, config.max_streams_per_viewer) == (45, False, 4)
    assert config.flush_interval == 3.0
    assert config.key_ttl == 93


def test_heartbeat_cost_at_5000_viewers_is_far_under_the_target() -> None:
    # 25 streams watched by 5,000 viewers (1-6 streams each): 81 commands per 2 s flush.
    assert flush_commands(25) == 81
    one = commands_per_viewer_second(viewers=5000, streams=25, flush_interval=2.0)
    assert one == pytest.approx(0.0081)
    assert commands_per_viewer_second(
        viewers=5000, streams=25, flush_interval=2.0, replicas=10
    ) == pytest.approx(0.081)


# ---- the contract ---------------------------------------------------------------------


async def test_a_touch_counts_after_the_flush(replicas: Replicas) -> None:
    store = replicas(CONFIG)
    store.touch(V1, "cam1", T0)
    assert await store.counts(T0) == {}
    assert await store.flush(T0) == 1
    assert await store.counts(T0 + 0.1) == {"cam1": 1}
    assert await store.total(T0 + 0.1) == 1


async def test_heartbeats_between_flushes_coalesce(replicas: Replicas) -> None:
    store = replicas(CONFIG)
    for i in range(10):
        store.touch(V1, "cam1", T0 + i * 0.1)
    assert await store.flush(T0 + 1) == 1
    assert await store.flush(T0 + 3) == 0


async def test_counts_per_stream_and_distinct_viewers_in_total(replicas: Replicas) -> None:
    store = replicas(CONFIG)
    for stream in ("a", "b", "c"):
        store.touch(V1, stream, T0)
    store.touch(V2, "a", T0)
    await store.flush(T0)
    assert await store.counts(T0) == {"a": 2, "b": 1, "c": 1}
    assert await store.total(T0) == 2


async def test_a_session_expires_its_timeout_after_the_last_request(replicas: Replicas) -> None:
    store = replicas(CONFIG)
    store.touch(V1, "cam1", T0)
    store.touch(V2, "cam1", T0)
    await store.flush(T0)
    store.touch(V2, "cam1", T0 + 20)
    await store.flush(T0 + 20)
    assert await store.counts(T0 + 29.9) == {"cam1": 2}
    assert await store.counts(T0 + 30) == {"cam1": 1}
    assert await store.total(T0 + 30) == 1
    await store.flush(T0 + 50)
    assert await store.counts(T0 + 50) == {}
    assert await store.total(T0 + 50) == 0


async def test_counts_are_cached_briefly(replicas: Replicas) -> None:
    store = replicas(replace(CONFIG, counts_cache_seconds=1.0))
    assert await store.counts(T0) == {}
    store.touch(V1, "cam1", T0)
    await store.flush(T0)
    assert await store.counts(T0 + 0.5) == {}  # the cached answer
    assert await store.total(T0 + 0.5) == 0
    assert await store.counts(T0 + 1.0) == {"cam1": 1}


async def test_two_replicas_report_identical_counts(replicas: Replicas) -> None:
    a, b = replicas(CONFIG), replicas(CONFIG)
    a.touch(V1, "cam1", T0)
    b.touch(V2, "cam1", T0)
    b.touch(V1, "cam2", T0)  # the same viewer's second stream, through the other replica
    a.touch(V3, "cam2", T0 - 40)  # long gone
    await a.flush(T0)
    await b.flush(T0)
    expected = {"cam1": 2, "cam2": 1}
    assert await a.counts(T0 + 1) == expected
    assert await b.counts(T0 + 1) == expected
    assert await a.total(T0 + 1) == await b.total(T0 + 1) == 2


async def test_the_seventh_stream_is_refused_on_any_replica(replicas: Replicas) -> None:
    a, b = replicas(CONFIG), replicas(CONFIG)
    for i in range(6):
        admission = await (a if i % 2 else b).admit(V1, f"s{i}", T0 + i)
        assert admission.allowed, admission
        assert admission.active == i + 1
    for store in (a, b):
        refused = await store.admit(V1, "s6", T0 + 7)
        assert not refused.allowed
        assert refused.message == (
            "viewer already watches 6 streams (the limit is 6): close one first"
        )
        assert (await store.admit(V1, "s3", T0 + 7)).allowed  # a reload of one it watches
        assert (await store.admit(V2, "s6", T0 + 7)).allowed  # another viewer
    assert await a.active_streams(V1, T0 + 8) == {f"s{i}" for i in range(6)}


async def test_streams_stop_counting_against_the_limit_after_the_timeout(
    replicas: Replicas,
) -> None:
    store = replicas(replace(CONFIG, max_streams_per_viewer=2))
    assert (await store.admit(V1, "a", T0)).allowed
    assert (await store.admit(V1, "b", T0)).allowed
    store.touch(V1, "b", T0 + 20)  # still playing b
    await store.flush(T0 + 20)
    assert not (await store.admit(V1, "c", T0 + 25)).allowed
    assert (await store.admit(V1, "c", T0 + 30)).allowed  # a closed 30 s ago
    assert await store.active_streams(V1, T0 + 31) == {"b", "c"}


async def test_unflushed_heartbeats_count_against_the_limit(replicas: Replicas) -> None:
    store = replicas(replace(CONFIG, max_streams_per_viewer=2))
    store.touch(V1, "a", T0)  # media playlists of a and b, not flushed yet
    store.touch(V1, "b", T0)
    assert await store.active_streams(V1, T0) == {"a", "b"}
    assert not (await store.admit(V1, "c", T0)).allowed


async def test_concurrent_admissions_on_two_replicas_stop_at_the_limit(
    replicas: Replicas,
) -> None:
    a, b = replicas(CONFIG), replicas(CONFIG)
    results = await asyncio.gather(*((a if i % 2 else b).admit(V1, f"s{i}", T0) for i in range(10)))
    assert sum(r.allowed for r in results) == 6
    assert len(await a.active_streams(V1, T0)) == 6


async def test_a_grant_is_seen_by_every_replica(replicas: Replicas) -> None:
    a, b = replicas(CONFIG), replicas(CONFIG)
    await a.grant(V1, "cam1", int(T0) + 600, T0)
    assert await b.grant_expiry(V1, "cam1", T0 + 1) == int(T0) + 600
    assert await a.grant_expiry(V1, "cam1", T0 + 1) == int(T0) + 600
    assert await b.grant_expiry(V1, "cam2", T0 + 1) is None
    assert await b.grant_expiry(V2, "cam1", T0 + 1) is None
    await a.grant(V2, "cam1", int(T0) - 1, T0)  # already expired: not stored
    assert await b.grant_expiry(V2, "cam1", T0) is None


async def test_tracking_disabled_counts_nothing_and_refuses_nothing(replicas: Replicas) -> None:
    store = replicas(replace(CONFIG, tracking=False, max_streams_per_viewer=1))
    store.touch(V1, "cam1", T0)
    assert await store.flush(T0) == 0
    assert await store.counts(T0) == {}
    assert await store.total(T0) == 0
    assert (await store.admit(V1, "a", T0)).allowed
    assert (await store.admit(V1, "b", T0)).allowed
    assert await store.active_streams(V1, T0) == set()
    # Grants are access control, not tracking: they still work.
    await store.grant(V1, "cam1", int(T0) + 60, T0)
    assert await store.grant_expiry(V1, "cam1", T0) == int(T0) + 60


async def test_the_flusher_flushes_on_its_own_and_on_stop(replicas: Replicas) -> None:
    now = [T0]
    store = replicas(replace(CONFIG, flush_interval=0.01))
    flusher = SessionFlusher(store, clock=lambda: now[0])
    await flusher.start()
    store.touch(V1, "cam1", T0)
    for _ in range(200):
        await asyncio.sleep(0.01)
        if await store.counts(T0) == {"cam1": 1}:
            break
    assert await store.counts(T0) == {"cam1": 1}
    store.touch(V2, "cam1", T0)
    await flusher.stop()
    assert await store.counts(T0) == {"cam1": 2}


# ---- Redis only -----------------------------------------------------------------------

VIEWER_ID = re.compile(r"^[A-Za-z0-9_-]{16}$")
STREAM = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _str(value: object) -> str:
    assert isinstance(value, bytes | str)
    return value.decode() if isinstance(value, bytes) else value


async def _zmembers(redis: Redis, key: str) -> list[tuple[str, float]]:
    raw = cast(list[tuple[bytes, float]], await redis.zrange(key, 0, -1, withscores=True))
    return [(_str(v), float(s)) for v, s in raw]


async def test_only_random_ids_and_times_are_stored(redis: Redis) -> None:
    store = RedisSessionStore(redis, CONFIG)
    viewers = [new_viewer_id() for _ in range(20)]
    for i, viewer in enumerate(viewers):
        await store.admit(viewer, f"cam{i % 3}", T0)
        store.touch(viewer, f"cam{i % 3}", T0 + 1)
        store.touch(viewer, "multi", T0 + 1)
        await store.grant(viewer, "cam0", int(T0) + 3600, T0)
    await store.flush(T0 + 2)

    keys = sorted([_str(k) async for k in redis.scan_iter(match="*")])
    assert keys, "nothing was written"
    everything: list[str] = []
    for key in keys:
        everything.append(key)
        kind = _str(await redis.type(key))
        if m := re.fullmatch(r"cascade:viewers:(.+)", key):
            assert STREAM.match(m.group(1)) and kind == "zset"
            members = await _zmembers(redis, key)
            assert all(VIEWER_ID.match(v) for v, _ in members)
            assert all(T0 - 60 < s < T0 + 60 for _, s in members)
            everything += [f"{v} {s}" for v, s in members]
        elif key in (schema.VIEWERS_ALL, schema.VIEWED_STREAMS):
            members = await _zmembers(redis, key)
            pattern = VIEWER_ID if key == schema.VIEWERS_ALL else STREAM
            assert all(pattern.match(v) for v, _ in members)
            everything += [f"{v} {s}" for v, s in members]
        elif m := re.fullmatch(r"cascade:viewer:([^:]+):grant:(.+)", key):
            assert VIEWER_ID.match(m.group(1)) and STREAM.match(m.group(2))
            value = _str(await redis.get(key) or b"")
            assert value == str(int(T0) + 3600)
            everything.append(value)
        else:
            pytest.fail(f"unexpected key {key!r}")
        assert 0 < await redis.ttl(key) <= 3600
    text = "\n".join(everything)
    assert not re.search(r"\b\d{1,3}(\.\d{1,3}){3}\b|:[0-9a-f]{0,4}:", text)  # IPv4/IPv6
    assert not re.search(r"mozilla|safari|chrome|applewebkit|user-agent|@", text, re.I)


async def test_expired_members_are_removed_and_keys_carry_a_ttl(redis: Redis) -> None:
    store = RedisSessionStore(redis, CONFIG)
    store.touch(V1, "cam1", T0)
    await store.flush(T0)
    assert 0 < await redis.ttl(schema.viewers_key("cam1")) <= CONFIG.key_ttl
    store.touch(V2, "cam1", T0 + 31)
    await store.flush(T0 + 31)
    members = await redis.zrange(schema.viewers_key("cam1"), 0, -1)
    assert members == [V2.encode()]
    assert await redis.zrange(schema.VIEWERS_ALL, 0, -1) == [V2.encode()]


async def test_a_grant_key_lives_until_the_grant_expires(redis: Redis) -> None:
    store = RedisSessionStore(redis, CONFIG)
    await store.grant(V1, "cam1", int(T0) + 90, T0)
    assert 85 <= await redis.ttl(schema.viewer_grant_key(V1, "cam1")) <= 90


async def test_heartbeats_stay_pending_while_redis_is_down() -> None:
    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    store = RedisSessionStore(client, CONFIG)
    store.touch(V1, "cam1", T0)
    with pytest.raises(RedisConnectionError):
        await store.flush(T0)
    assert store.pending == 1
    assert store.redis_errors == 1
    flusher = SessionFlusher(store, clock=lambda: T0)
    await flusher.flush_once()  # logged, not raised
    assert flusher.failures == 1
    assert store.pending == 1
    # The limit falls back to what this edge knows: playback does not need Redis.
    admission = await store.admit(V1, "cam2", T0)
    assert admission.allowed
    assert store.pending == 2
    await client.aclose()


async def _commands(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return sum(
        int(v["calls"])
        for k, v in stats.items()
        if k not in ("cmdstat_info", "cmdstat_config|resetstat")
    )


async def test_steady_state_costs_under_0_2_commands_per_viewer_second(
    redis: Redis, redis_url: str
) -> None:
    """5,000 viewers watching 1-6 of 25 streams, one playlist request per stream per second."""
    rng = random.Random(7)
    viewers = {
        new_viewer_id(): rng.sample([f"cam{i}" for i in range(25)], rng.randint(1, 6))
        for _ in range(5000)
    }
    edge = Redis.from_url(redis_url)
    store = RedisSessionStore(edge, CONFIG)
    now = T0

    async def second() -> None:
        nonlocal now
        now += 1
        for viewer, streams in viewers.items():
            for stream in streams:
                store.touch(viewer, stream, now)
        if int(now - T0) % 2 == 0:
            await store.flush(now)

    for _ in range(4):  # warm up: every pair once in Redis
        await second()
    await redis.config_resetstat()
    seconds = 20
    for _ in range(seconds):
        await second()
    calls = await _commands(redis)
    per_viewer_second = calls / len(viewers) / seconds
    assert calls == 10 * flush_commands(25)
    assert per_viewer_second < 0.2
    assert per_viewer_second == pytest.approx(
        commands_per_viewer_second(viewers=5000, streams=25, flush_interval=2.0)
    )
    store2 = RedisSessionStore(edge, CONFIG)
    counts = await store2.counts(now)
    assert sum(counts.values()) == sum(len(s) for s in viewers.values())
    assert await store2.total(now) == 5000
    await edge.aclose()
