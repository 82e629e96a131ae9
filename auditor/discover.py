"""Phase 0 of the collector: turn the scope flags into the subscriptions to read, through ARM and Resource Graph.

Part of the collector (with collect.py, the only modules that talk to Azure); the decisions are pure functions
in scope.py and resourcegraph.py, this module only makes the reads, all through the collector's ArmClients
(so the same read-only guard, retry, throttle and call counter apply):

  1. GET each subscription named with -s, in parallel: one that fails ends the run (exit 2), as before.
  2. Discovery (only with --management-group / --all-subscriptions): `GET /subscriptions` and/or the
     management-group descendants API, paged. Failing to read the scope itself ends the run (exit 2): an audit
     that cannot tell what it should cover must not report on a part of it.
  3. Resource Graph (unless --no-resource-graph): which discovered subscriptions hold templates, or a gallery or
     identity a template uses. The others are skipped as empty; any failure falls back to ARM for all of them.
  4. GET each discovered subscription left, in parallel: one that cannot be read becomes a read error of kind
     `subscriptions` (an ERROR row, exit 3) and is not audited; one that is not Enabled is skipped with its state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from auditor import ids, resourcegraph, scope
from auditor.azure import ArmClients, credential_error
from auditor.errors import CredentialError, EndpointError, SubscriptionError, UsageError
from auditor.limits import Limits
from auditor.pipeline import ReadLimitExceeded, read_budget
from auditor.reads import GRACE_S, Capture, Failure, Read, ReadRunner, _parse, connection_reason, http_failure
from auditor.scope import ScopeResult, ScopeSpec
from auditor.workers import DaemonPool, Task

Progress = Callable[[str], None]
SUBSCRIPTIONS_KIND = "subscriptions"  # the read-error kind of a discovered subscription that cannot be read


def deadline_s(limits: Limits) -> float:
    return min(limits.read_timeout_s, limits.run_timeout_s)


def reach_subscriptions(arm: ArmClients, pool: DaemonPool, subs: tuple[str, ...], run_deadline: float) -> None:
    """GET every named subscription on the workers, in parallel, each waited for against the wall clock: an
    endpoint that never answers is exit 2 in seconds, and the first failure (in the order named) ends the run."""
    tasks: list[Task[None]] = [pool.submit(check_subscription, arm, sub, run_deadline) for sub in subs]
    try:
        for sub, task in zip(subs, tasks, strict=True):
            deadline = min(time.monotonic() + arm.limits.read_timeout_s, run_deadline)
            try:
                task.future.result(timeout=max(0.0, deadline - time.monotonic()) + GRACE_S)
            except FutureTimeout:
                raise EndpointError(
                    f"ARM endpoint {arm.endpoint} did not answer for subscription {sub} within {deadline_s(arm.limits):g} s"
                ) from None
    except BaseException:
        for task in tasks:
            pool.abandon(task)
        raise


def check_subscription(arm: ArmClients, sub: str, run_deadline: float) -> None:
    """GET a subscription named with -s: the one read whose failure ends the run with a clear message."""
    try:
        with read_budget(arm.limits, label=f"the GET of subscription {sub}", run_deadline=run_deadline):
            # One retry, not the SDK's three: an endpoint that cannot be reached (refused, or a TLS handshake that
            # never completes, which surfaces as a read timeout) should say so in seconds.
            arm.subscriptions().subscriptions.get(sub, retry_connect=1, retry_read=1)
    except ClientAuthenticationError as exc:
        if exc.response is None:
            raise credential_error(exc) from None
        f = http_failure(exc)
        raise CredentialError(
            f"ARM at {arm.endpoint} rejected the credential's token (HTTP {f.status} {f.code}: {f.message})"
        ) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        reason = connection_reason(exc)
        if "timed out" in reason:
            lim = arm.limits
            reason += f" (tried twice; {lim.connect_timeout_s:g} s to connect, {lim.socket_timeout_s:g} s to answer)"
        raise EndpointError(f"cannot reach ARM endpoint {arm.endpoint}: {reason}") from None
    except ReadLimitExceeded as exc:
        raise EndpointError(f"ARM endpoint {arm.endpoint} failed for subscription {sub}: {exc}") from None
    except DecodeError:
        raise EndpointError(f"ARM endpoint {arm.endpoint} sent an unreadable answer for subscription {sub}") from None
    except HttpResponseError as exc:
        f = http_failure(exc)
        if f.status in (400, 403, 404) or f.code in ("SubscriptionNotFound", "InvalidSubscriptionId"):
            raise SubscriptionError(f"subscription {sub} was not found or is not visible to this credential ({f.code})") from None
        raise EndpointError(
            f"ARM endpoint {arm.endpoint} failed for subscription {sub}: HTTP {f.status} {f.code}: {f.message}"
        ) from None


def _scope_list(runner: ReadRunner, read: Read, what: str, permission: str) -> list[dict[str, Any]]:
    """A discovery list; failing to read it ends the run (exit 2) with what was missing."""
    [out] = runner.run([read])
    if out.failure is None:
        return out.docs
    f = out.failure
    status = f"HTTP {f.status}" if f.status else "no response"
    raise SubscriptionError(f"cannot list {what} ({status} {f.code}: {f.message}); needs {permission}")


def _discovery_lists(
    arm: ArmClients, runner: ReadRunner, spec: ScopeSpec
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    listed: list[dict[str, Any]] = []
    if spec.all_subscriptions:
        listed = _scope_list(
            runner,
            Read("subscriptions", "/subscriptions", arm.subscriptions().subscriptions.list),
            "the subscriptions this credential can see",
            "Microsoft.Resources/subscriptions/read (Reader on each subscription, or at a management group above it)",
        )
    descendants: list[dict[str, Any]] = []
    for mg in spec.management_groups:
        groups = arm.management_groups().management_groups
        descendants += _scope_list(
            runner,
            Read("managementGroups", f"{ids.MG_PREFIX}{mg}", groups.get_descendants, (mg,)),
            f"the subscriptions below management group {mg}",
            "Microsoft.Management/managementGroups/descendants/read (Reader at the management group)",
        )
    return listed, descendants


def _graph_send(arm: ArmClients, run_deadline: float, subs: list[str], skip_token: str | None) -> dict[str, Any]:
    """One Resource Graph query page, as the raw JSON body, under a read's budget; any failure is GraphUnavailable."""
    capture = Capture(arm.endpoint, single=True)
    request = QueryRequest(
        subscriptions=subs,
        query=resourcegraph.QUERY,
        options=QueryRequestOptions(top=resourcegraph.PAGE_ROWS, skip_token=skip_token, result_format="objectArray"),
    )
    try:
        with read_budget(arm.limits, label="the Resource Graph query", run_deadline=run_deadline):
            arm.resource_graph().resources(request, raw_response_hook=capture)
    except ReadLimitExceeded as exc:  # out of time, Retry-After past the cap: fall back to ARM
        raise resourcegraph.GraphUnavailable(str(exc)) from None
    except ClientAuthenticationError as exc:
        if exc.response is None:
            raise credential_error(exc) from None
        raise resourcegraph.GraphUnavailable(_describe(http_failure(exc, capture))) from None
    except HttpResponseError as exc:
        raise resourcegraph.GraphUnavailable(_describe(http_failure(exc, capture))) from None
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise resourcegraph.GraphUnavailable(connection_reason(exc)) from None
    except (UsageError, resourcegraph.GraphUnavailable):
        raise
    except Exception as exc:  # noqa: BLE001 - a body the SDK model chokes on: fall back, never crash
        raise resourcegraph.GraphUnavailable(f"{type(exc).__name__}: {exc}") from None
    if not capture.bodies:
        raise resourcegraph.GraphUnavailable("no response body")
    try:
        body = _parse(capture.bodies[-1])
    except ValueError as exc:
        raise resourcegraph.GraphUnavailable(str(exc)) from None
    return body if isinstance(body, dict) else {}


