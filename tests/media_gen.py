"""Real audio, video and image files made in the test with PyAV and Pillow.

Each voice-note format a client really sends: Chrome's MediaRecorder (WebM/Opus),
Safari's (MP4/AAC), MP3, M4A, WAV, Ogg/Vorbis and Ogg Opus mono (WhatsApp's own).
"""

from __future__ import annotations

import io
import math
import random
import struct
from fractions import Fraction

import av

# name -> (container format, codec, sample rate, layout, file name)
AUDIO_FORMATS: dict[str, tuple[str, str, int, str, str]] = {
    "webm_opus": ("webm", "libopus", 48000, "stereo", "recording.webm"),
    "mp4_aac": ("mp4", "aac", 44100, "mono", "recording.mp4"),
    "mp3": ("mp3", "libmp3lame", 44100, "stereo", "song.mp3"),
    "m4a": ("ipod", "aac", 44100, "stereo", "memo.m4a"),
    "wav": ("wav", "pcm_s16le", 16000, "mono", "memo.wav"),
    "ogg_vorbis": ("ogg", "vorbis", 44100, "stereo", "memo.ogg"),
    "ogg_opus_mono": ("ogg", "libopus", 48000, "mono", "voice.ogg"),
}


def _pcm_frames(rate: int, layout: str, seconds: float, *, noise: bool = False):
    """s16 frames of a 440 Hz tone (or noise) rising and falling in loudness."""
    channels = 2 if layout == "stereo" else 1
    total = round(rate * seconds)
    rng = random.Random(7)
    chunk = 1024
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        samples = []
        for i in range(start, start + n):
            envelope = 0.2 + 0.7 * abs(math.sin(math.pi * i / total * 3))
            value = rng.uniform(-1, 1) if noise else math.sin(2 * math.pi * 440 * i / rate)
            samples.extend([int(12000 * envelope * value)] * channels)
        frame = av.AudioFrame(format="s16", layout=layout, samples=n)
        frame.planes[0].update(struct.pack(f"<{len(samples)}h", *samples))
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


def audio(kind: str, seconds: float = 3.0, *, noise: bool = False) -> bytes:
    """``seconds`` of audio in one of :data:`AUDIO_FORMATS`."""
    container_format, codec, rate, layout, _name = AUDIO_FORMATS[kind]
    return encoded(container_format, codec, rate, layout, seconds, noise=noise)


def encoded(
    container_format: str,
    codec: str,
    rate: int,
    layout: str,
    seconds: float,
    *,
    noise: bool = False,
) -> bytes:
    """``seconds`` of audio in any container, codec, rate and layout PyAV can write."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container_format) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout)
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        # An encoder with a fixed frame size (AAC 1024, Opus 960, MP3 1152) needs
        # frames of exactly that size: let a resampler cut them.
        stream.codec_context.open(strict=False)
        frame_size = stream.codec_context.frame_size or None
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name,
            layout=layout,
            rate=rate,
            frame_size=frame_size,
        )
        for frame in _pcm_frames(rate, layout, seconds, noise=noise):
            for out in resampler.resample(frame):
                output.mux(stream.encode(out))
        for out in resampler.resample(None):
            output.mux(stream.encode(out))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def file_name(kind: str) -> str:
    return AUDIO_FORMATS[kind][4]


def video_mp4(seconds: float = 1.0, codec: str = "libx264", container: str = "mp4") -> bytes:
    """A small real video (H.264 + AAC in MP4 by default)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(seconds * 10)):
            frame = av.VideoFrame(64, 48, "rgb24")
            frame.planes[0].update(bytes([(i * 20) % 256, 80, 160]) * (64 * 48))
            frame = frame.reformat(format="yuv420p")
            frame.pts = i
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return buffer.getvalue()


def decoded(body: bytes) -> dict:
    """What a player would see in ``body``: container, codec, channels, rate, duration."""
    with av.open(io.BytesIO(body)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        ctx = stream.codec_context
        return {
            "format": container.format.name,
            "codec": ctx.name,
            "channels": ctx.layout.nb_channels,
            "sample_rate": ctx.sample_rate,
            "duration": samples / ctx.sample_rate,
            "container_duration": (container.duration or 0) / 1_000_000,
        }


def image(fmt: str, size: tuple[int, int] = (64, 48), *, noisy: bool = False) -> bytes:
    """An image in Pillow's ``fmt`` (JPEG, PNG, WEBP, TIFF, BMP, HEIF)."""
    from PIL import Image

    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    if noisy:
        img = Image.frombytes("RGB", size, random.Random(3).randbytes(size[0] * size[1] * 3))
    else:
        img = Image.new("RGB", size, (200, 30, 60))
    buffer = io.BytesIO()
    options = {"quality": 100} if fmt in ("JPEG", "WEBP", "HEIF") else {}
    img.save(buffer, fmt, **options)
    return buffer.getvalue()
