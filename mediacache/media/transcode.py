"""WhatsApp-ready variants: voice notes as Ogg Opus, images as JPEG, and a video probe.

The work itself (PyAV for audio and video, Pillow for images) runs in a child
process, ``python -m mediacache.media.transcode <command> …``, started per file with a
time limit: a hostile or broken file can hang or crash the child, never the
server, and the child's memory is returned when it exits. The parent only reads
the one JSON line the child prints.

Why PyAV rather than the ``ffmpeg`` binary: its wheels bundle FFmpeg with
libopus, so there is no system package to install and every machine runs the
same encoder build; the decoder's own error text comes back as an exception.

``av`` and ``Pillow`` (+ ``pillow-heif`` for HEIC) are imported only in the
child, so the engine package imports fine without them (they come with the
service's ``[service]`` extra).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediacache.core.settings import media_settings

if TYPE_CHECKING:  # only the child imports them (see above)
    from collections.abc import Iterable

    from av.audio.frame import AudioFrame
    from av.container import InputContainer

VOICE_CONTENT_TYPE = "audio/ogg; codecs=opus"
WAVEFORM_POINTS = 64
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)

# Image types WhatsApp does not show inline: they always get a JPEG variant.
IMAGE_TYPES_NEEDING_JPEG = frozenset(
    {"image/heic", "image/heif", "image/webp", "image/tiff", "image/bmp", "image/x-ms-bmp"}
)
# Containers that may hold only audio (browser recordings, Safari's audio/mp4), and
# what such a file is once decoding showed it has no video: a browser's WebM
# recording is sniffed as video/webm, but it is audio/webm.
AUDIO_TYPE_OF_CONTAINER = {
    "application/ogg": "audio/ogg",
    "video/webm": "audio/webm",
    "video/mp4": "audio/mp4",
    "video/quicktime": "audio/mp4",
    "video/3gpp": "audio/3gpp",
    "video/x-matroska": "audio/x-matroska",
    "audio/x-matroska": "audio/x-matroska",
}
MAYBE_AUDIO_CONTAINERS = frozenset(AUDIO_TYPE_OF_CONTAINER)


# The child lowers its own CPU priority (by this many steps) before it decodes
# anything: on a busy machine the serving processes win the cores and a
# conversion takes longer instead. Set by the child, not with preexec_fn, which is
# unsafe in a threaded server.
NICE_ENV = "MEDIACACHE_TRANSCODE_NICE"


class TranscodeError(Exception):
    """The file could not be decoded or converted; ``reason`` is the decoder's word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Outcome:
    """What the child reported. ``skipped``: a voice variant was not applicable (video)."""

    data: dict[str, Any] = field(default_factory=dict)

    @property
    def skipped(self) -> str | None:
        return self.data.get("skipped")

    @property
    def passthrough(self) -> bool:
        return bool(self.data.get("passthrough"))

    @property
    def duration(self) -> float | None:
        return self.data.get("duration")

    @property
    def waveform(self) -> list[int] | None:
        return self.data.get("waveform")

    @property
    def probe(self) -> dict[str, Any]:
        return self.data.get("probe") or {}


# -- parent side ---------------------------------------------------------------------


def run_child(args: list[str], timeout: float) -> Outcome:
    """Run one command in a child process; TranscodeError on failure, timeout or crash."""
    command = [sys.executable, "-m", "mediacache.media.transcode", *args]
    nice = str(media_settings().TRANSCODE_NICE)
    try:
        done = subprocess.run(  # noqa: S603 - our own module, arguments are file paths
            command,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", NICE_ENV: nice},
        )
    except subprocess.TimeoutExpired as exc:
        raise TranscodeError(f"conversion took longer than {timeout:g} s and was stopped") from exc
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        data = json.loads(lines[-1]) if lines else None
    except ValueError:
        data = None
    if not isinstance(data, dict):
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        raise TranscodeError(f"converter crashed (exit {done.returncode}): {tail[0][:300]}")
    if not data.get("ok"):
        raise TranscodeError(str(data.get("error") or "conversion failed"))
    return Outcome(data)