def _describe(f: Failure) -> str:
    return f"HTTP {f.status} {f.code}: {f.message}" if f.status else f"{f.code}: {f.message}"


def _narrow_with_graph(arm: ArmClients, run_deadline: float, result: ScopeResult, say: Progress) -> None:
    """Skip the discovered subscriptions that Resource Graph says hold nothing to audit; on failure keep them all."""
    say(f"asking Resource Graph which of {len(result.discovered)} subscriptions hold image templates")
    try:
        holders = resourcegraph.find_holders(result.discovered, partial(_graph_send, arm, run_deadline))
    except resourcegraph.GraphUnavailable as exc:
        result.notes.append(f"Resource Graph unavailable ({exc}): every subscription in scope was read through ARM")
        return
    result.resource_graph_queries = holders.queries
    if not holders.subscriptions:
        # An empty answer is the one Resource Graph's lag could make wrong everywhere at once: read through ARM.
        result.notes.append("Resource Graph found no image template in scope: every subscription was read through ARM")
        return
    kept = [s for s in result.discovered if s in holders.subscriptions]
    for sub in result.discovered:
        if sub not in holders.subscriptions:
            result.skip(sub, scope.NO_TEMPLATES)
    result.discovered = kept
    result.discovery = scope.RESOURCE_GRAPH
    result.notes.append(
        f"Resource Graph found {holders.templates} image templates in {len(kept)} subscriptions (with their target "
        f"galleries and identities); {len(result.skipped)} subscriptions in scope were skipped"
    )


def resolve(
    arm: ArmClients, spec: ScopeSpec, pool: DaemonPool, runner: ReadRunner, say: Progress
) -> tuple[ScopeResult, list[tuple[str, Failure]]]:
    """The subscriptions to audit, and the discovered ones that could not be read (subscription, failure)."""
    if spec.subscriptions:
        say(f"checking {len(spec.subscriptions)} subscriptions")
        reach_subscriptions(arm, pool, spec.subscriptions, runner.run_deadline)
    if not spec.discovers:
        return ScopeResult(spec=spec, named=list(spec.subscriptions), audited=list(spec.subscriptions)), []
    say("discovering subscriptions in scope")
    listed, descendants = _discovery_lists(arm, runner, spec)
    result = scope.plan_discovered(spec, scope.subscriptions_from_list(listed), scope.subscriptions_from_descendants(descendants))
    if spec.resource_graph and result.discovered:
        _narrow_with_graph(arm, runner.run_deadline, result, say)
    say(f"checking {len(result.discovered)} discovered subscriptions")
    client = arm.subscriptions()
    reads = [
        Read(SUBSCRIPTIONS_KIND, f"/subscriptions/{s}", client.subscriptions.get, (s,), single=True) for s in result.discovered
    ]
    failures: list[tuple[str, Failure]] = []
    readable: list[str] = []
    for sub, out in zip(result.discovered, runner.run(reads), strict=True):
        if out.failure is not None:
            failures.append((sub, out.failure))
            result.unreadable.append(sub)
            continue
        state = str(out.docs[0].get("state") or "") if out.docs else ""
        if state and state.lower() != "enabled":
            result.skip(sub, f"state {state}: only Enabled subscriptions are audited")
            continue
        readable.append(sub)
    result.audited = list(spec.subscriptions) + readable
    if not result.audited and not failures:
        raise SubscriptionError(
            "no subscription to audit in scope: " + (", ".join(sorted({s.reason for s in result.skipped})) or "none found")
        )
    return result, failures
