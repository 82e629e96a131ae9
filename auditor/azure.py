"""Azure plumbing: credentials, the ARM endpoint, and the SDK clients the collector reads through.

Everything here is read-only by construction: every client gets an explicit policy list without the
SDK's auto-registration policy (which would POST `.../register` on a 409 MissingSubscriptionRegistration),
and a guard refuses any request that is not a GET before it leaves the process. SDK objects never leave
the collector; this module only hands clients to `auditor.collect`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline import policies as core_policies
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy, ARMHttpLoggingPolicy
from azure.mgmt.imagebuilder import ImageBuilderClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.locks import ManagementLockClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient

from auditor import DEFAULT_ARM_ENDPOINT, __version__
from auditor.errors import CredentialError, UsageError

# ARM host -> token audience. Sovereign clouds have their own; anything else (the emulator, a private
# endpoint, Azure Stack is out of scope) asks for a public-cloud ARM token.
ARM_AUDIENCES: dict[str, str] = {
    "management.azure.com": "https://management.azure.com",
    "management.usgovcloudapi.net": "https://management.usgovcloudapi.net",
    "management.chinacloudapi.cn": "https://management.chinacloudapi.cn",
}

CREDENTIAL_HINT = (
    "run 'az login', or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET, "
    "or choose a credential with AZURE_TOKEN_CREDENTIALS"
)


# --------------------------------------------------------------------------------------------- endpoint


def normalize_endpoint(url: str) -> str:
    """`https://host[:port]` without a trailing slash; anything else is a usage error (exit 2)."""
    raw = (url or "").strip()
    parts = urlsplit(raw)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise UsageError(f"--arm-endpoint must be an https:// URL (got {raw!r})")
    if parts.query or parts.fragment or parts.path.strip("/"):
        raise UsageError(f"--arm-endpoint must be a bare host URL such as {DEFAULT_ARM_ENDPOINT} (got {raw!r})")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"--arm-endpoint has an invalid port (got {raw!r})") from None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"https://{host}" + (f":{port}" if port else "")


def credential_scope(endpoint: str) -> str:
    """The token scope for an ARM endpoint: its cloud's ARM audience + `/.default`."""
    host = (urlsplit(endpoint).hostname or "").lower()
    return ARM_AUDIENCES.get(host, ARM_AUDIENCES["management.azure.com"]) + "/.default"


# --------------------------------------------------------------------------------------------- credentials


class StaticTokenCredential:
    """A TokenCredential that returns a fixed bearer token (demo, emulator, tests); never touches the network."""

    def __init__(self, token: str = "aib-audit-static") -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)

    def close(self) -> None:
        return None


def _one_line(text: str, limit: int = 400) -> str:
    """Azure identity errors span many lines; keep what names each credential and why it failed."""
    skip = ("defaultazurecredential failed", "attempted credentials", "to mitigate this issue", "visit https://")
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    kept = [ln for ln in lines if not ln.lower().startswith(skip)] or lines
    out = re.sub(r"\s+", " ", "; ".join(kept))
    return out if len(out) <= limit else out[: limit - 3] + "..."


def credential_error(exc: BaseException) -> CredentialError:
    return CredentialError(f"no usable Azure credential: {CREDENTIAL_HINT} ({_one_line(str(exc))})")


class CheckedCredential:
    """Wraps a TokenCredential so that a failure to get a token becomes one clear CredentialError (exit 2)."""

    def __init__(self, inner: TokenCredential) -> None:
        self._inner = inner

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            return self._inner.get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:  # CredentialUnavailableError is a subclass
            raise credential_error(exc) from None

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if callable(close):
            close()


def default_credential() -> CheckedCredential:
    """DefaultAzureCredential as Azure users expect it (AZURE_TOKEN_CREDENTIALS, environment, workload
    identity, managed identity, az/azd/PowerShell login), never an interactive browser."""
    from azure.identity import DefaultAzureCredential

    try:
        inner = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    except (ValueError, ClientAuthenticationError) as exc:  # e.g. an unknown AZURE_TOKEN_CREDENTIALS value
        raise CredentialError(f"cannot set up an Azure credential: {_one_line(str(exc))}") from None
    return CheckedCredential(inner)


# --------------------------------------------------------------------------------------------- policies


class WriteRefused(RuntimeError):
    """Raised before any non-GET request leaves the process: the auditor is read-only."""


class ReadOnlyGuard(core_policies.SansIOHTTPPolicy):  # type: ignore[type-arg]
    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        method = request.http_request.method.upper()
        if method != "GET":
            raise WriteRefused(f"aib-audit is read-only: refused {method} {request.http_request.url}")


