"""The HTTP transport every ARM client shares: azure-core's HttpTransport straight over urllib3's connection pools.

azure-core's RequestsTransport goes through requests, which prepares, re-quotes and re-checks every request (the
CA bundle's path is stat()ed three times a request), builds a cookie jar from every response, and wraps urllib3's
answer in its own. Measured on one thread, that was 15% of the client's CPU per read (2.28 against 1.94 ms), and
at 300 subscriptions the client's CPU, not ARM, sets the pace. This transport keeps what requests decided from
the environment and drops the rest:

- Proxies (HTTPS_PROXY, NO_PROXY, ...) and the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi's, as
  requests uses) are read the way requests reads them, once per host: they do not change during a run.
- ~/.netrc is never consulted (requests would put its password in the Authorization header, over the pipeline's
  bearer token), and no cookie is kept or sent: ARM is stateless.
- Nothing is retried or redirected here: the pipeline's policies do both, within the read's budget.
- Failures become azure-core's errors, which the retry policy retries and the collector records: no connection
  (refused, DNS, TLS, proxy) -> ServiceRequestError, a connect timeout -> ServiceRequestTimeoutError, a read
  timeout -> ServiceResponseTimeoutError, an answer that breaks off (a reset, a body shorter than its
  Content-Length, broken chunking or gzip) -> ServiceResponseError. RequestsTransport called a body cut short an
  IncompleteReadError and other broken bodies an HttpResponseError; here they count as failed reads of the answer.
- Bodies are read whole (ARM pages are small); `stream=True` gets the same in-memory body.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import requests
import urllib3
from azure.core.configuration import ConnectionConfiguration
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline._tools import is_rest
from azure.core.pipeline.transport import HttpResponse, HttpTransport
from azure.core.rest._http_response_impl import HttpResponseImpl
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    DEFAULT_CA_BUNDLE_PATH,
    get_auth_from_url,
    get_encoding_from_headers,
    prepend_scheme_if_needed,
    select_proxy,
)
from urllib3 import exceptions as u3

from auditor.limits import Limits

# Connections kept per host: the CLI's --max-workers is at most 64, and a pool narrower than the reads in flight
# would drop a connection after each answer and handshake again for the next.
POOL_SIZE = 64
BLOCK_SIZE = 32768  # what azure-core's transports read at a time (BiggerBlockSizeHTTPAdapter)
# What requests sends unless told otherwise; the pipeline sets User-Agent, Accept and the rest itself.
DEFAULT_HEADERS = {"Accept-Encoding": "gzip, deflate", "Accept": "*/*", "Connection": "keep-alive"}


class PooledTransport(HttpTransport):  # type: ignore[type-arg]
    """One urllib3 pool per (proxy, CA bundle) and host, shared by every client and thread."""

    def __init__(self, connection_verify: bool | str, limits: Limits, pool_size: int = POOL_SIZE) -> None:
        self.connection_config = ConnectionConfiguration(
            connection_timeout=limits.connect_timeout_s, read_timeout=limits.socket_timeout_s, connection_verify=connection_verify
        )
        self._pool_size = pool_size
        self._lock = threading.Lock()
        self._environment: dict[tuple[str, str, Any], tuple[str | None, Any]] = {}
        self._managers: dict[tuple[str | None, Any], urllib3.PoolManager] = {}
        self._pools: dict[tuple[str, str, int | None, Any], Any] = {}
        self._closed = False

    # ----------------------------------------------------------------------------------------- azure-core's API

    def open(self) -> None:
        return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()
            self._pools.clear()

    def __enter__(self) -> PooledTransport:
        return self

    def __exit__(self, *args: object) -> None:
        return None  # clients do not own it: the ArmClients that made it closes it

    def send(self, request: Any, **kwargs: Any) -> Any:
        if getattr(request, "files", None):
            raise ValueError("aib-audit's transport sends no multipart bodies")
        connect = kwargs.pop("connection_timeout", self.connection_config.timeout)
        read = kwargs.pop("read_timeout", self.connection_config.read_timeout)
        verify = kwargs.pop("connection_verify", self.connection_config.verify)
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(DEFAULT_HEADERS)
        headers.update(request.headers)
        try:
            pool, target = self._route(request.url, verify)
            raw = pool.urlopen(
                request.method,
                target,
                body=request.data,
                headers=dict(headers.items()),
                retries=False,
                redirect=False,
                timeout=urllib3.Timeout(connect=connect, read=read),
                preload_content=True,
                decode_content=True,
                enforce_content_length=True,
            )
        except u3.ConnectTimeoutError as exc:  # NewConnectionError (refused, DNS) is one too
            raise (ServiceRequestError if isinstance(exc, u3.NewConnectionError) else ServiceRequestTimeoutError)(
                exc, error=exc
            ) from exc
        except u3.ReadTimeoutError as exc:
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except (u3.SSLError, u3.ProxyError, u3.LocationValueError) as exc:
            raise ServiceRequestError(exc, error=exc) from exc
        except (u3.HTTPError, OSError) as exc:  # a connection dropped or a body cut short: the answer failed
            raise ServiceResponseError(exc, error=exc) from exc
        body = raw.data
        if is_rest(request):  # azure.core.rest.HttpRequest, else the legacy one (the authorization SDK's)
            return _RestResponse(request, raw, body)
        return _LegacyResponse(request, raw, body)

    # ----------------------------------------------------------------------------------------- routing

    def _route(self, url: str, verify: Any) -> tuple[Any, str]:
        """The pool to send `url` through and the target to name: the path for a direct pool, the whole URL for a
        proxy manager (it tunnels HTTPS with CONNECT)."""
        parts = urllib3.util.parse_url(url)
        key = (parts.scheme or "https", parts.host or "", parts.port, verify)
        pool = self._pools.get(key)
        if pool is not None:
            return pool, parts.request_uri
        proxy, ca = self._settings(parts.scheme or "https", parts.netloc or "", url, verify)
        manager = self._manager(proxy, ca)
        if proxy is not None:
            return manager, url
        with self._lock:
            pool = self._pools.get(key) or manager.connection_from_host(parts.host, parts.port, parts.scheme)
            self._pools[key] = pool
        return pool, parts.request_uri

    def _settings(self, scheme: str, netloc: str, url: str, verify: Any) -> tuple[str | None, Any]:
        """(proxy URL or None, CA bundle path or False) for a host, as requests would work them out."""
        key = (scheme, netloc, verify)
        with self._lock:
            found = self._environment.get(key)
        if found is None:
            with requests.Session() as session:  # only for its environment rules: it sends nothing
                merged = session.merge_environment_settings(url, {}, None, verify, None)
            ca = merged["verify"]
            proxy = select_proxy(url, merged["proxies"])
            if proxy:  # `proxy.corp:3128` means http://proxy.corp:3128, as requests takes it
                proxy = prepend_scheme_if_needed(proxy, "http")
            found = (proxy or None, DEFAULT_CA_BUNDLE_PATH if ca is True else ca)
            with self._lock:
                self._environment[key] = found
        return found

    def _manager(self, proxy: str | None, ca: Any) -> urllib3.PoolManager:
        key = (proxy, ca)
        with self._lock:
            if self._closed:
                raise ServiceRequestError("the transport was closed")
            manager = self._managers.get(key)
            if manager is None:
                manager = self._managers[key] = _new_manager(proxy, ca, self._pool_size)
            return manager


def _new_manager(proxy: str | None, ca: Any, pool_size: int) -> urllib3.PoolManager:
    tls: dict[str, Any] = {"cert_reqs": "CERT_NONE"} if ca is False else {"cert_reqs": "CERT_REQUIRED"}
    if ca is not False:
        tls["ca_cert_dir" if os.path.isdir(str(ca)) else "ca_certs"] = str(ca)
    common = {"num_pools": 8, "maxsize": pool_size, "block": False, **tls}
    if proxy is None:
        return urllib3.PoolManager(**common)
    if proxy.lower().startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:
            raise ServiceRequestError(f"the proxy {proxy.split('@')[-1]} is a SOCKS proxy: install PySocks to use it") from None
        username, password = get_auth_from_url(proxy)
        return SOCKSProxyManager(proxy, username=username or None, password=password or None, **common)  # type: ignore[no-any-return]
    username, password = get_auth_from_url(proxy)
    headers = urllib3.util.make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
    return urllib3.ProxyManager(proxy, proxy_headers=headers, **common)


def _headers(raw: Any) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict(raw.headers)


class _RestResponse(HttpResponseImpl):
    """An `azure.core.rest.HttpResponse` whose body is already read."""

    def __init__(self, request: Any, raw: Any, body: bytes) -> None:
        headers = _headers(raw)
        super().__init__(
            request=request,
            internal_response=raw,
            status_code=raw.status,
            reason=raw.reason,
            headers=headers,
            content_type=headers.get("content-type"),
            block_size=BLOCK_SIZE,
            stream_download_generator=_whole_body,
        )
        self._content = body


class _LegacyResponse(HttpResponse):
    """The `azure.core.pipeline.transport` response, for the SDKs (authorization) that still send legacy requests."""

    def __init__(self, request: Any, raw: Any, body: bytes) -> None:
        super().__init__(request, raw, BLOCK_SIZE)
        self.status_code = raw.status
        self.headers = _headers(raw)
        self.reason = raw.reason
        self.content_type = self.headers.get("content-type")
        self._body = body

    def body(self) -> bytes:
        return self._body

    def text(self, encoding: str | None = None) -> str:
        """As RequestsTransport decodes: the charset the Content-Type names, else UTF-8 (a BOM skipped); bytes
        that do not decode become U+FFFD rather than an exception the pipeline would not expect."""
        chosen = encoding or get_encoding_from_headers(CaseInsensitiveDict(self.headers)) or "utf-8"
        if chosen.lower().replace("_", "-") in ("utf-8", "utf8"):
            chosen = "utf-8-sig"
        try:
            return self._body.decode(chosen, errors="replace")
        except LookupError:  # a charset Python does not know
            return self._body.decode("utf-8-sig", errors="replace")

    def stream_download(self, pipeline: Any, **kwargs: Any) -> Iterator[bytes]:
        return iter([self._body])


def _whole_body(response: Any, pipeline: Any = None, decompress: bool = True, **kwargs: Any) -> Iterator[bytes]:
    yield response._content or b""
