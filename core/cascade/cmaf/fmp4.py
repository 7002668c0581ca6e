"""Fragmented MP4 as FFmpeg writes it on a pipe: one init segment, then moof+mdat fragments.

``Fmp4Reader`` turns the byte stream into :class:`InitSegment` and :class:`Fragment` objects.
Parsing a fragment reads only its moof (a few hundred bytes); the mdat is never parsed and its
bytes are copied exactly once, when the fragment is cut out of the stream buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

from cascade.cmaf.boxes import (
    AudioSampleEntry,
    BoxError,
    ContainerBox,
    EsdsBox,
    HdlrBox,
    MdhdBox,
    StsdBox,
    TkhdBox,
    TrexBox,
    VisualSampleEntry,
    find_all,
    find_container,
    find_first,
    iter_boxes,
    parse_box,
    read_header,
)
from cascade.cmaf.codec_string import codec_string
from cascade.cmaf.moof import scan_moof
from cascade.cmaf.splitter import DEFAULT_MAX_BOX_SIZE, _BoxStream

__all__ = [
    "Fmp4Reader",
    "Fragment",
    "FragmentInfo",
    "InitInfo",
    "InitSegment",
    "TrackFragmentInfo",
    "TrackInfo",
    "TrackKind",
    "is_sync_sample",
    "parse_fragment",
    "parse_init",
]

TrackKind = Literal["video", "audio"]
_KINDS: dict[str, TrackKind] = {"vide": "video", "soun": "audio"}


def is_sync_sample(flags: int) -> bool:
    """Whether sample flags (ISO/IEC 14496-12 8.8.3.1) mark a sample decodable on its own.

    True when sample_depends_on is 2 (depends on no other sample: an I-frame) or
    sample_is_non_sync_sample is 0.
    """
    return (flags >> 24) & 3 == 2 or not flags & 0x00010000


# --------------------------------------------------------------------------------------------
# Init segment


@dataclass(frozen=True, slots=True)
class TrackInfo:
    """One audio or video track of an init segment.

    ``width``/``height`` (video) come from the sample entry, the coded size;
    ``sample_rate``/``channels`` (audio) from the AudioSpecificConfig when there is one.
    ``trex`` holds the fragment defaults (sample duration, size and flags).
    """

    track_id: int
    kind: TrackKind
    timescale: int
    codec: str
    sample_entry: str
    trex: TrexBox
    width: int | None = None
    height: int | None = None
    sample_rate: int | None = None
    channels: int | None = None


@dataclass(frozen=True, slots=True)
class InitInfo:
    """What an init segment (ftyp + moov) says about its tracks.

    Tracks that are neither audio nor video (timed metadata, subtitles) are listed only by id
    in ``other_track_ids``; their fragments are ignored.
    """

    tracks: tuple[TrackInfo, ...]
    other_track_ids: frozenset[int] = frozenset()

    @property
    def video(self) -> TrackInfo | None:
        return next((t for t in self.tracks if t.kind == "video"), None)

    @property
    def audio(self) -> TrackInfo | None:
        return next((t for t in self.tracks if t.kind == "audio"), None)

    @property
    def main(self) -> TrackInfo:
        """The track that times the stream: the video track if any, else the first track."""
        return self.video or self.tracks[0]

    def track(self, track_id: int) -> TrackInfo | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)

    @property
    def codecs(self) -> str:
        """The EXT-X-STREAM-INF CODECS value: video codecs first, e.g. 'avc1.64001f,mp4a.40.2'."""
        ordered = sorted(self.tracks, key=lambda t: t.kind != "video")
        return ",".join(dict.fromkeys(t.codec for t in ordered))


_T = TypeVar("_T")


def _require(value: _T | None, what: str) -> _T:
    if value is None:
        raise BoxError(what)
    return value


def _track_info(trak: ContainerBox, trexes: dict[int, TrexBox]) -> TrackInfo | int:
    tkhd = _require(find_first(trak.children, TkhdBox), "trak has no tkhd box")
    track_id = tkhd.track_id
    mdia = _require(find_container(trak.children, "mdia"), f"track {track_id} has no mdia box")
    mdhd = _require(find_first(mdia.children, MdhdBox), f"track {track_id} has no mdhd box")
    hdlr = _require(find_first(mdia.children, HdlrBox), f"track {track_id} has no hdlr box")
    kind = _KINDS.get(hdlr.handler_type)
    if kind is None:
        return track_id
    if mdhd.timescale == 0:
        raise BoxError(f"track {track_id} has timescale 0")
    minf = _require(find_container(mdia.children, "minf"), f"track {track_id} has no minf box")
    stbl = _require(find_container(minf.children, "stbl"), f"track {track_id} has no stbl box")
    stsd = _require(find_first(stbl.children, StsdBox), f"track {track_id} has no stsd box")
    if not stsd.entries:
        raise BoxError(f"track {track_id} has no sample entry")
    entry = stsd.entries[0]
    trex = _require(trexes.get(track_id), f"track {track_id} has no trex box in moov/mvex")
    codec = codec_string(entry)
    if kind == "video":
        if not isinstance(entry, VisualSampleEntry):
            raise BoxError(f"video track {track_id} has a {entry.type!r} sample entry")
        return TrackInfo(
            track_id, kind, mdhd.timescale, codec, entry.type, trex, entry.width, entry.height
        )
    if not isinstance(entry, AudioSampleEntry):
        raise BoxError(f"audio track {track_id} has a {entry.type!r} sample entry")
    rate, channels = entry.sample_rate, entry.channel_count
    esds = find_first(entry.children, EsdsBox)
    asc = esds.audio_specific_config if esds is not None else None
    if asc is not None:
        rate = asc.sample_rate
        channels = asc.channels or channels
    return TrackInfo(
        track_id, kind, mdhd.timescale, codec, entry.type, trex,
        sample_rate=rate, channels=channels,
    )  # fmt: skip


def parse_init(data: bytes) -> InitInfo:
    """Describe the tracks of an init segment (its ftyp, moov and any other boxes)."""
    moov_header = None
    for header in iter_boxes(data):
        if header.type == "moov":
            moov_header = header
    if moov_header is None:
        raise BoxError("init segment has no moov box")
    moov = parse_box(data, moov_header.start, moov_header.end)
    assert isinstance(moov, ContainerBox)
    mvex = _require(
        find_container(moov.children, "mvex"), "moov has no mvex box: not a fragmented MP4"
    )
    trexes = {trex.track_id: trex for trex in find_all(mvex.children, TrexBox)}
    tracks: list[TrackInfo] = []
    others: set[int] = set()
    for child in moov.children:
        if isinstance(child, ContainerBox) and child.type == "trak":
            info = _track_info(child, trexes)
            if isinstance(info, int):
                others.add(info)
            else:
                tracks.append(info)
    if not tracks:
        raise BoxError("init segment has no audio or video track")
    return InitInfo(tuple(tracks), frozenset(others))


# --------------------------------------------------------------------------------------------
# Fragments


@dataclass(frozen=True, slots=True)
class TrackFragmentInfo:
    """One track's share of a fragment; times are in the track timescale.

    ``size`` is the bytes of sample data; ``first_sample_sync`` is False for an empty run.
    """

    track_id: int
    kind: TrackKind
    timescale: int
    base_media_decode_time: int
    duration: int
    sample_count: int
    first_sample_sync: bool
    size: int

    @property
    def end_time(self) -> int:
        """Decode time just after the last sample: the next fragment's tfdt."""
        return self.base_media_decode_time + self.duration

    @property
    def start_seconds(self) -> float:
        return self.base_media_decode_time / self.timescale

    @property
    def duration_seconds(self) -> float:
        return self.duration / self.timescale


