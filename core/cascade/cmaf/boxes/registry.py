"""The registry: which parser decodes which box type, and the parse that dispatches on it.

Each box module registers its class when it is imported (``register(FtypBox.type,
FtypBox.parse)``, or ``register_family`` for a class that decodes several types, such as the
containers and the sample entries); the package's ``__init__`` imports every box module, so
the table is complete before anything can be parsed. A type nobody registered is kept as a
:class:`RawBox`.

This module sits below the box modules, not above them: the boxes that hold boxes
(containers, ``stsd``, sample entries) parse their children with :func:`parse_boxes`, and
the registry never imports a box class it dispatches to, so there is no import cycle.
:data:`~cascade.cmaf.boxes.box.Box`, the union of every class, is named here for typing
only.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from cascade.cmaf.boxes.header import BoxError, BoxHeader, iter_boxes, read_header
from cascade.cmaf.boxes.raw import RawBox

if TYPE_CHECKING:
    from cascade.cmaf.boxes.box import Box

__all__ = ["parse_box", "parse_boxes", "register", "register_family", "registered_types"]

# One type, one parser of the payload: ``FtypBox.parse(payload)``.
_PARSE: dict[str, Callable[[bytes], Box]] = {}
# One class for several types, told which: ``ContainerBox.parse_typed("moov", payload)``.
_PARSE_TYPED: dict[str, Callable[[str, bytes], Box]] = {}


def _claim(box_type: str) -> None:
    if box_type in _PARSE or box_type in _PARSE_TYPED:
        raise ValueError(f"box type {box_type!r} is registered twice")


def register(box_type: str, parse: Callable[[bytes], Box]) -> None:
    """Decode boxes of ``box_type`` with ``parse(payload)``."""
    _claim(box_type)
    _PARSE[box_type] = parse


def register_family(box_types: Iterable[str], parse_typed: Callable[[str, bytes], Box]) -> None:
    """Decode boxes of each of ``box_types`` with ``parse_typed(box_type, payload)``."""
    for box_type in box_types:
        _claim(box_type)
        _PARSE_TYPED[box_type] = parse_typed


def registered_types() -> frozenset[str]:
    """Every box type registered so far (all of them once the package is imported)."""
    return frozenset(_PARSE.keys() | _PARSE_TYPED.keys())


def _parse_payload(header: BoxHeader, payload: bytes) -> Box:
    box_type = header.type
    try:
        parse = _PARSE.get(box_type)
        if parse is not None:
            return parse(payload)
        parse_typed = _PARSE_TYPED.get(box_type)
        if parse_typed is not None:
            return parse_typed(box_type, payload)
    except (struct.error, IndexError, OverflowError) as exc:  # pragma: no cover - defensive
        raise BoxError(f"malformed {box_type!r} box at byte {header.start}: {exc}") from exc
    return RawBox(box_type, payload, header.usertype)


def parse_box(data: bytes, start: int = 0, end: int = -1) -> Box:
    """Parse the one box at ``data[start:]`` (and its children); see :func:`read_header`."""
    header = read_header(data, start, end)
    return _parse_payload(header, data[header.payload_start : header.end])


def parse_boxes(data: bytes, start: int = 0, end: int = -1) -> tuple[Box, ...]:
    """Parse every consecutive box in ``data[start:end]``."""
    return tuple(
        _parse_payload(h, data[h.payload_start : h.end]) for h in iter_boxes(data, start, end)
    )
