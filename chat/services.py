"""Attachment lifecycle: make the variant, store the bytes, then record the row;
delete them all together."""

from __future__ import annotations

import io
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import File
from django.db import DatabaseError, transaction

from mediacache.core.counters import STATS
from mediacache.core.hashes import original_key
from mediacache.core.settings import media_settings
from mediacache.engine import get_engine
from mediacache.media.types import SniffedType
from mediacache.media.variants import Prepared, prepare, wants
from mediacache.variants import StoreWriteFailed, recorded, store_variant

from .ingest import StoredUpload
from .models import MessageAttachment
from .uploads import SNIFF_BYTES, new_object_key, sniff

logger = logging.getLogger("chat")


def create_attachment(
    upload: File,
    *,
    original_filename: str,
    sha256: str,
    message=None,
    voice_note: bool | None = None,
    for_sending: bool = False,
    stored: StoredUpload | None = None,
) -> MessageAttachment:
    """Store ``upload`` (and its WhatsApp-ready variant) under fresh keys, then save its row.

    The variant is made from the upload at hand, in a conversion worker with a time
    limit (:mod:`mediacache.media.variants`), while the upload itself is written to the
    store (the two do not wait for each other); the variant is then stored beside it
    (:func:`mediacache.variants.store_variant`). ``for_sending`` (uploads through the
    API): audio the decoder cannot read, or an image that needs a JPEG and cannot be
    read, raises :class:`mediacache.media.variants.UndecodableMedia` and nothing is
    kept (the upload's object, written meanwhile, is deleted again); otherwise (webhook,
    ops page) the upload is kept without a variant. Images get JPEG variants only
    ``for_sending`` (received stickers stay WebP).

    The row is written only after the store has the bytes; if the row cannot be
    written the objects are deleted again, so neither side is left orphaned.

    ``stored``: the streaming entry (:mod:`chat.streaming`) has already stored the upload
    while it arrived, and sniffed it; the rest is the same (and a failure deletes it).
    """
    if stored is None:
        upload.seek(0)
        kind = sniff(upload.read(SNIFF_BYTES))
        upload.seek(0)
        stored_key = new_object_key(kind.extension)
    else:
        kind, stored_key = stored.kind, stored.key
    already = stored is not None
    converting = wants(kind, upload.size or 0, voice_note=voice_note, images=for_sending)
    if for_sending and _in_background(converting, upload.size or 0):
        return _store_for_background_variant(
            upload, kind, stored_key, original_filename, sha256, message, already_stored=already
        )
    second = _second_reader(upload) if converting and not already else None
    written = _WRITES.submit(_write_original, stored_key, second) if second else None
    is_stored = already
    attachment: MessageAttachment | None = None
    try:
        with prepare(
            upload,
            kind,
            voice_note=voice_note,
            strict=for_sending,
            images=for_sending,
            voice_from_header=True,
        ) as prepared:
            if not is_stored:
                if written is None:
                    _write_original(stored_key, upload)
                else:
                    written.result()
                is_stored = True
            attachment = _record(
                upload, kind, prepared, stored_key, original_filename, sha256, message
            )
            if media_settings().WARM_ON_UPLOAD:
                warm(attachment, upload, prepared.path)
            return attachment
    except BaseException:
        if written is not None and not is_stored:
            is_stored = not written.cancel() and written.exception() is None
        if is_stored and attachment is None:
            _delete_quietly(stored_key)  # refused or failed after the upload was stored
        raise
    finally:
        if second is not None:
            second.close()


# The upload's own store write runs here while its conversion runs in a worker process.
_WRITES = ThreadPoolExecutor(max_workers=8, thread_name_prefix="upload-write")


