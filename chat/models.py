"""The chat domain: messages, their attachments, and the API keys that upload them."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from mediacache.core.objects import MediaObject
from mediacache.models import ShortLinkMixin
from mediacache.registry import media_model

_HASH_ATTEMPTS = 5


class Message(models.Model):
    class Direction(models.TextChoices):
        OUTBOUND = "out", "outbound"
        INBOUND = "in", "inbound"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        RECEIVED = "received"

    direction = models.CharField(max_length=3, choices=Direction.choices)
    number = models.CharField(max_length=64, help_text="The remote WhatsApp number or JID.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    caption = models.TextField(blank=True)
    # Send the attachment as a document (sendMedia mediatype "document", the upload
    # as it came) rather than as image/video/voice note: kept for re-sends.
    send_as_document = models.BooleanField(default=False)
    # Evolution's ``key.id``: the WhatsApp message id, for sends and received messages.
    evolution_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    error = models.TextField(blank=True, help_text="Why the last send failed.")
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A webhook delivered twice must store one message.
            models.UniqueConstraint(
                fields=["direction", "evolution_id"],
                condition=models.Q(evolution_id__isnull=False),
                name="chat_message_unique_evolution_id",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.number} ({self.status})"


class MessageAttachment(ShortLinkMixin, models.Model):
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments"
    )
    file = models.FileField(max_length=255, help_text="Object key in the configured store.")
    original_filename = models.CharField(max_length=255, blank=True)
    mime_type = models.CharField(max_length=127)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Set when the object was deleted from the store after expiry (local store purge).
    purged_at = models.DateTimeField(null=True, blank=True)
    # A WhatsApp-ready copy of the upload: a voice note as Ogg Opus mono, an image as
    # JPEG within WhatsApp's limit. /media/{hash} serves it, /media/{hash}/original the
    # upload. The same key as ``file`` when the upload already was Ogg Opus mono.
    variant = models.FileField(max_length=255, blank=True, default="")
    variant_mime_type = models.CharField(max_length=127, blank=True)
    variant_size = models.BigIntegerField(null=True, blank=True)
    variant_sha256 = models.CharField(max_length=64, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    # 64 values 0-100: the loudness envelope a voice-note player draws.
    waveform = models.JSONField(null=True, blank=True)
    # What the decoder saw (container, audio/video codecs, size): decides "sendable as video".
    media_info = models.JSONField(null=True, blank=True)
    # media_hash and short_url come from ShortLinkMixin, shaped as existing deployments
    # have them (DESIGN.md); save() fills them and the expiry.
    media_expires_field = "expires_at"
    media_created_field = "created_at"

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # purge_expired_media asks for expired rows not yet purged.
            models.Index(
                fields=["expires_at"],
                condition=models.Q(purged_at__isnull=True),
                name="chat_att_expiring_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.media_hash or '-'} {self.mime_type} {self.size} B"

    def media_object(self) -> MediaObject:
        """What the serving engine needs to know to serve this attachment."""
        return media_model().media_object(self)


class ApiKeyQuerySet(models.QuerySet):
    def verify(self, raw_key: str) -> ApiKey | None:
        """The active key matching ``raw_key``, compared in constant time."""
        prefix = ApiKey.prefix_of(raw_key)
        if prefix is None:
            return None
        key = self.filter(prefix=prefix, is_active=True).first()
        if key is None or not hmac.compare_digest(key.key_hash, ApiKey.digest(raw_key)):
            return None
        return key


class ApiKey(models.Model):
    """A bearer key for the API. Only its SHA-256 is stored: the key itself is shown once."""

    PREFIX = "mck_"

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=8, unique=True)
    key_hash = models.CharField(max_length=64)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = ApiKeyQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.PREFIX}{self.prefix}_…)"

    @staticmethod
    def digest(raw_key: str) -> str:
        # Keys carry 256 random bits: a fast hash is enough, no stretching needed.
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def prefix_of(cls, raw_key: str) -> str | None:
        if not raw_key.startswith(cls.PREFIX) or len(raw_key) < 20 or raw_key[12] != "_":
            return None
        return raw_key[4:12]

    @classmethod
    def issue(cls, name: str) -> tuple[ApiKey, str]:
        """Create a key; returns the row and the raw key, which is not stored."""
        for _ in range(_HASH_ATTEMPTS):
            prefix = secrets.token_hex(4)
            raw = f"{cls.PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
            try:
                with transaction.atomic():
                    return cls.objects.create(
                        name=name, prefix=prefix, key_hash=cls.digest(raw)
                    ), raw
            except IntegrityError:
                continue
        raise RuntimeError("could not allocate a unique API key prefix")
