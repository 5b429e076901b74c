"""WhatsApp-ready variants: voice notes as Ogg Opus, images as JPEG, and a video probe.

The work itself runs in a child process (:mod:`mediacache.media.encoders`), started
per file with a time limit: a hostile or broken file can hang or crash the child,
never the server, and the child's memory is returned when it exits. The parent only
reads the one JSON line the child prints.

``av`` and ``Pillow`` are imported only in the child, so the engine package imports
fine without them (they come with the service's ``[service]`` extra).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from mediacache.core.settings import media_settings
from mediacache.media.encoders import NICE_ENV
from mediacache.media.types import (
    AUDIO_TYPE_OF_CONTAINER,
    IMAGE_TYPES_NEEDING_JPEG,
    MAYBE_AUDIO_CONTAINERS,
    VOICE_CONTENT_TYPE,
)

__all__ = [
    "AUDIO_TYPE_OF_CONTAINER",
    "IMAGE_TYPES_NEEDING_JPEG",
    "MAYBE_AUDIO_CONTAINERS",
    "VOICE_CONTENT_TYPE",
    "Outcome",
    "TranscodeError",
    "jpeg_variant",
    "probe",
    "run_child",
    "voice_variant",
]


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


def run_child(args: list[str], timeout: float) -> Outcome:
    """Run one command in a child process; TranscodeError on failure, timeout or crash."""
    command = [sys.executable, "-m", "mediacache.media.encoders", *args]
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