def _second_reader(upload: File) -> BinaryIO | None:
    """A handle on the upload's bytes of its own, so the store write and the conversion
    each read at their own pace: its temporary file opened again, or a copy of the bytes
    Django holds in memory (at most FILE_UPLOAD_MAX_MEMORY_SIZE). None: read it in turn."""
    path = getattr(upload, "temporary_file_path", None)
    if callable(path):
        return open(path(), "rb")  # closed by create_attachment
    held = getattr(upload, "file", None)
    if isinstance(held, io.BytesIO):
        return io.BytesIO(held.getbuffer())
    return None


def _write_original(stored_key: str, fileobj) -> None:
    try:
        fileobj.seek(0)
        get_engine().store.write(stored_key, fileobj)
    except Exception as exc:
        logger.error("[CHAT] store write failed for %s: %r", stored_key, exc)
        raise StoreWriteFailed(str(exc)) from exc


def _record(
    upload: File,
    kind: SniffedType,
    prepared: Prepared,
    stored_key: str,
    original_filename: str,
    sha256: str,
    message,
) -> MessageAttachment:
    """Store the variant beside the stored upload, then save the row (or delete both)."""
    try:
        variant_key = store_variant(stored_key, prepared)
    except StoreWriteFailed:
        _delete_quietly(stored_key)
        raise
    fields = {"mime_type": kind.mime_type, **recorded(prepared, variant_key)}
    attachment = MessageAttachment(
        message=message,
        original_filename=original_filename[:255],
        size=upload.size,
        sha256=sha256,
        **fields,
    )
    attachment.file.name = stored_key
    try:
        with transaction.atomic():
            attachment.save()
            if prepared.waveform_pending:
                from .tasks import enqueue_after_commit, fill_waveform

                enqueue_after_commit(fill_waveform, attachment.pk)
    except DatabaseError:
        logger.error("[CHAT] database write failed, removing stored object %s", stored_key)
        if variant_key and variant_key != stored_key:
            _delete_quietly(variant_key)
        raise
    logger.info(
        "[CHAT] stored %s as %s (%s, %d B%s) -> %s",
        stored_key,
        attachment.media_hash,
        attachment.mime_type,
        attachment.size,
        f"; variant {variant_key} {attachment.variant_mime_type} {attachment.variant_size} B"
        if variant_key
        else "",
        attachment.short_url,
    )
    return attachment


def _in_background(converting: tuple[str, bool] | None, size: int) -> bool:
    threshold = settings.VOICE_BACKGROUND_BYTES
    voice = converting is not None and converting[0] in ("voice", "voice-or-video")
    return bool(voice and threshold and size > threshold)


def _store_for_background_variant(
    upload: File,
    kind: SniffedType,
    stored_key: str,
    original_filename: str,
    sha256: str,
    message,
    *,
    already_stored: bool,
) -> MessageAttachment:
    """A large voice note: stored and recorded as it came, answered at once; its variant
    is made by a worker (chat.tasks.build_variant), which the send waits for."""
    from .tasks import build_variant as build_variant_task
    from .tasks import enqueue_after_commit

    if not already_stored:
        _write_original(stored_key, upload)
    attachment = MessageAttachment(
        message=message,
        original_filename=original_filename[:255],
        size=upload.size,
        sha256=sha256,
        mime_type=kind.mime_type,
        variant_pending=True,
    )
    attachment.file.name = stored_key
    try:
        with transaction.atomic():
            attachment.save()
            enqueue_after_commit(build_variant_task, attachment.pk)
    except DatabaseError:
        logger.error("[CHAT] database write failed, removing stored object %s", stored_key)
        _delete_quietly(stored_key)
        raise
    logger.info(
        "[CHAT] stored %s as %s (%s, %d B; variant queued) -> %s",
        stored_key,
        attachment.media_hash,
        attachment.mime_type,
        attachment.size,
        attachment.short_url,
    )
    return attachment


