"""One token per scope, shared by every SDK client the collector creates.

The collector makes an SDK client per SDK and subscription (their operations build URLs from the client's
subscription): 300 subscriptions are some 2,000 clients. Left to themselves, each client's auth policy would ask
the credential for its own token (for `az login` that is an `az` process per client). They all run one pipeline
(auditor.azure) over one transport (auditor.transport), with a credential that hands out one cached token per
scope.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

# A cached token is renewed this long before it expires, so no request carries one that lapses on the way.
REFRESH_BEFORE_S = 300


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
