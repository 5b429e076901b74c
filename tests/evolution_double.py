"""A contract-faithful test double of Evolution API v2.3 as a real HTTP server on loopback.

It reproduces the behaviour Mediacache depends on, read from Evolution's source
(sendMessage router/controller, whatsapp.baileys.service ``prepareMediaMessage``,
``processAudio``, ``audioWhatsapp``, ``sendMessageWithTyping``, the auth/instance guards and
the express error handler) and the libraries it uses (validator.js 13.15.15 ``isURL``/
``isBase64``, axios 1.12, Baileys 7 ``getHttpStream``):

* guards: unknown instance -> 404, wrong/missing ``apikey`` -> 401;
* schema: ``number`` (and ``mediatype`` for sendMedia) required -> 400;
* media must pass ``isURL`` (host needs a TLD or must be an IP) or ``isBase64`` -> 400;
* ``sendWhatsAppAudio`` (``encoding`` defaults to true) sets ``timestamp=<ms>`` in the query
  (``URLSearchParams.set``) and GETs it with axios; an HTTP error status from the media host
  is passed through as Evolution's status (403 -> 403, message "Request failed with status
  code 403" as a string);
* ``sendMedia`` images are fetched with axios (UA ``axios/1.12.2``) and must be real images;
  sharp re-encodes every one to JPEG, but the mimetype WhatsApp gets is then looked up from
  ``fileName``'s extension: ``img.png`` arrives as JPEG bytes labelled ``image/png``
  (recorded per call as ``delivered``);
  video/document/audio with Node fetch (UA ``node``); any failure there is wrapped into a
  500 whose message is e.g. ``["Error: Failed to fetch stream from <url>"]``;
* a document without ``fileName`` runs the ``/.*\\/(.+?)\\./`` regex over the URL (500 when
  it does not match); mimetype resolution (field, lookup by fileName, or a second GET);
* success -> 201 with ``key.id`` like ``3EB0…`` and ``status: "PENDING"``;
* the instance's WhatsApp connection (``instance_state``): ``GET /instance/connectionState/
  {instance}`` answers ``{"instance": {"instanceName", "state"}}``; a send to an instance
  that is not ``open`` fails with 500 ``Connection Closed`` (no session at all: ``Cannot
  read properties of undefined (reading 'onWhatsApp')``), after the download for sendMedia
  and encoded audio, before it for a voice note with ``encoding: false``.

v1 body shapes (``audioMessage``/``mediaMessage`` nested, ``options``) are accepted too
unless ``api_version=2`` is given (then only v2 shapes, like a real v2 server).

Webhooks: with ``webhook_url`` set, each accepted send is followed by the receipts in
``auto_receipts`` (default SERVER_ACK then DELIVERY_ACK), POSTed as Evolution v2.3's
``messages.update`` event (``whatsapp.baileys.service.ts``, ``messages.update`` handler:
``data = {keyId, remoteJid, fromMe, participant, status, instanceId}`` with the status
names of ``src/utils/renderStatus.ts``, wrapped by the webhook controller into ``{event,
instance, data, destination, date_time, sender, server_url, apikey}``); ``send_receipt``
posts one by hand (READ, PLAYED, ERROR, out of order, twice...).

Not simulated: ffmpeg transcoding (only empty audio fails), the WhatsApp upload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import re
import secrets
import socketserver
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import httpx

logger = logging.getLogger("evolution.double")

AXIOS_UA = "axios/1.12.2"
NODE_FETCH_UA = "node"
MEDIA_TYPES = ("image", "document", "video", "audio")

# --------------------------------------------------------------------------------------------
# validator.js 13.15.15 ports (the version pinned in Evolution's package-lock)
# --------------------------------------------------------------------------------------------

_IPV4_SEG = r"(?:[0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])"
_IPV4 = rf"(?:{_IPV4_SEG}[.]){{3}}{_IPV4_SEG}"
_V6 = r"(?:[0-9a-fA-F]{1,4})"
_IPV4_RE = re.compile(rf"\A{_IPV4}\Z")
_IPV6_RE = re.compile(
    r"\A(?:"
    rf"(?:{_V6}:){{7}}(?:{_V6}|:)|"
    rf"(?:{_V6}:){{6}}(?:{_IPV4}|:{_V6}|:)|"
    rf"(?:{_V6}:){{5}}(?::{_IPV4}|(?::{_V6}){{1,2}}|:)|"
    rf"(?:{_V6}:){{4}}(?:(?::{_V6}){{0,1}}:{_IPV4}|(?::{_V6}){{1,3}}|:)|"
    rf"(?:{_V6}:){{3}}(?:(?::{_V6}){{0,2}}:{_IPV4}|(?::{_V6}){{1,4}}|:)|"
    rf"(?:{_V6}:){{2}}(?:(?::{_V6}){{0,3}}:{_IPV4}|(?::{_V6}){{1,5}}|:)|"
    rf"(?:{_V6}:){{1}}(?:(?::{_V6}){{0,4}}:{_IPV4}|(?::{_V6}){{1,6}}|:)|"
    rf"(?::(?:(?::{_V6}){{0,5}}:{_IPV4}|(?::{_V6}){{1,7}}|:))"
    r")(?:%[0-9a-zA-Z.]{1,})?\Z"
)
_TLD_RE = re.compile(
    "\\A(?:[a-z\u00a1-\u00a8\u00aa-\ud7ff\uf900-\ufdcf\ufdf0-\uffef]{2,}|xn[a-z0-9-]{2,})\\Z",
    re.IGNORECASE,
)
# JS strings are UTF-16, so astral characters (surrogate pairs) fall inside \u00a1-\uffff.
_LABEL_RE = re.compile("\\A[a-z_\u00a1-\U0010ffff0-9-]+\\Z", re.IGNORECASE)
_FULLWIDTH_RE = re.compile("[\uff01-\uff5e]")
_WRAPPED_IPV6_RE = re.compile(r"\A\[([^\]]+)\](?::([0-9]+))?\Z")
_BASE64_RE = re.compile(
    r"\A(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})\Z"
)
MAX_URL_LENGTH = 2084  # validator >= 13.12: ``url.length > max_allowed_length`` fails


def is_ip(value: str, version: int | None = None) -> bool:
    """validator.js ``isIP``."""
    if version is None:
        return is_ip(value, 4) or is_ip(value, 6)
    if version == 4:
        return bool(_IPV4_RE.match(value))
    if version == 6:
        return bool(_IPV6_RE.match(value))
    return False


def is_fqdn(value: str) -> bool:
    """validator.js ``isFQDN`` with isURL's defaults (TLD required, no underscores)."""
    parts = value.split(".")
    tld = parts[-1]
    if len(parts) < 2 or not _TLD_RE.match(tld) or re.search(r"\s", tld):
        return False
    if re.fullmatch(r"[0-9]+", tld):
        return False
    for part in parts:
        if len(part) > 63 or not _LABEL_RE.match(part) or _FULLWIDTH_RE.search(part):
            return False
        if part.startswith("-") or part.endswith("-") or "_" in part:
            return False
    return True


