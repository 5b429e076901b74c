"""S3's check of presigned URLs, in front of moto (which does not verify them).

Real S3 and MinIO recompute the SigV4 query signature over the whole query
string; any parameter added after signing (Evolution's ``timestamp``) changes it
and the answer is ``403 SignatureDoesNotMatch``. moto's server mode accepts any
presigned GET, so this small HTTP gate recomputes the signature with botocore's
own signer, like S3 does, and forwards valid requests to moto unchanged.
"""

from __future__ import annotations

import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode

import httpx
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH_PARAMS = {
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
}
_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
    b"<Message>The request signature we calculated does not match the signature you provided."
    b"</Message></Error>"
)


def signature_is_valid(host: str, path: str, query: str, secrets: dict[str, str]) -> bool:
    params = parse_qsl(query, keep_blank_values=True)
    auth = dict(p for p in params if p[0] in _AUTH_PARAMS)
    if "X-Amz-Signature" not in auth:
        return True  # not a presigned request: nothing for this gate to check
    key_id, _, region, service, _ = auth["X-Amz-Credential"].split("/")
    secret = secrets.get(key_id)
    if secret is None:
        return False
    # The canonical query covers every parameter but the signature itself.
    signed = [p for p in params if p[0] != "X-Amz-Signature"]
    request = AWSRequest(method="GET", url=f"http://{host}{path}?{urlencode(signed)}")
    request.headers["host"] = host
    request.context["timestamp"] = auth["X-Amz-Date"]
    signer = S3SigV4QueryAuth(
        Credentials(key_id, secret), service, region, expires=int(auth["X-Amz-Expires"])
    )
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    return hmac.compare_digest(expected, auth["X-Amz-Signature"])


class S3SignatureGate:
    """``http://127.0.0.1:<port>`` that checks presigned GETs, then proxies to ``upstream``."""

    def __init__(self, upstream: str, secrets: dict[str, str]) -> None:
        self.upstream = upstream
        self.secrets = secrets
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                host = self.headers.get("Host", "")
                if not signature_is_valid(host, path, query, gate.secrets):
                    self._reply(403, _DENIED, "application/xml")
                    return
                upstream = httpx.get(gate.upstream + self.path, timeout=10)
                self._reply(upstream.status_code, upstream.content, upstream.headers.get(
                    "content-type", "application/octet-stream"))  # fmt: skip

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> S3SignatureGate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
