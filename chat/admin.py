"""The admin: attachments, messages (re-send failed ones) and API keys.

An attachment is added by uploading a file, through the API's own code
(:func:`chat.services.create_attachment`): type sniffed from the bytes, the object
written to the store, SHA-256, size, the WhatsApp-ready variant, then the row. A
file the API would refuse is a form error here, never a 500.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django import forms
from django.contrib import admin
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest
from django.utils.html import format_html

from mediacache.media.variants import UndecodableMedia

from .models import ApiKey, Message, MessageAttachment
from .services import StoreWriteFailed, create_attachment, delete_attachment


class AttachmentUploadForm(forms.ModelForm):
    """The add form: a file (and optionally its message). Validating it stores the
    file, so that whatever the store or the decoder refuses becomes a form error."""

    upload = forms.FileField(
        label="File",
        help_text="Stored like an API upload: the type comes from the bytes, and voice "
        "notes and images get their WhatsApp-ready variant.",
    )
    request: HttpRequest | None = None  # set by MessageAttachmentAdmin.get_form

    class Meta:
        model = MessageAttachment
        fields = ("message",)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        upload: UploadedFile | None = cleaned.get("upload")
        if upload is None or self.errors:
            return cleaned  # FileField already said why (missing, empty)
        try:
            self.instance = create_attachment(
                upload,
                original_filename=upload.name or "",
                sha256=self._sha256(upload),
                message=cleaned.get("message"),
                for_sending=True,
            )
        except UndecodableMedia as exc:
            self.add_error("upload", f"The file could not be decoded: {exc.reason}")
        except StoreWriteFailed:
            self.add_error(
                None, "The object store is unavailable; nothing was stored. Try again shortly."
            )
        return cleaned

    def _sha256(self, upload: UploadedFile) -> str:
        """The digest the upload handler took while the body streamed in, as for the API;
        computed here only when that handler is not configured."""
        streamed = getattr(self.request, "upload_sha256", {}).get(self.add_prefix("upload"))
        if streamed:
            return str(streamed)
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        return digest.hexdigest()


@admin.register(MessageAttachment)
class MessageAttachmentAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "media_hash",
        "link",
        "mime_type",
        "size",
        "expires_at",
        "purged_at",
        "created_at",
    )
    list_filter = ("mime_type",)
    search_fields = ("media_hash", "original_filename", "sha256")
    readonly_fields = (
        "media_hash",
        "short_url",
        "file",
        "mime_type",
        "size",
        "sha256",
        "created_at",
        "expires_at",
        "purged_at",
    )
    raw_id_fields = ("message",)
    date_hierarchy = "created_at"
    add_form = AttachmentUploadForm

    def get_fields(self, request: HttpRequest, obj: MessageAttachment | None = None) -> Any:
        if obj is None:
            return ("upload", "message")
        return super().get_fields(request, obj)

    def get_readonly_fields(
        self, request: HttpRequest, obj: MessageAttachment | None = None
    ) -> Any:
        if obj is None:
            return ()  # everything else is filled from the file
        return super().get_readonly_fields(request, obj)

    def get_form(
        self,
        request: HttpRequest,
        obj: MessageAttachment | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is not None:
            return super().get_form(request, obj, change, **kwargs)
        kwargs["form"] = self.add_form
        form = super().get_form(request, obj, change, **kwargs)
        return type(form.__name__, (form,), {"request": request})

    def save_model(
        self, request: HttpRequest, obj: MessageAttachment, form: Any, change: bool
    ) -> None:
        if change:
            super().save_model(request, obj, form, change)
        # Added: the form's validation stored the file and saved the row already.

    @admin.display(description="short URL")
    def link(self, obj: MessageAttachment) -> str:
        if not obj.short_url:
            return "-"
        return format_html(
            '<a href="{}" target="_blank" rel="noopener">{}</a>', obj.short_url, obj.short_url
        )

    def delete_model(self, request, obj: MessageAttachment) -> None:
        delete_attachment(obj)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            delete_attachment(obj)


class AttachmentInline(admin.TabularInline):
    model = MessageAttachment
    fields = ("media_hash", "short_url", "mime_type", "size", "expires_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "direction", "number", "status", "attempts", "error", "created_at")
    list_filter = ("direction", "status")
    search_fields = ("number", "evolution_id")
    readonly_fields = ("evolution_id", "error", "attempts", "sent_at", "created_at", "updated_at")
    inlines = [AttachmentInline]
    actions = ["resend_failed"]

    @admin.action(description="Re-send selected failed messages")
    def resend_failed(self, request, queryset) -> None:
        from .sending import claim_for_resend, send_message

        outcomes = {"sent": 0, "failed": 0, "skipped": 0}
        for message_id in queryset.values_list("pk", flat=True):
            message = claim_for_resend(message_id)
            if message is None:
                outcomes["skipped"] += 1
                continue
            outcomes[send_message(message).status] += 1
        self.message_user(
            request,
            "Re-sent: {sent} sent, {failed} failed, {skipped} skipped (not failed).".format(
                **outcomes
            ),
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "is_active", "created_at")
    readonly_fields = ("prefix", "key_hash", "created_at")
    list_filter = ("is_active",)

    def has_add_permission(self, request) -> bool:
        return False  # keys are issued by `manage.py create_api_key`, which shows them once
