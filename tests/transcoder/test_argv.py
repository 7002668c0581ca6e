"""The FFmpeg argv as a pure function of the spec: golden files, properties, and a real run.

Goldens live in ``golden/argv_<case>.json``. After an intended change to the command line,
regenerate them on purpose and review the diff::

    CASCADE_REGEN_GOLDEN=1 .venv/bin/pytest tests/transcoder/test_argv.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cascade.contract.spec import LiveStreamSpec, SourceType
from cascade.transcoder.argv import (
    FIRST_OUTPUT_FD,
    Inputs,
    build_argv,
    gop_frames,
    output_fds,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
REGEN = os.environ.get("CASCADE_REGEN_GOLDEN") == "1"

LADDER = [
    {"name": "1080p", "width": 1920, "height": 1080, "videoBitrateKbps": 6000},
    {"name": "720p", "width": 1280, "height": 720, "videoBitrateKbps": 3000},
    {"name": "360p", "width": 640, "height": 360, "videoBitrateKbps": 400},
]
SDP_TEXT = "v=0\no=- 0 0 IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n"


@dataclass(frozen=True)
class Case:
    spec: dict[str, Any]
    inputs: Inputs = field(default_factory=Inputs)


CASES: dict[str, Case] = {
    # The demo of examples/local/demo.yaml: test pattern, CPU, one 360p rendition.
    "test_cpu_demo": Case(
        {
            "source": {
                "type": "test",
                "test": {"pattern": "testsrc2", "width": 1280, "height": 720, "frameRate": 30},
            },
            "transcode": {
                "renditions": [
                    {"name": "360p", "width": 640, "height": 360, "videoBitrateKbps": 400}
                ]
            },
            "delivery": {"segmentDurationMs": 500, "partDurationMs": 100},
        }
    ),
    "srt_listener_nvenc_ladder": Case(
        {
            "source": {"type": "srt", "srt": {"mode": "listener", "port": 9000}},
            "transcode": {"renditions": LADDER},
            "scheduling": {"gpus": 1},
        }
    ),
    "rtmp_listen_cpu": Case(
        {
            "source": {"type": "rtmp", "rtmp": {"app": "live", "streamKey": "cam1"}},
            "transcode": {"hardware": "cpu"},
        },
        Inputs(bind_host="127.0.0.1"),
    ),
    "rtmp_pull_nvenc": Case(
        {
            "source": {
                "type": "rtmp",
                "rtmp": {"mode": "pull", "url": "rtmps://origin.example:443/live/cam2"},
            },
            "transcode": {
                "hardware": "nvenc",
                "frameRate": 60,
                "renditions": LADDER[1:],
            },
            "delivery": {"segmentDurationMs": 1000, "partDurationMs": 200},
            "scheduling": {"gpus": 1},
        }
    ),
    "rtp_cpu": Case(
        {"source": {"type": "rtp", "rtp": {"sdp": SDP_TEXT}}},
        Inputs(sdp_path="/run/cascade/rtp.sdp"),
    ),
    "srt_passthrough": Case(
        {
            "source": {"type": "srt", "srt": {"latencyMs": 250, "streamId": "cam3"}},
            "transcode": {
                "mode": "passthrough",
                "renditions": [{"name": "source", "width": 1920, "height": 1080}],
            },
            "scheduling": {"gpus": 1},  # passthrough never touches the GPU
        }
    ),
    "srt_caller_passphrase": Case(
        {
            "source": {
                "type": "srt",
                "srt": {
                    "mode": "caller",
                    "host": "encoder.example",
                    "port": 9001,
                    "streamId": "#!::r=cam4,m=publish",
                    "passphraseSecretRef": {"name": "cam4-srt"},
                },
            },
        },
        Inputs(srt_passphrase="correct horse&battery=staple"),
    ),
    "srt_audio_disabled": Case(
        {
            "source": {"type": "srt"},
            "transcode": {"audio": {"enabled": False}},
        }
    ),
}


def spec_of(name: str) -> LiveStreamSpec:
    return LiveStreamSpec.model_validate(CASES[name].spec)


def argv_of(name: str) -> list[str]:
    return build_argv(spec_of(name), CASES[name].inputs)


def values_after(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def pipe_outputs(argv: list[str]) -> list[str]:
    return [arg for arg in argv if re.fullmatch(r"pipe:\d+", arg)]


NVENC_CASES = ["srt_listener_nvenc_ladder", "rtmp_pull_nvenc"]
CPU_CASES = ["test_cpu_demo", "rtmp_listen_cpu", "rtp_cpu", "srt_caller_passphrase"]
TRANSCODE_CASES = [n for n in CASES if n != "srt_passthrough"]


# ---- golden files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_argv_matches_golden(name: str) -> None:
    path = GOLDEN / f"argv_{name}.json"
    argv = argv_of(name)
    if REGEN:
        path.write_text(json.dumps(argv, indent=2) + "\n")
    assert path.exists(), f"{path} is missing: run with CASCADE_REGEN_GOLDEN=1 to create it"
    assert argv == json.loads(path.read_text())


def test_every_golden_file_has_a_case() -> None:
    # A renamed or removed case must not leave a stale golden behind.
    files = {p.name for p in GOLDEN.glob("argv_*.json")}
    assert files == {f"argv_{name}.json" for name in CASES}


def test_build_argv_is_pure() -> None:
    for name in CASES:
        assert argv_of(name) == argv_of(name)


# ---- properties -------------------------------------------------------------------------


@pytest.mark.parametrize("name", NVENC_CASES)
def test_nvenc_path_stays_on_the_gpu(name: str) -> None:
    argv = argv_of(name)
    joined = " ".join(argv)
    assert argv[argv.index("-hwaccel") + 1] == "cuda"
    assert argv[argv.index("-hwaccel_output_format") + 1] == "cuda"
    # Hardware decode options are input options: before the input.
    assert argv.index("-hwaccel") < argv.index("-i")
    n = len(spec_of(name).transcode.renditions)
    assert values_after(argv, "-c:v") == ["h264_nvenc"] * n
    assert joined.count("scale_cuda=") == n
    assert values_after(argv, "-zerolatency") == ["1"] * n
    assert values_after(argv, "-bf") == ["0"] * n
    assert "libx264" not in joined
    assert "scale=" not in joined.replace("scale_cuda=", "")
    # Frames from the network are decoded on the GPU already: no upload in the graph.
    assert "hwupload_cuda" not in joined


def test_nvenc_with_test_source_uploads_frames_once() -> None:
    spec = LiveStreamSpec.model_validate(
        {"source": {"type": "test"}, "transcode": {"renditions": LADDER}, "scheduling": {"gpus": 1}}
    )
    graph = values_after(build_argv(spec), "-filter_complex")
    assert len(graph) == 1
    assert graph[0].startswith("[0:v:0]format=nv12,hwupload_cuda,fps=30,split=3[s0][s1][s2];")
    assert graph[0].count("hwupload_cuda") == 1


@pytest.mark.parametrize("name", CPU_CASES)
def test_cpu_path_is_libx264_and_never_cuda(name: str) -> None:
    argv = argv_of(name)
    n = len(spec_of(name).transcode.renditions)
    assert values_after(argv, "-c:v") == ["libx264"] * n
    assert values_after(argv, "-tune") == ["zerolatency"] * n
    assert values_after(argv, "-bf") == ["0"] * n
    assert not [arg for arg in argv if "cuda" in arg or "nvenc" in arg]
    assert "-hwaccel" not in argv


@pytest.mark.parametrize(
    ("frame_rate", "segment_ms", "part_ms", "gop"),
    [(30, 500, 100, 15), (60, 1000, 200, 60), (24, 500, 250, 12), (25, 400, 200, 10)],
)
def test_gop_is_one_segment_of_frames(
    frame_rate: int, segment_ms: int, part_ms: int, gop: int
) -> None:
    spec = LiveStreamSpec.model_validate(
        {
            "source": {"type": "srt"},
            "transcode": {"frameRate": frame_rate, "renditions": LADDER},
            "delivery": {"segmentDurationMs": segment_ms, "partDurationMs": part_ms},
        }
    )
    argv = build_argv(spec)
    assert gop == frame_rate * segment_ms // 1000
    assert gop_frames(spec) == gop
    assert values_after(argv, "-g") == [str(gop)] * 3
    assert values_after(argv, "-keyint_min") == [str(gop)] * 3
    assert (
        values_after(argv, "-force_key_frames")
        == [f"expr:gte(t,n_forced*{segment_ms / 1000:g})"] * 3
    )
    assert values_after(argv, "-frag_duration") == [str(part_ms * 1000)] * 3


@pytest.mark.parametrize("name", TRANSCODE_CASES)
def test_gop_and_fragment_follow_the_spec(name: str) -> None:
    spec = spec_of(name)
    argv = argv_of(name)
    n = len(spec.transcode.renditions)
    gop = spec.transcode.frame_rate * spec.delivery.segment_duration_ms // 1000
    assert values_after(argv, "-g") == [str(gop)] * n
    assert values_after(argv, "-frag_duration") == [str(spec.delivery.part_duration_ms * 1000)] * n
    bitrates = [f"{r.video_bitrate_kbps}k" for r in spec.transcode.renditions]
    assert values_after(argv, "-b:v") == bitrates
    assert values_after(argv, "-maxrate") == bitrates


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_pipe_per_rendition_plus_the_packet_log(name: str) -> None:
    spec = spec_of(name)
    argv = argv_of(name)
    n = len(spec.transcode.renditions)
    pipes = pipe_outputs(argv)
    is_test = spec.source.type is SourceType.TEST
    expected = [f"pipe:{FIRST_OUTPUT_FD + i}" for i in range(n + (0 if is_test else 1))]
    assert pipes == expected
    assert len(set(pipes)) == len(pipes)
    assert values_after(argv, "-f").count("mp4") == n
    movflags = values_after(argv, "-movflags")
    assert (
        movflags
        == ["+frag_keyframe+empty_moov+default_base_moof+skip_trailer+negative_cts_offsets"] * n
    )
    if is_test:
        assert "framecrc" not in argv
    else:
        # The last output is the compressed input's packet list, copied not encoded.
        assert argv[-9:] == [
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-c",
            "copy",
            "-f",
            "framecrc",
            pipes[-1],
        ]
        assert argv[-1] == f"pipe:{FIRST_OUTPUT_FD + n}"
    assert argv[-1] == pipes[-1]


def test_output_fds_and_custom_fds() -> None:
    spec = spec_of("srt_listener_nvenc_ladder")
    assert output_fds(spec) == ([3, 4, 5], 6)
    argv = build_argv(spec, fds=([10, 12, 14], 20))
    assert pipe_outputs(argv) == ["pipe:10", "pipe:12", "pipe:14", "pipe:20"]
    with pytest.raises(ValueError, match=r"shorter|longer"):
        build_argv(spec, fds=([10, 12], 20))


def test_rendition_outputs_map_their_own_scaled_stream() -> None:
    spec = spec_of("srt_listener_nvenc_ladder")
    argv = build_argv(spec)
    graph = values_after(argv, "-filter_complex")[0]
    assert graph == (
        "[0:v:0]fps=30,split=3[s0][s1][s2];"
        "[s0]scale_cuda=w=1920:h=1080:format=nv12[v0];"
        "[s1]scale_cuda=w=1280:h=720:format=nv12[v1];"
        "[s2]scale_cuda=w=640:h=360:format=nv12[v2]"
    )
    maps = values_after(argv, "-map")
    assert [m for m in maps if m.startswith("[")] == ["[v0]", "[v1]", "[v2]"]


def test_passthrough_copies_video_and_skips_the_gpu() -> None:
    argv = argv_of("srt_passthrough")
    assert "-filter_complex" not in argv
    assert "-hwaccel" not in argv
    assert values_after(argv, "-c:v") == ["copy"]
    assert "-g" not in argv
    assert values_after(argv, "-c:a") == ["aac"]


def test_audio_disabled_has_no_audio_encoder() -> None:
    argv = argv_of("srt_audio_disabled")
    assert "-c:a" not in argv
    assert "aac" not in argv
    # The packet log still lists input audio packets, when there are any.
    assert values_after(argv, "-map")[-2:] == ["0:v:0", "0:a:0?"]


def test_audio_enabled_follows_the_spec() -> None:
    spec = LiveStreamSpec.model_validate(
        {
            "source": {"type": "srt"},
            "transcode": {
                "renditions": LADDER,
                "audio": {"bitrateKbps": 128, "sampleRate": 44100, "channels": 1},
            },
        }
    )
    argv = build_argv(spec)
    assert values_after(argv, "-b:a") == ["128k"] * 3
    assert values_after(argv, "-ar") == ["44100"] * 3
    assert values_after(argv, "-ac") == ["1"] * 3


def test_srt_url_carries_latency_in_microseconds_and_quotes_the_passphrase() -> None:
    argv = argv_of("srt_caller_passphrase")
    url = argv[argv.index("-i") + 1]
    assert url.startswith("srt://encoder.example:9001?mode=caller&latency=120000&")
    assert "passphrase=correct%20horse%26battery%3Dstaple" in url
    assert "pbkeylen=16" in url
    assert "streamid=%23%21%3A%3Ar%3Dcam4%2Cm%3Dpublish" in url
    # Without a passphrase resolved, no encryption parameter leaks into the URL.
    plain = build_argv(spec_of("srt_caller_passphrase"))
    assert "passphrase" not in plain[plain.index("-i") + 1]


def test_listeners_bind_the_given_host() -> None:
    spec = spec_of("srt_listener_nvenc_ladder")
    assert "srt://0.0.0.0:9000?" in " ".join(build_argv(spec))
    assert "srt://127.0.0.1:9000?" in " ".join(build_argv(spec, Inputs(bind_host="127.0.0.1")))


def test_rtp_needs_the_sdp_file() -> None:
    with pytest.raises(ValueError, match="sdp_path"):
        build_argv(spec_of("rtp_cpu"))
    argv = argv_of("rtp_cpu")
    assert argv[argv.index("-i") - 2 : argv.index("-i") + 2] == [
        "-f",
        "sdp",
        "-i",
        "/run/cascade/rtp.sdp",
    ]


def test_segment_not_whole_frames_raises_naming_both_fields() -> None:
    # The spec refuses this; a spec built around validation must still not yield a bad GOP.
    valid = spec_of("rtmp_listen_cpu")
    spec = valid.model_copy(
        update={"transcode": valid.transcode.model_copy(update={"frame_rate": 25})}
    )
    with pytest.raises(ValueError, match=r"delivery\.segmentDurationMs 500") as caught:
        build_argv(spec)
    assert "transcode.frameRate 25" in str(caught.value)
    with pytest.raises(ValueError, match=r"delivery\.segmentDurationMs.*transcode\.frameRate"):
        gop_frames(spec)


def test_custom_ffmpeg_binary_is_argv0() -> None:
    assert build_argv(spec_of("test_cpu_demo"), ffmpeg="/opt/ffmpeg/bin/ffmpeg")[0] == (
        "/opt/ffmpeg/bin/ffmpeg"
    )


# ---- the CPU graph for real -------------------------------------------------------------


def _runnable(argv: list[str], tmp_path: Path) -> tuple[list[str], list[Path]]:
    """The argv with each ``pipe:N`` output replaced by a file, limited to one second."""
    files: list[Path] = []
    out: list[str] = []
    for arg in argv:
        if re.fullmatch(r"pipe:\d+", arg):
            files.append(tmp_path / f"out{len(files)}.mp4")
            out.append(str(files[-1]))
        else:
            out.append(arg)
    i = out.index("-i")
    # `-t 1` as an input option: the test source ends after one second of media.
    return [*out[:i], "-t", "1", *out[i:]], files


CPU_TEST_SPECS: dict[str, dict[str, Any]] = {
    "demo": CASES["test_cpu_demo"].spec,
    "ladder": {
        "source": {"type": "test", "test": {"width": 640, "height": 360}},
        "transcode": {"renditions": LADDER[1:]},
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CPU_TEST_SPECS))
def test_cpu_test_source_argv_runs_in_real_ffmpeg(name: str, tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.fail("ffmpeg is not installed: `make test` installs it")
    spec = LiveStreamSpec.model_validate(CPU_TEST_SPECS[name])
    argv, files = _runnable(build_argv(spec, ffmpeg=ffmpeg), tmp_path)
    proc = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert len(files) == len(spec.transcode.renditions)
    for path in files:
        data = path.read_bytes()
        assert data[4:8] == b"ftyp", data[:16]
        # Fragmented: an empty moov first, then moof+mdat fragments (one per part).
        assert b"moov" in data
        assert b"mvex" in data
        fragments = data.count(b"moof")
        assert fragments >= 5, fragments  # one second of 100 ms parts, allowing for edges
