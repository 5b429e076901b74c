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
    """A WhatsApp message: sent by us (outbound, through the task queue) or received.

    An outbound message's ``status`` moves as the README's state diagram shows:
    ``queued`` → ``sending`` → ``sent`` | ``failed`` | ``unknown``, back to ``queued``
    for a retry that cannot send twice. Receipts (``delivery_status``) only move forward.
    """

    class Direction(models.TextChoices):
        OUTBOUND = "out", "outbound"
        INBOUND = "in", "inbound"

    class Status(models.TextChoices):
        QUEUED = "queued"  # waiting for a worker (first try, or a retry at next_attempt_at)
        SENDING = "sending"  # a worker holds it until lease_expires_at
        SENT = "sent"  # Evolution accepted it (evolution_id)
        FAILED = "failed"  # certainly not sent: error says why
        UNKNOWN = "unknown"  # may have been sent (read timeout, 500, worker died mid-request)
        RECEIVED = "received"  # inbound

    class Delivery(models.TextChoices):
        # In WhatsApp's order; a receipt never moves a message backwards.
        SERVER_ACK = "server_ack"
        DELIVERY_ACK = "delivery_ack"
        READ = "read"
        PLAYED = "played"
        ERROR = "error"

    direction = models.CharField(max_length=3, choices=Direction.choices)
    number = models.CharField(max_length=64, help_text="The remote WhatsApp number or JID.")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
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
    # --- the queue's bookkeeping (chat.delivery) ---
    # A retry waits until then; past send_deadline a retryable failure becomes final.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    send_deadline = models.DateTimeField(null=True, blank=True)
    # While ``sending``: the worker's claim ends then (chat.recovery takes it back after).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Set just before the request to Evolution is written: a worker that dies after this
    # may have sent the message (→ unknown), before it certainly did not (→ queued again).
    request_started_at = models.DateTimeField(null=True, blank=True)
    # --- idempotency (chat.idempotency): one message per (API key, Idempotency-Key) ---
    idempotency_scope = models.CharField(max_length=16, blank=True)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    # --- delivery receipts (chat.receipts), from Evolution's messages.update ---
    delivery_status = models.CharField(max_length=16, choices=Delivery.choices, blank=True)
    server_ack_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    played_at = models.DateTimeField(null=True, blank=True)
    delivery_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A webhook delivered twice must store one message.
            models.UniqueConstraint(
                fields=["direction", "evolution_id"],
                condition=models.Q(evolution_id__isnull=False),
                name="chat_message_unique_evolution_id",
            ),
            # A repeated request with the same Idempotency-Key returns the same message.
            models.UniqueConstraint(
                fields=["idempotency_scope", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="chat_message_unique_idempotency_key",
            ),
        ]
        indexes = [models.Index(fields=["evolution_id"], name="chat_message_evolution_idx")]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.number} ({self.status})"

    @property
    def is_final(self) -> bool:
        """No worker will change its send status any more (receipts still may)."""
        return self.status in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {Message.Status.SENT, Message.Status.FAILED, Message.Status.UNKNOWN, Message.Status.RECEIVED}
)


class DeliveryReceipt(models.Model):
    """One step of a sent message's delivery, as Evolution reported it (``messages.update``).

    Kept apart from the message: a receipt can arrive before the worker has recorded the
    ``key.id`` the send returned; it is applied when the message gets that id.
    """

    evolution_id = models.CharField(max_length=128, db_index=True)
    status = models.CharField(max_length=16, choices=Message.Delivery.choices)
    remote_jid = models.CharField(max_length=128, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["evolution_id", "status"], name="chat_receipt_unique_step"
            )
        ]

    def __str__(self) -> str:
        return f"{self.evolution_id} {self.status}"


class WebhookEvent(models.Model):
    """An Evolution webhook event, stored before it is answered and processed by a worker.

    ``dedupe_key`` makes the same event delivered twice one row (Evolution retries, and
    sends receipts more than once).
    """

    class State(models.TextChoices):
        PENDING = "pending"
        DONE = "done"
        FAILED = "failed"

    dedupe_key = models.CharField(max_length=255, unique=True)
    event = models.CharField(max_length=64)
    instance = models.CharField(max_length=128, blank=True)
    payload = models.JSONField()
    state = models.CharField(
        max_length=8, choices=State.choices, default=State.PENDING, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event} {self.dedupe_key} ({self.state})"


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
    # A large voice note stored as it came while a worker makes its variant
    # (VOICE_BACKGROUND_BYTES): a send waits for it; /media/{hash} serves the upload till then.
    variant_pending = models.BooleanField(default=False)
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
