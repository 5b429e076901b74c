"""The host's ASGI entry, wrapped by Mediacache: /media/ is served before Django.

Only the host's own upload route gets the engine's streaming body limit
(MEDIACACHE["MAX_UPLOAD_BYTES"]); every other route keeps Django's rules.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostproject.settings")

from django.core.asgi import get_asgi_application

from mediacache.asgi import with_media

application = with_media(get_asgi_application(), limit_paths=("/inbox/upload",))
