"""The host's own attachment model: its names, plus Mediacache's two fields."""

from django.db import models

from mediacache.models import ShortLinkMixin


class Attachment(ShortLinkMixin, models.Model):
    upload = models.FileField(upload_to="chat/inbox/")
    name = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100)
    received_at = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True)

    media_expires_field = "expires"
    media_created_field = "received_at"

    def __str__(self) -> str:
        return self.name
