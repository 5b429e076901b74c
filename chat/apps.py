from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    label = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
