"""LL-HLS decisions without a server: the render cache, and the wait of the ASGI path
through the feed's subscription (the hub's side of it: ``notify``)."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from cascade.edge.hub import RenditionFeed, Subscription
from cascade.edge.live import MEDIA_REPLIES, RenderCache, changed
from cascade.edge.window import RenditionWindow

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_task_leaks")]


def feed(name: str = "360p") -> RenditionFeed:
    return RenditionFeed(RenditionWindow(name, max_segments=4), key=f"cascade:parts:cam1:{name}")


# ---- the render cache: the rendering layer's, not the hub's ----------------------------


def test_a_rendered_playlist_is_kept_until_a_window_of_its_stream_changes() -> None:
    cache, f = RenderCache(), feed()
    cache.put(f, False, (3, 7), b"#EXTM3U full")
    reply = cache.get(f, False, (3, 7), b"no-cache")
    assert reply is not None and reply.body == b"#EXTM3U full"
    assert reply.route == "media_playlist" and reply.cache_control == b"no-cache"
    assert cache.get(f, False, (3, 7), b"no-cache") is reply, "one reply for every viewer"
    other = cache.get(f, False, (3, 7), b"public, max-age=1")
    assert other is not None and other is not reply, "one reply per Cache-Control"
    assert other.body is reply.body, "rendered once"
    assert cache.get(f, False, (3, 8), b"no-cache") is None, "a sibling window changed"
    assert cache.get(f, True, (3, 7), b"no-cache") is None, "a delta update is kept apart"
    assert cache.get(feed(), False, (3, 7), b"no-cache") is None, "another feed, same versions"


def test_a_part_has_one_reply_shared_by_every_viewer_and_the_memo_is_bounded() -> None:
    cache = RenderCache()
    data = b"x" * 100
    reply = cache.media(data, "part")
    assert reply.body is data and reply.status == 200 and reply.content_type == b"video/mp4"
    assert cache.media(data, "part") is reply
    assert cache.media(data, "segment") is not reply, "a route of its own is its own reply"
    assert cache.media(b"x" * 100, "part") is not reply, "other bytes, even equal ones"
    kept = [bytes([i % 256]) * 10 + str(i).encode() for i in range(MEDIA_REPLIES + 10)]
    for item in kept:
        cache.media(item, "part")
    assert len(cache._media) <= MEDIA_REPLIES


def test_a_cached_playlist_goes_with_its_feed() -> None:
    # A stream the hub dropped or recreated: a new feed may reuse the old one's id and
    # the versions restart, so an entry outliving its feed could serve another's text.
    cache, f = RenderCache(), feed()
    cache.put(f, False, (1,), b"old")
    cache.put(f, True, (1,), b"old delta")
    assert len(cache) == 2
    del f
    gc.collect()
    assert len(cache) == 0


# ---- the ASGI path's wait: a future and a timer, subscribed for the wait ---------------


async def test_a_wait_ends_when_the_hub_applies_entries_and_gives_back_its_subscription() -> None:
    f = feed()
    waiting = asyncio.ensure_future(changed(f, 10.0))
    await asyncio.sleep(0)
    assert f.subscribers == 1
    f.notify()
    await asyncio.wait_for(waiting, 1.0)
    assert f.subscribers == 0


async def test_a_wait_ends_after_its_seconds_without_a_change() -> None:
    f = feed()
    loop = asyncio.get_running_loop()
    start = loop.time()
    await changed(f, 0.05)
    assert loop.time() - start >= 0.05
    assert f.subscribers == 0


async def test_a_cancelled_wait_gives_back_its_subscription() -> None:
    f = feed()
    waiting = asyncio.ensure_future(changed(f, 10.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert f.subscribers == 0
    f.notify()  # nothing left to call


def test_a_failing_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    f, calls = feed(), []

    def broken() -> None:
        raise RuntimeError("subscriber bug")

    f.subscribe(broken)
    f.subscribe(lambda: calls.append("second"))
    with caplog.at_level(logging.ERROR, logger="cascade.edge.hub"):
        f.notify()
    assert calls == ["second"]
    assert "a subscriber failed" in caplog.text


def test_a_subscriber_unsubscribed_by_another_is_not_called() -> None:
    f, calls = feed(), []
    second: Subscription | None = None

    def first() -> None:
        calls.append("first")
        assert second is not None
        f.unsubscribe(second)

    f.subscribe(first)
    second = f.subscribe(lambda: calls.append("second"))
    f.notify()
    f.notify()
    assert calls == ["first", "first"]
