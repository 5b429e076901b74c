"""What a file is, read from its container's headers in this process: no decoder runs.

A conversion worker is a process away (:mod:`mediacache.media.pool`); for files that
are already what WhatsApp wants, reading a few boxes or one page is enough, and that
reading is plain, bounded Python over bytes -- nothing that a hostile file can crash,
hang or bloat, which is why it may run in the web process. Anything these readers do
not recognise for certain (an odd layout, a codec they do not name, a box too large)
answers None, and the caller asks a worker as before.

:func:`mp4_video` recognises an MP4 holding H.264 video (and at most one AAC track):
WhatsApp's video format, stored as is. What it says has the keys of the worker's probe
(``format``, ``video``, ``audio``, ``width``, ``height``, ``channels``, ``sample_rate``,
``duration``). A JPEG within the limits needs no reading at all (it is stored as is
on its sniffed type). A mono Ogg Opus voice note is read by :mod:`mediacache.media.ogg`
(every page and packet, not just the first page: that is what proves it plays); its
waveform, which takes a decode, is made afterwards by a background task.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Any, Protocol

__all__ = ["MP4_FORMAT", "Readable", "mp4_video"]

# FFmpeg's name for the ISO base media demuxer: what a probe of any MP4 says.
MP4_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"
# The largest ``moov`` read into memory (a 16 MB phone video's is ~100 KB).
MAX_MOOV_BYTES = 8 * 1024 * 1024
_H264 = {b"avc1", b"avc3"}
_AAC_OBJECT_TYPE = 0x40  # MPEG-4 audio (AAC) in the esds decoder config


class Readable(Protocol):
    """A file open for reading that can seek: an upload, a stored object opened."""

    def read(self, size: int = ..., /) -> bytes: ...

    def seek(self, offset: int, whence: int = ..., /) -> int: ...


class _Unknown(Exception):
    """Not recognised for certain: let a worker look."""


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box in ``data[start:end]``."""
    end = len(data) if end is None else end
    found = []
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > end:
                raise _Unknown
            (size,) = struct.unpack_from(">Q", data, at + 8)
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise _Unknown
        found.append((kind, at + header, at + size))
        at += size
    if at != end:
        raise _Unknown
    return found


def _top_level(file: Readable) -> tuple[bytes, bytes]:
    """The ``ftyp`` brand and the whole ``moov`` box's payload, wherever it sits."""
    brand, moov = b"", None
    total = file.seek(0, 2)
    position = file.seek(0)
    while True:
        header = file.read(16)
        if len(header) < 8:
            break
        size, kind = struct.unpack_from(">I4s", header)
        skip = 8
        if size == 1 and len(header) == 16:
            (size,) = struct.unpack_from(">Q", header, 8)
            skip = 16
        elif size == 0:
            size = total - position
        if size < skip or position + size > total:
            raise _Unknown  # a box past the end: a truncated or broken file
        if kind == b"ftyp":
            brand = header[8:12]
        elif kind == b"moov":
            if size > MAX_MOOV_BYTES:
                raise _Unknown
            file.seek(position + skip)
            moov = file.read(size - skip)
            if len(moov) != size - skip:
                raise _Unknown
        position = file.seek(position + size)
    if not brand or moov is None:
        raise _Unknown
    return brand, moov


def _find(data: bytes, boxes: list[tuple[bytes, int, int]], kind: bytes) -> tuple[int, int]:
    matches = [(start, end) for k, start, end in boxes if k == kind]
    if len(matches) != 1:
        raise _Unknown
    return matches[0]


