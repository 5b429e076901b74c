"""A mono Ogg Opus voice note recognised from its pages in this process: no decoder runs.

Such a file is already what WhatsApp wants, and a conversion worker would only decode it
to say so (``encoders._voice``: passthrough when the format is ``ogg``, the one stream is
``opus`` with one channel and the variant rate is 48 kHz) and to measure it. This reader
says the same from the bytes: one logical stream, every page whole (capture pattern,
version 0, Ogg's CRC-32, consecutive sequence numbers, BOS first and EOS last), an
``OpusHead`` of version 1, one channel, mapping family 0, an ``OpusTags`` that parses
(UTF-8 throughout, as PyAV decodes it, and no cover picture, which FFmpeg would make a
second stream of), every audio packet framed as RFC 6716 section 3.1-3.2 says, and
granule positions that count exactly the packets' samples from 0 (RFC 7845 section 4;
the last page may trim its own). The duration is then (last granule position -
pre-skip) / 48000, what the decoder yields, with no decode. Anything else answers None
and the caller asks a worker as before. Only files up to a bound are read (all in
memory, which is why there is one).

Why framing is enough to know the file plays (read in the sources, 2026-12):

* libopus (xiph/opus ``src/opus_decoder.c``, ``opus_decode_native``): the only content
  check before decoding is ``opus_packet_parse_impl`` (``src/opus.c``), which returns
  ``OPUS_INVALID_PACKET`` for bad framing only (an empty packet, a code 1 packet of odd
  length, a code 2 first size past the end, a code 3 frame count of 0 or over 120 ms, a
  padding length past the end, a VBR size past the end, a CBR length not a multiple of
  the count, any frame over 1275 bytes); the payload bits are range-decoded as they come.
* The decoder that actually runs here is FFmpeg's own ``opus`` (PyAV's default, not
  ``libopus``; FFmpeg ``libavcodec/opus/dec.c``). ``opus_decode_packet`` fails a packet
  only when ``ff_opus_parse_packet`` (``libavcodec/opus/parse.c``) rejects its framing
  (the same rules, plus at most 48 frames and 120 ms); an error inside one frame (SILK,
  CELT, redundancy) is logged and replaced by silence unless ``AV_EF_EXPLODE`` is set
  (``opus_decode_subpacket``), which PyAV does not set. The stream's extradata (our
  ``OpusHead``) fails only on a size under 19, a version over 15, zero channels or a
  family-0 head with more than two (``ff_opus_parse_extradata``).

So the packet rules below are the union of both parsers', strictest first, and
arbitrary bytes inside valid framing decode (to noise) without an error -- which the
property test in ``tests/unit/test_ogg_opus.py`` checks against PyAV on mutated files.

Ogg's CRC (polynomial 0x04C11DB7, not reflected, initial value and final xor 0) is not
zlib's, but it is zlib's reflected CRC-32 read backwards: the same CRC of the input with
each byte's bits reversed, the result's bits reversed, and zlib's pre- and post-
inversion undone. That runs in C (9 us per 10 KB here); a table-driven loop in Python
takes 1.4 ms per 10 KB, 10% of the whole upload this check speeds up. The tests hold it
to a table-driven reference.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from typing import Any

from mediacache.media.headers import Readable

__all__ = ["OGG_FORMAT", "NotRecognised", "ogg_crc", "ogg_opus_voice", "opus_packet_samples"]

OGG_FORMAT = "ogg"  # FFmpeg's name for the Ogg demuxer: what a probe would say
OPUS_RATE = 48000  # Opus granule positions always count 48 kHz samples
# capture pattern, version, flags, granule position, serial, sequence, CRC, segment count
_PAGE_HEADER = struct.Struct("<4sBBqIIIB")
_CONTINUED, _BOS, _EOS = 0x01, 0x02, 0x04
_NO_GRANULE = -1  # a page on which no packet ends
_MAX_FRAME_BYTES = 1275
_MAX_PACKET_SAMPLES = 5760  # 120 ms at 48 kHz
_MAX_FRAMES = 48

_BIT_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 of ``data`` (see the module docstring for why zlib computes it)."""
    reflected = zlib.crc32(data.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)


class NotRecognised(Exception):
    """Not recognised for certain: let a worker decode it."""


def _samples_per_frame(toc: int) -> int:
    """RFC 6716 section 3.1: the frame duration of the TOC's configuration, in 48 kHz samples."""
    config = toc >> 3
    if config < 12:  # SILK-only: 10, 20, 40, 60 ms
        return (480, 960, 1920, 2880)[config & 3]
    if config < 16:  # hybrid: 10, 20 ms
        return (480, 960)[config & 1]
    return (120, 240, 480, 960)[config & 3]  # CELT-only: 2.5, 5, 10, 20 ms


