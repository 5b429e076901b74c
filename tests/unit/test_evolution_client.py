"""EvolutionClient against the Evolution API double, over real loopback HTTP.

No Django, no database: run with ``python -m pytest -p no:django tests/test_evolution_client.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from evolution import (
    EvolutionAuthError,
    EvolutionClient,
    EvolutionDownloadError,
    EvolutionError,
    EvolutionInstanceNotConnected,
    EvolutionInstanceNotFound,
    EvolutionServerError,
    EvolutionUnavailable,
    EvolutionValidationError,
    SendResult,
)
from evolution.classify import error_for
from evolution.payloads import audio_payload, media_payload
from tests.evolution_double import EvolutionDouble, is_base64, is_url, with_timestamp

API_KEY = "double-secret-KEY-8c1f"
INSTANCE = "mc-test"
NUMBER = "5511999990000"

VOICE = b"OggS\x00\x02" + b"\x00" * 20 + b"opus-voice-note"
PDF = b"%PDF-1.4\n% fake pdf for tests\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 16
SIGNED_QUERY = "X-Amz-Signature=abc123"


# --------------------------------------------------------------------------------------------
# A tiny media host
# --------------------------------------------------------------------------------------------


class _MediaHandler(BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, str]] = {
        "/media/voice.ogg": (VOICE, "audio/ogg"),
        "/media/report.pdf": (PDF, "application/pdf"),
        "/media/photo.png": (PNG, "image/png"),
        "/media/noext": (PDF, "application/pdf"),
    }
    seen: list[dict[str, Any]]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.seen.append(
            {"path": parts.path, "query": parts.query, "ua": self.headers.get("User-Agent")}
        )
        if parts.path == "/signed/voice.ogg":
            # A presigned URL: the signature covers the exact query string.
            if parts.query != SIGNED_QUERY:
                self._reply(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", "xml")
                return
            self._reply(200, VOICE, "audio/ogg")
            return
        if parts.path == "/s/abc":
            # A short link that ignores any query string and redirects to the file.
            self.send_response(302)
            self.send_header("Location", "/media/voice.ogg")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path in self.files:
            body, content_type = self.files[parts.path]
            self._reply(200, body, content_type)
            return
        self._reply(404, b"not found", "text/plain")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Cache", "HIT")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # Skip the reverse-DNS lookup HTTPServer.server_bind does.
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]


@pytest.fixture(scope="module")
def media() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_MediaHandler,), {"seen": seen})
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def media_url(media: tuple[str, list[dict[str, Any]]]) -> str:
    return media[0]


@pytest.fixture
def double() -> Iterator[EvolutionDouble]:
    with EvolutionDouble(api_key=API_KEY, instance=INSTANCE, download_timeout=3) as d:
        yield d


class CountingTransport(httpx.BaseTransport):
    """Counts attempts; optionally raises ``fail_with`` for the first ``fail_times``."""

    def __init__(self, fail_times: int = 0, fail_with: type[Exception] | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.attempts = 0
        self.fail_times = fail_times
        self.fail_with = fail_with

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.fail_with is not None and self.attempts <= self.fail_times:
            raise self.fail_with("simulated", request=request)  # type: ignore[call-arg]
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def make_client(double: EvolutionDouble, **kwargs: Any) -> EvolutionClient:
    options: dict[str, Any] = {
        "connect_timeout": 1.0,
        "read_timeout": 5.0,
        "backoff": 0,
    }
    options.update(kwargs)
    api_key = options.pop("api_key", API_KEY)
    return EvolutionClient(double.url, api_key, INSTANCE, **options)


# --------------------------------------------------------------------------------------------
# Happy paths
# --------------------------------------------------------------------------------------------


def test_send_audio_v2_downloads_with_timestamp(double: EvolutionDouble, media_url: str) -> None:
    url = f"{media_url}/media/voice.ogg"
    with make_client(double) as client:
        result = client.send_audio(NUMBER, url)

    assert isinstance(result, SendResult)
    assert result.status == "PENDING"
    assert result.remote_jid == f"{NUMBER}@s.whatsapp.net"
    assert result.message_id.startswith("3EB0")
    assert len(result.message_id) == 20
    assert result.raw["messageType"] == "audioMessage"

    [call] = double.calls
    assert call["endpoint"] == "sendWhatsAppAudio"
    assert call["json"] == {"number": NUMBER, "audio": url}
    assert call["api_version"] == 2
    assert call["download_url"].startswith(url + "?timestamp=")
    assert call["download_status"] == 200
    assert call["download_bytes"] == VOICE
    assert call["download_headers"]["X-Cache"] == "HIT"
    assert call["download_headers"]["Content-Type"] == "audio/ogg"
    assert call["download_user_agent"].startswith("axios/")
    assert call["message_id"] == result.message_id
    assert double.processed_sends == 1


def test_send_audio_options_are_sent(double: EvolutionDouble, media_url: str) -> None:
    quoted = {"key": {"id": "3EB0AAAA"}, "message": {"conversation": "hi"}}
    with make_client(double) as client:
        client.send_audio(NUMBER, f"{media_url}/media/voice.ogg", delay=1200, quoted=quoted)
    assert double.calls[0]["json"]["delay"] == 1200
    assert double.calls[0]["json"]["quoted"] == quoted


def test_send_media_document_v2(
    double: EvolutionDouble, media: tuple[str, list[dict[str, Any]]]
) -> None:
    base, seen = media
    url = f"{base}/media/report.pdf"
    with make_client(double) as client:
        result = client.send_media(
            NUMBER,
            url,
            mediatype="document",
            mimetype="application/pdf",
            file_name="report.pdf",
            caption="Your report",
        )

    assert result.raw["messageType"] == "documentMessage"
    [call] = double.calls
    assert call["json"] == {
        "number": NUMBER,
        "mediatype": "document",
        "media": url,
        "mimetype": "application/pdf",
        "fileName": "report.pdf",
        "caption": "Your report",
    }
    assert call["download_url"] == url  # sendMedia does not add timestamp=
    assert call["download_user_agent"] == "node"
    assert call["download_bytes"] == PDF
    assert call["file_name"] == "report.pdf"
    assert call["mimetype"] == "application/pdf"
    inner = result.raw["message"]["documentMessage"]
    assert inner["fileName"] == "report.pdf"
    assert inner["caption"] == "Your report"
    assert seen[-1]["path"] == "/media/report.pdf"
    assert seen[-1]["ua"] == "node"


def test_send_media_image_is_fetched_with_axios(double: EvolutionDouble, media_url: str) -> None:
    with make_client(double) as client:
        result = client.send_media(
            NUMBER,
            f"{media_url}/media/photo.png",
            mediatype="image",
            mimetype="image/png",
            file_name="photo.png",
        )
    assert result.raw["messageType"] == "imageMessage"
    assert double.calls[0]["download_user_agent"].startswith("axios/")
    # Evolution re-encodes to JPEG but a given fileName still decides the mimetype.
    assert double.calls[0]["mimetype"] == "image/png"


def test_short_link_redirect_survives_timestamp(double: EvolutionDouble, media_url: str) -> None:
    """A short URL that ignores the query string and redirects works with the audio trap."""
    with make_client(double) as client:
        client.send_audio(NUMBER, f"{media_url}/s/abc")
    call = double.calls[0]
    assert "timestamp=" in call["download_url"]
    assert call["download_final_url"] == f"{media_url}/media/voice.ogg"
    assert call["download_bytes"] == VOICE


def test_v1_payload_shapes(media_url: str) -> None:
    with EvolutionDouble(api_key=API_KEY, instance=INSTANCE, api_version=1) as double:
        with make_client(double, api_version=1) as client:
            audio = client.send_audio(NUMBER, f"{media_url}/media/voice.ogg", delay=500)
            doc = client.send_media(
                NUMBER,
                f"{media_url}/media/report.pdf",
                mediatype="document",
                mimetype="application/pdf",
                file_name="report.pdf",
                caption="c",
            )
        assert audio.message_id != doc.message_id
        first, second = double.calls
        assert first["json"] == {
            "number": NUMBER,
            "options": {"delay": 500, "encoding": True},
            "audioMessage": {"audio": f"{media_url}/media/voice.ogg"},
        }
        assert first["api_version"] == 1
        assert "timestamp=" in first["download_url"]
        assert second["json"] == {
            "number": NUMBER,
            "options": {},
            "mediaMessage": {
                "mediatype": "document",
                "media": f"{media_url}/media/report.pdf",
                "fileName": "report.pdf",
                "caption": "c",
            },
        }
        assert double.processed_sends == 2


def test_payload_builders_v2_omit_unset_fields() -> None:
    assert audio_payload("1", "u", api_version=2) == {"number": "1", "audio": "u"}
    assert media_payload(
        "1", "u", api_version=2, mediatype="video", mimetype="video/mp4", file_name="a.mp4"
    ) == {
        "number": "1",
        "mediatype": "video",
        "media": "u",
        "mimetype": "video/mp4",
        "fileName": "a.mp4",
    }


def test_get_base64_from_media_message(double: EvolutionDouble) -> None:
    double.media_by_id["3EB0RECEIVED"] = {
        "mediaType": "audioMessage",
        "fileName": "3EB0RECEIVED.oga",
        "mimetype": "audio/ogg; codecs=opus",
        "base64": "T2dnUw==",
    }
    with make_client(double) as client:
        data = client.get_base64_from_media_message("3EB0RECEIVED")
        assert data["base64"] == "T2dnUw=="
        assert data["mimetype"] == "audio/ogg; codecs=opus"
        assert double.calls[0]["json"] == {
            "message": {"key": {"id": "3EB0RECEIVED"}},
            "convertToMp4": False,
        }
        with pytest.raises(EvolutionValidationError, match="Message not found"):
            client.get_base64_from_media_message("3EB0UNKNOWN")


def test_send_result_is_frozen() -> None:
    result = SendResult(message_id="3EB0", status="PENDING", remote_jid="x", raw={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.message_id = "other"  # type: ignore[misc]


def test_request_and_response_are_logged_without_secrets(
    double: EvolutionDouble, media_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="evolution")
    with make_client(double) as client:
        client.send_media(
            NUMBER,
            f"{media_url}/media/report.pdf",
            mediatype="document",
            mimetype="application/pdf",
            file_name="report.pdf",
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "evolution"]
    assert any(
        line.startswith(f"[EVOLUTION] POST /message/sendMedia/{INSTANCE} -> 201 in ")
        and line.endswith(" ms")
        for line in lines
    ), lines
    assert all(API_KEY not in line for line in lines)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_wrong_api_key_raises_auth_error(double: EvolutionDouble, media_url: str) -> None:
    wrong = "wrong-secret-KEY-77"
    with make_client(double, api_key=wrong) as client:
        with pytest.raises(EvolutionAuthError) as info:
            client.send_audio(NUMBER, f"{media_url}/media/voice.ogg")
        assert wrong not in repr(client)
    err = info.value
    assert err.status_code == 401
    assert double.calls[0]["apikey_ok"] is False
    assert double.processed_sends == 0
    for text in (str(err), repr(err), err.body, err.message):
        assert wrong not in text
        assert API_KEY not in text


@pytest.mark.parametrize(
    ("send", "expected"),
    [
        ("audio", "Owned media must be a url, base64, or valid file with buffer"),
        ("media", "Owned media must be a url or base64"),
    ],
)
def test_localhost_url_is_rejected_by_is_url(
    double: EvolutionDouble, send: str, expected: str
) -> None:
    url = "http://localhost:8000/x"
    with make_client(double) as client:
        if send == "audio":
            with pytest.raises(EvolutionValidationError) as info:
                client.send_audio(NUMBER, url)
        else:
            with pytest.raises(EvolutionValidationError) as info:
                client.send_media(
                    NUMBER, url, mediatype="document", mimetype="application/pdf", file_name="x.pdf"
                )
    err = info.value
    assert err.status_code == 400
    assert err.message == expected
    assert err.messages == (expected,)
    assert double.calls[0]["downloads"] == []  # rejected before any download


def test_number_not_on_whatsapp_is_a_validation_error(
    double: EvolutionDouble, media_url: str
) -> None:
    double.not_on_whatsapp.add("5511000000000")
    with make_client(double) as client, pytest.raises(EvolutionValidationError) as info:
        client.send_audio("5511000000000", f"{media_url}/media/voice.ogg")
    assert '"exists": false' in info.value.message
    assert double.processed_sends == 0


def test_presigned_url_breaks_on_timestamp_403(double: EvolutionDouble, media_url: str) -> None:
    url = f"{media_url}/signed/voice.ogg?{SIGNED_QUERY}"
    with make_client(double) as client:
        with pytest.raises(EvolutionDownloadError) as info:
            client.send_audio(NUMBER, url)
        err = info.value
        assert err.status_code == 403
        assert "Request failed with status code 403" in err.message
        assert "Request failed with status code 403" in err.body
        call = double.calls[0]
        assert call["download_url"] == f"{url}&timestamp={call['download_url'].rsplit('=', 1)[1]}"
        assert call["download_status"] == 403
        assert double.processed_sends == 0

        # The same URL is fine through sendMedia, which does not touch the query.
        client.send_media(
            NUMBER, url, mediatype="audio", mimetype="audio/ogg", file_name="voice.ogg"
        )
    assert double.processed_sends == 1


def test_send_media_download_failure_is_a_500(double: EvolutionDouble, media_url: str) -> None:
    url = f"{media_url}/media/missing.pdf"
    with make_client(double) as client, pytest.raises(EvolutionDownloadError) as info:
        client.send_media(
            NUMBER, url, mediatype="document", mimetype="application/pdf", file_name="m.pdf"
        )
    assert info.value.status_code == 500
    assert info.value.messages == (f"Error: Failed to fetch stream from {url}",)
    assert double.calls[0]["download_status"] == 404


def test_send_media_rejects_bad_arguments_locally(double: EvolutionDouble) -> None:
    with make_client(double) as client:
        with pytest.raises(ValueError, match="extension"):
            client.send_media(
                NUMBER, "https://x.example.com/m", mediatype="document", mimetype="", file_name="m"
            )
        with pytest.raises(ValueError, match="mediatype"):
            client.send_media(
                NUMBER, "https://x.example.com/m", mediatype="sticker", mimetype="", file_name="a.b"
            )
    assert double.requests_received == 0


def test_connection_refused_is_retried_then_unavailable(
    double: EvolutionDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="evolution")
    double.down()
    transport = CountingTransport()
    with (
        make_client(double, max_retries=2, transport=transport) as client,
        pytest.raises(EvolutionUnavailable) as info,
    ):
        client.send_audio(NUMBER, "https://cdn.example.com/a.ogg")
    assert transport.attempts == 3
    assert info.value.maybe_sent is False
    assert info.value.status_code is None
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert retries == [
        "[EVOLUTION] retry 1/2 after ConnectError",
        "[EVOLUTION] retry 2/2 after ConnectError",
    ]
    double.up()
    assert double.requests_received == 0


def test_connect_error_then_success_sends_once(double: EvolutionDouble, media_url: str) -> None:
    transport = CountingTransport(fail_times=1, fail_with=httpx.ConnectTimeout)
    with make_client(double, transport=transport) as client:
        result = client.send_audio(NUMBER, f"{media_url}/media/voice.ogg")
    assert result.message_id
    assert transport.attempts == 2
    assert double.processed_sends == 1


def test_down_then_up_uses_same_port(double: EvolutionDouble, media_url: str) -> None:
    url = double.url
    double.down()
    double.up()
    assert double.url == url
    with make_client(double) as client:
        client.send_audio(NUMBER, f"{media_url}/media/voice.ogg")
    assert double.processed_sends == 1


def test_503_twice_then_success_sends_exactly_once(double: EvolutionDouble, media_url: str) -> None:
    double.fail_next(503, times=2)
    transport = CountingTransport()
    with make_client(double, max_retries=2, transport=transport) as client:
        result = client.send_audio(NUMBER, f"{media_url}/media/voice.ogg")
    assert result.status == "PENDING"
    assert transport.attempts == 3
    assert double.requests_received == 3
    assert double.processed_sends == 1
    assert len(double.sent) == 1
    assert [c["status"] for c in double.calls] == [503, 503, 201]


def test_gateway_errors_exhausted_are_unavailable(double: EvolutionDouble) -> None:
    double.fail_next(504, times=5)
    with make_client(double, max_retries=1) as client, pytest.raises(EvolutionUnavailable) as info:
        client.send_audio(NUMBER, "https://cdn.example.com/a.ogg")
    assert info.value.status_code == 504
    assert info.value.maybe_sent is False
    assert "504 Gateway Time-out" in info.value.body or "504" in info.value.message
    assert double.requests_received == 2
    assert double.processed_sends == 0


def test_500_is_not_retried(double: EvolutionDouble) -> None:
    double.fail_next(500, times=3)
    transport = CountingTransport()
    with (
        make_client(double, max_retries=2, transport=transport) as client,
        pytest.raises(EvolutionServerError) as info,
    ):
        client.send_audio(NUMBER, "https://cdn.example.com/a.ogg")
    assert info.value.status_code == 500
    assert transport.attempts == 1
    assert double.requests_received == 1


def test_read_timeout_is_not_retried_and_maybe_sent(
    double: EvolutionDouble, media_url: str
) -> None:
    double.delay_next(2.0)
    transport = CountingTransport()
    with (
        make_client(double, read_timeout=0.3, max_retries=2, transport=transport) as client,
        pytest.raises(EvolutionUnavailable) as info,
    ):
        client.send_audio(NUMBER, f"{media_url}/media/voice.ogg")
    assert info.value.maybe_sent is True
    assert transport.attempts == 1
    assert double.requests_received == 1
    assert double.processed_sends == 1  # it did go out: a retry would have duplicated it


def test_api_key_is_redacted_from_error_bodies(double: EvolutionDouble) -> None:
    double.fail_next(500, body=f"internal error, apikey={API_KEY}")
    with make_client(double) as client, pytest.raises(EvolutionServerError) as info:
        client.send_audio(NUMBER, "https://cdn.example.com/a.ogg")
    err = info.value
    for text in (str(err), repr(err), err.body, err.message):
        assert API_KEY not in text
    assert "***" in err.body


def test_error_body_is_truncated(double: EvolutionDouble) -> None:
    double.fail_next(500, body="x" * 5000)
    with make_client(double) as client, pytest.raises(EvolutionServerError) as info:
        client.send_audio(NUMBER, "https://cdn.example.com/a.ogg")
    assert len(info.value.body) == 2000


def test_errors_survive_pickling() -> None:
    err = EvolutionUnavailable("slow", status_code=None, body="b", maybe_sent=True)
    copy = pickle.loads(pickle.dumps(err))
    assert isinstance(copy, EvolutionError)
    assert (copy.message, copy.body, copy.maybe_sent) == ("slow", "b", True)


# --------------------------------------------------------------------------------------------
# The double's validator.js ports (test infrastructure, but it must be right)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/media/abc",
        "https://backend.example.com/media/abc?timestamp=1",
        "https://s3.amazonaws.com/bucket/key.ogg?X-Amz-Signature=ab%2Fc",
        "http://[::1]:8000/x",
        "backend.example.com/media/abc",  # no protocol is fine for isURL
        "ftp://files.example.org/a.pdf",
        "https://user:pw@cdn.example.com/a",
        "http://xn--bcher-kva.example/a",
    ],
)
def test_is_url_accepts(url: str) -> None:
    assert is_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/x",
        "http://localhost:8000/x",
        "http://web:8000/x",
        "http://minio:9000/bucket/x",
        "http://a_b.example.com/x",
        "http://example.123/x",
        "http://example.com:99999/x",
        "mailto:a@example.com",
        "file:///etc/passwd",
        "//cdn.example.com/x",
        "http://exa mple.com/x",
        "https://example.com/" + "a" * 2070,
        "",
    ],
)
def test_is_url_rejects(url: str) -> None:
    assert not is_url(url)


def test_is_base64() -> None:
    assert is_base64("T2dnUw==")
    assert is_base64("")  # validator.js quirk
    assert not is_base64("T2dnUw=")
    assert not is_base64("http://x.example.com/a")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://a.example.com/m/x", "https://a.example.com/m/x?timestamp=42"),
        ("https://a.example.com/m/x?a=1", "https://a.example.com/m/x?a=1&timestamp=42"),
        ("https://a.example.com/m/x?timestamp=1&b=2", "https://a.example.com/m/x?timestamp=42&b=2"),
        ("https://a.example.com", "https://a.example.com/?timestamp=42"),
        ("https://a.example.com/x?s=a%2Fb%20c", "https://a.example.com/x?s=a%2Fb+c&timestamp=42"),
    ],
)
def test_with_timestamp_mirrors_url_search_params_set(url: str, expected: str) -> None:
    assert with_timestamp(url, 42) == expected


# --------------------------------------------------------------------------------------------
# Errors named for their cause, each with the operator's action
# --------------------------------------------------------------------------------------------


def _send_png(client: EvolutionClient, media_url: str, file_name: str = "photo.png") -> SendResult:
    return client.send_media(
        NUMBER,
        f"{media_url}/media/photo.png",
        mediatype="image",
        mimetype="image/png",
        file_name=file_name,
    )


@pytest.mark.parametrize("state", ["close", "connecting", "refused"])
def test_media_to_a_closed_instance_is_not_connected_after_the_download(
    double: EvolutionDouble, media_url: str, state: str
) -> None:
    double.instance_state = state
    with make_client(double) as client, pytest.raises(EvolutionInstanceNotConnected) as info:
        _send_png(client, media_url)
    err = info.value
    assert err.status_code == 500
    assert err.messages == ("Error: Connection Closed",)
    assert not isinstance(err, EvolutionDownloadError)
    assert err.maybe_sent is False
    assert f"/instance/connect/{INSTANCE}" in err.action
    assert double.calls[0]["download_status"] == 200  # the media was fine
    assert double.processed_sends == 0


def test_voice_note_without_encoding_fails_before_the_download(
    double: EvolutionDouble, media_url: str
) -> None:
    double.instance_state = "close"
    with make_client(double) as client, pytest.raises(EvolutionInstanceNotConnected) as info:
        client.send_audio(NUMBER, f"{media_url}/media/voice.ogg", encoding=False)
    assert info.value.status_code == 500
    assert info.value.messages == ("Connection Closed",)
    assert double.calls[0]["downloads"] == []


def test_instance_without_session_fails_reading_on_whatsapp(
    double: EvolutionDouble, media_url: str
) -> None:
    double.instance_state = None  # Evolution restarted, the instance never reconnected
    with make_client(double) as client, pytest.raises(EvolutionInstanceNotConnected) as info:
        client.send_audio(NUMBER, f"{media_url}/media/voice.ogg")
    assert info.value.messages == ("Cannot read properties of undefined (reading 'onWhatsApp')",)
    assert double.calls[0]["download_status"] == 200  # encoding on: downloaded first

    with make_client(double) as client, pytest.raises(EvolutionInstanceNotConnected) as info:
        client.send_media(
            NUMBER,
            f"{media_url}/media/report.pdf",
            mediatype="document",
            mimetype="application/pdf",
            file_name="report.pdf",
        )
    assert "waUploadToServer" in info.value.message
    assert double.calls[1]["downloads"] == []  # this.client.waUploadToServer failed first


def test_unknown_instance_is_instance_not_found(double: EvolutionDouble, media_url: str) -> None:
    with (
        EvolutionClient(double.url, API_KEY, "nope", backoff=0) as client,
        pytest.raises(EvolutionInstanceNotFound) as info,
    ):
        client.send_audio(NUMBER, f"{media_url}/media/voice.ogg")
    assert info.value.status_code == 404
    assert 'The "nope" instance does not exist' in info.value.message
    assert "EVOLUTION_INSTANCE" in info.value.action
    assert double.calls[0]["downloads"] == []


def test_a_media_host_404_is_a_download_error_not_instance_not_found(
    double: EvolutionDouble, media_url: str
) -> None:
    with make_client(double) as client, pytest.raises(EvolutionDownloadError) as info:
        client.send_audio(NUMBER, f"{media_url}/media/gone.ogg")
    assert info.value.status_code == 404  # axios' status passed through
    assert "PUBLIC_BASE_URL" in info.value.action


def test_every_error_class_has_its_own_action() -> None:
    classes = [
        EvolutionAuthError,
        EvolutionInstanceNotFound,
        EvolutionInstanceNotConnected,
        EvolutionValidationError,
        EvolutionDownloadError,
        EvolutionUnavailable,
        EvolutionServerError,
    ]
    actions = [cls("x").action for cls in classes]
    assert all(actions)
    assert len(set(actions)) == len(classes)
    assert pickle.loads(pickle.dumps(EvolutionAuthError("x"))).action == actions[0]


@pytest.mark.parametrize(
    ("status", "detail", "expected"),
    [
        (500, "Connection Closed", EvolutionInstanceNotConnected),
        (500, "Error: Connection Closed", EvolutionInstanceNotConnected),
        (400, "Error: Connection Closed", EvolutionInstanceNotConnected),  # socket dropped mid-send
        (
            500,
            "Cannot read properties of undefined (reading 'onWhatsApp')",
            EvolutionInstanceNotConnected,
        ),
        (404, 'The "mc-test" instance does not exist', EvolutionInstanceNotFound),
        (404, "Cannot POST /message/sendMedia/mc-test", EvolutionServerError),
        (404, "Request failed with status code 404", EvolutionDownloadError),
        (403, "Request failed with status code 403", EvolutionDownloadError),
        (500, "AxiosError: connect ECONNREFUSED 10.0.0.9:443", EvolutionDownloadError),
        (400, "Error: Failed to fetch stream from https://x.example.com/a", EvolutionDownloadError),
        (500, "Error: Input buffer contains unsupported image format", EvolutionDownloadError),
        (400, "Owned media must be a url or base64", EvolutionValidationError),
        (401, "Unauthorized", EvolutionAuthError),
        (503, "Service Unavailable", EvolutionUnavailable),
        (500, "Internal Server Error", EvolutionServerError),
    ],
)
def test_errors_are_classified_from_status_and_text(
    status: int, detail: str, expected: type[EvolutionError]
) -> None:
    err = error_for(status, detail, instance="mc-test")
    assert type(err) is expected
    assert err.status_code == status


# --------------------------------------------------------------------------------------------
# connectionState
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected", "connected"),
    [("open", "open", True), ("connecting", "connecting", False), ("close", "close", False)],
)
def test_connection_state(
    double: EvolutionDouble, state: str, expected: str, connected: bool
) -> None:
    double.instance_state = state
    with make_client(double) as client:
        result = client.connection_state()
    assert (result.instance, result.state, result.connected) == (INSTANCE, expected, connected)
    (call,) = double.calls
    assert (call["method"], call["path"]) == ("GET", f"/instance/connectionState/{INSTANCE}")
    assert call["status"] == 200


def test_connection_state_without_a_session_is_unknown(double: EvolutionDouble) -> None:
    double.instance_state = None
    with make_client(double) as client:
        result = client.connection_state()
    assert (result.state, result.connected) == ("unknown", False)
    assert result.raw == {"instance": {"instanceName": INSTANCE}}


def test_connection_state_errors_are_typed(double: EvolutionDouble) -> None:
    with (
        EvolutionClient(double.url, API_KEY, "nope", backoff=0) as client,
        pytest.raises(EvolutionInstanceNotFound),
    ):
        client.connection_state()
    with make_client(double, api_key="wrong") as client, pytest.raises(EvolutionAuthError):
        client.connection_state()
    double.down()
    with make_client(double, max_retries=0) as client, pytest.raises(EvolutionUnavailable):
        client.connection_state()


# --------------------------------------------------------------------------------------------
# What WhatsApp gets: images are re-encoded to JPEG, labelled from fileName (trap 7)
# --------------------------------------------------------------------------------------------


def test_double_labels_a_reencoded_image_by_its_file_name(
    double: EvolutionDouble, media_url: str
) -> None:
    with make_client(double) as client:
        _send_png(client, media_url, "photo.png")
        _send_png(client, media_url, "photo.jpg")
    mislabelled, labelled = double.delivered
    assert mislabelled == {
        "mimetype": "image/png",
        "content_type": "image/jpeg",
        "file_name": "photo.png",
    }
    assert labelled == {
        "mimetype": "image/jpeg",
        "content_type": "image/jpeg",
        "file_name": "photo.jpg",
    }


def test_double_records_documents_as_passed_on(double: EvolutionDouble, media_url: str) -> None:
    with make_client(double) as client:
        client.send_media(
            NUMBER,
            f"{media_url}/media/report.pdf",
            mediatype="document",
            mimetype="application/pdf",
            file_name="report.pdf",
        )
    assert double.delivered == [
        {"mimetype": "application/pdf", "content_type": None, "file_name": "report.pdf"}
    ]