def _descriptor(data: bytes, at: int, end: int) -> tuple[int, int, int]:
    """(tag, payload start, payload end) of an MPEG-4 descriptor (esds)."""
    if at >= end:
        raise _Unknown
    tag, length, at = data[at], 0, at + 1
    for _ in range(4):
        if at >= end:
            raise _Unknown
        byte = data[at]
        at += 1
        length = (length << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if at + length > end:
        raise _Unknown
    return tag, at, at + length


def _aac(data: bytes, start: int, end: int) -> tuple[int, int]:
    """(channels, sample rate) of an ``mp4a`` sample entry whose esds says AAC."""
    if end - start < 28 or struct.unpack_from(">H", data, start + 8)[0] != 0:
        raise _Unknown  # QuickTime sound description v1/v2: leave it to the worker
    channels, _bits = struct.unpack_from(">HH", data, start + 16)
    rate = struct.unpack_from(">I", data, start + 24)[0] >> 16
    esds_start, esds_end = _find(data, _boxes(data, start + 28, end), b"esds")
    tag, at, stop = _descriptor(data, esds_start + 4, esds_end)
    if tag != 0x03 or at + 3 > stop:
        raise _Unknown
    flags = data[at + 2]
    at += 3 + (2 if flags & 0x80 else 0)
    if flags & 0x40:
        if at >= stop:
            raise _Unknown
        at += 1 + data[at]
    if flags & 0x20:
        at += 2
    tag, at, stop = _descriptor(data, at, stop)
    if tag != 0x04 or at >= stop or data[at] != _AAC_OBJECT_TYPE:
        raise _Unknown
    return channels, rate


def _track(data: bytes, start: int, end: int) -> dict[str, Any]:
    mdia = _find(data, _boxes(data, start, end), b"mdia")
    inside = _boxes(data, *mdia)
    hdlr_start, hdlr_end = _find(data, inside, b"hdlr")
    if hdlr_end - hdlr_start < 12:
        raise _Unknown
    handler = data[hdlr_start + 8 : hdlr_start + 12]
    minf = _boxes(data, *_find(data, inside, b"minf"))
    stbl = _boxes(data, *_find(data, minf, b"stbl"))
    stsd_start, stsd_end = _find(data, stbl, b"stsd")
    if stsd_end - stsd_start < 8 or struct.unpack_from(">I", data, stsd_start + 4)[0] != 1:
        raise _Unknown  # one sample description, as phones and encoders write
    ((entry, entry_start, entry_end),) = _boxes(data, stsd_start + 8, stsd_end)
    if handler == b"vide" and entry in _H264 and entry_end - entry_start >= 28:
        width, height = struct.unpack_from(">HH", data, entry_start + 24)
        return {"video": "h264", "width": width, "height": height}
    if handler == b"soun" and entry == b"mp4a":
        channels, rate = _aac(data, entry_start, entry_end)
        return {"audio": "aac", "channels": channels, "sample_rate": rate}
    raise _Unknown


def _duration(data: bytes, boxes: list[tuple[bytes, int, int]]) -> float | None:
    start, end = _find(data, boxes, b"mvhd")
    if end - start < 20:
        raise _Unknown
    if data[start] == 1:
        if end - start < 32:
            raise _Unknown
        timescale, duration = struct.unpack_from(">IQ", data, start + 20)
    else:
        timescale, duration = struct.unpack_from(">II", data, start + 12)
    return round(duration / timescale, 6) if timescale and duration else None


def mp4_video(file: Readable) -> dict[str, Any] | None:
    """What a probe would say of an MP4 with one H.264 track and at most one AAC track;
    None for anything else (or anything not certain). Leaves the file at its start."""
    try:
        _brand, moov = _top_level(file)
        boxes = _boxes(moov)
        tracks = [_track(moov, start, end) for kind, start, end in boxes if kind == b"trak"]
    except (_Unknown, struct.error, ValueError, OSError, AttributeError):
        return None
    finally:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            file.seek(0)
    videos = [t for t in tracks if "video" in t]
    audios = [t for t in tracks if "audio" in t]
    if len(videos) != 1 or len(audios) > 1:
        return None
    audio = audios[0] if audios else {}
    try:
        duration = _duration(moov, boxes)
    except (_Unknown, struct.error):
        return None
    return {
        "format": MP4_FORMAT,
        "video": "h264",
        "audio": "aac" if audio else None,
        "width": videos[0]["width"],
        "height": videos[0]["height"],
        "channels": audio.get("channels"),
        "sample_rate": audio.get("sample_rate"),
        "duration": duration,
        "from": "header",
    }
