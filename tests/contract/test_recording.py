"""The recording layout: segment names sort by time and round-trip; keys per stream/rendition."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cascade.contract import recording
from cascade.contract.recording import SegmentName

names = st.builds(
    SegmentName,
    start_ms=st.integers(0, 10**13 - 1),
    msn=st.integers(0, 10**10 - 1),
    generation=st.integers(0, 10**6 - 1),
    duration_us=st.integers(0, 10**9 - 1),
    init=st.text("0123456789abcdef", min_size=16, max_size=16),
)


@given(names)
def test_round_trip(name: SegmentName) -> None:
    assert SegmentName.parse(name.name) == name


@given(names, names)
def test_names_sort_like_times(a: SegmentName, b: SegmentName) -> None:
    # The store lists keys in lexical order: that must be program date-time order.
    assert (a.name < b.name) == (a < b)


def test_keys() -> None:
    seg = SegmentName(1733356800123, 42, 3, 500000, "0123456789abcdef")
    assert recording.segment_key("recordings/", "demo", "360p", seg) == (
        "recordings/demo/360p/seg/1733356800123_0000000042_000003_000500000_0123456789abcdef.m4s"
    )
    assert seg.start == 1733356800.123 and seg.duration == 0.5
    name = recording.init_name(b"init bytes")
    assert recording.INIT_NAME_RE.fullmatch(name)
    assert recording.init_key("", "demo", "360p", name) == f"demo/360p/init/{name}"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "1_2_3_4_5.m4s",
        "1733356800123_0000000042_000003_000500000_0123456789ABCDEF.m4s",
        "../1733356800123_0000000042_000003_000500000_0123456789abcdef.m4s",
    ],
)
def test_parse_refuses_other_names(name: str) -> None:
    assert SegmentName.parse(name) is None


def test_stream_names_are_checked() -> None:
    with pytest.raises(ValueError, match="not a stream name"):
        recording.stream_prefix("", "../x")
