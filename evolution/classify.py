"""Which typed error an Evolution error answer is: read from its status and its text.

Evolution does not name causes in its status codes: a closed WhatsApp connection is a 500
(``Connection Closed``) or a 400 (``Error: Connection Closed`` when the socket drops
during the send), a failed media download is the media host's own status or a 500, an
unknown instance and an unknown path are both 404. So the text decides first, then the
status. Patterns come from Evolution v2.3 (whatsapp.baileys.service, the guards, the
express error handler) and the libraries it calls (Baileys, axios, Node fetch, sharp).
"""

from __future__ import annotations

import re

from evolution.errors import (
    EvolutionAuthError,
    EvolutionDownloadError,
    EvolutionError,
    EvolutionInstanceNotConnected,
    EvolutionInstanceNotFound,
    EvolutionServerError,
    EvolutionUnavailable,
    EvolutionValidationError,
)

# Baileys' socket is closed (Boom "Connection Closed"/"Connection Lost"), or Evolution has
# no socket at all for the instance (this.client undefined after a restart).
_NOT_CONNECTED = re.compile(
    r"Connection (Closed|Lost)"
    r"|Cannot read properties of undefined \(reading '(onWhatsApp|sendMessage|"
    r"waUploadToServer|presenceSubscribe|sendPresenceUpdate|groupMetadata|user)'\)",
    re.IGNORECASE,
)
_INSTANCE_MISSING = re.compile(r'instance does not exist|"instanceName" not provided')
# axios (images, encoded audio), Node fetch / Baileys getStream (video, documents, audio
# files), sharp (not an image), ffmpeg (not audio).
_DOWNLOAD = re.compile(
    r"Request failed with status code"
    r"|AxiosError|Failed to fetch stream|fetch failed"
    r"|\bE(CONNREFUSED|CONNRESET|NOTFOUND|TIMEDOUT|AI_AGAIN|HOSTUNREACH|NOENT)\b"
    r"|socket hang up|unsupported image format|ffmpeg|Failed to convert audio"
    r"|Invalid URL|Unsupported protocol",
    re.IGNORECASE,
)
GATEWAY_STATUSES = frozenset({502, 503, 504})


def error_for(
    status: int,
    detail: str,
    *,
    instance: str,
    body: str = "",
    messages: tuple[str, ...] = (),
) -> EvolutionError:
    """The typed error for a non-2xx answer; ``detail`` is Evolution's message(s) joined."""
    text = f"{detail}\n{body}"
    cls: type[EvolutionError]
    action = ""
    if status == 401:
        cls, message = EvolutionAuthError, "Evolution API rejected the api key (401)"
    elif status in GATEWAY_STATUSES:
        # A proxy in front of Evolution answered: the request was not processed.
        cls, message = EvolutionUnavailable, f"Evolution API unavailable ({status}): {detail}"
    elif _NOT_CONNECTED.search(text):
        cls = EvolutionInstanceNotConnected
        message = (
            f"Evolution instance {instance!r} is not connected to WhatsApp ({status}: {detail})"
        )
        action = cls.default_action.replace("<instance>", instance)
    elif status == 404 and _INSTANCE_MISSING.search(text):
        cls, message = (
            EvolutionInstanceNotFound,
            f"Evolution has no instance {instance!r} ({detail})",
        )
    elif _DOWNLOAD.search(text):
        cls = EvolutionDownloadError
        message = f"Evolution could not download the media ({status}): {detail}"
    elif status == 400:
        cls, message = EvolutionValidationError, detail or "Bad Request"
    elif status == 404:
        cls, message = EvolutionServerError, f"Evolution API has no such path (404): {detail}"
        action = "Check EVOLUTION_API_URL (Evolution's base URL) and EVOLUTION_API_VERSION."
    else:
        cls, message = EvolutionServerError, f"Evolution API error {status}: {detail}"
    return cls(message, status_code=status, body=body, messages=messages, action=action)
