"""WhatsApp-ready variants: voice notes as Ogg Opus, images as JPEG, and a video probe.

The work itself runs in a separate process (:mod:`mediacache.media.encoders`), one of
the long-lived workers of :mod:`mediacache.media.pool`, with a time limit and a memory
limit: a hostile or broken file can hang, crash or bloat that worker -- which is then
killed and replaced -- never the server. The caller only reads the one JSON line the
worker answers.

``av`` and ``Pillow`` are imported only in the workers, so the engine package imports
fine without them (they come with the service's ``[service]`` extra).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mediacache.core.settings import MediaSettings, media_settings
from mediacache.media import pool
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
    "without_paths",
]

# What a file is called in an error when the caller gives no name.
THE_FILE = "the file"
_OUTPUT = "the converted file"
# An absolute path the known ones did not cover (a crash's traceback, a decoder that
# names a file of its own): a slash after a word, dot or colon is not one ("audio/ogg").
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s'\"/:,;()\[\]]+/)+[^\s'\"/:,;()\[\]]*")


class TranscodeError(Exception):
    """The file could not be decoded or converted; ``reason`` is the decoder's word,
    with no server path in it (it goes back to clients as it is)."""

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


def without_paths(text: str, names: Mapping[str, str]) -> str:
    """``text`` with each known path (key of ``names``) replaced by its name, and any
    other absolute path by "a server file".

    The decoder names the file it could not read (``... processing input:
    '/tmp/mediacache-in-x1y2'``), and that text reaches API clients: the one place
    where a child's words leave for the caller, so the one place paths are taken out.
    """
    for path, name in sorted(names.items(), key=lambda item: -len(item[0])):
        if path:
            text = text.replace(path, name)
    return _ABSOLUTE_PATH.sub("a server file", text)


def pool_config(settings: MediaSettings) -> pool.PoolConfig:
    """The conversion pool these settings ask for."""
    return pool.PoolConfig(
        size=max(1, settings.TRANSCODE_WORKERS),
        nice=settings.TRANSCODE_NICE,
        max_memory=settings.TRANSCODE_MAX_MEMORY,
    )


def prewarm(settings: MediaSettings) -> int:
    """Start ``TRANSCODE_PREWARM`` conversion workers in the background (called when a
    web or task-worker process starts); how many were started. Never blocks."""
    if settings.TRANSCODE_PREWARM <= 0:
        return 0
    return pool.get_pool(pool_config(settings)).prewarm(settings.TRANSCODE_PREWARM)


def run_child(args: list[str], timeout: float, names: Mapping[str, str] | None = None) -> Outcome:
    """Run one command in a conversion worker; TranscodeError on failure, timeout or crash.

    ``names``: path -> what to call it in an error (the upload's own name, or "the
    file"); no error carries a server path.
    """
    try:
        data = pool.get_pool(pool_config(media_settings())).run(args, timeout)
    except pool.WorkerLost as exc:
        raise TranscodeError(without_paths(exc.reason, names or {})[:300]) from exc
    if not data.get("ok"):
        raise TranscodeError(
            without_paths(str(data.get("error") or "conversion failed"), names or {})
        )
    return Outcome(data)


def _names(in_path: str, out_path: str | None, name: str) -> dict[str, str]:
    names = {in_path: name or THE_FILE}
    if out_path:
        names[out_path] = _OUTPUT
    return names


def voice_variant(
    in_path: str,
    out_path: str,
    *,
    skip_if_video: bool = False,
    timeout: float | None = None,
    name: str = THE_FILE,
) -> Outcome:
    """Ogg Opus mono at ``VOICE_SAMPLE_RATE`` into ``out_path`` (untouched on passthrough).

    ``name``: what an error calls the input (the upload's file name), never its path.
    """
    args = [
        "voice",
        in_path,
        out_path,
        str(media_settings().VOICE_SAMPLE_RATE),
        str(media_settings().VOICE_BITRATE),
    ]
    if skip_if_video:
        args.append("--skip-if-video")
    timeout = timeout or media_settings().TRANSCODE_TIMEOUT
    return run_child(args, timeout, _names(in_path, out_path, name))


def jpeg_variant(
    in_path: str, out_path: str, *, timeout: float | None = None, name: str = THE_FILE
) -> Outcome:
    args = [
        "image",
        in_path,
        out_path,
        str(media_settings().IMAGE_MAX_BYTES),
        str(media_settings().IMAGE_MAX_SIDE),
    ]
    timeout = timeout or media_settings().TRANSCODE_TIMEOUT
    return run_child(args, timeout, _names(in_path, out_path, name))


def probe(in_path: str, *, timeout: float | None = None, name: str = THE_FILE) -> Outcome:
    timeout = timeout or media_settings().TRANSCODE_TIMEOUT
    return run_child(["probe", in_path], timeout, _names(in_path, None, name))
