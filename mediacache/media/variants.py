"""WhatsApp-ready variants of uploads: which uploads get one, and making it from a file.

* Audio (or anything flagged ``voice_note``) -> Ogg Opus mono, 48 kHz: WhatsApp's
  voice-note format, served as ``audio/ogg; codecs=opus``. Ogg Opus mono passes
  through byte-identical (the variant *is* the upload). Browser recordings sniffed
  as ``video/webm`` or ``video/mp4`` are voice notes when they hold no video.
* Images over ``IMAGE_MAX_BYTES`` or in a type WhatsApp does not show inline (HEIC,
  WebP, TIFF, BMP) -> JPEG within the limit.
* Video -> probed only (container and codecs kept in ``media_info``), so sending can
  say why it cannot go as video. An MP4 of H.264 (+ AAC), WhatsApp's own video format,
  is read from its headers in this process (:mod:`mediacache.media.headers`); any other
  video is probed by a worker.
* A mono Ogg Opus voice note within ``VOICE_PLAY_BUTTON_BYTES`` is recognised from its
  pages in this process (:mod:`mediacache.media.ogg`) when the caller allows it
  (``voice_from_header``): stored as is, with its duration but no waveform yet
  (``waveform_pending``: the caller has it computed in the background).

The conversion runs in a long-lived worker process with a time limit
(:mod:`mediacache.media.transcode`, :mod:`mediacache.media.pool`).
This module works on the bytes at hand (an upload, or a stored object opened for
reading) and knows no model: :mod:`mediacache.variants` stores what it prepares and
records it on the registered model's row.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.files.base import File

from mediacache.core.settings import media_settings
from mediacache.media import headers, ogg, transcode
from mediacache.media.transcode import TranscodeError
from mediacache.media.types import (
    AUDIO_TYPE_OF_CONTAINER,
    IMAGE_TYPES_NEEDING_JPEG,
    MAYBE_AUDIO_CONTAINERS,
    VOICE_CONTENT_TYPE,
    SniffedType,
)

logger = logging.getLogger("mediacache.media")


class UndecodableMedia(Exception):
    """The upload is audio (or an image that needs a JPEG) the decoder cannot read."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Prepared:
    """A variant ready to store (``path``), or the upload itself (``passthrough``)."""

    path: str | None = None
    passthrough: bool = False
    mime_type: str = ""
    extension: str = ""
    size: int | None = None
    sha256: str = ""
    duration: float | None = None
    waveform: list[int] | None = None
    media_info: dict[str, Any] | None = None
    error: str | None = None  # why no variant could be made (non-strict)
    # The upload's own type once decoding showed it holds no video: a browser's WebM
    # recording is sniffed as video/webm, but it is audio/webm.
    original_mime_type: str | None = None
    # Recognised from its headers: its waveform, which takes a decode, is still to make.
    waveform_pending: bool = False

    @property
    def has_variant(self) -> bool:
        return self.passthrough or self.path is not None

    def values(self, variant_key: str) -> dict[str, Any]:
        """What to record once the variant is stored under ``variant_key``, by the name of
        its :class:`mediacache.registry.FieldMap` entry (``content_type`` only when decoding
        corrected the upload's own type; the variant's entries only when there is one)."""
        info = self.media_info
        if self.error is not None:
            info = {**(info or {}), "error": self.error}
        values: dict[str, Any] = {
            "duration": self.duration,
            "waveform": self.waveform,
            "media_info": info,
        }
        if self.original_mime_type:
            values["content_type"] = self.original_mime_type
        if self.has_variant:
            values.update(
                variant=variant_key,
                variant_content_type=self.mime_type,
                variant_size=self.size,
                variant_sha256=self.sha256,
            )
        return values


def voice_decoder_missing() -> str | None:
    """Why no voice variant can be made in this environment, else None: the child process
    decodes with PyAV, an optional dependency (the service's ``[service]`` extra)."""
    if importlib.util.find_spec("av") is None:
        return (
            "PyAV is not installed in this environment, so no voice note can be decoded: "
            "install the package av (PyAV) and run again"
        )
    return None


def wants(
    kind: SniffedType, size: int, *, voice_note: bool | None, images: bool
) -> tuple[str, bool] | None:
    """(what to do, strict) for an upload of this type: ``voice``, ``voice-or-video``,
    ``image`` or ``probe``; strict: a failure refuses the upload. None: nothing."""
    base = kind.mime_type.split(";", 1)[0].lower()
    voice_on = media_settings().VOICE_VARIANTS
    if voice_note:
        return ("voice", True)
    if voice_note is None and voice_on and base.startswith("audio/") and base != "audio/midi":
        return ("voice", True)
    if voice_note is None and voice_on and base in MAYBE_AUDIO_CONTAINERS:
        return ("voice-or-video", False)
    is_image = base.startswith("image/") and base != "image/svg+xml"
    too_big = size > media_settings().IMAGE_MAX_BYTES
    if images and is_image and base in IMAGE_TYPES_NEEDING_JPEG:
        return ("image", True)
    if images and is_image and too_big:  # not decodable: kept as is (sendable as a document)
        return ("image", False)
    if base.startswith("video/"):
        return ("probe", False)
    return None


@contextlib.contextmanager
def local_path(upload: File[Any]) -> Iterator[str]:
    """A path to the upload's bytes: its temporary file, or a copy in one."""
    path = getattr(upload, "temporary_file_path", None)
    if callable(path):
        yield path()
        return
    fd, name = tempfile.mkstemp(prefix="mediacache-in-")
    try:
        with os.fdopen(fd, "wb") as out:
            upload.seek(0)
            shutil.copyfileobj(upload, out, 1024 * 1024)
        upload.seek(0)
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)