def is_url(url: Any) -> bool:
    """validator.js 13.15.15 ``isURL`` with default options, as Evolution calls it.

    ``localhost``, ``web:8000``, ``minio`` fail (no TLD); IPs such as 127.0.0.1 pass.
    """
    if not isinstance(url, str) or not url or re.search(r"[\s<>]", url):
        return False
    if url.startswith("mailto:"):
        return False
    if len(url) > MAX_URL_LENGTH:
        return False
    url = url.split("#")[0]
    url = url.split("?")[0]
    split = url.split("://")
    if len(split) > 1:
        protocol = split.pop(0).lower()
        if protocol not in ("http", "https", "ftp"):
            return False
    elif url[:2] == "//":
        return False  # protocol-relative URLs are not allowed by default
    url = "://".join(split)
    if url == "":
        return False
    url = url.split("/")[0]
    split = url.split("@")
    if len(split) > 1:
        if split[0] == "":
            return False
        auth = split.pop(0)
        if ":" in auth and len(auth.split(":")) > 2:
            return False
        if auth == ":":
            return False
    hostname = "@".join(split)

    port_str: str | None = None
    ipv6: str | None = None
    match = _WRAPPED_IPV6_RE.match(hostname)
    if match:
        host = ""
        ipv6 = match.group(1)
        port_str = match.group(2)
    else:
        host, *rest = hostname.split(":")
        if rest:
            port_str = ":".join(rest)
    if port_str:
        if not re.fullmatch(r"[0-9]+", port_str):
            return False
        port = int(port_str)
        if port <= 0 or port > 65535:
            return False
    return is_ip(host) or is_fqdn(host) or bool(ipv6 and is_ip(ipv6, 6))


def is_base64(value: Any) -> bool:
    """validator.js 13.15.15 ``isBase64`` (padding required; the empty string passes)."""
    if not isinstance(value, str):
        return False
    if value == "":
        return True
    return len(value) % 4 == 0 and bool(_BASE64_RE.match(value))


