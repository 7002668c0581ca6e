"""Health bookkeeping: framecrc packet lines and the sliding-window rate meter.

The packet lines below are real FFmpeg 5.1 ``-c copy -f framecrc`` output for an H.264 +
AAC MPEG-TS input; the meter runs on an injected clock (plain floats), never on sleep.
"""

from __future__ import annotations

import pytest

from cascade.transcoder.health import Packet, RateMeter, parse_packet_line, speed

FRAMECRC = """\
#extradata 0:       38, 0xacf70ad5
#software: Lavf59.27.100
#tb 0: 1/90000
#media_type 0: video
#codec_id 0: h264
#dimensions 0: 320x240
#sar 0: 1/1
#tb 1: 1/90000
#media_type 1: audio
#codec_id 1: aac
#sample_rate 1: 44100
#channel_layout_name 1: mono
0,      -3910,       2090,     3000,     4731, 0x6262e0b4, S=1,        1
0,       -910,      11090,     3000,     1626, 0x01e42a2b, F=0x0, S=1,        1
1,          0,          0,     2089,      265, 0x215b7c46, S=1,        1
0,       2090,       5090,     3000,     1025, 0x01a10003, F=0x0, S=1,        1
1,       2090,       2090,     2089,      265, 0x75577a3a
1,       4180,       4180,     2089,      153, 0x45295256
"""


def test_real_framecrc_output_parses_to_packets() -> None:
    packets = [p for p in map(parse_packet_line, FRAMECRC.splitlines()) if p is not None]
    assert packets == [
        Packet(stream=0, dts=-3910, size=4731),
        Packet(stream=0, dts=-910, size=1626),
        Packet(stream=1, dts=0, size=265),
        Packet(stream=0, dts=2090, size=1025),
        Packet(stream=1, dts=2090, size=265),
        Packet(stream=1, dts=4180, size=153),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0, 0, 0, 1, 100, 0xdeadbeef", Packet(0, 0, 100)),
        ("0,0,0,1,100,0xdeadbeef", Packet(0, 0, 100)),
        # Lines read from a pipe keep their newline.
        ("1,   180000,   180000,  1920,   371, 0x1234abcd\n", Packet(1, 180000, 371)),
        ("0, 3000, 3000, 3000, 9, 0x0, F=0x1, S=1, 8\r\n", Packet(0, 3000, 9)),
        ("0, 0, 0, 1, 0, 0x0", Packet(0, 0, 0)),
    ],
)
def test_packet_lines(line: str, expected: Packet) -> None:
    assert parse_packet_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("", id="empty"),
        pytest.param("\n", id="newline"),
        pytest.param("#tb 0: 1/90000", id="comment"),
        pytest.param("#extradata 0:       38, 0xacf70ad5, a, b, c, d", id="comment-with-commas"),
        pytest.param("0, 0, 0, 1, 100", id="five-columns"),
        pytest.param("a, b, c, d, e, f", id="words"),
        pytest.param("0, 0, 0, 1, 1.5, 0x0", id="fractional-size"),
        pytest.param("0, 0, 0, 1, , 0x0", id="missing-size"),
        pytest.param("x0, 0, 0, 1, 100, 0x0", id="bad-stream"),
        pytest.param("0, nan, 0, 1, 100, 0x0", id="bad-dts"),
        pytest.param("[mpegts @ 0x55d] Packet corrupt (stream = 0, dts = 1)", id="log-line"),
        pytest.param("\ufffd\ufffd,\ufffd", id="replacement-chars"),
    ],
)
def test_non_packet_lines_are_none(line: str) -> None:
    assert parse_packet_line(line) is None


# ---- RateMeter --------------------------------------------------------------------------


def feed_steady(meter: RateMeter, *, start: float, seconds: float, fps: int, size: int) -> float:
    """``fps`` video packets of ``size`` bytes a second; returns the last timestamp."""
    t = start
    for i in range(round(seconds * fps)):
        t = start + i / fps
        meter.add(t, size, 1)
    return t


def test_empty_meter_reads_zero() -> None:
    meter = RateMeter()
    assert meter.bitrate_kbps(100.0) == 0.0
    assert meter.fps(100.0) == 0.0