@dataclass(frozen=True, slots=True)
class FragmentInfo:
    """What a fragment's moof says: sequence number and one entry per audio/video track.

    ``size`` is the fragment's byte length (every box from styp/prft/sidx through mdat).
    """

    sequence_number: int
    tracks: tuple[TrackFragmentInfo, ...]
    size: int

    @property
    def main(self) -> TrackFragmentInfo:
        """The video track if the fragment has one, else its first track."""
        return next((t for t in self.tracks if t.kind == "video"), self.tracks[0])

    def track(self, track_id: int) -> TrackFragmentInfo | None:
        return next((t for t in self.tracks if t.track_id == track_id), None)

    @property
    def start(self) -> float:
        """Decode time of the main track's first sample, in seconds."""
        return self.main.start_seconds

    @property
    def duration(self) -> float:
        """Duration of the main track's samples, in seconds."""
        return self.main.duration_seconds

    @property
    def independent(self) -> bool:
        """Whether playback can start here: the video's first sample is a sync sample.

        Fragments without video are always independent (every AAC frame is).
        """
        for track in self.tracks:
            if track.kind == "video":
                return track.first_sample_sync
        return True


def fragment_info(data: bytes, start: int, end: int, init: InitInfo) -> FragmentInfo:
    """What the moof whose payload is ``data[start:end]`` says; ``data`` is the fragment.

    The one moof reader, the packager's hot path: :func:`cascade.cmaf.moof.scan_moof` reads
    the fields straight from the bytes, then each value a traf leaves out is resolved here.
    """
    scan = scan_moof(data, start, end)
    if scan.sequence_number is None:
        raise BoxError(f"moof at byte {start - 8} has no mfhd box")
    tracks = []
    for t in scan.trafs:
        track = init.track(t.track_id)
        if track is None:
            if t.track_id in init.other_track_ids:
                continue
            raise BoxError(f"fragment has track {t.track_id}, which the init segment lacks")
        if t.base_media_decode_time is None:
            raise BoxError(f"traf of track {t.track_id} has no tfdt box")
        # ISO/IEC 14496-12 8.8.7 / 8.8.8: a trun value overrides the tfhd default, which
        # overrides the trex default; first_sample_flags overrides the flags of sample 0 only.
        trex = track.trex
        d_dur = (
            t.default_duration if t.default_duration is not None else trex.default_sample_duration
        )
        d_size = t.default_size if t.default_size is not None else trex.default_sample_size
        d_flags = t.default_flags if t.default_flags is not None else trex.default_sample_flags
        first = t.first_flags if t.first_flags is not None else d_flags
        tracks.append(
            TrackFragmentInfo(
                track.track_id,
                track.kind,
                track.timescale,
                t.base_media_decode_time,
                t.duration + t.untimed * d_dur,
                t.sample_count,
                t.sample_count > 0 and is_sync_sample(first),
                t.size + t.unsized * d_size,
            )
        )
    if not tracks:
        raise BoxError(f"moof at byte {start - 8} has no audio or video traf")
    return FragmentInfo(scan.sequence_number, tuple(tracks), len(data))


