from django.core.management.base import BaseCommand

from chat.models import ApiKey


class Command(BaseCommand):
    help = (
        "Create an API key. The key is printed once, alone on the last line; only its hash is kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="Who or what uses the key, e.g. 'backend-prod'.")

    def handle(self, *args, name: str, **options) -> None:
        key, raw = ApiKey.issue(name)
        self.stderr.write(f"Created API key {key.name!r} (prefix {key.prefix}). Store it now:")
        self.stdout.write(raw)
