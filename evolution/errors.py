"""Typed errors for the Evolution API client, named for their cause.

Callers decide what to do from the class alone, and each error carries ``action``: what
an operator should do about it. Fix the credentials (auth), the instance name (not
found), connect the instance to WhatsApp (not connected), fix the request (validation),
look at the media URL (download), or wait for Evolution to come back (unavailable).
``maybe_sent`` says whether the WhatsApp message may have gone out anyway, so a caller
never re-sends blindly and produces a duplicate message.
"""

from __future__ import annotations

from typing import Any, ClassVar

BODY_LIMIT = 2_000


class EvolutionError(Exception):
    """Base class: anything that went wrong talking to Evolution API."""

    default_action: ClassVar[str] = (
        "Read Evolution API's log at this time for the cause, then re-send."
    )

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: str = "",
        maybe_sent: bool = False,
        messages: tuple[str, ...] = (),
        action: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body[:BODY_LIMIT]
        self.maybe_sent = maybe_sent
        self.messages = messages
        self.action = action or self.default_action

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

    default_action: ClassVar[str] = (
        "Set EVOLUTION_API_KEY to Evolution's global AUTHENTICATION_API_KEY or to this "
        "instance's token."
    )


class EvolutionInstanceNotFound(EvolutionError):
    """404 ``The "<name>" instance does not exist``: no instance of that name on this server."""

    default_action: ClassVar[str] = (
        "Set EVOLUTION_INSTANCE to an instance that exists on this Evolution server "
        "(GET /instance/fetchInstances lists them), or create it."
    )


class EvolutionInstanceNotConnected(EvolutionError):
    """The instance exists but is not connected to WhatsApp: Evolution answers 500
    ``Connection Closed`` or ``Cannot read properties of undefined (reading 'onWhatsApp')``
    (after downloading the media, or before it for a voice note sent with ``encoding: false``).
    The media is not the problem; nothing was sent."""

    default_action: ClassVar[str] = (
        "Connect the instance to WhatsApp (Evolution's manager, or GET /instance/connect/"
        "<instance> and scan the QR code), check GET /instance/connectionState/<instance> "
        "says open, then re-send. The media link is fine."
    )


class EvolutionValidationError(EvolutionError):
    """400: Evolution rejected the request; ``message`` joins Evolution's own messages
    (a number not on WhatsApp shows as ``"exists": false``)."""

    default_action: ClassVar[str] = (
        "Fix the request as Evolution's message says (the number, or a media URL Evolution "
        "accepts: PUBLIC_BASE_URL needs a real domain or an IP)."
    )


class EvolutionDownloadError(EvolutionError):
    """Evolution could not fetch (or decode) our media URL: the media host's status passed
    through (403, 404…) or a 500 such as ``Failed to fetch stream from <url>``.

    ``body`` keeps Evolution's answer so the cause (e.g. "Request failed with status code
    403" from a presigned URL) is visible in logs.
    """

    default_action: ClassVar[str] = (
        "Open the media link from Evolution's host: PUBLIC_BASE_URL must be reachable from "
        "there and the link live; this service's access log shows Evolution's GET."
    )


class EvolutionServerError(EvolutionError):
    """Evolution answered an error this client does not recognise (an unexplained 500,
    an unknown path): the cause is in Evolution's log."""


class EvolutionUnavailable(EvolutionError):
    """Evolution could not be reached or did not answer in time.

    ``maybe_sent`` is False when the request provably never reached Evolution (connection
    refused, connect timeout, 502/503/504 from a gateway) and True when it may have been
    processed (read timeout, connection dropped mid-response).
    """

    default_action: ClassVar[str] = (
        "Check that Evolution API is running and reachable at EVOLUTION_API_URL, then re-send."
    )
