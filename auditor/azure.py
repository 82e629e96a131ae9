"""Azure plumbing: credentials, the ARM endpoint, and the SDK clients the collector reads through (their
pipeline policies are in auditor.pipeline).

Everything here is read-only by construction: every client gets an explicit policy list without the
SDK's auto-registration policy (which would POST `.../register` on a 409 MissingSubscriptionRegistration),
and a guard refuses any request that is not a GET (or the one Resource Graph query POST) before it
leaves the process. SDK objects never leave the collector; this module only hands clients to
`auditor.collect` and `auditor.discover`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.imagebuilder import ImageBuilderClient
from azure.mgmt.managementgroups import ManagementGroupsMgmtClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.locks import ManagementLockClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resource.subscriptions import SubscriptionClient
from azure.mgmt.resourcegraph import ResourceGraphClient

from auditor import DEFAULT_ARM_ENDPOINT
from auditor.errors import CredentialError
from auditor.limits import Limits
from auditor.pacing import Pacer
from auditor.pipeline import CallCounter, bare_https_url, pinned_policies
from auditor.sessions import SharedToken
from auditor.transport import PooledTransport

if TYPE_CHECKING:
    from azure.mgmt.compute import ComputeManagementClient

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
    return bare_https_url(url, "--arm-endpoint", DEFAULT_ARM_ENDPOINT)


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


# --------------------------------------------------------------------------------------------- clients

ClientT = TypeVar("ClientT")

# Policies an SDK configuration builds a default of unless given one. The shared pipeline runs the pinned list;
# these are only kept on the configurations, never run.
_CONFIG_POLICIES = (
    "user_agent_policy",
    "headers_policy",
    "proxy_policy",
    "logging_policy",
    "http_logging_policy",
    "custom_hook_policy",
    "redirect_policy",
    "retry_policy",
)
_UNUSED = SansIOHTTPPolicy()  # type: ignore[var-annotated]


class ArmClients:
    """Creates, caches (per SDK and subscription) and closes the SDK clients; thread-safe.

    Every client talks to one ARM endpoint with one credential, verifies TLS with `connection_verify`
    (True: the system store, or REQUESTS_CA_BUNDLE as requests honours it; or a CA bundle path), sends the token
    to that endpoint only, keeps within `limits` (timeouts, capped Retry-After waits), and shares one CallCounter.
    """

    def __init__(
        self,
        credential: TokenCredential,
        arm_endpoint: str = DEFAULT_ARM_ENDPOINT,
        connection_verify: bool | str = True,
        retry_options: dict[str, Any] | None = None,
        limits: Limits | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        # Every client shares one token (auditor.sessions) and one transport (auditor.transport): clients are per
        # subscription.
        self.credential: TokenCredential = SharedToken(credential)
        self.endpoint = normalize_endpoint(arm_endpoint)
        self.scope = credential_scope(self.endpoint)
        self.connection_verify = connection_verify
        self.limits = limits or Limits()
        self.counter = CallCounter()
        self.pacer = pacer or Pacer()
        self._retry_options = dict(retry_options or {})
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._stack = ExitStack()
        self._transport = PooledTransport(connection_verify, self.limits)
        self._stack.callback(self._transport.close)
        # One pipeline (policies, then the shared transport) for every client: the clients differ only in the
        # subscription their operations put in the URL. Building a policy list per client was most of the cost of
        # a client (about 10 ms each, six per subscription): at 300 subscriptions that held the first reads back for
        # seconds. `pipeline=` makes azure-core's PipelineClient use it as is, so the SDK's own default list
        # (ARM's auto-registration policy among them, which POSTs) is never built either.
        self.policies = pinned_policies(
            self.endpoint,
            ARMChallengeAuthenticationPolicy(self.credential, self.scope),
            self.limits,
            self.counter,
            self._retry_options,
            self.pacer,
        )
        self._pipeline: Pipeline[Any, Any] = Pipeline(self._transport, self.policies)
        self._options = {
            "base_url": self.endpoint,
            "credential_scopes": [self.scope],
            "pipeline": self._pipeline,
            "policies": self.policies,
            "transport": self._transport,
            # The SDK configurations would otherwise build (and never use) a default of each policy per client.
            **{name: _UNUSED for name in _CONFIG_POLICIES},
        }

    def _get(self, name: str, subscription: str, make: Callable[[dict[str, Any]], ClientT]) -> ClientT:
        key = (name, subscription.lower())
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = make(self._options)  # holds nothing of its own to close: the transport is shared
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
        # The largest SDK by far (0.15 s to import): only a collection needs it (not --snapshot, checks, catalog).
        from azure.mgmt.compute import ComputeManagementClient

        return self._get("compute", subscription, lambda o: ComputeManagementClient(self.credential, subscription, **o))

    def msi(self, subscription: str) -> ManagedServiceIdentityClient:
        return self._get("msi", subscription, lambda o: ManagedServiceIdentityClient(self.credential, subscription, **o))

    def management_groups(self) -> ManagementGroupsMgmtClient:
        return self._get("managementgroups", "", lambda o: ManagementGroupsMgmtClient(self.credential, **o))

    def resource_graph(self) -> ResourceGraphClient:
        return self._get("resourcegraph", "", lambda o: ResourceGraphClient(self.credential, **o))

    def close(self) -> None:
        with self._lock:
            self._clients.clear()
            self._stack.close()

    def __enter__(self) -> ArmClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
