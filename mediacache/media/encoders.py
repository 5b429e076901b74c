"""The conversions themselves, run in a child process: ``python -m mediacache.media.encoders
<command> ...`` prints one JSON line, and ``python -m mediacache.media.encoders --serve``
stays up and answers one JSON line per request line on its stdin: the long-lived
workers of :mod:`mediacache.media.pool`.

PyAV for audio and video, Pillow (+ pillow-heif for HEIC) for images. Nothing of
Django or the engine is imported here, so a child starts as fast as Python does.
Why PyAV rather than the ``ffmpeg`` binary: its wheels bundle FFmpeg with libopus,
so there is no system package to install and every machine runs the same encoder
build; the decoder's own error text comes back as an exception.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable

    from av.audio.frame import AudioFrame
    from av.container import InputContainer

WAVEFORM_POINTS = 64
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)

# The child lowers its own CPU priority (by this many steps) before it decodes
# anything: on a busy machine the serving processes win the cores and a
# conversion takes longer instead. Set by the child, not with preexec_fn, which is
# unsafe in a threaded server.
NICE_ENV = "MEDIACACHE_TRANSCODE_NICE"


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


def run(argv: list[str]) -> dict[str, Any]:
    """One command (``voice``, ``image``, ``probe``) with its arguments: its JSON-able result."""
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
    return result


def main(argv: list[str]) -> int:
    _lower_priority(int(os.environ.get(NICE_ENV) or 0))
    if argv[:1] == ["--serve"]:
        return serve()
    sys.stdout.write(json.dumps(run(argv)) + "\n")
    return 0


def serve() -> int:
    """Answer requests until stdin closes: one JSON list of arguments in, one JSON object out.

    The protocol has the process's real stdout to itself (anything else that prints,
    a library included, goes to stderr). An exception no command handles ends the
    process after its answer (``crash``: the exception's last line), so a worker whose
    state is unknown never takes another job. Each answer carries the process's
    resident memory (``rss``) so the pool can retire a worker that kept too much.
    """
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    with contextlib.suppress(ImportError):  # missing: the job says so, as a one-shot child does
        import av  # noqa: F401 - imported once here rather than in the first job
        from PIL import Image  # noqa: F401

    _exit_with_parent(os.getppid())
    answers.write(json.dumps({"ready": True, "pid": os.getpid(), "nice": os.nice(0)}) + "\n")
    for line in sys.stdin:
        try:
            result = run(json.loads(line))
        except Exception as exc:
            last = traceback.format_exception_only(exc)[-1].strip()
            answers.write(json.dumps({"ok": False, "crash": last}) + "\n")
            return 1
        result["rss"] = _rss_bytes()
        answers.write(json.dumps(result) + "\n")
    return 0


def _exit_with_parent(parent: int) -> None:
    """End this worker when the web process that started it is gone, even mid-job
    (stdin's end is only seen between jobs)."""
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _lower_priority(steps: int) -> None:
    if steps > 0:
        with contextlib.suppress(OSError):  # not permitted here: convert at normal priority
            os.nice(steps)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