def _form_encode(text: str) -> str:
    """application/x-www-form-urlencoded serializer of the WHATWG URL standard."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char in "*-._"):
            out.append(char)
        elif char == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def with_timestamp(url: str, timestamp_ms: int) -> str:
    """What ``new URL(u); u.searchParams.set('timestamp', ms); u.toString()`` does.

    The whole query is re-serialized, which is why presigned URLs break here.
    """
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    new_pairs: list[tuple[str, str]] = []
    replaced = False
    for key, value in pairs:
        if key == "timestamp":
            if not replaced:
                new_pairs.append((key, str(timestamp_ms)))
                replaced = True
            continue
        new_pairs.append((key, value))
    if not replaced:
        new_pairs.append(("timestamp", str(timestamp_ms)))
    query = "&".join(f"{_form_encode(k)}={_form_encode(v)}" for k, v in new_pairs)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))


# npm ``mime-types`` answers that differ from (or are missing in) Python's built-in table.
_MIME_OVERRIDES = {
    "aac": "audio/aac",
    "amr": "audio/amr",
    "m4a": "audio/mp4",
    "mp3": "audio/mpeg",
    "oga": "audio/ogg",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "wav": "audio/wav",
    "webp": "image/webp",
    "heic": "image/heic",
    "mp4": "application/mp4",
    "3gp": "video/3gpp",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_MIME_DB = mimetypes.MimeTypes(filenames=())


def mime_lookup(file_name: str | None) -> str | None:
    """npm ``mime-types`` ``lookup``: by extension of ``'x.' + name`` (so 'pdf' works)."""
    if not file_name:
        return None
    ext = ("x." + file_name).rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower()
    if ext in _MIME_OVERRIDES:
        return _MIME_OVERRIDES[ext]
    return _MIME_DB.types_map[True].get("." + ext)


_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"II*\x00", b"MM\x00*")


def looks_like_image(data: bytes) -> bool:
    """Rough stand-in for ``sharp(buffer)``: accept the formats sharp decodes."""
    if data.startswith(_IMAGE_MAGIC):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"heic", b"heix", b"mif1")


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class _EvolutionFailure(Exception):
    """An error Evolution's express handler would turn into a JSON error response."""

    def __init__(self, status: int, message: Any, error: str | None = None) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message
        self.error = error or _phrase(status)

    def payload(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.error, "response": {"message": self.message}}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _bad_request(*messages: Any) -> _EvolutionFailure:
    return _EvolutionFailure(400, list(messages), "Bad Request")


def _internal(*messages: Any) -> _EvolutionFailure:
    """``InternalServerErrorException(error.toString())``: message is a list."""
    return _EvolutionFailure(500, list(messages), "Internal Server Error")


def _uncaught(status: int | None, message: str) -> _EvolutionFailure:
    """A raw error reaching express: ``err.status || 500``, ``error`` falls back to
    "Internal Server Error", ``message`` stays a plain string."""
    return _EvolutionFailure(status or 500, message, "Internal Server Error")


@dataclass
class _Fault:
    status: int
    body: bytes
    content_type: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # Skip HTTPServer's getfqdn() reverse lookup: it can stall in sandboxes.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("evolution double: error serving %s", client_address, exc_info=True)


