"""Reading a file's type from its headers, in process (mediacache.media.headers).

Each answer is compared with what a conversion worker's probe (PyAV) says of the same
file; anything not recognised for certain must answer None, never raise.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import av
import pytest

from mediacache.media import encoders
from mediacache.media.headers import mp4_video
from tests.media_gen import audio, video_mp4


def h264_aac(seconds: float = 1.0, *, audio_codec: str = "aac") -> bytes:
    """H.264 video with one audio track, as a phone records it."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as output:
        video = output.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = output.add_stream(audio_codec, rate=44100, layout="mono")
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame(64, 48, "rgb24")
            frame.planes[0].update(bytes([(i * 20) % 256, 80, 160]) * (64 * 48))
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            output.mux(video.encode(frame))
        samples = av.AudioFrame(format="fltp", layout="mono", samples=1024)
        samples.planes[0].update(bytes(4096))
        samples.sample_rate = 44100
        for i in range(int(seconds * 43)):
            samples.pts = i * 1024
            output.mux(sound.encode(samples))
        output.mux(video.encode(None))
        output.mux(sound.encode(None))
    return buffer.getvalue()


def probe(body: bytes, tmp_path: Path) -> dict:
    path = tmp_path / "probe.bin"
    path.write_bytes(body)
    answer = encoders._probe(str(path))
    assert answer["ok"], answer
    return answer["probe"]


@pytest.mark.parametrize("with_audio", [True, False])
def test_h264_mp4_says_what_a_probe_says(tmp_path, with_audio):
    body = h264_aac() if with_audio else video_mp4()
    seen = mp4_video(io.BytesIO(body))
    assert seen is not None
    probed = probe(body, tmp_path)
    for key in ("format", "video", "audio", "width", "height", "channels", "sample_rate"):
        assert seen[key] == probed[key], key
    assert seen["duration"] == pytest.approx(probed["duration"], abs=0.15)


def test_moov_at_the_end_is_found(tmp_path):
    """A recording not made 'fast start' keeps its moov after the media data."""
    body = h264_aac()
    assert body.index(b"moov") > body.index(b"mdat")
    assert mp4_video(io.BytesIO(body)) is not None


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(lambda: audio("mp4_aac", 1.0), id="audio-only mp4"),
        pytest.param(lambda: h264_aac(audio_codec="mp3"), id="mp3 in mp4"),
        pytest.param(lambda: video_mp4(codec="mpeg4"), id="mpeg-4 part 2 video"),
        pytest.param(lambda: audio("webm_opus", 1.0), id="webm"),
        pytest.param(lambda: h264_aac()[:-500], id="truncated"),
        pytest.param(lambda: os.urandom(5000), id="noise"),
        pytest.param(lambda: b"", id="empty"),
        pytest.param(lambda: b"\x00\x00\x00\x01ftyp" + b"\xff" * 8, id="bad large size"),
    ],
)
def test_anything_else_is_left_to_a_worker(body):
    data = body()
    source = io.BytesIO(data)
    assert mp4_video(source) is None
    assert source.tell() == 0
