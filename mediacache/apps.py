from django.apps import AppConfig


class MediacacheConfig(AppConfig):
    name = "mediacache"
    verbose_name = "Media cache"
