"""Which lines of the shield's log count a viewer: hits on media playlists with a CMCD sid."""

from __future__ import annotations

import urllib.parse

import pytest

from cascade.edge import cmcd
from cascade.edge.shieldsessions import session_of_line

SID = "6e2fb550-c457-11e9-bb97-0800200c9a66"
QUERY = "?_HLS_msn=3&_HLS_part=1&CMCD=" + urllib.parse.quote(f'br=510,sid="{SID}"')


def test_a_hit_on_a_playlist_with_a_query_sid_counts() -> None:
    line = f"hit\t/live/cam1/360p/index.m3u8\t{QUERY}\t-\n"
    assert session_of_line(line) == ("cam1", cmcd.viewer_id(SID))


def test_the_session_header_counts_too() -> None:
    line = f'hit\t/live/cam1/360p/index.m3u8\t\tsid="{SID}",cid="cam1"\n'
    assert session_of_line(line) == ("cam1", cmcd.viewer_id(SID))


@pytest.mark.parametrize(
    "line",
    [
        f"miss\t/live/cam1/360p/index.m3u8\t{QUERY}\t-",  # the edge counted it
        f"pass\t/live/cam1/360p/index.m3u8\t{QUERY}\t-",
        f"hit\t/live/cam1/360p/3.1.m4s\t{QUERY}\t-",  # parts: the playlists count
        f"hit\t/live/cam1.m3u8\t{QUERY}\t-",
        f"hit\t/live/Bad..Name/360p/index.m3u8\t{QUERY}\t-",
        "hit\t/live/cam1/360p/index.m3u8\t?_HLS_msn=3\t-",  # no sid
        "hit\t/live/cam1/360p/index.m3u8",
        "",
    ],
)
def test_lines_that_do_not_count(line: str) -> None:
    assert session_of_line(line) is None
