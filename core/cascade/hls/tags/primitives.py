"""The values tags are made of (RFC 8216bis 4.2): attribute lists, numbers, strings, dates.

Shared by every tag module. ``format_decimal`` and ``format_pdt`` are on the renderer's hot
path (per request, over the same few values), so they memoize.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from functools import lru_cache

__all__ = [
    "TagError",
    "format_decimal",
    "format_pdt",
    "parse_attribute_list",
    "parse_decimal",
    "parse_enumerated",
    "parse_integer",
    "parse_pdt",
    "parse_resolution",
    "parse_yes",
    "quote",
    "require",
    "unquote",
]


class TagError(ValueError):
    """A tag line or attribute list that does not follow RFC 8216bis."""


# "An AttributeName is an unquoted string containing characters from the set [A..Z], [0..9],
# and '-'."
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
# "decimal-floating-point: an unquoted string of characters from the set [0..9] and '.' that
# expresses a non-negative floating-point number in decimal positional notation."
_DECIMAL_FLOAT = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
# "decimal-integer: an unquoted string of characters from the set [0..9] expressing an integer
# in base-10 arithmetic in the range from 0 to 2^64-1 (18446744073709551615)."
_MAX_DECIMAL_INTEGER = 2**64 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# The renderer runs per request over the same few values (part durations, PDTs of the window),
# so the two formatters memoize: pure functions of their argument, bounded caches.
@lru_cache(maxsize=1024)
def format_decimal(value: float) -> str:
    """A decimal-floating-point attribute value: ``%.5f``, trailing zeros trimmed, one kept."""
    if not 0.0 <= value < math.inf:
        raise TagError(f"decimal-floating-point must be finite and non-negative, got {value!r}")
    # "+ 0.0" turns -0.0 into 0.0 (which the cache also treats as one key).
    text = f"{value + 0.0:.5f}".rstrip("0")
    return text + "0" if text[-1] == "." else text


def parse_decimal(text: str) -> float:
    """Parse a decimal-floating-point (a decimal-integer is accepted too)."""
    if _DECIMAL_FLOAT.fullmatch(text) is None:
        raise TagError(f"not a decimal-floating-point: {text!r}")
    return float(text)


def parse_integer(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise TagError(f"not a decimal-integer: {text!r}")
    value = int(text)
    if value > _MAX_DECIMAL_INTEGER:
        raise TagError(f"decimal-integer out of range: {text!r}")
    return value


def quote(value: str) -> str:
    # "The following characters MUST NOT appear in a quoted-string: line feed (0xA), carriage
    # return (0xD), or double quote (0x22)."
    if '"' in value or "\n" in value or "\r" in value:
        raise TagError(f"quoted-string cannot hold a double quote, CR or LF: {value!r}")
    return f'"{value}"'


def format_pdt(timestamp: float) -> str:
    """Unix seconds to ``YYYY-MM-DDThh:mm:ss.SSSZ`` (rounded to the millisecond)."""
    # RFC 8216bis 4.4.4.6: "It SHOULD indicate a time zone and fractional parts of seconds, to
    # millisecond accuracy."
    return _format_pdt_ms(round(timestamp * 1000))


@lru_cache(maxsize=4096)
def _format_pdt_ms(ms: int) -> str:
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def parse_pdt(text: str) -> float:
    """An ISO 8601 date-time with a time zone (``Z`` or ``+hh:mm``) to Unix seconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TagError(f"not an ISO 8601 date-time: {text!r}") from exc
    if moment.tzinfo is None:
        raise TagError(f"date-time without a time zone: {text!r}")
    delta = moment - _EPOCH
    # Integer microseconds, then one correctly rounded division: n ms parses to exactly n / 1000.
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros / 1_000_000


def parse_attribute_list(text: str) -> dict[str, str]:
    """Split an attribute-list into raw values (quoted strings keep their quotes).

    RFC 8216bis 4.2: "An attribute-list is a comma-separated list of attribute/value pairs with
    no whitespace." Commas inside quoted strings do not split.
    """
    attrs: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        eq = text.find("=", i)
        if eq == -1:
            raise TagError(f"attribute without '=': {text[i:]!r}")
        name = text[i:eq]
        if not name or not _NAME_CHARS.issuperset(name):
            raise TagError(f"bad AttributeName {name!r}")
        if eq + 1 < n and text[eq + 1] == '"':
            close = text.find('"', eq + 2)
            if close == -1:
                raise TagError(f"unterminated quoted-string for {name}")
            end = close + 1
        else:
            comma = text.find(",", eq + 1)
            end = n if comma == -1 else comma
        value = text[eq + 1 : end]
        if not value:
            raise TagError(f"empty value for {name}")
        # "A given AttributeName MUST NOT appear more than once in a given attribute-list."
        if name in attrs:
            raise TagError(f"duplicate attribute {name}")
        attrs[name] = value
        if end == n:
            break
        if text[end] != ",":
            raise TagError(f"expected ',' after the value of {name}")
        i = end + 1
        if i == n:
            raise TagError("trailing comma in attribute-list")
    return attrs


def require(attrs: dict[str, str], name: str, tag: str) -> str:
    try:
        return attrs[name]
    except KeyError:
        raise TagError(f"{tag}: missing required attribute {name}") from None


def unquote(raw: str, name: str) -> str:
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        raise TagError(f"{name} must be a quoted-string, got {raw!r}")
    return raw[1:-1]


def parse_enumerated(raw: str, name: str) -> str:
    # "An enumerated-string will never contain double quotes ("), commas (,), or whitespace."
    if '"' in raw or any(c.isspace() for c in raw):
        raise TagError(f"{name} must be an enumerated-string, got {raw!r}")
    return raw


def parse_yes(raw: str, name: str) -> bool:
    # The LL-HLS boolean attributes are enumerated-strings whose only defined value is YES.
    value = parse_enumerated(raw, name)
    if value == "YES":
        return True
    if value == "NO":
        return False
    raise TagError(f"{name} must be YES, got {raw!r}")


def parse_resolution(raw: str, name: str) -> tuple[int, int]:
    # "decimal-resolution: two decimal-integers separated by the "x" character."
    width, sep, height = raw.partition("x")
    if not sep:
        raise TagError(f"{name} must be a decimal-resolution, got {raw!r}")
    return parse_integer(width), parse_integer(height)
