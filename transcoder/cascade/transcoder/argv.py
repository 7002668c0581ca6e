"""The FFmpeg command line as a pure function of a LiveStream spec.

One FFmpeg process per stream decodes the input once and writes one fragmented MP4
output per rendition, each to its own pipe (``pipe:3``, ``pipe:4``, ...), with one
fragment per LL-HLS part. A last, cheap output (``-c copy -f framecrc``) lists every
compressed input packet with its size: that is how the health report knows the real
input bitrate and frame rate without a second reader on the network.

Two encoder paths:
* NVENC: CUDA decode (``-hwaccel cuda``, frames stay on the GPU), ``scale_cuda``,
  ``h264_nvenc`` low-latency CBR. No GPU is available in CI, so this path is proven by
  golden tests of the exact argv.
* CPU: software decode, ``scale``, ``libx264 -tune zerolatency``. Exercised for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlencode

from cascade.contract.spec import (
    Hardware,
    LiveStreamSpec,
    Mode,
    Rendition,
    RtmpMode,
    SourceType,
    SrtMode,
)

# The first pipe fd handed to FFmpeg; renditions take FIRST_OUTPUT_FD + i, the input
# packet log takes the next one.
FIRST_OUTPUT_FD = 3
DEFAULT_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the runner resolves before building the argv (kept out of the pure spec)."""

    srt_passphrase: str | None = None
    sdp_path: str | None = None  # RTP: the SDP written to a file by the runner
    font_file: str = DEFAULT_FONT
    bind_host: str = "0.0.0.0"  # listeners: 0.0.0.0 in a pod, 127.0.0.1 in local mode


def output_fds(spec: LiveStreamSpec) -> tuple[list[int], int]:
    """The fds of the rendition outputs, and the fd of the input packet log."""
    n = len(spec.transcode.renditions)
    return [FIRST_OUTPUT_FD + i for i in range(n)], FIRST_OUTPUT_FD + n


def gop_frames(spec: LiveStreamSpec) -> int:
    """Keyframe interval in frames: exactly one segment, so every segment starts on an IDR."""
    frames = spec.transcode.frame_rate * spec.delivery.segment_duration_ms
    if frames % 1000:
        raise ValueError(
            f"delivery.segmentDurationMs {spec.delivery.segment_duration_ms} is not a whole number "
            f"of frames at transcode.frameRate {spec.transcode.frame_rate}"
        )
    return frames // 1000


def build_argv(
    spec: LiveStreamSpec,
    inputs: Inputs = Inputs(),
    *,
    ffmpeg: str = "ffmpeg",
    fds: tuple[list[int], int] | None = None,
) -> list[str]:
    """The whole FFmpeg argv for ``spec``. Pure: same spec and inputs, same list.

    ``fds`` are the pipe fds the child inherits (rendition outputs, packet log);
    by default 3, 4, ... as :func:`output_fds` numbers them.
    """
    hw = spec.hardware
    argv = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "warning", "-nostats"]
    # One progress block a second on stderr's neighbour would need another fd; stderr
    # carries warnings only, and the packet log on its own pipe carries the figures.
    if hw is Hardware.NVENC and spec.transcode.mode is Mode.TRANSCODE:
        # Decode on the GPU and keep frames there: no copy back to system memory.
        argv += ["-hwaccel", "cuda", "-hwaccel_output_format", "cuda"]
    argv += _input_args(spec, inputs)
    argv += _filter_args(spec, inputs)
    out_fds, log_fd = fds if fds is not None else output_fds(spec)
    for index, (rendition, fd) in enumerate(zip(spec.transcode.renditions, out_fds, strict=True)):
        argv += _output_args(spec, rendition, index, fd)
    if spec.source.type is not SourceType.TEST:
        # Compressed input packets, listed (not stored): sizes give the input bitrate.
        argv += [
            "-map",
            "0:v:0",
            "-map",
            "0:a:0?",
            "-c",
            "copy",
            "-f",
            "framecrc",
            f"pipe:{log_fd}",
        ]
    return argv


def _input_args(spec: LiveStreamSpec, inputs: Inputs) -> list[str]:
    src = spec.source
    # Start quickly and never buffer on the input side: every frame held here is latency.
    live = [
        "-fflags",
        "+genpts+discardcorrupt+nobuffer",
        "-analyzeduration",
        "1000000",
        "-probesize",
        "1000000",
    ]
    if src.type is SourceType.TEST:
        assert src.test is not None
        t = src.test
        clock = (
            f"drawtext=fontfile={inputs.font_file}:fontsize={max(16, t.height // 12)}:fontcolor=white"
            ":box=1:boxcolor=black@0.6:boxborderw=8:x=(w-tw)/2:y=h-th-40"
            r":text='%{localtime\:%H\\\:%M\\\:%S}  %{pts\:hms}'"
        )
        graph = (
            f"{t.pattern}=size={t.width}x{t.height}:rate={t.frame_rate},{clock}[out0];"
            f"sine=frequency={t.tone_hz}:sample_rate={spec.transcode.audio.sample_rate}[out1]"
        )
        # -re: generate at the wall clock's pace, like a camera.
        return ["-re", "-f", "lavfi", "-i", graph]
    if src.type is SourceType.SRT:
        assert src.srt is not None
        s = src.srt
        params: dict[str, str] = {
            "mode": s.mode.value,
            # FFmpeg's srt latency is in microseconds.
            "latency": str(s.latency_ms * 1000),
            "pkt_size": str(s.payload_size),
            "transtype": "live",
        }
        if s.stream_id:
            params["streamid"] = s.stream_id
        if inputs.srt_passphrase:
            params["passphrase"] = inputs.srt_passphrase
            params["pbkeylen"] = "16"
        host = inputs.bind_host if s.mode is SrtMode.LISTENER else (s.host or "")
        url = f"srt://{host}:{s.port}?{urlencode(params, quote_via=quote)}"
        return [*live, "-f", "mpegts", "-i", url]
    if src.type is SourceType.RTMP:
        assert src.rtmp is not None
        r = src.rtmp
        if r.mode is RtmpMode.LISTEN:
            url = f"rtmp://{inputs.bind_host}:{r.port}/{r.app}/{r.stream_key}"
            return [*live, "-f", "flv", "-listen", "1", "-i", url]
        assert r.url is not None
        # Pull: give up on a dead origin after 5 s so the runner's backoff takes over.
        return [*live, "-rw_timeout", "5000000", "-i", r.url]
    assert src.type is SourceType.RTP
    if inputs.sdp_path is None:
        raise ValueError("an RTP source needs the SDP written to a file (Inputs.sdp_path)")
    return [*live, "-protocol_whitelist", "file,udp,rtp", "-f", "sdp", "-i", inputs.sdp_path]


