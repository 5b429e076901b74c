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
from django.template.response import TemplateResponse
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
    list_display = (
        "id",
        "direction",
        "number",
        "status",
        "delivery_status",
        "attempts",
        "error",
        "created_at",
    )
    list_filter = ("direction", "status", "delivery_status")
    search_fields = ("number", "evolution_id", "idempotency_key")
    readonly_fields = (
        "evolution_id",
        "error",
        "attempts",
        "sent_at",
        "next_attempt_at",
        "send_deadline",
        "lease_expires_at",
        "request_started_at",
        "idempotency_key",
        "delivery_status",
        "server_ack_at",
        "delivered_at",
        "read_at",
        "played_at",
        "delivery_error_at",
        "created_at",
        "updated_at",
    )
    inlines = [AttachmentInline]
    actions = ["resend_failed", "resend_unknown"]

    @admin.action(description="Re-send selected failed messages (queued for the worker)")
    def resend_failed(self, request, queryset) -> None:
        self._resend(request, queryset, confirm_unknown=False)

    @admin.action(description="Re-send selected UNKNOWN messages (they may have been delivered)")
    def resend_unknown(self, request, queryset) -> TemplateResponse | None:
        """Asks first, on a page listing them: each may already be in the recipient's chat."""
        unknown = queryset.filter(status=Message.Status.UNKNOWN)
        if request.POST.get("confirm") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Re-send messages that may have been delivered?",
                "messages_to_resend": unknown,
                "queryset": queryset,
                "action": "resend_unknown",
                "opts": self.model._meta,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            }
            return TemplateResponse(request, "admin/chat/message/confirm_resend.html", context)
        self._resend(request, unknown, confirm_unknown=True)
        return None

    def _resend(self, request, queryset, *, confirm_unknown: bool) -> None:
        """Enqueue, never send here: one request never sends N messages."""
        from .sending import queue_resend

        queued = skipped = 0
        for message_id in queryset.values_list("pk", flat=True):
            if queue_resend(message_id, confirm_unknown=confirm_unknown) is None:
                skipped += 1
            else:
                queued += 1
        self.message_user(
            request,
            f"Queued {queued} message(s) for re-sending; {skipped} skipped (not in a state "
            "that can be re-sent). Their status updates as the worker sends them.",
        )


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "is_active", "created_at")
    readonly_fields = ("prefix", "key_hash", "created_at")
    list_filter = ("is_active",)

    def has_add_permission(self, request) -> bool:
        return False  # keys are issued by `manage.py create_api_key`, which shows them once
