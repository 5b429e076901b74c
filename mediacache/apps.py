from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import pre_save

if TYPE_CHECKING:
    from django.db import models

    from mediacache.core.links import ShortLinked


class MediacacheConfig(AppConfig):
    name = "mediacache"
    verbose_name = "Media cache"

    def ready(self) -> None:
        """System checks; a registered model without ShortLinkMixin gets its links on save.

        The gateway's checks (``mediacache.whatsapp.checks``) only for projects that
        configure a gateway (``settings.EVOLUTION``).
        """
        from mediacache import checks  # noqa: F401 - registers them

        if hasattr(settings, "EVOLUTION"):
            from mediacache.whatsapp.checks import register

            register()

        if not getattr(settings, "MEDIACACHE", {}).get("MODEL"):
            return
        from mediacache.models import ShortLinkMixin, fill_short_link
        from mediacache.registry import media_model

        registered = media_model()
        if issubclass(registered.model, ShortLinkMixin):
            return

        # ``instance`` is a row of the registered model, which media_model() checked has
        # both fields.
        def give_short_link(
            sender: type[models.Model], instance: ShortLinked, raw: bool = False, **kwargs: Any
        ) -> None:
            if not raw:  # fixtures load rows as they are
                fill_short_link(
                    instance, registered.fields.expires_at, registered.fields.created_at
                )

        pre_save.connect(give_short_link, sender=registered.model, weak=False)