class ThrottleWait(core_policies.HTTPPolicy):  # type: ignore[type-arg]
    """Waits out sustained ARM throttling.

    ARM throttles reads per subscription and principal (a bucket of 250, refilled at 25 per second). The
    SDK's retry policy (which sits below this one) honours Retry-After but gives a request only 3 status
    retries, so a bulk sweep under contention could lose reads to 429. A request still answered 429 after
    those retries is sent again after its Retry-After, up to `rounds` more times.
    """

    def __init__(self, rounds: int = 5, max_wait_s: float = 60.0) -> None:
        super().__init__()
        self.rounds = rounds
        self.max_wait_s = max_wait_s
        self._retry_after = core_policies.RetryPolicy()  # only for its Retry-After parser

    def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        response = self.next.send(request)
        for _ in range(self.rounds):
            if response.http_response.status_code != 429:
                break
            wait = self._retry_after.get_retry_after(response)
            time.sleep(min(max(1.0 if wait is None else wait, 0.0), self.max_wait_s))
            response = self.next.send(request)
        return response


class CallCounter(core_policies.SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Counts every HTTP request sent (retries included: it runs per retry) and every 429 seen (azqr-style)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.throttled = 0

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        with self._lock:
            self.calls += 1

    def on_response(self, request: PipelineRequest, response: PipelineResponse) -> None:  # type: ignore[type-arg]
        if response.http_response.status_code == 429:
            with self._lock:
                self.throttled += 1


# --------------------------------------------------------------------------------------------- clients

ClientT = TypeVar("ClientT")


class ArmClients:
    """Creates, caches (per SDK and subscription) and closes the SDK clients; thread-safe.

    Every client talks to one ARM endpoint with one credential, verifies TLS with `connection_verify`
    (True: the system store, or REQUESTS_CA_BUNDLE as requests honours it; or a CA bundle path), keeps the
    SDK's default retry policy (it honours Retry-After) with ThrottleWait above it, and shares one
    CallCounter.
    """

    def __init__(
        self,
        credential: TokenCredential,
        arm_endpoint: str = DEFAULT_ARM_ENDPOINT,
        connection_verify: bool | str = True,
        retry_options: dict[str, Any] | None = None,
    ) -> None:
        self.credential = credential
        self.endpoint = normalize_endpoint(arm_endpoint)
        self.scope = credential_scope(self.endpoint)
        self.connection_verify = connection_verify
        self.counter = CallCounter()
        self._guard = ReadOnlyGuard()
        self._retry_options = dict(retry_options or {})
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._stack = ExitStack()

    def _policies(self) -> list[Any]:
        # The SDK's default list minus ARMAutoResourceProviderRegistrationPolicy (it POSTs), plus the guard
        # and the counter right after the retry policy so they see every attempt.
        return [
            core_policies.RequestIdPolicy(),
            core_policies.HeadersPolicy(),
            core_policies.UserAgentPolicy(sdk_moniker=f"aib-audit/{__version__}"),
            core_policies.ProxyPolicy(),
            core_policies.ContentDecodePolicy(),
            core_policies.RedirectPolicy(),
            ThrottleWait(),
            core_policies.RetryPolicy(**self._retry_options),
            ARMChallengeAuthenticationPolicy(self.credential, self.scope),
            core_policies.CustomHookPolicy(),
            self._guard,
            self.counter,
            core_policies.NetworkTraceLoggingPolicy(),
            core_policies.DistributedTracingPolicy(),
            core_policies.SensitiveHeaderCleanupPolicy(),
            ARMHttpLoggingPolicy(),
        ]

    def _options(self) -> dict[str, Any]:
        return {
            "base_url": self.endpoint,
            "credential_scopes": [self.scope],
            "policies": self._policies(),
            "connection_verify": self.connection_verify,
        }

    def _get(self, name: str, subscription: str, make: Callable[[dict[str, Any]], ClientT]) -> ClientT:
        key = (name, subscription.lower())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                # Entering opens the transport now, so threads never race to create its session.
                client = self._stack.enter_context(make(self._options()))  # type: ignore[arg-type]
                self._clients[key] = client
            return client  # type: ignore[no-any-return]

    def subscriptions(self) -> SubscriptionClient:
        return self._get("subscriptions", "", lambda o: SubscriptionClient(self.credential, **o))

    def imagebuilder(self, subscription: str) -> ImageBuilderClient:
        return self._get("imagebuilder", subscription, lambda o: ImageBuilderClient(self.credential, subscription, **o))

    def authorization(self, subscription: str) -> AuthorizationManagementClient:
        return self._get(
            "authorization", subscription, lambda o: AuthorizationManagementClient(self.credential, subscription, **o)
        )

    def resources(self, subscription: str) -> ResourceManagementClient:
        return self._get("resources", subscription, lambda o: ResourceManagementClient(self.credential, subscription, **o))

    def locks(self, subscription: str) -> ManagementLockClient:
        return self._get("locks", subscription, lambda o: ManagementLockClient(self.credential, subscription, **o))

    def compute(self, subscription: str) -> ComputeManagementClient:
        return self._get("compute", subscription, lambda o: ComputeManagementClient(self.credential, subscription, **o))

    def msi(self, subscription: str) -> ManagedServiceIdentityClient:
        return self._get("msi", subscription, lambda o: ManagedServiceIdentityClient(self.credential, subscription, **o))

    def close(self) -> None:
        with self._lock:
            self._clients.clear()
            self._stack.close()

    def __enter__(self) -> ArmClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
