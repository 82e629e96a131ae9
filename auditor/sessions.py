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

import requests
from azure.core.credentials import AccessToken, TokenCredential
from azure.core.pipeline.transport import RequestsTransport
from azure.core.pipeline.transport._requests_basic import BiggerBlockSizeHTTPAdapter
from urllib3.util.retry import Retry

from auditor.limits import Limits

# Connections kept per host: the CLI's --max-workers is at most 64, and a pool narrower than the reads in flight
# would drop a connection after each answer and handshake again for the next.
POOL_SIZE = 64
# A cached token is renewed this long before it expires, so no request carries one that lapses on the way.
REFRESH_BEFORE_S = 300


def shared_transport(connection_verify: bool | str, limits: Limits) -> RequestsTransport:
    """A transport over one session that the clients do not own (closing a client leaves it open): the caller
    closes it with `close_transport`. Same settings as the SDK's own: environment (proxies, REQUESTS_CA_BUNDLE)
    honoured, urllib3's retries off (the pipeline retries), the SDK's bigger read blocks."""
    session = requests.Session()
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
