"""Where Redis is: one server, or a primary that Redis Sentinel watches. Pure parsing.

``REDIS_URL`` takes either form, so every program (edge, transcoder, operator, ``cascade
up``) keeps one setting:

* ``redis://[user:password@]host[:6379][/db]`` (``rediss://`` for TLS): one server, as
  before.
* ``redis+sentinel://[user:password@]host1[:26379][,host2[:26379]...]/master[/db]``: ask
  the sentinels (in the order given) where the primary named ``master`` is, on every
  (re)connect, so a failover moves every client to the promoted replica. The user and
  password are those of the primary and its replicas. Sentinels that require a password
  of their own take it from the query: ``?sentinel_password=...`` (and
  ``sentinel_username=...``).

The same text goes from the operator into every transcoder pod, so both forms must mean
the same thing to all programs: this module is the one place that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "redis+sentinel"
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True, slots=True)
class RedisServerUrl:
    """One Redis server at a fixed address."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A primary found through Redis Sentinel."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def master_auth(self) -> dict[str, object]:
        """Connection keywords for the primary (and replicas), redis-py's names."""
        return {"db": self.db, "username": self.username, "password": self.password}

    def sentinel_auth(self) -> dict[str, object]:
        """Connection keywords for the sentinels themselves (empty: no password)."""
        auth: dict[str, object] = {}
        if self.sentinel_password is not None:
            auth["password"] = self.sentinel_password
            if self.sentinel_username is not None:
                auth["username"] = self.sentinel_username
        return auth


RedisLocation = RedisServerUrl | SentinelUrl


def parse_redis_url(url: str) -> RedisLocation:
    """``REDIS_URL`` as a location; ValueError names what is wrong (never the password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("REDIS_URL must start with redis://, rediss:// or redis+sentinel://")
    scheme = scheme.lower()
    if scheme == SENTINEL_SCHEME:
        return _parse_sentinel(rest)
    if scheme not in ("redis", "rediss"):
        raise ValueError(
            f"REDIS_URL scheme {scheme}:// is not supported: use redis://, rediss:// or "
            "redis+sentinel://"
        )
    parsed = urlsplit(url)
    try:
        port = parsed.port or DEFAULT_PORT
    except ValueError:
        raise ValueError("REDIS_URL has a port that is not a number from 1 to 65535") from None
    return RedisServerUrl(
        host=parsed.hostname or "127.0.0.1",
        port=port,
        db=_db(parsed.path.strip("/") or "0"),
        username=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        tls=scheme == "rediss",
    )


def _parse_sentinel(rest: str) -> SentinelUrl:
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at:
        userinfo, hosts = "", netloc
    username = password = None
    if userinfo:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(h, DEFAULT_SENTINEL_PORT) for h in hosts.split(",") if h)
    if not sentinels:
        raise ValueError("a redis+sentinel:// URL needs at least one sentinel host")
    segments = [s for s in path.split("/") if s]
    if not segments:
        raise ValueError(
            "a redis+sentinel:// URL needs the master's name: redis+sentinel://host:26379/mymaster/0"
        )
    if len(segments) > 2:
        raise ValueError("a redis+sentinel:// URL path is /master or /master/db")
    options = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = set(options) - {"sentinel_password", "sentinel_username"}
    if unknown:
        raise ValueError(f"unknown redis+sentinel:// option(s): {', '.join(sorted(unknown))}")
    return SentinelUrl(
        sentinels=sentinels,
        master=unquote(segments[0]),
        db=_db(segments[1] if len(segments) == 2 else "0"),
        username=username,
        password=password,
        sentinel_username=options.get("sentinel_username") or None,
        sentinel_password=options.get("sentinel_password"),
    )


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[::1]`` or ``[::1]:port``."""
    if text.startswith("["):
        host, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"sentinel address {text!r} is not [ipv6]:port")
        port_text = after[1:]
    else:
        host, _, port_text = text.partition(":")
    if not host:
        raise ValueError(f"sentinel address {text!r} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"sentinel address {text!r} has a port that is not 1-65535")
    return host, int(port_text)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"the Redis database must be a number, not {text!r}")
    return int(text)


def redacted(url: str) -> str:
    """The URL with any password replaced, for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hosts}" if ":" in userinfo else f"{user}@{hosts}"
    tail_path, q, query = tail.partition("?")
    if q:
        query = "&".join(
            f"{k}=***" if k == "sentinel_password" else f"{k}={v}"
            for k, _, v in (p.partition("=") for p in query.split("&"))
        )
    return f"{scheme}://{netloc}{slash}{tail_path}{q}{query}"