def _frame_length(packet: bytes, at: int, end: int) -> tuple[int, int]:
    """(length, next offset) of a 1- or 2-byte frame length (RFC 6716 section 3.2.1)."""
    if at >= end:
        raise NotRecognised
    first = packet[at]
    if first < 252:
        return first, at + 1
    if at + 1 >= end:
        raise NotRecognised
    return first + 4 * packet[at + 1], at + 2


def opus_packet_samples(packet: bytes) -> int:
    """The 48 kHz samples a packet decodes to, if its framing is valid (RFC 6716 section
    3.2, as libopus's ``opus_packet_parse`` and FFmpeg's ``ff_opus_parse_packet`` check
    it); raises :class:`NotRecognised` otherwise."""
    end = len(packet)
    if end < 1:
        raise NotRecognised
    toc, at = packet[0], 1
    code = toc & 3
    if code == 0:
        sizes = [end - at]
    elif code == 1:
        if (end - at) % 2:
            raise NotRecognised
        sizes = [(end - at) // 2] * 2
    elif code == 2:
        first, at = _frame_length(packet, at, end)
        if first > end - at:
            raise NotRecognised
        sizes = [first, end - at - first]
    else:
        if at >= end:
            raise NotRecognised
        header, at = packet[at], at + 1
        count = header & 0x3F
        if count == 0 or count > _MAX_FRAMES:
            raise NotRecognised
        padding = 0
        if header & 0x40:
            while True:
                if at >= end:
                    raise NotRecognised
                step, at = packet[at], at + 1
                padding += 254 if step == 255 else step
                if step != 255:
                    break
        available = end - at - padding
        if available < 0:
            raise NotRecognised
        if header & 0x80:  # VBR: all lengths but the last coded
            sizes = []
            for _ in range(count - 1):
                size, at = _frame_length(packet, at, end)
                sizes.append(size)
            available = end - at - padding
            if available < 0 or sum(sizes) > available:
                raise NotRecognised
            sizes.append(available - sum(sizes))
        else:  # CBR: the rest split evenly
            if available % count:
                raise NotRecognised
            sizes = [available // count] * count
    if any(size > _MAX_FRAME_BYTES for size in sizes):
        raise NotRecognised
    samples = _samples_per_frame(toc) * len(sizes)
    if samples > _MAX_PACKET_SAMPLES:
        raise NotRecognised
    return samples


def _pages(data: bytes) -> list[tuple[int, int, list[bytes], bool]]:
    """(flags, granule, packet pieces, last piece complete) of every page, all checked:
    one serial number, consecutive sequence numbers, each page's CRC."""
    pages: list[tuple[int, int, list[bytes], bool]] = []
    at, serial = 0, None
    while at < len(data):
        if at + _PAGE_HEADER.size > len(data):
            raise NotRecognised
        capture, version, flags, granule, page_serial, sequence, crc, count = (
            _PAGE_HEADER.unpack_from(data, at)
        )
        if capture != b"OggS" or version != 0 or flags & ~0x07:
            raise NotRecognised
        if serial is None:
            serial = page_serial
        if page_serial != serial or sequence != len(pages):
            raise NotRecognised
        lacing_at = at + _PAGE_HEADER.size
        body_at = lacing_at + count
        lacing = data[lacing_at:body_at]
        end = body_at + sum(lacing)
        if len(lacing) != count or end > len(data):
            raise NotRecognised
        page = bytearray(data[at:end])
        page[22:26] = b"\0\0\0\0"
        if ogg_crc(bytes(page)) != crc:
            raise NotRecognised
        pieces, piece_at, size = [], body_at, 0
        for value in lacing:
            size += value
            if value < 255:
                pieces.append(data[piece_at : piece_at + size])
                piece_at, size = piece_at + size, 0
        complete = not lacing or lacing[-1] < 255
        if not complete:
            pieces.append(data[piece_at : piece_at + size])
        pages.append((flags, granule, pieces, complete))
        at = end
    return pages


def _packets(pages: list[tuple[int, int, list[bytes], bool]]) -> list[tuple[bytes, int]]:
    """Whole packets with the index of the page each ends on, BOS/EOS and continuation
    flags checked against where packets start and end."""
    packets: list[tuple[bytes, int]] = []
    pending: bytes | None = None
    for index, (flags, granule, pieces, complete) in enumerate(pages):
        if bool(flags & _BOS) != (index == 0) or bool(flags & _EOS) != (index == len(pages) - 1):
            raise NotRecognised
        if bool(flags & _CONTINUED) != (pending is not None):
            raise NotRecognised
        ending = len(pieces) - (0 if complete else 1)
        if (granule == _NO_GRANULE) != (ending == 0) or granule < _NO_GRANULE:
            raise NotRecognised  # a granule exactly on the pages where a packet ends
        for number, piece in enumerate(pieces):
            whole = (pending or b"") + piece if number == 0 else piece
            pending = None
            if number < ending:
                packets.append((whole, index))
            else:
                pending = whole
    if pending is not None:
        raise NotRecognised  # the last packet never ends: a truncated file
    return packets


def _opus_head(packet: bytes) -> int:
    """The pre-skip of a version 1, mono, mapping family 0 ``OpusHead``."""
    if len(packet) != 19 or packet[:8] != b"OpusHead":
        raise NotRecognised
    version, channels, pre_skip, _rate, _gain, family = struct.unpack_from("<BBHIhB", packet, 8)
    if version != 1 or channels != 1 or family != 0:
        raise NotRecognised
    return int(pre_skip)


def _opus_tags(packet: bytes) -> None:
    """An ``OpusTags`` whose vendor string and comments lie within the packet, all UTF-8
    (PyAV decodes the metadata FFmpeg makes of them as UTF-8 when it opens the file, and
    raises on anything else), and no cover picture (FFmpeg makes a second stream of one)."""
    if packet[:8] != b"OpusTags":
        raise NotRecognised
    (vendor,) = struct.unpack_from("<I", packet, 8)
    if 12 + vendor > len(packet):
        raise NotRecognised
    packet[12 : 12 + vendor].decode("utf-8")
    at = 12 + vendor
    (count,) = struct.unpack_from("<I", packet, at)
    at += 4
    for _ in range(count):
        (length,) = struct.unpack_from("<I", packet, at)
        at += 4
        if at + length > len(packet):
            raise NotRecognised
        comment = packet[at : at + length].decode("utf-8")
        if comment.partition("=")[0].upper() == "METADATA_BLOCK_PICTURE":
            raise NotRecognised
        at += length


def _duration(data: bytes) -> float:
    pages = _pages(data)
    packets = _packets(pages)
    if len(packets) < 3:
        raise NotRecognised  # a head, tags and at least one audio packet
    (head, head_page), (tags, tags_page) = packets[0], packets[1]
    if head_page != 0 or len(pages[0][2]) != 1 or pages[0][1] != 0:
        raise NotRecognised  # RFC 7845: the head alone on the first page
    pre_skip = _opus_head(head)
    _opus_tags(tags)
    audio = packets[2:]
    tags_alone = len(pages[tags_page][2]) == 1 and pages[tags_page][3]
    if not tags_alone or pages[tags_page][1] != 0:
        raise NotRecognised  # RFC 7845: the audio starts on a page of its own
    completed = [0] * len(pages)  # samples of the packets each page completes
    for packet, page in audio:
        completed[page] += opus_packet_samples(packet)
    ending = [i for i in range(tags_page + 1, len(pages)) if pages[i][1] != _NO_GRANULE]
    total = 0
    for index in ending[:-1]:  # RFC 7845 section 4: a stream starting at 0 counts every sample
        total += completed[index]
        if pages[index][1] != total:
            raise NotRecognised
    last, before = pages[ending[-1]][1], total
    total += completed[ending[-1]]
    if not (before <= last <= total and last > pre_skip):
        raise NotRecognised  # the last page may trim its own samples, no more
    return (last - pre_skip) / OPUS_RATE


def ogg_opus_voice(file: Readable, *, max_bytes: int) -> dict[str, Any] | None:
    """What a probe would say of a mono Ogg Opus file of at most ``max_bytes`` whose every
    page and packet is well formed (``duration`` from its granule positions); None for
    anything else. Leaves the file at its start."""
    try:
        file.seek(0)
        data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            return None
        duration = _duration(data)
    except (NotRecognised, struct.error, ValueError, OSError, AttributeError, IndexError):
        return None
    finally:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            file.seek(0)
    return {
        "format": OGG_FORMAT,
        "video": None,
        "audio": "opus",
        "width": None,
        "height": None,
        "channels": 1,
        "sample_rate": OPUS_RATE,
        "duration": round(duration, 6),
        "from": "header",
    }
