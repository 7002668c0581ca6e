"""REDIS_URL: one server or a Sentinel-watched primary, parsed the same for every program."""

from __future__ import annotations

import re

import pytest

from cascade.contract.redisurl import RedisServerUrl, SentinelUrl, parse_redis_url, redacted
from cascade.contract.settings import EdgeSettings, TranscoderSettings


def test_a_plain_url_is_one_server_as_before() -> None:
    assert parse_redis_url("redis://user:p%40ss@redis.cascade:6380/2") == RedisServerUrl(
        "redis.cascade", 6380, db=2, username="user", password="p@ss"
    )
    assert parse_redis_url("redis://127.0.0.1") == RedisServerUrl("127.0.0.1", 6379)
    assert parse_redis_url("redis://:secret@[::1]:7000/0") == RedisServerUrl(
        "::1", 7000, password="secret"
    )
    tls = parse_redis_url("rediss://redis.example.net:6380/0")
    assert isinstance(tls, RedisServerUrl) and tls.tls


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/0",
            SentinelUrl((("127.0.0.1", 26379), ("127.0.0.1", 26380)), "mymaster"),
        ),
        (
            "redis+sentinel://s1,s2:26400,[::1]/cache",
            SentinelUrl((("s1", 26379), ("s2", 26400), ("::1", 26379)), "cache"),
        ),
        (
            "redis+sentinel://:pw@s1:26379/mymaster/3?sentinel_password=spw",
            SentinelUrl((("s1", 26379),), "mymaster", db=3, password="pw", sentinel_password="spw"),
        ),
        (
            "REDIS+SENTINEL://app:p%2Fw@s1/m%20x/1",
            SentinelUrl((("s1", 26379),), "m x", db=1, username="app", password="p/w"),
        ),
    ],
)
def test_a_sentinel_url_lists_sentinels_the_master_and_the_db(
    url: str, expected: SentinelUrl
) -> None:
    assert parse_redis_url(url) == expected


def test_sentinel_auth_keywords() -> None:
    plain = parse_redis_url("redis+sentinel://s1/m")
    assert isinstance(plain, SentinelUrl)
    assert plain.sentinel_auth() == {}
    assert plain.master_auth() == {"db": 0, "username": None, "password": None}
    both = parse_redis_url("redis+sentinel://u:pw@s1/m/2?sentinel_username=su&sentinel_password=sp")
    assert isinstance(both, SentinelUrl)
    assert both.sentinel_auth() == {"username": "su", "password": "sp"}
    assert both.master_auth() == {"db": 2, "username": "u", "password": "pw"}


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel:///mymaster", "at least one sentinel"),
        ("redis+sentinel://s1:26379", "master's name"),
        ("redis+sentinel://s1:26379/", "master's name"),
        ("redis+sentinel://s1:port/m", "port that is not 1-65535"),
        ("redis+sentinel://s1:70000/m", "port that is not 1-65535"),
        ("redis+sentinel://[::1/m", "not [ipv6]:port"),
        ("redis+sentinel://s1/m/zero", "must be a number"),
        ("redis+sentinel://s1/m/0/extra", "/master or /master/db"),
        ("redis+sentinel://s1/m?password=x", "unknown redis+sentinel:// option"),
        ("memcached://x", "not supported"),
        ("127.0.0.1:6379", "must start with"),
    ],
)
def test_malformed_urls_are_refused_naming_the_part(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parse_redis_url(url)


def test_a_refusal_never_shows_the_password() -> None:
    with pytest.raises(ValueError, match="not 1-65535") as info:
        parse_redis_url("redis+sentinel://app:hunter2@s1:99999/m")
    assert "hunter2" not in str(info.value)


def test_settings_refuse_a_malformed_sentinel_url_at_start_and_keep_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://s1:26379")
    with pytest.raises(ValueError, match="master's name"):
        TranscoderSettings()
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://s1:26379,s2:26380/mymaster/0")
    assert EdgeSettings().redis_url == "redis+sentinel://s1:26379,s2:26380/mymaster/0"
    monkeypatch.setenv("REDIS_URL", "unix:///run/redis.sock")  # redis-py's, untouched as before
    assert EdgeSettings().redis_url == "unix:///run/redis.sock"


def test_outage_settings_have_safe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = TranscoderSettings()
    assert settings.outage_buffer_seconds == 30.0
    assert settings.outage_buffer_bytes == 128 * 1024 * 1024
    monkeypatch.setenv("CASCADE_OUTAGE_BUFFER_SECONDS", "5")
    monkeypatch.setenv("CASCADE_OUTAGE_BUFFER_BYTES", "1000000")
    settings = TranscoderSettings()
    assert (settings.outage_buffer_seconds, settings.outage_buffer_bytes) == (5.0, 1_000_000)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        (
            "redis+sentinel://u:pw@s1,s2/m/0?sentinel_password=spw",
            "redis+sentinel://u:***@s1,s2/m/0?sentinel_password=***",
        ),
    ],
)
def test_redacted_hides_every_password(url: str, shown: str) -> None:
    assert redacted(url) == shown