def voice_variant(
    in_path: str, out_path: str, *, skip_if_video: bool = False, timeout: float | None = None
) -> Outcome:
    """Ogg Opus mono at ``VOICE_SAMPLE_RATE`` into ``out_path`` (untouched on passthrough)."""
    args = [
        "voice",
        in_path,
        out_path,
        str(media_settings().VOICE_SAMPLE_RATE),
        str(media_settings().VOICE_BITRATE),
    ]
    if skip_if_video:
        args.append("--skip-if-video")
    return run_child(args, timeout or media_settings().TRANSCODE_TIMEOUT)


def jpeg_variant(in_path: str, out_path: str, *, timeout: float | None = None) -> Outcome:
    args = [
        "image",
        in_path,
        out_path,
        str(media_settings().IMAGE_MAX_BYTES),
        str(media_settings().IMAGE_MAX_SIDE),
    ]
    return run_child(args, timeout or media_settings().TRANSCODE_TIMEOUT)


def probe(in_path: str, *, timeout: float | None = None) -> Outcome:
    return run_child(["probe", in_path], timeout or media_settings().TRANSCODE_TIMEOUT)


# -- child side ----------------------------------------------------------------------


def _describe(container: InputContainer) -> dict[str, Any]:
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    duration = container.duration / 1_000_000 if container.duration else None
    return {
        "format": container.format.name,
        "video": video.codec_context.name if video is not None else None,
        "audio": audio.codec_context.name if audio is not None else None,
        "width": video.codec_context.width if video is not None else None,
        "height": video.codec_context.height if video is not None else None,
        "channels": audio.codec_context.layout.nb_channels if audio is not None else None,
        "sample_rate": audio.codec_context.sample_rate if audio is not None else None,
        "duration": duration,
    }


