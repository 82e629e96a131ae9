"""The pipeline policies every client (ARM and Graph) reads through: pinned to one endpoint, time-bounded, read-only.

- EndpointGuard refuses a request for any other scheme, host or port before the token is added.
- ReadOnlyGuard refuses anything but GET (and the one Resource Graph query POST).
- ReadBudget / ReadBudgetPolicy / AttemptTimeouts: one wall-clock budget per read; every attempt's connect and
  read timeouts are cut to what is left of it.
- BoundedRetryPolicy and ThrottleWait honour Retry-After only up to the caps in auditor.limits.
- CallCounter counts requests and 429s.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline import policies as core_policies
from azure.mgmt.core.policies import ARMHttpLoggingPolicy
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from auditor import __version__
from auditor.errors import UsageError
from auditor.limits import FOREIGN_ENDPOINT, READ_TIMEOUT, RETRY_AFTER_TOO_LONG, RUN_TIMEOUT, Limits
from auditor.pacing import Pacer, PacingPolicy
from auditor.workers import pause


class WriteRefused(RuntimeError):
    """Raised before any non-GET request leaves the process: the auditor is read-only."""


class ReadLimitExceeded(Exception):
    """A read that must stop: out of time, asked to wait too long, or sent somewhere it must not go.

    Deliberately not an AzureError: the SDK's RetryPolicy retries AzureErrors, and none of these may be retried.
    The collector records it as a failed read with `code` (ERROR rows, exit 3).
    """

    code = "ReadLimitExceeded"


class ReadTimedOut(ReadLimitExceeded):
    code = READ_TIMEOUT


class RunTimedOut(ReadLimitExceeded):
    code = RUN_TIMEOUT


class RetryAfterTooLong(ReadLimitExceeded):
    code = RETRY_AFTER_TOO_LONG


class ForeignEndpointRefused(ReadLimitExceeded):
    """A request (a nextLink, a redirect) for another scheme, host or port than the client's endpoint."""

    code = FOREIGN_ENDPOINT


# What origin() returns for a URL whose host two parsers read differently: it equals no endpoint.
AMBIGUOUS = ("ambiguous", "", -1)


def _bare_host(host: str | None) -> str:
    return (host or "").lower().strip("[]")


def unambiguous(url: str) -> bool:
    """Do urllib3 (which opens the connection) and urlsplit (which the guards read) see the same scheme, host and
    port? `https://evil:443\\@arm:443/` is arm to urlsplit and evil to urllib3 (and to requests): a nextLink or
    redirect shaped like that would pass a guard that reads one and be sent, token and all, where the other
    points. Such a URL is refused, whatever either parser says."""
    try:
        connects = parse_url(url)
        guarded = urlsplit(url)
        guarded_port = guarded.port
    except (ValueError, LocationParseError):
        return False
    return (
        (connects.scheme or "").lower() == guarded.scheme.lower()
        and _bare_host(connects.host) == _bare_host(guarded.hostname)
        and connects.port == guarded_port
    )


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the host lower-cased and the scheme's default port filled in; AMBIGUOUS when the
    URL's host depends on who parses it."""
    if not unambiguous(url):
        return AMBIGUOUS
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1  # an invalid port never matches a real endpoint
    return scheme, (parts.hostname or "").lower(), port if port is not None else {"https": 443, "http": 80}.get(scheme, -1)


def bare_https_url(url: str, flag: str, example: str, paths: tuple[str, ...] = ("",)) -> str:
    """`https://host[:port]` from what the user typed for `flag`, or one UsageError line (exit 2), never a crash."""
    raw = (url or "").strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number or out of range
        raise UsageError(f"{flag} is not a valid https:// URL (got {raw!r})") from None
    if parts.scheme.lower() != "https" or not parts.hostname or not unambiguous(raw):
        raise UsageError(f"{flag} must be an https:// URL (got {raw!r})")
    if parts.query or parts.fragment or parts.path.strip("/") not in paths:
        raise UsageError(f"{flag} must be a bare host URL such as {example} (got {raw!r})")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"https://{host}" + (f":{port}" if port else "")


