"""A mono Ogg Opus voice note read from its pages, in process (mediacache.media.ogg).

What the reader says yes to must be what a conversion worker would pass through after a
decode (``encoders._voice``): the property test mutates the fixture (with and without
repairing the pages' CRCs, so the packet rules are reached too) and decodes every file
the reader accepts with PyAV, the worker's own code.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediacache.media import encoders
from mediacache.media.ogg import NotRecognised, ogg_crc, ogg_opus_voice, opus_packet_samples
from tests.media_gen import audio, encoded

FIXTURE = (Path(__file__).parents[1] / "fixtures" / "voice.ogg").read_bytes()
LIMIT = 1024 * 1024


def _table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
        table.append(crc)
    return table


TABLE = _table()


def reference_crc(data: bytes) -> int:
    """Ogg's CRC-32 the way the spec's reference code computes it, one byte at a time."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ TABLE[(crc >> 24) ^ byte]
    return crc


def read(body: bytes, limit: int = LIMIT) -> dict | None:
    return ogg_opus_voice(io.BytesIO(body), max_bytes=limit)


def decoded_seconds(body: bytes) -> float:
    with av.open(io.BytesIO(body)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    return samples / 48000


def worker_says(body: bytes, tmp_path: Path) -> dict:
    """What the conversion worker's own code says of ``body``, run in this process."""
    source = tmp_path / "in.ogg"
    source.write_bytes(body)
    return encoders._voice(str(source), str(tmp_path / "out.ogg"), 48000, 24000, False)


def pages(body: bytes) -> list[bytearray]:
    """The pages of a well-formed Ogg file, each as its own bytes."""
    found, at = [], 0
    while at < len(body):
        count = body[at + 26]
        size = 27 + count + sum(body[at + 27 : at + 27 + count])
        found.append(bytearray(body[at : at + size]))
        at += size
    return found


def with_crc(page: bytearray) -> bytes:
    page[22:26] = b"\0\0\0\0"
    page[22:26] = struct.pack("<I", reference_crc(bytes(page)))
    return bytes(page)


def recrc(body: bytes) -> bytes:
    """``body`` with every page's CRC made right again, as far as its pages can be walked."""
    out, at = bytearray(), 0
    while at + 27 <= len(body) and body[at : at + 4] == b"OggS":
        count = body[at + 26]
        size = 27 + count + sum(body[at + 27 : at + 27 + count])
        if at + size > len(body):
            break
        out += with_crc(bytearray(body[at : at + size]))
        at += size
    return bytes(out + body[at:])


# -- what it recognises ------------------------------------------------------------


def test_the_fixture_is_recognised_with_the_decoders_duration():
    seen = read(FIXTURE)
    assert seen is not None
    assert seen["format"] == "ogg"
    assert seen["audio"] == "opus"
    assert (seen["channels"], seen["sample_rate"]) == (1, 48000)
    assert abs(seen["duration"] - decoded_seconds(FIXTURE)) <= 0.001


@pytest.mark.parametrize(("seconds", "noise"), [(0.3, False), (1.0, True), (3.0, False)])
def test_generated_ogg_opus_is_recognised_with_the_decoders_duration(seconds, noise):
    body = audio("ogg_opus_mono", seconds, noise=noise)
    seen = read(body)
    assert seen is not None
    assert abs(seen["duration"] - decoded_seconds(body)) <= 0.001
    assert abs(seen["duration"] - seconds) <= 0.03


def test_it_says_what_the_workers_probe_says(tmp_path):
    worker = worker_says(FIXTURE, tmp_path)
    assert worker["ok"]
    assert worker["passthrough"]
    seen = read(FIXTURE)
    assert seen is not None
    for key in ("format", "video", "audio", "channels", "sample_rate"):
        assert seen[key] == worker["probe"][key], key
    assert abs(seen["duration"] - worker["duration"]) <= 0.001


def test_the_file_is_left_at_its_start():
    file = io.BytesIO(FIXTURE)
    file.seek(100)
    ogg_opus_voice(file, max_bytes=LIMIT)
    assert file.tell() == 0


# -- what it refuses -----------------------------------------------------------------


def test_a_file_over_the_bound_is_left_to_the_decoder():
    assert read(FIXTURE, limit=len(FIXTURE) - 1) is None
    assert read(FIXTURE, limit=len(FIXTURE)) is not None


def test_stereo_ogg_opus_is_refused():
    assert read(encoded("ogg", "libopus", 48000, "stereo", 1.0)) is None


def test_ogg_vorbis_is_refused():
    assert read(audio("ogg_vorbis", 1.0)) is None


@pytest.mark.parametrize("cut", [1, 27, 200, len(FIXTURE) // 2, len(FIXTURE) - 1])
def test_a_truncated_file_is_refused(cut):
    assert read(FIXTURE[:cut]) is None
    assert read(recrc(FIXTURE[:cut])) is None


def test_a_bad_crc_is_refused():
    body = bytearray(FIXTURE)
    body[len(body) // 2] ^= 0x01
    assert read(bytes(body)) is None


def test_a_stream_without_eos_is_refused():
    found = pages(FIXTURE)
    found[-1][5] &= ~0x04
    assert read(b"".join(with_crc(page) for page in found)) is None


def test_granule_positions_that_do_not_count_the_samples_are_refused():
    found = pages(FIXTURE)
    assert len(found) > 3  # head, tags, and more than one audio page
    (granule,) = struct.unpack_from("<q", found[2], 6)
    found[2][6:14] = struct.pack("<q", granule + 1)
    assert read(b"".join(with_crc(page) for page in found)) is None


def test_a_last_granule_past_the_samples_is_refused():
    found = pages(FIXTURE)
    (granule,) = struct.unpack_from("<q", found[-1], 6)
    found[-1][6:14] = struct.pack("<q", granule + 48000)
    assert read(b"".join(with_crc(page) for page in found)) is None


def test_multiplexed_streams_are_refused():
    first, second = pages(FIXTURE), pages(FIXTURE)
    for page in second:
        page[14:18] = struct.pack("<I", 0x12345678)
    interleaved = [with_crc(page) for pair in zip(first, second, strict=False) for page in pair]
    assert read(b"".join(interleaved)) is None


def test_a_chained_file_is_refused():
    second = pages(FIXTURE)
    for page in second:
        page[14:18] = struct.pack("<I", 0x12345678)
    assert read(FIXTURE + b"".join(with_crc(page) for page in second)) is None


def test_anything_else_is_refused_without_raising():
    for body in (b"", b"OggS", b"\0" * 100, FIXTURE[::-1], audio("wav", 0.2)):
        assert read(body) is None


# -- the packet rules (RFC 6716 section 3.2) -----------------------------------------

CELT_20MS = 0xF8  # config 31: CELT-only, fullband, 20 ms; mono; code 0


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([CELT_20MS]) + b"x" * 10, 960),  # code 0, one frame
        (bytes([CELT_20MS]), 960),  # code 0, an empty frame (DTX)
        (bytes([CELT_20MS | 1]) + b"x" * 10, 1920),  # code 1, two equal frames
        (bytes([CELT_20MS | 2, 3]) + b"x" * 10, 1920),  # code 2, 3 + 7 bytes
        (bytes([CELT_20MS | 3, 0x03]) + b"x" * 9, 2880),  # code 3 CBR, three frames
        (bytes([CELT_20MS | 3, 0x83, 2, 3]) + b"x" * 9, 2880),  # code 3 VBR
        (bytes([CELT_20MS | 3, 0x42, 2]) + b"x" * 6, 1920),  # code 3 CBR, 2 bytes padding
        (bytes([CELT_20MS | 3, 0x42, 255, 0]) + b"x" * 254, 1920),  # 254 bytes padding
    ],
)
def test_well_framed_packets_are_counted(packet, samples):
    assert opus_packet_samples(packet) == samples


@pytest.mark.parametrize(
    "packet",
    [
        b"",  # no TOC
        bytes([CELT_20MS | 1]) + b"x" * 9,  # code 1 of odd length
        bytes([CELT_20MS | 2]),  # code 2 without its length
        bytes([CELT_20MS | 2, 252]),  # code 2 with half a two-byte length
        bytes([CELT_20MS | 2, 20]) + b"x" * 10,  # code 2 first frame past the end
        bytes([CELT_20MS | 3]),  # code 3 without its count byte
        bytes([CELT_20MS | 3, 0x00]),  # code 3, zero frames
        bytes([CELT_20MS | 3, 0x07]) + b"x" * 7,  # code 3, 7 x 20 ms = 140 ms
        bytes([CELT_20MS | 3, 0x03]) + b"x" * 10,  # code 3 CBR not a multiple of the count
        bytes([CELT_20MS | 3, 0x42, 50]) + b"x" * 10,  # padding past the end
        bytes([CELT_20MS | 3, 0x42]),  # padding length missing
        bytes([CELT_20MS | 3, 0x83, 200, 200]) + b"x" * 9,  # VBR sizes past the end
        bytes([CELT_20MS]) + b"x" * 1276,  # a frame over 1275 bytes
        bytes([CELT_20MS | 2, 0]) + b"x" * 1276,  # code 2's implicit last frame over 1275
    ],
)
def test_badly_framed_packets_are_refused(packet):
    with pytest.raises(NotRecognised):
        opus_packet_samples(packet)


# -- properties ------------------------------------------------------------------------


@given(st.binary(max_size=4096))
def test_the_crc_is_oggs_own(data):
    assert ogg_crc(data) == reference_crc(data)


def test_the_crc_of_a_known_page():
    (first, *_rest) = pages(FIXTURE)
    stored = struct.unpack_from("<I", first, 22)[0]
    first[22:26] = b"\0\0\0\0"
    assert ogg_crc(bytes(first)) == stored


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(FIXTURE) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(FIXTURE) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(FIXTURE)), st.integers(0, 255)),
)


def mutated(changes: list[tuple[str, int, int]], repair: bool) -> bytes:
    body = bytearray(FIXTURE)
    for what, at, value in changes:
        at = min(at, len(body))
        if what == "flip" and at < len(body):
            body[at] ^= value
        elif what == "cut":
            del body[at:]
        elif what == "insert":
            body[at:at] = bytes([value])
    return recrc(bytes(body)) if repair else bytes(body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=4), st.booleans())
def test_what_it_accepts_the_decoder_passes_through(tmp_path_factory, changes, repair):
    body = mutated(changes, repair)
    seen = read(body)
    if seen is None:
        return
    worker = worker_says(body, tmp_path_factory.mktemp("mutant"))
    assert worker["ok"], worker.get("error")
    assert worker["passthrough"]
    assert worker["duration"] > 0
    assert abs(worker["duration"] - seen["duration"]) <= 0.001