def _filter_args(spec: LiveStreamSpec, inputs: Inputs) -> list[str]:
    if spec.transcode.mode is Mode.PASSTHROUGH:
        return []
    renditions = spec.transcode.renditions
    n = len(renditions)
    fps = spec.transcode.frame_rate
    if spec.hardware is Hardware.NVENC:
        # Test frames are made in system memory: upload once, then scale on the GPU.
        upload = "format=nv12,hwupload_cuda," if spec.source.type is SourceType.TEST else ""
        chain = f"[0:v:0]{upload}fps={fps}"
        scale = "scale_cuda=w={w}:h={h}:format=nv12"
    else:
        chain = f"[0:v:0]fps={fps}"
        scale = "scale=w={w}:h={h}:flags=bicubic,format=yuv420p,setsar=1"
    if n == 1:
        r = renditions[0]
        graph = f"{chain},{scale.format(w=r.width, h=r.height)}[v0]"
    else:
        labels = "".join(f"[s{i}]" for i in range(n))
        parts = [f"{chain},split={n}{labels}"]
        parts += [
            f"[s{i}]{scale.format(w=r.width, h=r.height)}[v{i}]" for i, r in enumerate(renditions)
        ]
        graph = ";".join(parts)
    return ["-filter_complex", graph]


def _output_args(spec: LiveStreamSpec, rendition: Rendition, index: int, fd: int) -> list[str]:
    args: list[str] = []
    if spec.transcode.mode is Mode.PASSTHROUGH:
        args += ["-map", "0:v:0", "-c:v", "copy"]
    else:
        args += ["-map", f"[v{index}]"]
        args += _video_encoder_args(spec, rendition)
    audio = spec.transcode.audio
    if audio.enabled:
        args += [
            "-map",
            "0:a:0?",
            "-c:a",
            "aac",
            "-b:a",
            f"{audio.bitrate_kbps}k",
            "-ar",
            str(audio.sample_rate),
            "-ac",
            str(audio.channels),
        ]
    part_us = spec.delivery.part_duration_ms * 1000
    args += [
        "-f",
        "mp4",
        # Fragmented MP4 straight to a pipe: an empty moov first (the init segment),
        # then one moof+mdat per part; a new fragment at every keyframe so segments
        # start on an independent part; no trailer (a live pipe never ends cleanly);
        # negative_cts_offsets (trun v1) instead of an edit list, else FFmpeg stretches the
        # first video sample by the AAC priming delay and the first part overruns PART-TARGET.
        "-movflags",
        "+frag_keyframe+empty_moov+default_base_moof+skip_trailer+negative_cts_offsets",
        "-frag_duration",
        str(part_us),
        # Hand each fragment to the pipe at once instead of filling an I/O buffer.
        "-flush_packets",
        "1",
        "-muxdelay",
        "0",
        "-muxpreload",
        "0",
        f"pipe:{fd}",
    ]
    return args


def _video_encoder_args(spec: LiveStreamSpec, r: Rendition) -> list[str]:
    gop = gop_frames(spec)
    kbps = r.video_bitrate_kbps
    # Half a second of VBV buffer: CBR tight enough for 100 ms parts of even size.
    common = [
        "-b:v",
        f"{kbps}k",
        "-maxrate",
        f"{kbps}k",
        "-bufsize",
        f"{kbps // 2}k",
        "-g",
        str(gop),
        "-keyint_min",
        str(gop),
        # Keyframes exactly on segment boundaries, whatever the content does.
        "-force_key_frames",
        f"expr:gte(t,n_forced*{spec.delivery.segment_duration_ms / 1000:g})",
        "-bf",
        "0",
        "-profile:v",
        r.profile,
    ]
    if spec.hardware is Hardware.NVENC:
        return [
            "-c:v",
            "h264_nvenc",
            "-preset",
            "p4",
            "-tune",
            "ll",
            "-rc",
            "cbr",
            "-zerolatency",
            "1",
            "-delay",
            "0",
            "-rc-lookahead",
            "0",
            "-forced-idr",
            "1",
            "-no-scenecut",
            "1",
            *common,
        ]
    return [
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-tune",
        "zerolatency",
        "-sc_threshold",
        "0",
        "-pix_fmt",
        "yuv420p",
        *common,
    ]
