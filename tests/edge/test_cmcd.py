"""CMCD (CTA-5004) payloads: the session id read, everything else dropped."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from cascade.edge import cmcd

# What hls.js 1.5 sends (decoded from its CMCD= query parameter).
HLS_JS = (
    'bl=2900,br=510,cid="cam1",d=100,dl=2800,mtp=52200,nor="3.2.m4s",ot=v,rtp=1500,'
    'sf=h,sid="6e2fb550-c457-11e9-bb97-0800200c9a66",st=l,su,tb=2300'
)


def test_a_payload_parses_into_strings_tokens_numbers_and_flags() -> None:
    parsed = cmcd.parse(HLS_JS)
    assert parsed["sid"] == "6e2fb550-c457-11e9-bb97-0800200c9a66"
    assert parsed["cid"] == "cam1"
    assert parsed["ot"] == "v" and parsed["br"] == "510"
    assert parsed["su"] is True
    assert parsed["nor"] == "3.2.m4s"


def test_commas_and_escaped_quotes_inside_strings() -> None:
    assert cmcd.parse(r'cid="a,b",sid="x\"y",su') == {"cid": "a,b", "sid": 'x"y', "su": True}


def test_malformed_payloads_are_skipped_not_refused() -> None:
    assert cmcd.parse("") == {}
    assert cmcd.parse(",,=,") == {}
    assert cmcd.parse('sid="never closed,br=3') == {}


def test_the_session_id_needs_the_shape_of_one() -> None:
    assert cmcd.session_id(HLS_JS) == "6e2fb550-c457-11e9-bb97-0800200c9a66"
    assert cmcd.session_id('sid="me@example.com"') is None, "not an id: never kept"
    assert cmcd.session_id('sid="short"') is None
    assert cmcd.session_id('sid="' + "a" * 65 + '"') is None
    assert cmcd.session_id(None) is None and cmcd.session_id("br=3") is None


def test_the_viewer_id_kept_is_a_digest_of_the_shape_of_hls_ctx() -> None:
    a = cmcd.viewer_id("6e2fb550-c457-11e9-bb97-0800200c9a66")
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", a)
    assert a == cmcd.viewer_id("6e2fb550-c457-11e9-bb97-0800200c9a66"), "every edge agrees"
    assert a != cmcd.viewer_id("6e2fb550-c457-11e9-bb97-0800200c9a67")
    assert "6e2fb550" not in a


def test_query_form_first_then_the_session_header() -> None:
    header = 'sid="from-the-header-1"'
    assert cmcd.viewer_from_request(HLS_JS, header) == cmcd.viewer_id(
        "6e2fb550-c457-11e9-bb97-0800200c9a66"
    )
    assert cmcd.viewer_from_request(None, header) == cmcd.viewer_id("from-the-header-1")
    assert cmcd.viewer_from_request("br=1", None) is None


@given(st.text(max_size=200))
def test_any_payload_parses_without_error(payload: str) -> None:
    parsed = cmcd.parse(payload)
    assert all(isinstance(k, str) and k for k in parsed)
    sid = cmcd.session_id(payload)
    assert sid is None or re.fullmatch(r"[A-Za-z0-9_.:+/=-]{8,64}", sid)