class EvolutionDouble:
    """Evolution API stand-in on ``http://127.0.0.1:<port>``.

    Public state (read freely from tests):

    * ``url`` - base URL; ``port``.
    * ``calls`` - one dict per request received, in order. Keys: ``method``, ``path``,
      ``endpoint`` ("sendWhatsAppAudio" | "sendMedia" | "getBase64FromMediaMessage" |
      "connectionState" | None),
      ``instance``, ``apikey_ok``, ``user_agent``, ``json`` (parsed body or None),
      ``api_version`` (1/2 detected from the body shape), ``media`` (URL/base64 as sent),
      ``download_url`` (what was fetched, e.g. with ``timestamp=`` added),
      ``download_status``, ``download_bytes``, ``download_headers`` (case-insensitive
      ``httpx.Headers``: ``["X-Cache"]``, ``["Content-Type"]``), ``download_user_agent``,
      ``download_final_url`` (after redirects), ``download_error``, ``downloads`` (every GET
      made, same keys without the prefix), ``file_name``/``mimetype`` (as resolved),
      ``delivered`` (what WhatsApp got, see below), ``message_type``, ``message_id``,
      ``status`` (HTTP status answered), ``response``,
      ``faulted`` (answered by ``fail_next``), ``delayed`` (seconds).
    * ``media_by_id`` - message id -> dict for getBase64FromMediaMessage.
    * ``not_on_whatsapp`` - numbers (digits) that Evolution reports as not on WhatsApp.
    * ``instance_state`` - "open" (default), "connecting", "close" or "refused"; None for an
      instance with no session (Evolution restarted, never connected). Set it freely.
    * ``delivered`` - what WhatsApp received for each accepted send: ``mimetype`` (the
      label), ``content_type`` (what the bytes really are when Evolution re-encoded them,
      else None: passed on as downloaded) and ``file_name``.
    * ``processed_sends`` - sends that were accepted (201), i.e. WhatsApp messages "sent".
    * ``requests_received`` - every request that reached the server, faults included.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        instance: str = "mc-test",
        *,
        api_version: int | None = None,
        download_timeout: float = 10.0,
        not_on_whatsapp: Iterable[str] = (),
    ) -> None:
        if api_version not in (None, 1, 2):
            raise ValueError("api_version must be None (accept both), 1 or 2")
        self.api_key = api_key
        self.instance = instance
        self.api_version = api_version
        self.download_timeout = download_timeout
        self.not_on_whatsapp: set[str] = set(not_on_whatsapp)
        self.instance_state: str | None = "open"
        self.media_by_id: dict[str, dict[str, Any]] = {}
        self.calls: list[dict[str, Any]] = []
        self.processed_sends = 0
        self.requests_received = 0
        self.port = 0
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._delays: list[float] = []
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._http: httpx.Client | None = None
        # Receipts (messages.update) for accepted sends, POSTed to webhook_url.
        self.webhook_url: str | None = None
        self.webhook_headers: dict[str, str] = {}
        self.auto_receipts: tuple[str, ...] = ("SERVER_ACK", "DELIVERY_ACK")
        self.receipts_posted: list[dict[str, Any]] = []

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._closing.clear()
        self._listen(self.port)
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes delayed handlers
        self._shutdown()
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()

    def down(self) -> None:
        """Close the listening socket: new connections are refused until ``up()``."""
        self._shutdown()

    def up(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            self._listen(self.port)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _listen(self, port: int) -> None:
        handler = type("EvolutionDoubleHandler", (_Handler,), {"double": self})
        self._server = _Server(("127.0.0.1", port), handler)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"evolution-double-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _downloader(self) -> httpx.Client:
        # One shared client: building an SSL context per download costs ~30 ms.
        with self._lock:
            if self._http is None:
                self._http = httpx.Client(
                    follow_redirects=True, timeout=self.download_timeout, trust_env=False
                )
            return self._http

    def _shutdown(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    # -- knobs ----------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, body: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` without processing them, as a
        gateway in front of Evolution would (502/503/504 get an nginx HTML page)."""
        if body is not None:
            fault = _Fault(status, body.encode(), "text/plain; charset=utf-8")
        elif status in (502, 503, 504):
            phrase = _phrase(status)
            html = (
                f"<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
                f"<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
                "</body>\r\n</html>\r\n"
            )
            fault = _Fault(status, html.encode(), "text/html")
        else:
            payload = _EvolutionFailure(status, [_phrase(status)]).payload()
            fault = _Fault(status, json.dumps(payload).encode(), "application/json")
        with self._lock:
            self._faults.extend([fault] * times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Process the next ``times`` requests normally, then wait ``seconds`` before
        answering (a slow Evolution: the message is sent, the client may time out)."""
        with self._lock:
            self._delays.extend([seconds] * times)

    def reset(self) -> None:
        """Forget calls, counters and pending knobs."""
        with self._lock:
            self.calls.clear()
            self._faults.clear()
            self._delays.clear()
            self.processed_sends = 0
            self.requests_received = 0

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """What WhatsApp got for each accepted send (label, real type, file name)."""
        return [call["delivered"] for call in self.sent]

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Calls that produced a WhatsApp message (201 on a send endpoint)."""
        with self._lock:
            return [
                c
                for c in self.calls
                if c["endpoint"] in ("sendWhatsAppAudio", "sendMedia") and c["status"] == 201
            ]

    # -- request handling (runs in server threads) ----------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        call: dict[str, Any] = {
            "method": method,
            "path": handler.path,
            "endpoint": None,
            "instance": None,
            "apikey_ok": handler.headers.get("apikey") == self.api_key,
            "user_agent": handler.headers.get("User-Agent"),
            "json": None,
            "api_version": None,
            "media": None,
            "downloads": [],
            "download_url": None,
            "download_status": None,
            "download_bytes": None,
            "download_headers": None,
            "download_user_agent": None,
            "download_final_url": None,
            "download_error": None,
            "file_name": None,
            "mimetype": None,
            "message_type": None,
            "message_id": None,
            "delivered": None,
            "status": None,
            "response": None,
            "faulted": False,
            "delayed": 0.0,
        }
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""

        with self._lock:
            self.requests_received += 1
            fault = self._faults.pop(0) if self._faults else None
            delay = 0.0 if fault else (self._delays.pop(0) if self._delays else 0.0)
        if fault is not None:
            call.update(status=fault.status, response=fault.body.decode(), faulted=True)
            self._record(call)
            _write(handler, fault.status, fault.body, fault.content_type)
            return

        try:
            status, payload = self._route(method, handler, raw, call)
        except _EvolutionFailure as failure:
            status, payload = failure.status, failure.payload()
        except Exception as exc:  # a bug in the double must still answer something
            logger.exception("evolution double crashed")
            status, payload = 500, _internal(f"Error: {exc}").payload()
        call.update(status=status, response=payload, delayed=delay)
        if status == 201 and call["endpoint"] in ("sendWhatsAppAudio", "sendMedia"):
            with self._lock:
                self.processed_sends += 1
        self._record(call)
        if delay:
            self._closing.wait(delay)
        _write(handler, status, json.dumps(payload).encode(), "application/json; charset=utf-8")

    def _record(self, call: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(call)

    def _route(
        self, method: str, handler: _Handler, raw: bytes, call: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        path = urlsplit(handler.path).path
        match = re.fullmatch(r"/(message|chat|instance)/([A-Za-z0-9]+)/([^/]+)", path)
        known = {
            ("POST", "message", "sendWhatsAppAudio"),
            ("POST", "message", "sendMedia"),
            ("POST", "chat", "getBase64FromMediaMessage"),
            ("GET", "instance", "connectionState"),
        }
        if not match or (method, match.group(1), match.group(2)) not in known:
            message = [f"Cannot {method} {handler.path}"]
            raise _EvolutionFailure(404, message, "Not Found")
        endpoint, instance = match.group(2), unquote(match.group(3))
        call.update(endpoint=endpoint, instance=instance)

        # express.json() runs before the route guards.
        body: Any = {}
        content_type = handler.headers.get("Content-Type", "")
        if raw and "json" in content_type:
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _uncaught(400, f"Unexpected token in JSON: {exc}") from None
        call["json"] = body
        if instance != self.instance:
            raise _EvolutionFailure(404, [f'The "{instance}" instance does not exist'], "Not Found")
        if not call["apikey_ok"]:
            raise _EvolutionFailure(401, "Unauthorized", "Unauthorized")
        if not isinstance(body, dict):
            body = {}

        if endpoint == "connectionState":
            return 200, self._connection_state()
        if endpoint == "sendWhatsAppAudio":
            return 201, self._send_audio(body, call)
        if endpoint == "sendMedia":
            return 201, self._send_media(body, call)
        return 201, self._get_base64(body, call)

    # -- endpoints ------------------------------------------------------------------------

    def _detect_v1(self, body: dict[str, Any], nested_key: str, call: dict[str, Any]) -> bool:
        is_v1 = isinstance(body.get(nested_key), dict)
        if self.api_version == 1 and not is_v1:
            raise _bad_request(f'instance requires property "{nested_key}"')
        if self.api_version == 2:
            is_v1 = False
        call["api_version"] = 1 if is_v1 else 2
        return is_v1

    @staticmethod
    def _validate_common(data: dict[str, Any], required: tuple[str, ...]) -> None:
        errors: list[str] = [
            f'instance requires property "{name}"' for name in required if name not in data
        ]
        if "number" in data and not isinstance(data["number"], str):
            errors.append("Invalid format")
        if "delay" in data and not (
            isinstance(data["delay"], int) and not isinstance(data["delay"], bool)
        ):
            errors.append("Enter a value in milliseconds")
        for name in ("audio", "media", "mimetype", "fileName", "caption"):
            if name in data and not isinstance(data[name], str):
                errors.append(f"{name} is not of a type(s) string")
        if "mediatype" in data and data["mediatype"] not in MEDIA_TYPES:
            errors.append("mediatype is not one of enum values: " + ",".join(MEDIA_TYPES))
        if errors:
            raise _bad_request(*errors)

    def _connection_state(self) -> dict[str, Any]:
        """instance.controller connectionState(): ``state`` is left out without a session."""
        inner: dict[str, Any] = {"instanceName": self.instance}
        if self.instance_state is not None:
            inner["state"] = self.instance_state
        return {"instance": inner}

    def _send_audio(self, body: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
        if self._detect_v1(body, "audioMessage", call):
            options = body.get("options") if isinstance(body.get("options"), dict) else {}
            data = {"number": body.get("number"), **body["audioMessage"], **options}
            data = {k: v for k, v in data.items() if v is not None}
        else:
            data = dict(body)
        self._validate_common(data, ("number",))
        audio = data.get("audio")
        call["media"] = audio
        if not (is_url(audio) or is_base64(audio)):
            raise _bad_request("Owned media must be a url, base64, or valid file with buffer")
        assert isinstance(audio, str)
        encoding = data.get("encoding")
        if encoding is None:
            encoding = True  # ``if (!data?.encoding && data?.encoding !== false)``

        if encoding:
            # processAudio(): axios GET of the URL with timestamp=<ms>, then ffmpeg -> opus.
            if is_url(audio):
                parts = urlsplit(audio)
                if not parts.scheme:
                    raise _uncaught(None, "Invalid URL")
                url = with_timestamp(audio, int(time.time() * 1000))
                if parts.scheme.lower() not in ("http", "https"):
                    raise _uncaught(None, f"Unsupported protocol {parts.scheme.lower()}:")
                got = self._download(url, AXIOS_UA, call)
                if got["error"]:
                    raise _uncaught(None, got["error"])
                if not 200 <= got["status"] < 300:
                    status = got["status"]
                    raise _uncaught(status, f"Request failed with status code {status}")
                content = got["bytes"]
            else:
                content = base64.b64decode(audio)
            if not content:
                raise _uncaught(None, "ffmpeg exited with code 1: Invalid data found")
            number = self._check_number(data["number"])
        else:
            # sendMessageWithTyping checks the number over the socket first (trap 8), then
            # Baileys fetches { url } itself -> 400 on failure.
            number = self._check_number(data["number"])
            if is_url(audio):
                content = self._fetch_stream(audio, call, wrap=_bad_request)
            else:
                content = base64.b64decode(audio)

        message = {
            "audioMessage": {
                **_fake_upload(content),
                "mimetype": "audio/ogg; codecs=opus",
                "seconds": max(1, len(content) // 4000),
                "ptt": True,
            }
        }
        call["delivered"] = {
            "mimetype": "audio/ogg; codecs=opus",
            "content_type": "audio/ogg; codecs=opus" if encoding else None,
            "file_name": None,
        }
        return self._sent(call, number, "audioMessage", message)

    def _send_media(self, body: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
        if self._detect_v1(body, "mediaMessage", call):
            options = body.get("options") if isinstance(body.get("options"), dict) else {}
            data = {"number": body.get("number"), **body["mediaMessage"], **options}
            data = {k: v for k, v in data.items() if v is not None}
        else:
            data = dict(body)
        self._validate_common(data, ("number", "mediatype"))
        media = data.get("media")
        mediatype = data["mediatype"]
        file_name = data.get("fileName")
        call["media"] = media
        # sendMessage.controller.ts sendMedia()
        if is_base64(media) and not file_name and mediatype == "document":
            raise _bad_request("For base64 the file name must be informed.")
        if not (is_url(media) or is_base64(media)):
            raise _bad_request("Owned media must be a url or base64")
        assert isinstance(media, str)

        # whatsapp.baileys.service.ts prepareMediaMessage(): any error -> 500 [toString()].
        mimetype: str | None = data.get("mimetype")
        if mediatype == "image":
            is_link = is_url(media)
            content = self._axios_get(media, call) if is_link else base64.b64decode(media)
            if not looks_like_image(content):
                raise _internal("Error: Input buffer contains unsupported image format")
            file_name = file_name or "image.jpg"
            mimetype = "image/jpeg"  # sharp(buffer).jpeg(): always JPEG bytes from here on
            self._check_upload_socket(after_download=True)
        elif is_url(media):
            # prepareWAMessageMedia({url}, {upload: this.client.waUploadToServer}): without
            # a session the argument itself fails, before Baileys streams the URL.
            self._check_upload_socket(after_download=False)
            content = self._fetch_stream(media, call, wrap=_internal)
            self._check_upload_socket(after_download=True)
        else:
            content = base64.b64decode(media)
            self._check_upload_socket(after_download=True)

        if mediatype == "document" and not file_name:
            found = re.search(r".*/(.+?)\.", media)
            if found is None:
                raise _internal("TypeError: Cannot read properties of null (reading '1')")
            file_name = found.group(1)
        if mediatype == "video" and not file_name:
            file_name = "video.mp4"

        if not mimetype:
            mimetype = mime_lookup(file_name)
            if not mimetype and is_url(media):
                self._axios_get(media, call)
                mimetype = call["downloads"][-1]["headers"].get("content-type")
        if file_name:
            mimetype = mime_lookup(file_name) or "false"  # ``lookup(...).toString()``
            if mimetype == "application/mp4":
                mimetype = "video/mp4"
        call.update(file_name=file_name, mimetype=mimetype)
        call["delivered"] = {
            "mimetype": mimetype,
            "content_type": "image/jpeg" if mediatype == "image" else None,
            "file_name": file_name,
        }

        number = self._check_number(data["number"])
        inner: dict[str, Any] = {**_fake_upload(content), "mimetype": mimetype}
        if file_name is not None:
            inner["fileName"] = file_name
        if data.get("caption") is not None:
            inner["caption"] = data["caption"]
        if mediatype == "video":
            inner["gifPlayback"] = False
        message_type = f"{mediatype}Message"
        return self._sent(call, number, message_type, {message_type: inner})

    def _get_base64(self, body: dict[str, Any], call: dict[str, Any]) -> dict[str, Any]:
        message = body.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("key"), dict):
            raise _bad_request("TypeError: Cannot read properties of undefined (reading 'key')")
        message_id = message["key"].get("id")
        call["message_id"] = message_id
        stored = self.media_by_id.get(message_id) if isinstance(message_id, str) else None
        if stored is None:
            raise _bad_request("Message not found")
        result: dict[str, Any] = {
            "mediaType": "documentMessage",
            "fileName": f"{message_id}.bin",
            "caption": None,
            "size": {"fileLength": None, "height": None, "width": None},
            "mimetype": "application/octet-stream",
            "base64": "",
            "buffer": None,
        }
        result.update(stored)
        return result

    # -- helpers --------------------------------------------------------------------------

    def _check_upload_socket(self, *, after_download: bool) -> None:
        """prepareMediaMessage's upload to WhatsApp needs the instance's socket; any error
        there is wrapped as 500 [error.toString()]. Without a session, ``this.client`` is
        undefined before the download; with a closed one, the upload fails after it."""
        if self.instance_state is None:
            raise _internal(
                "TypeError: Cannot read properties of undefined (reading 'waUploadToServer')"
            )
        if after_download and self.instance_state != "open":
            raise _internal("Error: Connection Closed")

    def _check_number(self, number: str) -> str:
        """sendMessageWithTyping(): the number is looked up over the instance's socket
        (``client.onWhatsApp``: a raw error reaching express, 500, when the instance is not
        connected); numbers not on WhatsApp -> 400 with the lookup result."""
        if self.instance_state is None:
            raise _uncaught(None, "Cannot read properties of undefined (reading 'onWhatsApp')")
        if self.instance_state != "open":
            raise _uncaught(None, "Connection Closed")
        if "@" in number:
            return number
        digits = re.sub(r"[^0-9]", "", number)
        jid = f"{digits}@s.whatsapp.net"
        if digits in self.not_on_whatsapp or number in self.not_on_whatsapp:
            raise _bad_request({"exists": False, "jid": jid, "number": number})
        return jid

    def _sent(
        self, call: dict[str, Any], jid: str, message_type: str, message: dict[str, Any]
    ) -> dict[str, Any]:
        message_id = "3EB0" + secrets.token_hex(8).upper()
        call.update(message_id=message_id, message_type=message_type)
        self._after_send(message_id, jid)
        return {
            "key": {"remoteJid": jid, "fromMe": True, "id": message_id},
            "pushName": "",
            "status": "PENDING",
            "message": message,
            "contextInfo": None,
            "messageType": message_type,
            "messageTimestamp": int(time.time()),
            "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.instance)),
            "source": "unknown",
        }

    # -- webhooks ---------------------------------------------------------------------

    def receipt_event(self, message_id: str, status: str, remote_jid: str) -> dict[str, Any]:
        """Evolution v2.3's ``messages.update`` webhook body for one receipt."""
        return {
            "event": "messages.update",
            "instance": self.instance,
            "data": {
                "keyId": message_id,
                "remoteJid": remote_jid,
                "fromMe": True,
                "participant": None,
                "status": status,
                "instanceId": str(uuid.uuid5(uuid.NAMESPACE_URL, self.instance)),
            },
            "destination": self.webhook_url,
            "date_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            + f".{int(time.time() * 1000) % 1000:03d}Z",
            "sender": "5511900000000@s.whatsapp.net",
            "server_url": self.url,
            "apikey": self.api_key,
        }

    def send_receipt(self, message_id: str, status: str, remote_jid: str = "") -> int:
        """POST one receipt to ``webhook_url`` now; returns the HTTP status."""
        if not self.webhook_url:
            raise RuntimeError("set webhook_url first")
        body = self.receipt_event(message_id, status, remote_jid)
        response = httpx.post(self.webhook_url, json=body, headers=self.webhook_headers, timeout=10)
        with self._lock:
            self.receipts_posted.append({"body": body, "status": response.status_code})
        return response.status_code

    def _after_send(self, message_id: str, remote_jid: str) -> None:
        if not self.webhook_url or not self.auto_receipts:
            return

        def post_all() -> None:
            for status in self.auto_receipts:
                try:
                    self.send_receipt(message_id, status, remote_jid)
                except httpx.HTTPError as exc:
                    logger.warning("receipt %s for %s not delivered: %r", status, message_id, exc)

        threading.Thread(target=post_all, name="evolution-receipts", daemon=True).start()

    def _axios_get(self, url: str, call: dict[str, Any]) -> bytes:
        """axios GET inside prepareMediaMessage: errors become 500 ["AxiosError: …"]."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise _internal("AxiosError: Unsupported protocol or invalid URL")
        got = self._download(url, AXIOS_UA, call)
        if got["error"]:
            raise _internal(f"AxiosError: {got['error']}")
        if not 200 <= got["status"] < 300:
            raise _internal(f"AxiosError: Request failed with status code {got['status']}")
        return got["bytes"]

    def _fetch_stream(self, url: str, call: dict[str, Any], *, wrap: Any) -> bytes:
        """Baileys 7 getStream/getHttpStream: Node fetch for http(s), else a local file."""
        if not url.startswith(("http://", "https://")):
            raise wrap(f"Error: ENOENT: no such file or directory, open '{url}'")
        got = self._download(url, NODE_FETCH_UA, call)
        if got["error"]:
            raise wrap("TypeError: fetch failed")
        if not 200 <= got["status"] < 300:
            raise wrap(f"Error: Failed to fetch stream from {url}")
        return got["bytes"]

    def _download(self, url: str, user_agent: str, call: dict[str, Any]) -> dict[str, Any]:
        """A real GET of the media URL (redirects followed, no Range, no HEAD)."""
        if user_agent == AXIOS_UA:
            headers = {"Accept": "application/json, text/plain, */*", "User-Agent": user_agent}
        else:
            headers = {"Accept": "*/*", "Accept-Language": "*", "User-Agent": user_agent}
        got: dict[str, Any] = {
            "url": url,
            "user_agent": user_agent,
            "status": None,
            "bytes": b"",
            "headers": httpx.Headers(),
            "final_url": None,
            "redirects": [],
            "error": None,
        }
        try:
            response = self._downloader().get(url, headers=headers)
            got.update(
                status=response.status_code,
                bytes=response.content,
                headers=response.headers,
                final_url=str(response.url),
                redirects=[str(r.url) for r in response.history],
            )
        except httpx.ConnectError:
            parts = urlsplit(url)
            got["error"] = f"connect ECONNREFUSED {parts.hostname}:{parts.port or 80}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            got["error"] = f"{type(exc).__name__}: {exc}"
        call["downloads"].append(got)
        if call["download_url"] is None:
            call.update({f"download_{key}": got[key] for key in got if key != "redirects"})
        return got


def _fake_upload(content: bytes) -> dict[str, Any]:
    """Fields Baileys fills after uploading the (encrypted) media to WhatsApp."""
    digest = hashlib.sha256(content).digest()
    direct = f"/v/t62.7117-24/{secrets.token_hex(12)}.enc"
    return {
        "url": f"https://mmg.whatsapp.net{direct}",
        "fileSha256": base64.b64encode(digest).decode(),
        "fileLength": str(len(content)),
        "mediaKey": base64.b64encode(secrets.token_bytes(32)).decode(),
        "directPath": direct,
        "mediaKeyTimestamp": str(int(time.time())),
    }


class _Handler(BaseHTTPRequestHandler):
    double: EvolutionDouble
    server_version = "EvolutionDouble/2.3"

    def do_POST(self) -> None:
        self.double._handle(self, "POST")

    def do_GET(self) -> None:
        self.double._handle(self, "GET")

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("evolution double: " + format, *args)


def _write(handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    try:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up (read timeout test)