def test_steady_input_over_the_window() -> None:
    # 30 fps of 2500-byte packets = 75,000 B/s = 600 kbps.
    meter = RateMeter(window=2.0)
    last = feed_steady(meter, start=10.0, seconds=5.0, fps=30, size=2500)
    now = last + 1 / 30
    assert meter.fps(now) == pytest.approx(30.0)
    assert meter.bitrate_kbps(now) == pytest.approx(600.0)


def test_bitrate_counts_every_stream_but_fps_only_video() -> None:
    meter = RateMeter(window=1.0)
    for i in range(10):
        t = i / 10
        meter.add(t, 1000, 1)  # video
        meter.add(t, 100, 0)  # audio
    # 11,000 bytes in the last second = 88 kbps; 10 video frames.
    assert meter.bitrate_kbps(0.95) == pytest.approx(88.0)
    assert meter.fps(0.95) == pytest.approx(10.0)


def test_a_fresh_meter_reads_the_full_rate_before_a_whole_window() -> None:
    # Half a second into a 30 fps, 600 kbps input the window (2 s) is a quarter full:
    # the rate is over what was seen, not diluted by the window (issue 9: a new stream's
    # /status showed half, then zero, bitrate and fps).
    meter = RateMeter(window=2.0)
    last = feed_steady(meter, start=10.0, seconds=0.5, fps=30, size=2500)
    assert meter.fps(last) == pytest.approx(30.0)
    assert meter.bitrate_kbps(last) == pytest.approx(600.0)
    # One packet alone is no rate yet.
    single = RateMeter(window=2.0)
    single.add(5.0, 2500, 1)
    assert single.fps(5.0) == 0.0


def test_old_samples_are_trimmed_when_reading() -> None:
    meter = RateMeter(window=2.0)
    meter.add(0.0, 1000, 1)
    meter.add(1.0, 2000, 1)
    meter.add(2.0, 4000, 1)
    # At t=2 the window is [0, 2]: the sample on its edge still counts.
    assert meter.bitrate_kbps(2.0) == pytest.approx(7000 * 8 / 1000 / 2)
    # Past t=2: the sample at 0 falls out.
    assert meter.bitrate_kbps(2.5) == pytest.approx(6000 * 8 / 1000 / 2)
    assert meter.fps(3.5) == pytest.approx(1 / 2)  # only t=2.0 is left
    assert meter.fps(4.01) == 0.0
    assert meter.bitrate_kbps(100.0) == 0.0


def test_samples_are_trimmed_when_adding() -> None:
    # Memory stays bounded by the window even when nobody reads the figures.
    meter = RateMeter(window=1.0)
    for i in range(10_000):
        meter.add(i / 4, 10, 1)  # quarter seconds: exact in binary floating point
    assert len(meter._samples) == 5  # one second of samples, both edges included


def test_input_stall_drops_to_zero_after_one_window() -> None:
    meter = RateMeter(window=2.0)
    last = feed_steady(meter, start=0.0, seconds=3.0, fps=25, size=1000)
    assert meter.fps(last) > 20
    assert meter.fps(last + 1.0) == pytest.approx(25 / 2, abs=1)  # half the window is silent
    assert meter.fps(last + 2.01) == 0.0
    assert meter.bitrate_kbps(last + 2.01) == 0.0


@pytest.mark.parametrize("window", [0.5, 1.0, 5.0])
def test_window_length_scales_the_average(window: float) -> None:
    meter = RateMeter(window=window)
    last = feed_steady(meter, start=0.0, seconds=window * 3, fps=50, size=500)
    now = last + 1 / 50
    assert meter.fps(now) == pytest.approx(50.0)
    assert meter.bitrate_kbps(now) == pytest.approx(500 * 50 * 8 / 1000)


def test_meters_do_not_share_samples() -> None:
    a, b = RateMeter(), RateMeter()
    a.add(0.0, 1000, 1)
    assert b.bitrate_kbps(0.0) == 0.0


@pytest.mark.parametrize(
    ("media", "wall", "expected"),
    [(10.0, 10.0, 1.0), (5.0, 10.0, 0.5), (20.0, 10.0, 2.0), (3.0, 0.0, 0.0), (3.0, -1.0, 0.0)],
)
def test_speed(media: float, wall: float, expected: float) -> None:
    assert speed(media, wall) == pytest.approx(expected)
