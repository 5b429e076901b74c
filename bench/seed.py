"""Bulk seeding through the service's own write code, without HTTP.

``python -m bench.seed COUNT MIN_BYTES MAX_BYTES SEED`` runs under the service's
environment and calls ``chat.services.create_attachment`` for each body: the same
type sniffing, object key, S3 write and row the upload API uses, minus multipart
and auth. It prints one JSON line per object (media_hash, key, size, sha256).

Why not the API for thousands of objects: each API upload costs ~300 ms of CPU
here, nearly all of it botocore loading its JSON service models (see the bench
README); that would make seeding 7,000 objects take half an hour. A handful of
objects (the hit target, the stampede objects, the 200 MB one) still go through
``POST /api/attachments/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from bench.bodies import body_for


def main(argv: list[str]) -> None:
    count, min_bytes, max_bytes, seed = (int(a) for a in argv[:4])
    threads = int(argv[4]) if len(argv) > 4 else 4
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from chat.services import create_attachment
    from django.core.files.base import ContentFile
    from django.db import close_old_connections

    rng = random.Random(seed)
    sizes = [rng.randint(min_bytes, max_bytes) for _ in range(count)]
    out_lock = threading.Lock()

    def one(index: int) -> None:
        body = body_for(seed, index, sizes[index])
        upload = ContentFile(body, name=f"voice-{index}.ogg")
        digest = hashlib.sha256(body).hexdigest()
        attachment = create_attachment(upload, original_filename=upload.name, sha256=digest)
        line = json.dumps(
            {
                "index": index,
                "media_hash": attachment.media_hash,
                "key": attachment.file.name,
                "size": attachment.size,
                "sha256": digest,
            }
        )
        with out_lock:
            sys.stdout.write(line + "\n")
        close_old_connections()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(one, i) for i in range(count)]:
            future.result()
    sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
