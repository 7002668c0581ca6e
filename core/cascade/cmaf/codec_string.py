"""RFC 6381 codec strings (the HLS ``CODECS`` attribute) from MP4 sample entries."""

from __future__ import annotations

from cascade.cmaf.boxes import (
    AudioSampleEntry,
    AvcCBox,
    Box,
    BoxError,
    EsdsBox,
    HvcCBox,
    VisualSampleEntry,
    find_first,
)

__all__ = ["UnsupportedCodecError", "codec_string"]


class UnsupportedCodecError(BoxError):
    """A sample entry whose codec string this package cannot derive (av01, encv, ...)."""


# Codecs whose RFC 6381 string is just a fixed name, no configuration needed.
_PLAIN = {"ac-3": "ac-3", "ec-3": "ec-3", "Opus": "opus", "fLaC": "flac"}


def codec_string(entry: Box) -> str:
    """The RFC 6381 codec string of one sample entry.

    * avc1/avc3: ``avc1.PPCCLL`` from avcC (RFC 6381 3.3), e.g. ``avc1.64001f``.
    * hvc1/hev1: ISO/IEC 14496-15 Annex E from hvcC, e.g. ``hvc1.1.6.L93.B0``.
    * mp4a: ``mp4a.40.<audio object type>`` for MPEG-4 audio (object type indication 0x40),
      else ``mp4a.<oti in hex>`` (``mp4a.6b`` for MP3); RFC 6381 3.3.
    * ac-3, ec-3, Opus, fLaC: ``ac-3``, ``ec-3``, ``opus``, ``flac``.

    Anything else (av01, vp09, encrypted entries) raises :class:`UnsupportedCodecError`
    rather than returning a bare four-character code that players would reject.
    """
    kind = entry.type
    if isinstance(entry, VisualSampleEntry) and kind in ("avc1", "avc3"):
        avcc = find_first(entry.children, AvcCBox)
        if avcc is None:
            raise BoxError(f"{kind!r} sample entry has no avcC box")
        return f"{kind}.{avcc.codec_suffix}"
    if isinstance(entry, VisualSampleEntry) and kind in ("hvc1", "hev1"):
        hvcc = find_first(entry.children, HvcCBox)
        if hvcc is None:
            raise BoxError(f"{kind!r} sample entry has no hvcC box")
        return f"{kind}.{hvcc.codec_suffix}"
    if isinstance(entry, AudioSampleEntry) and kind == "mp4a":
        esds = find_first(entry.children, EsdsBox)
        if esds is None:
            raise BoxError("'mp4a' sample entry has no esds box")
        oti = esds.object_type_indication
        if oti != 0x40:
            return f"mp4a.{oti:02x}"
        asc = esds.audio_specific_config
        if asc is None:
            raise BoxError("'esds' of MPEG-4 audio has no AudioSpecificConfig")
        return f"mp4a.40.{asc.object_type}"
    if isinstance(entry, AudioSampleEntry) and kind in _PLAIN:
        return _PLAIN[kind]
    raise UnsupportedCodecError(f"no RFC 6381 codec string for sample entry {kind!r}")
