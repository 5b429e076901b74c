"""The purge request each kind of shared cache understands, for a batch of media keys.

A media key is what the engine caches under: ``<hash>`` (``/media/<hash>``) or
``<hash>/original``. Each purger turns a batch of them into one request per API call
its CDN allows, sends it with a bounded timeout and raises :class:`PurgeFailed` on any
failure (the hook retries, logs and counts). Credentials never appear in an error.

* ``cloudflare``: ``POST {api}/zones/{zone}/purge_cache`` with ``{"tags": [...]}``
  (every URL form the edge keyed the object under) or, with ``EDGE_PURGE_BY=urls``,
  ``{"files": [...]}`` (the extensionless links, exactly); ``Authorization: Bearer``.
  At most 100 tags or URLs a call, Cloudflare's limit on every plan.
* ``fastly``: ``POST {api}/service/{service}/purge`` with ``Surrogate-Key: k1 k2 ...``
  (Fastly's batch purge, at most 256 keys), ``Fastly-Key``.
* ``cloudfront``: ``CreateInvalidation`` through boto3 (credentials from its chain,
  endpoint ``EDGE_PURGE_URLS`` when set), exact paths: wildcards would be cheaper per
  path but CloudFront allows only 15 wildcard invalidations in progress at once.
* ``varnish``: ``PURGE`` to every node in ``EDGE_PURGE_URLS`` with
  ``xkey-purge: k1 k2 ...``, which ``deploy/edge/mediacache.vcl`` hands to vmod-xkey.
* ``nginx``: ``GET /.edge-purge/media/<hash>`` (or ``.../<hash>/original``) to every
  node in ``EDGE_PURGE_URLS``, one request per key and node: ``deploy/edge/nginx-edge.conf``
  replaces that one cache key (every URL form of the object) with an expired tombstone
  and confirms with a 404 and ``X-Edge-Purged: 1``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from mediacache.core.headers import edge_tag
from mediacache.core.settings import MediaSettings

STYLES = ("cloudflare", "fastly", "cloudfront", "varnish", "nginx")
CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"
NGINX_PURGE_PREFIX = "/.edge-purge"  # deploy/edge/nginx-edge.conf's purge location
FASTLY_API = "https://api.fastly.com"


class PurgeFailed(Exception):
    """The edge did not confirm the purge (no answer, an error status, a refusal)."""


class EdgePurger(Protocol):
    name: str
    max_batch: int

    def purge(self, keys: Sequence[str]) -> str:
        """Purge these media keys; a short account of what was sent. Raises PurgeFailed."""
        ...


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _checked(response: httpx.Response) -> httpx.Response:
    if not response.is_success:
        raise PurgeFailed(f"HTTP {response.status_code}: {response.text[:200]}")
    return response


class _HttpPurger:
    """Shared by the purgers that speak plain HTTP: one client, bounded timeouts."""

    name = ""
    max_batch = 100

    def __init__(self, *, timeout: float, transport: httpx.BaseTransport | None = None) -> None:
        self.client = httpx.Client(timeout=timeout, transport=transport)

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return _checked(self.client.request(method, url, **kwargs))
        except httpx.HTTPError as exc:
            raise PurgeFailed(f"{type(exc).__name__}: {exc}") from exc


class CloudflarePurger(_HttpPurger):
    name = "cloudflare"
    max_batch = 100  # operations per call, on every plan

    def __init__(
        self,
        *,
        zone_id: str,
        token: str,
        by: str = "tags",
        api_url: str = CLOUDFLARE_API,
        link_of: Callable[[str], str],
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(timeout=timeout, transport=transport)
        self.url = f"{api_url.rstrip('/')}/zones/{zone_id}/purge_cache"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.by = by
        self.link_of = link_of

    def purge(self, keys: Sequence[str]) -> str:
        if self.by == "urls":
            body: dict[str, list[str]] = {"files": _unique([self.link_of(k) for k in keys])}
        else:
            body = {"tags": _unique([edge_tag(k) for k in keys])}
        answer = self._send("POST", self.url, json=body, headers=self.headers)
        try:
            ok = json.loads(answer.content).get("success") is True
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise PurgeFailed(f"Cloudflare did not confirm: {answer.text[:200]}")
        kind, values = next(iter(body.items()))
        return f"{kind}={len(values)}"


class FastlyPurger(_HttpPurger):
    name = "fastly"
    max_batch = 256  # keys per batch purge

    def __init__(
        self,
        *,
        service_id: str,
        token: str,
        api_url: str = FASTLY_API,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(timeout=timeout, transport=transport)
        self.url = f"{api_url.rstrip('/')}/service/{service_id}/purge"
        self.token = token

    def purge(self, keys: Sequence[str]) -> str:
        tags = _unique([edge_tag(k) for k in keys])
        headers = {"Fastly-Key": self.token, "Surrogate-Key": " ".join(tags)}
        self._send("POST", self.url, headers=headers)
        return f"keys={len(tags)}"


class _NodesPurger(_HttpPurger):
    """Shared by the purgers that ask each cache node of ``EDGE_PURGE_URLS`` themselves."""

    def __init__(
        self,
        *,
        nodes: Sequence[str],
        timeout: float,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(timeout=timeout, transport=transport)
        self.nodes = list(nodes)


class VarnishPurger(_NodesPurger):
    name = "varnish"
    max_batch = 100

    def purge(self, keys: Sequence[str]) -> str:
        """Every node, even after one failed; fails if any did (the retry asks all again:
        purging twice is harmless)."""
        tags = " ".join(_unique([edge_tag(k) for k in keys]))
        failures: list[str] = []
        for node in self.nodes:
            try:
                self._send("PURGE", node, headers={"xkey-purge": tags})
            except PurgeFailed as exc:
                failures.append(f"{urlsplit(node).netloc}: {exc}")
        if failures:
            raise PurgeFailed("; ".join(failures))
        return f"keys={len(tags.split())} nodes={len(self.nodes)}"


class NginxPurger(_NodesPurger):
    """One purge request per media key and node, on one kept-alive connection per node.

    ``GET /.edge-purge/media/<key>``: ``deploy/edge/nginx-edge.conf`` stores an already
    expired 404 (its tombstone) under the key of ``/media/<key>`` in place of the
    object and answers it with ``X-Edge-Purged: 1``, the confirmation; the same answer
    whether the object was cached or not. Anything else -- a 403 (this address may
    not purge), a plain 404 (an nginx without that config) -- is a failure.
    Every node is asked even after one failed; the batch fails if any did (the hook's
    retry asks all again: purging twice is harmless).
    """

    name = "nginx"
    max_batch = 50  # keys per batch: up to 50 requests per node, each well under 1 ms

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.nodes = [node.rstrip("/") for node in self.nodes]  # a path is appended

    def purge(self, keys: Sequence[str]) -> str:
        paths = _unique([f"{NGINX_PURGE_PREFIX}/media/{key}" for key in keys])
        failures: list[str] = []
        for node in self.nodes:
            for path in paths:
                where = f"{urlsplit(node).netloc}{path}"
                try:
                    answer = self.client.get(node + path)
                except httpx.HTTPError as exc:
                    failures.append(f"{where}: {type(exc).__name__}: {exc}")
                    continue
                if answer.status_code != 404 or answer.headers.get("x-edge-purged") != "1":
                    failures.append(f"{where}: HTTP {answer.status_code}, not confirmed")
        if failures:
            more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
            raise PurgeFailed("; ".join(failures[:3]) + more)
        return f"paths={len(paths)} nodes={len(self.nodes)}"


class CloudFrontPurger:
    name = "cloudfront"
    max_batch = 1000  # of the 3,000 paths CloudFront allows in progress

    def __init__(
        self,
        *,
        distribution_id: str,
        link_of: Callable[[str], str],
        endpoint_url: str = "",
        timeout: float,
    ) -> None:
        self.distribution_id = distribution_id
        self.link_of = link_of
        self.endpoint_url = endpoint_url or None
        self.timeout = timeout
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # type: ignore[import-untyped]
            from botocore.config import Config

            self._client = boto3.client(
                "cloudfront",
                region_name="us-east-1",  # CloudFront's API is global, signed for us-east-1
                endpoint_url=self.endpoint_url,
                config=Config(
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                    retries={"max_attempts": 1, "mode": "standard"},  # the hook retries
                ),
            )
        return self._client

    def purge(self, keys: Sequence[str]) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        paths = _unique([urlsplit(self.link_of(k)).path for k in keys])
        try:
            answer = self.client.create_invalidation(
                DistributionId=self.distribution_id,
                InvalidationBatch={
                    "Paths": {"Quantity": len(paths), "Items": paths},
                    "CallerReference": f"mediacache-{uuid.uuid4().hex}",
                },
            )
        except (BotoCoreError, ClientError) as exc:
            raise PurgeFailed(f"{type(exc).__name__}: {exc}") from exc
        invalidation = answer.get("Invalidation", {})
        return f"paths={len(paths)} invalidation={invalidation.get('Id', '?')}"


def config_problems(settings: MediaSettings) -> list[str]:
    """What is missing or wrong in the ``EDGE_*`` settings; empty when none."""
    style = settings.EDGE_PURGE
    if not style:
        return []
    if style not in STYLES:
        return [f"EDGE_PURGE={style!r} is not one of {', '.join(STYLES)} (or empty: no purge)"]
    problems = []
    needs_zone = {"cloudflare": "zone id", "fastly": "service id", "cloudfront": "distribution id"}
    if style in needs_zone and not settings.EDGE_ZONE_ID:
        problems.append(f"EDGE_PURGE={style} needs EDGE_ZONE_ID (the {needs_zone[style]})")
    if style in ("cloudflare", "fastly") and not settings.EDGE_API_TOKEN:
        problems.append(f"EDGE_PURGE={style} needs EDGE_API_TOKEN")
    if style == "cloudflare" and settings.EDGE_PURGE_BY not in ("tags", "urls"):
        problems.append(f"EDGE_PURGE_BY={settings.EDGE_PURGE_BY!r} is not 'tags' or 'urls'")
    if style == "varnish" and not settings.EDGE_PURGE_URLS:
        problems.append("EDGE_PURGE=varnish needs EDGE_PURGE_URLS (each Varnish node's URL)")
    if style == "nginx" and not settings.EDGE_PURGE_URLS:
        problems.append("EDGE_PURGE=nginx needs EDGE_PURGE_URLS (each nginx edge node's URL)")
    if settings.EDGE_PURGE_ATTEMPTS < 1:
        problems.append("EDGE_PURGE_ATTEMPTS must be at least 1")
    if settings.EDGE_PURGE_TIMEOUT <= 0:
        problems.append("EDGE_PURGE_TIMEOUT must be more than 0 seconds")
    return problems


def purger_for(
    settings: MediaSettings,
    *,
    link_of: Callable[[str], str],
    transport: httpx.BaseTransport | None = None,
) -> EdgePurger | None:
    """The purger ``EDGE_PURGE`` names, or None for none. ValueError on bad settings.
    ``link_of``: a media key's public link (``mediacache.core.links.short_url_for``)."""
    problems = config_problems(settings)
    if problems:
        raise ValueError("; ".join(problems))
    style, timeout = settings.EDGE_PURGE, settings.EDGE_PURGE_TIMEOUT
    api_url = settings.EDGE_PURGE_URLS[0] if settings.EDGE_PURGE_URLS else ""
    if style == "cloudflare":
        return CloudflarePurger(
            zone_id=settings.EDGE_ZONE_ID,
            token=settings.EDGE_API_TOKEN,
            by=settings.EDGE_PURGE_BY,
            api_url=api_url or CLOUDFLARE_API,
            link_of=link_of,
            timeout=timeout,
            transport=transport,
        )
    if style == "fastly":
        return FastlyPurger(
            service_id=settings.EDGE_ZONE_ID,
            token=settings.EDGE_API_TOKEN,
            api_url=api_url or FASTLY_API,
            timeout=timeout,
            transport=transport,
        )
    if style == "cloudfront":
        return CloudFrontPurger(
            distribution_id=settings.EDGE_ZONE_ID,
            link_of=link_of,
            endpoint_url=api_url,
            timeout=timeout,
        )
    if style == "varnish":
        return VarnishPurger(nodes=settings.EDGE_PURGE_URLS, timeout=timeout, transport=transport)
    if style == "nginx":
        return NginxPurger(nodes=settings.EDGE_PURGE_URLS, timeout=timeout, transport=transport)
    return None