def parse_fragment(data: bytes, init: InitInfo) -> FragmentInfo:
    """Describe one fragment (optional styp/prft/sidx/emsg, one moof, one mdat).

    Only box headers and the moof are read, by :func:`fragment_info` as in
    :class:`Fmp4Reader`; the mdat's payload is skipped.
    """
    moof = None
    for header in iter_boxes(data):
        if header.type == "moof":
            if moof is not None:
                raise BoxError(f"fragment has a second moof box at byte {header.start}")
            moof = header
    if moof is None:
        raise BoxError("fragment has no moof box")
    return fragment_info(data, moof.payload_start, moof.end, init)


# --------------------------------------------------------------------------------------------
# Streaming


@dataclass(frozen=True, slots=True)
class InitSegment:
    """The init segment's bytes (ftyp, moov and any boxes between them) and what they say."""

    data: bytes
    info: InitInfo


@dataclass(frozen=True, slots=True)
class Fragment:
    """One fragment's bytes (everything after the previous fragment through its mdat)."""

    data: bytes
    info: FragmentInfo


class Fmp4Reader:
    """Turn a fragmented MP4 byte stream into init segments and fragments.

    ``feed`` accepts chunks of any size and returns what they completed. A fragment is every
    top-level box since the previous item up to and including an mdat that follows a moof
    (so styp, prft, sidx, emsg travel with their moof). An init segment starts at ftyp (or
    at the first box after the previous item, when there is no ftyp) and ends at moov; a new
    ftyp/moov pair mid-stream is reported as a new init, and later fragments are parsed
    against it. Boxes between the last fragment and a new ftyp (free, skip) are dropped.

    Raises :class:`BoxError` on garbage, a fragment before any init segment, an mdat without
    a moof, or two moofs in a row.
    """

    __slots__ = ("_group", "_init", "_moof", "_stream")

    def __init__(self, *, max_box_size: int = DEFAULT_MAX_BOX_SIZE) -> None:
        self._stream = _BoxStream(max_box_size)
        self._group = 0  # stream offset where the item being gathered starts
        self._moof: tuple[int, int] | None = None  # stream offsets of a moof awaiting its mdat
        self._init: InitSegment | None = None

    @property
    def init(self) -> InitSegment | None:
        """The latest init segment, once one has been read."""
        return self._init

    @property
    def pending(self) -> int:
        """Bytes received that are not yet part of a returned item."""
        return self._stream.end - self._group

    def feed(self, data: bytes | bytearray | memoryview) -> list[InitSegment | Fragment]:
        stream = self._stream
        stream.extend(data)
        items: list[InitSegment | Fragment] = []
        while (found := stream.next_box()) is not None:
            item = self._on_box(*found)
            if item is not None:
                items.append(item)
        if items:
            stream.release(self._group)
        return items

    def close(self) -> list[InitSegment | Fragment]:
        """At end of stream: complete a final size-0 box; raise if a box was cut short."""
        found = self._stream.finish()
        item = None if found is None else self._on_box(*found)
        return [] if item is None else [item]

    def _on_box(self, box_type: str, start: int, end: int) -> InitSegment | Fragment | None:
        if box_type == "ftyp":
            if self._moof is not None:
                raise BoxError(f"ftyp at stream byte {start} inside a fragment (after a moof)")
            self._group = start
        elif box_type == "moov":
            if self._moof is not None:
                raise BoxError(f"moov at stream byte {start} inside a fragment (after a moof)")
            data = self._stream.take(self._group, end)
            self._init = InitSegment(data, parse_init(data))
            self._group = end
            return self._init
        elif box_type == "moof":
            if self._moof is not None:
                raise BoxError(f"second moof at stream byte {start} without an mdat")
            self._moof = (start, end)
        elif box_type == "mdat":
            moof = self._moof
            if moof is None:
                raise BoxError(f"mdat at stream byte {start} without a moof before it")
            if self._init is None:
                raise BoxError(f"fragment at stream byte {self._group} before any init segment")
            group = self._group
            data = self._stream.take(group, end)
            header = read_header(data, moof[0] - group)
            info = fragment_info(data, header.payload_start, header.end, self._init.info)
            self._moof = None
            self._group = end
            return Fragment(data, info)
        return None
