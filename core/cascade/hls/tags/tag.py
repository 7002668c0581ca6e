"""What every tag class shares: ``parse(line)`` strips ``#TAG:`` and calls ``from_value``."""

from __future__ import annotations

from typing import ClassVar, Self

from cascade.hls.tags.primitives import TagError

__all__ = ["Tag", "split_tag"]


def split_tag(line: str, tag: str) -> str:
    """The value of ``#TAG:value`` (empty for ``#TAG``); TagError if the line is another tag."""
    prefix = "#" + tag
    if not line.startswith(prefix):
        raise TagError(f"not an {tag} line: {line!r}")
    rest = line[len(prefix) :]
    if not rest:
        return ""
    if rest[0] != ":":
        raise TagError(f"not an {tag} line: {line!r}")
    return rest[1:]


class Tag:
    """Shared ``parse``: strip ``#TAG:`` and hand the value to ``from_value``."""

    __slots__ = ()
    TAG: ClassVar[str]

    @classmethod
    def parse(cls, line: str) -> Self:
        return cls.from_value(split_tag(line, cls.TAG))

    @classmethod
    def from_value(cls, value: str) -> Self:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError
