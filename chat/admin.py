from django.contrib import admin
from django.utils.html import format_html

from .models import ApiKey, Message, MessageAttachment
from .services import delete_attachment


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
