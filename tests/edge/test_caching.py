"""The caching policy: Cache-Control per kind of answer, and the key a shared cache uses."""

from __future__ import annotations

import pytest

from cascade.edge import caching


def test_a_blocking_reload_answer_is_shared_for_a_segment_duration() -> None:
    assert caching.blocking_playlist(2.0) == b"public, max-age=2"
    assert caching.blocking_playlist(1.2) == b"public, max-age=2", "whole seconds, rounded up"
    assert caching.blocking_playlist(0.5) == b"public, max-age=1", "never 0: that is no caching"


def test_plain_playlists_live_a_second_and_media_for_the_window() -> None:
    assert caching.PLAIN_PLAYLIST == b"public, max-age=1"
    assert caching.MEDIA == b"public, max-age=30"


@pytest.mark.parametrize(
    ("status", "expected"),
    [(404, b"public, max-age=1"), (400, b"no-store"), (403, b"no-store"), (429, b"no-store"),
     (500, b"no-store"), (503, b"no-store")],
)  # fmt: skip
def test_only_a_404_may_be_kept_and_only_for_a_second(status: int, expected: bytes) -> None:
    assert caching.error(status) == expected


@pytest.mark.parametrize(
    ("path", "params", "key"),
    [
        ("/live/cam1/360p/3.1.m4s", {}, "/live/cam1/360p/3.1.m4s"),
        ("/live/cam1/360p/init.mp4", {"CMCD": 'sid="abc"'}, "/live/cam1/360p/init.mp4"),
        ("/live/cam1/360p/index.m3u8", {}, "/live/cam1/360p/index.m3u8"),
        # The directives in a fixed order whatever the request's; CMCD dropped.
        ("/live/cam1/360p/index.m3u8",
         {"_HLS_part": "2", "CMCD": 'sid="x"', "_HLS_msn": "11"},
         "/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_part=2"),
        ("/live/cam1/360p/index.m3u8", {"_HLS_msn": "11", "_HLS_skip": "YES"},
         "/live/cam1/360p/index.m3u8?_HLS_msn=11&_HLS_skip=YES"),
        ("/live/cam1/360p/index.m3u8", {"_HLS_skip": "v2"}, "/live/cam1/360p/index.m3u8?_HLS_skip=v2"),
        ("/live/cam1/360p/index.m3u8", {"player": "x"}, "/live/cam1/360p/index.m3u8"),
    ],
)  # fmt: skip
def test_the_key_is_the_path_and_the_delivery_directives(
    path: str, params: dict[str, str], key: str
) -> None:
    assert caching.cache_key(path, params) == key


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/live/cam1.m3u8", {}),  # the multivariant: admission at an edge
        ("/watch/cam1", {}),
        ("/status", {}),
        ("/live/cam1/360p/index.m3u8", {"hls_ctx": "AAAAAAAAAAAAAAAA"}),  # a session: counted
        ("/live/cam1/360p/index.m3u8", {"exp": "1", "kid": "k", "sig": "s"}),  # a token
        ("/live/cam1/360p/index.m3u8", {"_HLS_msn": "011"}),  # the edge's 400
        ("/live/cam1/360p/index.m3u8", {"_HLS_msn": "-1"}),
        ("/live/cam1/360p/index.m3u8", {"_HLS_msn": "1", "_HLS_part": "x"}),
        ("/live/cam1/360p/index.m3u8", {"_HLS_skip": "NO"}),
        ("/live/cam1/360p/index.m3u8", {"_HLS_msn": "1" * 19}),
        ("/live/cam1/360p/3.1.m4s", {"_HLS_msn": "3"}),
    ],
)
def test_what_a_cache_passes_to_the_edge(path: str, params: dict[str, str]) -> None:
    assert caching.cache_key(path, params) is None
