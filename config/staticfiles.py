"""whitenoise's middleware, async under ASGI.

whitenoise 6.12's middleware is sync only. Under ASGI Django then runs it (and the
middleware after it) through ``sync_to_async`` for every request, and its file
responses are sync iterators, which Django reads whole in a thread with a warning
("StreamingHttpResponse must consume synchronous iterators") in every worker. Here the
lookup of a static file is a dict lookup on the event loop (with DEBUG's autorefresh, a
look at the disk, in a thread), and a static file is read whole in one thread hop.
Measured on /ops/ (2.3-3.1 ms of CPU a request either way on a loaded machine), the
hop saved on other requests is lost in the noise: the point is the clean log.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):  # type: ignore[misc]
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any = None, **kwargs: Any) -> None:
        super().__init__(get_response, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        return super().__call__(request)

    async def _acall(self, request: HttpRequest) -> Any:
        if self.autorefresh:
            static_file = await sync_to_async(self.find_file, thread_sensitive=False)(
                request.path_info
            )
        else:
            static_file = self.files.get(request.path_info)
        if static_file is None:
            return await self.get_response(request)
        return await sync_to_async(self._serve_whole, thread_sensitive=False)(static_file, request)

    def _serve_whole(self, static_file: Any, request: HttpRequest) -> HttpResponse:
        """whitenoise's response, read in this thread: its file is a sync iterator, which
        Django under ASGI would read whole in a thread anyway, with a warning per process.
        Static files are small (Swagger UI's bundle, the largest, is ~1.5 MB)."""
        streamed = self.serve(static_file, request)
        try:
            whole = HttpResponse(b"".join(streamed.streaming_content), status=streamed.status_code)
            for header, value in streamed.items():
                whole[header] = value
        finally:
            streamed.close()
        return whole
