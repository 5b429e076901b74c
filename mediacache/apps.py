from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_save


class MediacacheConfig(AppConfig):
    name = "mediacache"
    verbose_name = "Media cache"

    def ready(self) -> None:
        """System checks; a registered model without ShortLinkMixin gets its links on save."""
        from . import checks  # noqa: F401 - registers them

        if not getattr(settings, "MEDIACACHE", {}).get("MODEL"):
            return
        from .models import ShortLinkMixin, fill_short_link
        from .registry import media_model

        registered = media_model()
        if issubclass(registered.model, ShortLinkMixin):
            return

        def give_short_link(sender, instance, raw: bool = False, **kwargs) -> None:
            if not raw:  # fixtures load rows as they are
                fill_short_link(
                    instance, registered.fields.expires_at, registered.fields.created_at
                )

        pre_save.connect(give_short_link, sender=registered.model, weak=False)