class _Meter:
    """Peaks of 10 ms blocks of s16 mono audio, folded into WAVEFORM_POINTS values 0-100."""

    def __init__(self, rate: int) -> None:
        from array import array

        self._array = array
        self.block = max(1, rate // 100)
        self.samples = 0
        self.peaks: list[int] = []
        self._pending = array("h")

    def add(self, frame: AudioFrame) -> None:
        data = self._array("h", bytes(frame.planes[0]))[: frame.samples]
        self.samples += frame.samples
        self._pending.extend(data)
        block, pending = self.block, self._pending
        usable = len(pending) - len(pending) % block
        for start in range(0, usable, block):
            chunk = pending[start : start + block]
            self.peaks.append(max(max(chunk), -min(chunk)))
        del pending[:usable]

    def waveform(self) -> list[int]:
        if len(self._pending):
            self.peaks.append(max(max(self._pending), -min(self._pending)))
            del self._pending[:]
        peaks = self.peaks
        if not peaks:
            return [0] * WAVEFORM_POINTS
        points = []
        for i in range(WAVEFORM_POINTS):
            start = i * len(peaks) // WAVEFORM_POINTS
            end = max(start + 1, (i + 1) * len(peaks) // WAVEFORM_POINTS)
            points.append(max(peaks[min(start, len(peaks) - 1) : end]))
        top = max(points)
        return [round(100 * p / top) if top else 0 for p in points]


def _voice(
    in_path: str, out_path: str, rate: int, bitrate: int, skip_if_video: bool
) -> dict[str, Any]:
    from fractions import Fraction

    import av

    if rate not in _OPUS_RATES:
        return {"ok": False, "error": f"Opus cannot encode at {rate} Hz"}
    try:
        container = av.open(in_path)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        return {"ok": False, "error": f"not a readable audio file: {exc}"}
    with container:
        info = _describe(container)
        if skip_if_video and info["video"]:
            return {"ok": True, "skipped": "has a video stream", "probe": info}
        if not container.streams.audio:
            return {"ok": False, "error": "no audio stream in the file", "probe": info}
        stream = container.streams.audio[0]
        passthrough = (
            info["format"] == "ogg"
            and info["audio"] == "opus"
            and info["channels"] == 1
            and len(container.streams) == 1
            and rate == 48000
        )
        meter = _Meter(rate)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate, frame_size=rate // 50)
        output = None if passthrough else av.open(out_path, "w", format="ogg")
        try:
            if output is not None:
                out_stream = output.add_stream("libopus", rate=rate, layout="mono")
                out_stream.bit_rate = bitrate
                out_stream.codec_context.options = {"application": "voip"}
                time_base = Fraction(1, rate)

            def consume(frames: Iterable[AudioFrame]) -> None:
                for resampled in frames:
                    resampled.pts = meter.samples
                    resampled.time_base = time_base if output is not None else resampled.time_base
                    meter.add(resampled)
                    if output is not None:
                        output.mux(out_stream.encode(resampled))

            try:
                for frame in container.decode(stream):
                    frame.pts = None
                    consume(resampler.resample(frame))
                consume(resampler.resample(None))
            except av.FFmpegError as exc:
                return {"ok": False, "error": f"the audio could not be decoded: {exc}"}
            if meter.samples == 0:
                return {"ok": False, "error": "the file holds no decodable audio"}
            if output is not None:
                output.mux(out_stream.encode(None))
        finally:
            if output is not None:
                output.close()
    return {
        "ok": True,
        "passthrough": passthrough,
        "duration": round(meter.samples / rate, 3),
        "waveform": meter.waveform(),
        "probe": info,
    }


def _image(in_path: str, out_path: str, max_bytes: int, max_side: int) -> dict[str, Any]:
    import io
    import warnings

    from PIL import Image, ImageOps

    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:  # HEIC then fails with Pillow's own "cannot identify" reason
        pass
    warnings.simplefilter("error", Image.DecompressionBombWarning)
    try:
        with Image.open(in_path) as opened:
            source_format = opened.format
            opened.seek(0)
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombWarning) as exc:
        return {"ok": False, "error": f"the image could not be decoded: {exc}"}
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    elif image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    quality = 88
    while True:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality, optimize=True, progressive=True)
        if buffer.tell() <= max_bytes or max(image.size) <= 64:
            break
        if quality > 60:
            quality -= 12
        else:
            image.thumbnail((int(image.width * 0.8), int(image.height * 0.8)))
    with open(out_path, "wb") as out:
        out.write(buffer.getvalue())
    return {
        "ok": True,
        "width": image.width,
        "height": image.height,
        "size": buffer.tell(),
        "quality": quality,
        "probe": {"format": source_format},
    }


def _probe(in_path: str) -> dict[str, Any]:
    import av

    try:
        with av.open(in_path) as container:
            return {"ok": True, "probe": _describe(container)}
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        return {"ok": False, "error": f"not a readable media file: {exc}"}


def main(argv: list[str]) -> int:
    _lower_priority(int(os.environ.get(NICE_ENV) or 0))
    command, *args = argv
    if command == "voice":
        in_path, out_path, rate, bitrate, *flags = args
        result = _voice(in_path, out_path, int(rate), int(bitrate), "--skip-if-video" in flags)
    elif command == "image":
        in_path, out_path, max_bytes, max_side = args
        result = _image(in_path, out_path, int(max_bytes), int(max_side))
    elif command == "probe":
        result = _probe(args[0])
    else:
        result = {"ok": False, "error": f"unknown command {command!r}"}
    result["nice"] = os.nice(0)  # the priority it ran at, for the logs and the tests
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _lower_priority(steps: int) -> None:
    if steps > 0:
        with contextlib.suppress(OSError):  # not permitted here: convert at normal priority
            os.nice(steps)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