def same_origin(url: str, endpoint: str) -> bool:
    found = origin(url)
    return found != AMBIGUOUS and found == origin(endpoint)


class EndpointGuard(core_policies.SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Refuses, before the token is added and before anything is sent, any request that is not for the endpoint.

    It sits below the redirect and retry policies, so it sees every attempt, every page and every redirect: a
    nextLink or a Location that names another scheme, host or port never receives the bearer token.
    """

    def __init__(self, endpoint: str) -> None:
        super().__init__()
        self.endpoint = endpoint
        self._origin = origin(endpoint)  # once, not on every request

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        url = request.http_request.url
        found = origin(url)
        if found == AMBIGUOUS:
            raise ForeignEndpointRefused(
                "refused to send a request to a URL whose host reads differently to different parsers "
                f"(a nextLink or redirect): only {self.endpoint} is trusted with the token"
            )
        if found != self._origin:
            scheme, host, port = found
            raise ForeignEndpointRefused(
                f"refused to send a request to {scheme}://{host}:{port} (a nextLink or redirect): "
                f"only {self.endpoint} is trusted with the token"
            )


# The one POST that only reads: a Resource Graph query. Matched on the whole path, case-insensitively.
RESOURCE_GRAPH_PATH = "/providers/microsoft.resourcegraph/resources"


def is_resource_graph_query(method: str, url: str, endpoint: str | None) -> bool:
    """`POST {endpoint}/providers/Microsoft.ResourceGraph/resources?api-version=...` and nothing else: same
    scheme, host and port as the ARM endpoint, exactly that path, only an api-version in the query."""
    if method.upper() != "POST" or endpoint is None:
        return False
    parts = urlsplit(url)
    query_keys = {kv.split("=", 1)[0].lower() for kv in parts.query.split("&") if kv}
    path_ok = parts.path.lower().rstrip("/") == RESOURCE_GRAPH_PATH
    return same_origin(url, endpoint) and path_ok and query_keys == {"api-version"}


class ReadOnlyGuard(core_policies.SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Refuses every request but a GET, and the Resource Graph query POST to `endpoint`, before it is sent."""

    def __init__(self, endpoint: str | None = None) -> None:
        self.endpoint = endpoint

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        method = request.http_request.method.upper()
        if method == "GET" or is_resource_graph_query(method, request.http_request.url, self.endpoint):
            return
        raise WriteRefused(f"aib-audit is read-only: refused {method} {request.http_request.url}")


# --- the per-read budget: one deadline and one waiting allowance for every request a read makes -------------


@dataclass
class ReadBudget:
    """What one read (a GET, or a list with all its pages) may still spend. Lives in a thread-local while the
    read runs in its worker thread, so every policy on the way (retries, waits, timeouts) draws on the same one."""

    limits: Limits
    deadline: float  # time.monotonic()
    label: str = "the read"
    waited_s: float = 0.0
    run_bound: bool = False  # the deadline is the run's (--timeout), not the read's own

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def timed_out(self) -> ReadLimitExceeded:
        if self.run_bound:
            return RunTimedOut(f"{self.label} was cut short when the run's time limit ({self.limits.run_timeout_s:g} s) ran out")
        return ReadTimedOut(f"{self.label} did not finish within the read's time limit ({self.limits.read_timeout_s:g} s)")

    def wait(self, seconds: float, retry_after: bool) -> None:
        """Sleep between attempts, unless the wait breaks a limit: then fail the read now rather than sleep."""
        seconds = max(0.0, seconds)
        if retry_after and seconds > self.limits.max_retry_after_s:
            raise RetryAfterTooLong(
                f"ARM asked to retry after {seconds:g} s, longer than the {self.limits.max_retry_after_s:g} s "
                "aib-audit waits for one retry"
            )
        if self.waited_s + seconds > self.limits.max_wait_s:
            raise RetryAfterTooLong(
                f"still throttled or failing after {self.waited_s:g} s of waiting (limit {self.limits.max_wait_s:g} s per read)"
            )
        if seconds >= self.remaining():
            raise self.timed_out()
        self.waited_s += seconds
        # A worker waiting out ARM lends its seat to another subscription's reads meanwhile (auditor.workers).
        if not pause(seconds, self.deadline):
            raise self.timed_out()


_budget = threading.local()


def current_budget() -> ReadBudget | None:
    return getattr(_budget, "current", None)


@contextmanager
def read_budget(
    limits: Limits, deadline: float | None = None, label: str = "the read", run_deadline: float | None = None
) -> Iterator[ReadBudget]:
    """Run one read under a budget in this thread: until `deadline` (default: now + limits.read_timeout_s), or
    the run's deadline when that comes first."""
    outer = current_budget()
    own = deadline if deadline is not None else time.monotonic() + limits.read_timeout_s
    run_bound = run_deadline is not None and run_deadline < own
    budget = ReadBudget(limits, run_deadline if run_bound and run_deadline is not None else own, label, run_bound=run_bound)
    _budget.current = budget
    try:
        yield budget
    finally:
        _budget.current = outer


class ReadBudgetPolicy(core_policies.HTTPPolicy):  # type: ignore[type-arg]
    """Top of the pipeline: an SDK call made outside `read_budget()` still gets a budget of its own."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits

    def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        if current_budget() is not None:
            return self.next.send(request)
        with read_budget(self.limits):
            return self.next.send(request)


class AttemptTimeouts(core_policies.SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Per attempt (below the retry policy): no attempt starts past the read's deadline, and the transport's
    connect and socket timeouts never outlast it. A socket timeout cannot stop a body drip-fed a byte at a time;
    the collector's wall clock stops those (it gives up on the worker thread)."""

    def __init__(self, limits: Limits) -> None:
        super().__init__()
        self.limits = limits

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        budget = current_budget()
        left = budget.remaining() if budget is not None else self.limits.read_timeout_s
        if left <= 0:
            raise budget.timed_out() if budget is not None else ReadTimedOut("the read ran out of time")
        options = request.context.options
        options["connection_timeout"] = max(0.05, min(self.limits.connect_timeout_s, left))
        options["read_timeout"] = max(0.05, min(self.limits.socket_timeout_s, left))


class BoundedRetryPolicy(core_policies.RetryPolicy):
    """The SDK's retry policy, whose waits (Retry-After and backoff) draw on the read's budget.

    Stock azure-core sleeps whatever Retry-After says (`Retry-After: 3600` is an hour) and backs off up to 120 s.
    """

    def __init__(self, limits: Limits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits

    def _budget_wait(self, seconds: float, retry_after: bool) -> None:
        budget = current_budget()
        if budget is None:  # only reachable when the policy is used on its own (tests)
            with read_budget(self.limits) as fresh:
                fresh.wait(seconds, retry_after)
            return
        budget.wait(seconds, retry_after)

    def _sleep_for_retry(self, response: PipelineResponse, transport: Any) -> bool:  # type: ignore[type-arg]
        retry_after = self.get_retry_after(response)
        if retry_after:
            self._budget_wait(retry_after, retry_after=True)
            return True
        return False

    def _sleep_backoff(self, settings: dict[str, Any], transport: Any) -> None:
        backoff = self.get_backoff_time(settings)
        if backoff > 0:
            self._budget_wait(backoff, retry_after=False)


class ThrottleWait(core_policies.HTTPPolicy):  # type: ignore[type-arg]
    """Waits out sustained ARM throttling and short bursts of server errors.

    ARM throttles reads per subscription and principal (a bucket of 250, refilled at 25 per second). The
    SDK's retry policy (which sits below this one) honours Retry-After but gives a request only 3 status
    retries, shared by 429s and 5xx, so a bulk sweep under contention (or a bad minute at ARM) could lose reads.
    A GET still answered 429 after those retries is sent again after its Retry-After, up to `rounds` more times;
    one still answered 500/502/503/504, up to `server_rounds` more times. Every wait draws on the read's budget:
    a Retry-After past the cap, or waits past the read's allowance, fail the read instead of sleeping.
    """

    TRANSIENT = frozenset({500, 502, 503, 504})

    def __init__(self, rounds: int = 5, limits: Limits | None = None, server_rounds: int = 2) -> None:
        super().__init__()
        self.rounds = rounds
        self.server_rounds = server_rounds
        self.limits = limits or Limits()
        self._retry_after = core_policies.RetryPolicy()  # only for its Retry-After parser

    def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        response = self.next.send(request)
        throttled = failed = 0
        while True:
            status = response.http_response.status_code
            if status == 429 and throttled < self.rounds:
                throttled += 1
            elif status in self.TRANSIENT and failed < self.server_rounds:
                failed += 1
            else:
                return response
            retry_after = self._retry_after.get_retry_after(response)
            budget = current_budget()
            if budget is None:
                with read_budget(self.limits) as budget:
                    budget.wait(1.0 if retry_after is None else retry_after, retry_after=retry_after is not None)
            else:
                budget.wait(1.0 if retry_after is None else retry_after, retry_after=retry_after is not None)
            response = self.next.send(request)


def pacing_wait(seconds: float) -> None:
    """Wait for a token of the subscription's bucket (auditor.pacing) within the read's deadline, lending the
    worker's seat meanwhile. Not counted against the read's waiting allowance: it is not ARM refusing it."""
    budget = current_budget()
    if budget is not None and seconds >= budget.remaining():
        raise budget.timed_out()
    if not pause(seconds, budget.deadline if budget is not None else None) and budget is not None:
        raise budget.timed_out()


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


def pinned_policies(
    endpoint: str,
    auth_policy: Any,
    limits: Limits,
    counter: CallCounter | None = None,
    retry_options: dict[str, Any] | None = None,
    pacer: Pacer | None = None,
) -> list[Any]:
    """The policy list for one named endpoint (ARM here; Graph uses the same with its own endpoint and auth).

    The SDK's default list minus ARMAutoResourceProviderRegistrationPolicy (it POSTs), with:
    - a read budget at the top, bounded waits in ThrottleWait and the retry policy, attempt timeouts below them;
    - redirects followed only a few hops and only within the endpoint;
    - below the retry and redirect policies and BEFORE the auth policy, the endpoint guard and the read-only
      guard, so a request for another host or a write is refused before it carries a token, on every attempt;
    - below them, per attempt, the pacing of each subscription's reads (auditor.pacing: ARM's remaining-reads
      header and 429s), then the attempt's timeouts, so waiting for ARM's bucket never eats a socket timeout;
    - the counter after them, so it counts what was actually sent.
    """
    return [
        core_policies.RequestIdPolicy(),
        core_policies.HeadersPolicy(),
        core_policies.UserAgentPolicy(sdk_moniker=f"aib-audit/{__version__}"),
        core_policies.ProxyPolicy(),
        core_policies.ContentDecodePolicy(),
        ReadBudgetPolicy(limits),
        core_policies.RedirectPolicy(redirect_max=limits.max_redirects, permit_redirects=limits.max_redirects > 0),
        ThrottleWait(limits=limits),
        BoundedRetryPolicy(limits, **(retry_options or {})),
        EndpointGuard(endpoint),
        ReadOnlyGuard(endpoint),
        *([PacingPolicy(pacer, pacing_wait)] if pacer is not None else []),
        AttemptTimeouts(limits),
        auth_policy,
        core_policies.CustomHookPolicy(),
        counter or CallCounter(),
        core_policies.NetworkTraceLoggingPolicy(),
        core_policies.DistributedTracingPolicy(),
        core_policies.SensitiveHeaderCleanupPolicy(),
        ARMHttpLoggingPolicy(),
    ]
