"""Typed errors for the Evolution API client.

Callers decide what to do from the class alone: fix the request (validation), fix the
credentials (auth), look at the media URL (download), or try again later (unavailable).
``maybe_sent`` says whether the WhatsApp message may have gone out anyway, so a caller
never re-sends blindly and produces a duplicate message.
"""

from __future__ import annotations

from typing import Any

BODY_LIMIT = 2_000


class EvolutionError(Exception):
    """Base class: anything that went wrong talking to Evolution API."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str = "",
        maybe_sent: bool = False,
        messages: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body[:BODY_LIMIT]
        self.maybe_sent = maybe_sent
        self.messages = messages

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, "
            f"message={self.message!r}, maybe_sent={self.maybe_sent!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes are lost by Exception's default pickling (task queues
        # pickle exceptions), so rebuild from the message and restore the state dict.
        return (type(self), (self.message,), self.__dict__.copy())


class EvolutionAuthError(EvolutionError):
    """401: the ``apikey`` header is missing or wrong for this instance."""


class EvolutionValidationError(EvolutionError):
    """400: Evolution rejected the request; ``message`` joins Evolution's own messages."""


class EvolutionDownloadError(EvolutionError):
    """Evolution answered with an error (403/404/500…), often while fetching our media URL.

    ``body`` keeps Evolution's answer so the cause (e.g. "Request failed with status code
    403" from a presigned URL) is visible in logs.
    """


class EvolutionUnavailable(EvolutionError):
    """Evolution could not be reached or did not answer in time.

    ``maybe_sent`` is False when the request provably never reached Evolution (connection
    refused, connect timeout, 502/503/504 from a gateway) and True when it may have been
    processed (read timeout, connection dropped mid-response).
    """