@contextlib.contextmanager
def prepare(
    upload: File[Any],
    kind: SniffedType,
    *,
    voice_note: bool | None = None,
    strict: bool = True,
    images: bool = True,
    voice_from_header: bool = False,
) -> Iterator[Prepared]:
    """Make the variant of ``upload`` in a temporary file (removed on exit).

    ``voice_from_header``: a mono Ogg Opus voice note that reads well from its pages is
    passed through without a decode, its waveform left to the caller (``waveform_pending``).

    Raises :class:`UndecodableMedia` when a required conversion fails and
    ``strict``; otherwise logs and yields an empty :class:`Prepared`. Its reason
    names the upload by its file name, never by a path on this server.
    """
    plan = wants(kind, upload.size or 0, voice_note=voice_note, images=images)
    if plan is None:
        yield Prepared()
        return
    action, required = plan
    if action in ("voice-or-video", "probe"):
        seen = headers.mp4_video(upload)
        if seen is not None:  # H.264 (+ AAC) in MP4: WhatsApp's video, stored as is
            yield Prepared(media_info=seen)
            return
    if action.startswith("voice") and voice_from_header:
        recognised = _ogg_opus_voice(upload, kind)
        if recognised is not None:
            yield recognised
            return
    workdir = tempfile.mkdtemp(prefix="mediacache-variant-")
    try:
        name = os.path.basename(upload.name or "") or transcode.THE_FILE
        with local_path(upload) as in_path:
            prepared = _run(action, in_path, workdir, required=required and strict, name=name)
        if action.startswith("voice") and prepared.has_variant:
            base = kind.mime_type.split(";", 1)[0].lower()
            prepared.original_mime_type = AUDIO_TYPE_OF_CONTAINER.get(base)
        yield prepared
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _ogg_opus_voice(upload: File[Any], kind: SniffedType) -> Prepared | None:
    """The passthrough the worker would decide, read from the pages: the worker passes
    through mono Ogg Opus only when the variant's rate is Opus's own 48 kHz."""
    settings = media_settings()
    if settings.VOICE_SAMPLE_RATE != ogg.OPUS_RATE:
        return None
    seen = ogg.ogg_opus_voice(upload, max_bytes=settings.VOICE_PLAY_BUTTON_BYTES)
    if seen is None:
        return None
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: upload.read(1024 * 1024), b""):
        digest.update(chunk)
        size += len(chunk)
    upload.seek(0)
    base = kind.mime_type.split(";", 1)[0].lower()
    logger.info("[MEDIA] voice variant passed through from its headers: %.2f s", seen["duration"])
    return Prepared(
        passthrough=True,
        mime_type=VOICE_CONTENT_TYPE,
        extension=".ogg",
        size=size,
        sha256=digest.hexdigest(),
        duration=round(seen["duration"], 3),
        media_info=seen,
        original_mime_type=AUDIO_TYPE_OF_CONTAINER.get(base),
        waveform_pending=True,
    )


def _run(action: str, in_path: str, workdir: str, *, required: bool, name: str) -> Prepared:
    started = time.perf_counter()
    try:
        if action == "probe":
            outcome = transcode.probe(in_path, name=name)
            return Prepared(media_info=outcome.probe)
        if action == "image":
            out_path = os.path.join(workdir, "variant.jpg")
            outcome = transcode.jpeg_variant(in_path, out_path, name=name)
            prepared = _from_file(out_path, "image/jpeg", ".jpg")
            prepared.media_info = {**outcome.probe, "variant": _image_fields(outcome.data)}
            return prepared
        out_path = os.path.join(workdir, "variant.ogg")
        outcome = transcode.voice_variant(
            in_path, out_path, skip_if_video=action == "voice-or-video", name=name
        )
    except TranscodeError as exc:
        if required:
            raise UndecodableMedia(exc.reason) from exc
        logger.info("[MEDIA] no variant (%s): %s", action, exc.reason)
        return Prepared(error=exc.reason)
    if outcome.skipped:  # a real video: keep what the probe saw
        return Prepared(media_info=outcome.probe)
    source = in_path if outcome.passthrough else out_path
    prepared = _from_file(source, VOICE_CONTENT_TYPE, ".ogg")
    prepared.passthrough = outcome.passthrough
    prepared.path = None if outcome.passthrough else out_path
    prepared.duration = outcome.duration
    prepared.waveform = outcome.waveform
    prepared.media_info = outcome.probe
    logger.info(
        "[MEDIA] voice variant %s: %.2f s of audio in %.0f ms (%d B)",
        "passed through" if outcome.passthrough else "encoded",
        outcome.duration or 0,
        (time.perf_counter() - started) * 1000,
        prepared.size or 0,
    )
    return prepared


def _from_file(path: str, mime_type: str, extension: str) -> Prepared:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1024 * 1024), b""):
            digest.update(chunk)
    return Prepared(
        path=path,
        mime_type=mime_type,
        extension=extension,
        size=os.path.getsize(path),
        sha256=digest.hexdigest(),
    )


def _image_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in ("width", "height", "size", "quality") if k in data}


def variant_key_for(original_key: str, extension: str) -> str:
    """``chat/…/<uuid>.webm`` -> ``chat/…/<uuid>.variant.ogg``: same prefix, same uuid."""
    folder, _, name = original_key.rpartition("/")
    stem = name.split(".", 1)[0]
    return f"{folder}/{stem}.variant{extension}" if folder else f"{stem}.variant{extension}"
