"""One HTTP session and one token per endpoint, shared by every SDK client the collector creates.

The collector makes an SDK client per SDK and subscription (their operations build URLs from the client's
subscription): 300 subscriptions are some 2,000 clients. Left to themselves, each opens its own requests session
(its own TLS connections, handshakes included) and its auth policy asks the credential for its own token (for
`az login` that is an `az` process per client). Here every client gets the same transport, whose session keeps a
connection pool as wide as the widest --max-workers, and a credential that hands out one cached token per scope.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.core.pipeline.transport._requests_basic import BiggerBlockSizeHTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.util.retry import Retry

from auditor.limits import Limits

# Connections kept per host: the CLI's --max-workers is at most 64, and a pool narrower than the reads in flight
# would drop a connection after each answer and handshake again for the next.
POOL_SIZE = 64
# A cached token is renewed this long before it expires, so no request carries one that lapses on the way.
REFRESH_BEFORE_S = 300


class LeanSession(requests.Session):
    """A requests session for the pipeline's one shape of call (headers, body, no redirects), without the
    per-request work that shape does not need: about a third of the client's CPU per read went to merging session
    settings, cookies and hooks and re-reading the environment, and at 300 subscriptions the client's CPU, not
    ARM, set the pace.

    - Proxies and CA bundle still come from the environment exactly as requests reads them
      (`merge_environment_settings`), computed once per scheme and host: they do not change during a run.
    - ~/.netrc is never consulted. requests would put its password in the Authorization header (over the pipeline's
      bearer token), and ARM and Graph take bearer tokens only.
    - Cookies are neither kept nor sent: ARM and Graph are stateless.
    Any other kind of call goes the ordinary way."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._environment_lock = threading.Lock()

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Any = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        if allow_redirects or params or cookies or auth or hooks or json is not None or isinstance(url, bytes):
            return super().request(
                method, url, params, data, headers, cookies, files, auth, timeout, allow_redirects, proxies, hooks,
                stream, verify, cert, json,
            )
        merged = CaseInsensitiveDict(self.headers)  # requests' defaults (Accept-Encoding: gzip among them)
        merged.update(headers or {})
        prep = requests.PreparedRequest()
        prep.prepare(
            method=method.upper(), url=url, headers={k: v for k, v in merged.items() if v is not None}, files=files,
            data=data or {},
        )
        settings = self._settings(str(prep.url), proxies, stream, verify, cert)
        response = self.get_adapter(str(prep.url)).send(prep, timeout=timeout, **settings)
        if not settings["stream"]:
            response.content  # noqa: B018 - read the body now, as Session.send does
        return response

    def _settings(self, url: str, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, tuple(sorted((proxies or {}).items())), stream, verify, cert)
        with self._environment_lock:
            found = self._environment.get(key)
        if found is None:
            found = self.merge_environment_settings(url, dict(proxies or {}), stream, verify, cert)
            with self._environment_lock:
                self._environment[key] = found
        return {**found, "proxies": dict(found["proxies"])}


def shared_transport(connection_verify: bool | str, limits: Limits) -> RequestsTransport:
    """A transport over one session that the clients do not own (closing a client leaves it open): the caller
    closes it with `close_transport`. Same settings as the SDK's own: environment (proxies, REQUESTS_CA_BUNDLE)
    honoured, urllib3's retries off (the pipeline retries), the SDK's bigger read blocks."""
    session = LeanSession()
    session.trust_env = True
    adapter = BiggerBlockSizeHTTPAdapter(
        max_retries=Retry(total=False, redirect=False, raise_on_status=False), pool_connections=4, pool_maxsize=POOL_SIZE
    )
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter)
    return RequestsTransport(
        session=session,
        session_owner=False,
        connection_verify=connection_verify,
        connection_timeout=limits.connect_timeout_s,
        read_timeout=limits.socket_timeout_s,
    )


def close_transport(transport: RequestsTransport) -> None:
    if transport.session is not None:
        transport.session.close()


class SharedToken:
    """A TokenCredential that asks the wrapped one once per scope set and hands the token to every client until
    shortly before it expires. A request with claims (a CAE challenge) or other options goes straight through."""

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], AccessToken] = {}

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        if kwargs.get("claims") or kwargs.get("tenant_id"):
            return self._inner.get_token(*scopes, **kwargs)
        key = tuple(scopes)
        with self._lock:  # one caller fetches; the others wait for its token rather than fetch their own
            token = self._tokens.get(key)
            if token is None or token.expires_on - REFRESH_BEFORE_S <= time.time():
                token = self._tokens[key] = self._inner.get_token(*scopes, **kwargs)
            return token

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()
