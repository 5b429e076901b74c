"""``from mediacache.asgi import with_media``: the import path host projects' asgi.py uses."""

from mediacache.serving.bodylimit import BodySizeLimit
from mediacache.serving.router import MediaRouter, with_media

__all__ = ["BodySizeLimit", "MediaRouter", "with_media"]
