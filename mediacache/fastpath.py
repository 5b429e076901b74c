"""``--http mediacache.fastpath:MediaHttpProtocol``: the path deploy files give uvicorn."""

from mediacache.serving.fastpath import MediaHttpProtocol

__all__ = ["MediaHttpProtocol"]
