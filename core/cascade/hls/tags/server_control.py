"""EXT-X-SERVER-CONTROL: the Delivery Directives the server supports (RFC 8216bis 4.4.3.8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from cascade.hls.tags.primitives import (
    format_decimal,
    parse_attribute_list,
    parse_decimal,
    parse_yes,
)
from cascade.hls.tags.tag import Tag

__all__ = ["ServerControlTag", "render_server_control"]


def render_server_control(
    can_block_reload: bool,
    part_hold_back: float | None,
    can_skip_until: float | None = None,
    hold_back: float | None = None,
) -> str:
    attrs: list[str] = []
    if can_block_reload:
        attrs.append("CAN-BLOCK-RELOAD=YES")
    if part_hold_back is not None:
        attrs.append("PART-HOLD-BACK=" + format_decimal(part_hold_back))
    if can_skip_until is not None:
        attrs.append("CAN-SKIP-UNTIL=" + format_decimal(can_skip_until))
    if hold_back is not None:
        attrs.append("HOLD-BACK=" + format_decimal(hold_back))
    return "#EXT-X-SERVER-CONTROL:" + ",".join(attrs)


@dataclass(frozen=True, slots=True)
class ServerControlTag(Tag):
    """EXT-X-SERVER-CONTROL: which Delivery Directives the server supports."""

    TAG: ClassVar[str] = "EXT-X-SERVER-CONTROL"
    can_block_reload: bool = False
    part_hold_back: float | None = None
    can_skip_until: float | None = None
    hold_back: float | None = None

    def render(self) -> str:
        return render_server_control(
            self.can_block_reload, self.part_hold_back, self.can_skip_until, self.hold_back
        )

    @classmethod
    def from_value(cls, value: str) -> Self:
        attrs = parse_attribute_list(value)
        block = attrs.get("CAN-BLOCK-RELOAD")
        phb = attrs.get("PART-HOLD-BACK")
        skip = attrs.get("CAN-SKIP-UNTIL")
        hold = attrs.get("HOLD-BACK")
        return cls(
            can_block_reload=block is not None and parse_yes(block, "CAN-BLOCK-RELOAD"),
            part_hold_back=None if phb is None else parse_decimal(phb),
            can_skip_until=None if skip is None else parse_decimal(skip),
            hold_back=None if hold is None else parse_decimal(hold),
        )
