"""Put one body in the naive baseline's cache: ``python -m bench.naive.seed HASH FILE TYPE``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.naive.settings")
    import django

    django.setup()
    from django.core.cache import cache

    media_hash, path, content_type = argv
    body = Path(path).read_bytes()
    cache.set(f"media:{media_hash}", {"body": body, "content_type": content_type}, timeout=None)


if __name__ == "__main__":
    main(sys.argv[1:])