def build_pending_variant(attachment_id: int) -> str:
    """The worker's half of a large voice note: its variant, exactly as the backfill
    makes one (:class:`mediacache.variants.VariantBackfill`); then sends may go. A variant
    that cannot be made leaves the upload as it came (the reason in ``media_info``)."""
    from mediacache.variants import VariantBackfill

    row = MessageAttachment.objects.filter(pk=attachment_id, variant_pending=True).first()
    if row is None:
        return "skipped"
    try:
        outcome = VariantBackfill.from_settings().build(row)
    except StoreWriteFailed:
        raise  # the task fails; recovery enqueues it again while the row is pending
    except Exception as exc:
        logger.exception("[CHAT] variant of attachment %s failed: %r", attachment_id, exc)
        outcome = "error"
    MessageAttachment.objects.filter(pk=attachment_id).update(variant_pending=False)
    logger.info("[CHAT] variant of attachment %s: %s", attachment_id, outcome)
    return outcome


def fill_waveform(attachment_id: int) -> str:
    """The waveform of a voice note stored as is from its headers (no decode at upload):
    decoded in this process's conversion pool and recorded once. Sends never wait for it
    (WhatsApp is sent the file; the waveform is for the chat's own player). A failure is
    logged, counted and noted in ``media_info`` (``waveform_error``); the row keeps
    ``waveform: null``."""
    from mediacache.media.transcode import TranscodeError, voice_variant
    from mediacache.media.variants import local_path

    row = MessageAttachment.objects.filter(pk=attachment_id, waveform__isnull=True).first()
    if row is None:
        return "skipped"
    key = row.file.name
    try:
        with (
            tempfile.TemporaryDirectory(prefix="mediacache-waveform-") as workdir,
            row.file.storage.open(key, "rb") as opened,
            local_path(File(opened, name=key)) as in_path,
        ):
            outcome = voice_variant(
                in_path, os.path.join(workdir, "unused.ogg"), name=row.original_filename
            )
    except Exception as exc:  # the decoder's refusal, or the store's: the row keeps null
        reason = exc.reason if isinstance(exc, TranscodeError) else repr(exc)
        return _waveform_failed(row, reason)
    if outcome.waveform is None:
        return _waveform_failed(row, "the decoder gave no waveform")
    updated = MessageAttachment.objects.filter(pk=attachment_id, waveform__isnull=True).update(
        waveform=outcome.waveform
    )
    STATS.count_event("waveform:filled")
    return "filled" if updated else "skipped"


def _waveform_failed(row: MessageAttachment, reason: str) -> str:
    """Logged, counted, and noted in ``media_info`` so recovery does not try it forever;
    the row keeps ``waveform: null``."""
    from .recovery import WAVEFORM_ERROR

    logger.error("[CHAT] waveform of attachment %s failed: %s", row.pk, reason)
    STATS.count_event("waveform:failed")
    MessageAttachment.objects.filter(pk=row.pk, waveform__isnull=True).update(
        media_info={**(row.media_info or {}), WAVEFORM_ERROR: reason}
    )
    return "failed"


def warm(attachment: MessageAttachment, upload: File, variant_path: str | None = None) -> None:
    """Load what the short link serves into the caches from the files at hand (no store read)."""
    if variant_path is None:
        get_engine().warm(attachment.media_object(), upload)
        return
    with open(variant_path, "rb") as variant_file:
        get_engine().warm(attachment.media_object(), variant_file)


def delete_attachment(attachment: MessageAttachment) -> None:
    """Delete the object and the row, and forget the link in every cache tier."""
    media_hash, key = attachment.media_hash, attachment.file.name
    variant_key = attachment.variant.name if attachment.variant else ""
    attachment.delete()
    if media_hash:
        engine = get_engine()
        engine.purge(media_hash)
        engine.purge(original_key(media_hash))  # /media/{hash}/original is cached apart
    _delete_quietly(key)
    if variant_key and variant_key != key:
        _delete_quietly(variant_key)


def _delete_quietly(key: str) -> None:
    try:
        get_engine().store.delete(key)
    except Exception as exc:
        logger.error("[CHAT] could not delete stored object %s: %r", key, exc)
