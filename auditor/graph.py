"""Microsoft Graph: who the principals are (names, UPNs, types) and, with --expand-groups, who is in each group.

Graph is enrichment. ARM's role assignments decide every verdict; Graph only adds names, says which principals
no longer exist, and (when asked) lists group members. So a Graph read that fails never fails the audit: the
names stay empty, a collection note and one stderr line say why, and nothing is marked deleted on the strength
of an answer that was not given. Only a getByIds call that succeeded and left an ID out says it is deleted.

Reads, all with the audit's own credential (scope `<graph>/.default`):

- `POST /v1.0/directoryObjects/getByIds` with up to 1,000 IDs a call (the only POST aib-audit ever sends: it
  reads). Directory read is enough: `Directory.Read.All`, or a member user's default read access.
- `GET /v1.0/groups/{id}/transitiveMembers?$top=999`, paged through `@odata.nextLink`, once per group that holds
  a right and once per group nested in one (for the path "through G > H"). Pages are capped; a group that runs
  past the cap counts as unreadable (unbounded).

The client is its own azure-core pipeline: the Graph scope, no redirect policy (a redirect is a failed read),
and a guard that lets through GET and that one POST, and only to the Graph endpoint's own host: a nextLink that
points elsewhere never receives the token. This module is called by the collector only (collect.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import PipelineRequest
from azure.core.pipeline import policies as core_policies
from azure.core.rest import HttpRequest

from auditor.errors import CredentialError
from auditor.limits import Limits
from auditor.pipeline import (
    BoundedRetryPolicy,
    CallCounter,
    ReadOnlyGuard,
    bare_https_url,
    pinned_policies,
    read_budget,
)
from auditor.rbac_documents import parse_role_assignment
from auditor.reads import GRACE_S
from auditor.snapshot import Snapshot
from auditor.transport import PooledTransport
from auditor.workers import DaemonPool

# ARM host -> the same cloud's Graph endpoint. The emulator (loopback) serves Graph itself under /v1.0.
GRAPH_FOR_ARM: dict[str, str] = {
    "management.azure.com": "https://graph.microsoft.com",
    "management.usgovcloudapi.net": "https://graph.microsoft.us",
    "management.chinacloudapi.cn": "https://microsoftgraph.chinacloudapi.cn",
}
# Graph host -> token audience. Any other host (the emulator, a proxy given with --graph-endpoint) asks for a
# public-cloud Graph token, as azure.py does for ARM.
GRAPH_AUDIENCES: dict[str, str] = {
    "graph.microsoft.com": "https://graph.microsoft.com",
    "graph.microsoft.us": "https://graph.microsoft.us",
    "dod-graph.microsoft.us": "https://dod-graph.microsoft.us",
    "microsoftgraph.chinacloudapi.cn": "https://microsoftgraph.chinacloudapi.cn",
}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})

GET_BY_IDS = "/v1.0/directoryObjects/getByIds"
BATCH = 1000  # getByIds takes at most 1,000 IDs a call
PAGE_SIZE = 999  # transitiveMembers' largest $top
MAX_PAGES = 100  # per group: ~100,000 members; past it the group counts as unreadable (unbounded)
MAX_GROUPS = 500  # groups read per audit (rights holders first, then nested ones, for paths)
GRAPH_WORKERS = 4  # group lists read at once (at most --max-workers)
ACCEPT = {"Accept": "application/json"}

GRAPH_PERMISSION = "Directory.Read.All (or a member user's default directory read access)"


class GraphRefused(RuntimeError):
    """A request the Graph guard refused before it left the process (a write, or a host that is not Graph's)."""


# --------------------------------------------------------------------------------------------- endpoints


def graph_endpoint(arm_endpoint: str, override: str | None = None) -> tuple[str | None, str]:
    """The Graph endpoint for an audit, and a note when there is none ("" when there is).

    `--graph-endpoint` wins; otherwise the ARM endpoint's cloud decides, and the emulator (loopback) serves Graph
    on its own host. An ARM endpoint of no known cloud leaves Graph off: a token must not go to a guessed host.
    """
    if override:
        return normalize_graph_endpoint(override), ""
    parts = urlsplit(arm_endpoint or "")
    host = (parts.hostname or "").lower()
    if host in GRAPH_FOR_ARM:
        return GRAPH_FOR_ARM[host], ""
    if host in LOOPBACK_HOSTS:
        return arm_endpoint.rstrip("/"), ""
    return None, (
        f"Microsoft Graph was not read: no Graph endpoint is known for ARM endpoint {arm_endpoint} "
        "(give --graph-endpoint URL); principals have no names"
    )


def normalize_graph_endpoint(url: str) -> str:
    """`https://host[:port]`; anything else is a usage error (exit 2)."""
    return bare_https_url(url, "--graph-endpoint", "https://graph.microsoft.com", paths=("", "v1.0"))


def graph_scope(endpoint: str) -> str:
    host = (urlsplit(endpoint).hostname or "").lower()
    return GRAPH_AUDIENCES.get(host, GRAPH_AUDIENCES["graph.microsoft.com"]) + "/.default"


# --------------------------------------------------------------------------------------------- the client


class GraphGuard(core_policies.SansIOHTTPPolicy):  # type: ignore[type-arg]
    """Lets through GET, and POST to getByIds, to the Graph endpoint's own scheme, host and port; nothing else."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self._origin = (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 443)

    def on_request(self, request: PipelineRequest) -> None:  # type: ignore[type-arg]
        http = request.http_request
        parts = urlsplit(http.url)
        if (parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or 443) != self._origin:
            raise GraphRefused(f"refused to send the Graph token to {parts.scheme}://{parts.netloc} (not the Graph endpoint)")
        method = http.method.upper()
        if method == "GET" or _is_get_by_ids(method, http.url):
            return
        raise GraphRefused(f"aib-audit is read-only: refused {method} {http.url}")


def _is_get_by_ids(method: str, url: str) -> bool:
    return method.upper() == "POST" and urlsplit(url).path.rstrip("/").lower() == GET_BY_IDS.lower()


class GraphRetryPolicy(BoundedRetryPolicy):
    """The ARM clients' bounded retries, with getByIds retried like a GET: it reads, so sending it again after a
    reset connection or a timeout is safe (stock azure-core retries a POST only on 500/503/504)."""

    def _is_method_retryable(self, settings: dict[str, Any], request: Any, response: Any = None) -> bool:
        if _is_get_by_ids(request.method, request.url):
            return True
        return bool(super()._is_method_retryable(settings, request, response))


class GraphClient:
    """One Graph endpoint, one credential. The pipeline is the one ARM's clients use (azure.pinned_policies: a read
    budget, bounded retries and Retry-After waits, connect and socket timeouts, redirects only within the endpoint,
    the endpoint guard before the token) with the Graph scope, and GraphGuard in place of the GET-only guard."""

    def __init__(
        self,
        credential: TokenCredential,
        endpoint: str,
        connection_verify: bool | str = True,
        retry_options: dict[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.counter = CallCounter()
        limits = limits or Limits()
        auth = core_policies.BearerTokenCredentialPolicy(credential, graph_scope(self.endpoint))
        swap = {ReadOnlyGuard: GraphGuard(self.endpoint), BoundedRetryPolicy: GraphRetryPolicy(limits, **(retry_options or {}))}
        self.policies = [swap.get(type(p), p) for p in pinned_policies(self.endpoint, auth, limits, self.counter, retry_options)]
        # The transport ARM's clients use (auditor.transport): proxies and CA bundle from the environment, never
        # ~/.netrc (requests would put a password from it in place of the bearer token).
        self._client: PipelineClient[Any, Any] = PipelineClient(
            self.endpoint, policies=self.policies, transport=PooledTransport(connection_verify, limits)
        )

    def _json(self, request: HttpRequest) -> dict[str, Any]:
        response = self._client.send_request(request)
        if response.status_code != 200:
            raise HttpResponseError(response=response)
        try:
            body = json.loads(response.text())
        except ValueError as exc:
            raise GraphReadError(response.status_code, "InvalidResponseBody", f"body is not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("value"), list):
            raise GraphReadError(response.status_code, "InvalidResponseBody", 'the answer has no "value" list')
        return body

    def get_by_ids(self, object_ids: list[str]) -> list[dict[str, Any]]:
        body = self._json(HttpRequest("POST", f"{self.endpoint}{GET_BY_IDS}", json={"ids": object_ids}, headers=ACCEPT))
        return [o for o in body["value"] if isinstance(o, dict) and isinstance(o.get("id"), str)]

    def transitive_members(self, group_id: str) -> list[dict[str, Any]]:
        url: str | None = f"{self.endpoint}/v1.0/groups/{group_id}/transitiveMembers?$top={PAGE_SIZE}"
        members: list[dict[str, Any]] = []
        pages = 0
        seen: set[str] = set()
        while url:
            if pages == MAX_PAGES:
                raise GraphReadError(None, "TooManyPages", f"more than {MAX_PAGES} pages of members")
            if url in seen:
                raise GraphReadError(None, "NextLinkLoop", "a nextLink pointed back at a page already read")
            seen.add(url)
            body = self._json(HttpRequest("GET", url, headers=ACCEPT))
            members += [o for o in body["value"] if isinstance(o, dict) and isinstance(o.get("id"), str)]
            link = body.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
            pages += 1
        return members

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------------------------- reading


class GraphReadError(Exception):
    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def describe(self) -> str:
        status = f"HTTP {self.status}" if self.status else "no response"
        return f"{status} {self.code}: {self.message}"


def _failure(exc: BaseException) -> GraphReadError:
    """Any failure of one Graph read, as one line; never raised past this module."""
    if isinstance(exc, GraphReadError):
        return exc
    if isinstance(exc, HttpResponseError) and exc.response is not None:
        code, message = "HttpResponseError", (exc.reason or "")
        try:
            err = json.loads(exc.response.text()).get("error", {})
            code, message = str(err.get("code") or code), str(err.get("message") or message)
        except (ValueError, AttributeError):
            pass
        return GraphReadError(exc.status_code, code, " ".join(message.split())[:300])
    if isinstance(exc, CredentialError | ClientAuthenticationError):
        return GraphReadError(None, "NoGraphToken", " ".join(str(exc).split())[:300])
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return GraphReadError(None, type(exc).__name__, " ".join(str(exc).split())[:200])
    limit = getattr(exc, "code", None)  # azure.ReadLimitExceeded: ReadTimeout, ForeignEndpoint, RetryAfterTooLong ...
    name = limit if isinstance(limit, str) and limit else type(exc).__name__
    return GraphReadError(None, name, " ".join(str(exc).split())[:300])


def odata_type(obj: dict[str, Any]) -> str:
    """`user`, `group`, `servicePrincipal`, ... from `@odata.type` (`#microsoft.graph.user`)."""
    return str(obj.get("@odata.type") or "").rsplit(".", 1)[-1]


@dataclass
class DirectoryRead:
    """What Graph said, ready for the snapshot (see snapshot.py: `directoryObjects`, `groupMembers`, meta.graph)."""

    endpoint: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    group_members: list[dict[str, Any]] = field(default_factory=list)  # {"id": group, "transitiveMembers": [...]}
    looked_up: list[str] = field(default_factory=list)  # IDs a getByIds call that succeeded was asked about
    group_errors: dict[str, str] = field(default_factory=dict)  # group ID -> why its members could not be read
    notes: list[str] = field(default_factory=list)
    calls: int = 0
    expand_groups: bool = False

    def meta(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "calls": self.calls,
            "looked_up": sorted(self.looked_up),
            "expand_groups": self.expand_groups,
            "group_errors": dict(sorted(self.group_errors.items())),
        }


T = TypeVar("T")


class Bounded:
    """Runs Graph reads like the collector runs ARM's: each under a read budget (azure.read_budget: the read's and
    the run's deadline, bounded waits), on daemon workers, and given up on at the wall clock (a body drip-fed a
    byte at a time outlives socket timeouts). Without a pool, reads run in the caller's thread (tests)."""

    def __init__(self, limits: Limits | None = None, run_deadline: float | None = None, pool: DaemonPool | None = None):
        self.limits = limits or Limits()
        self.run_deadline = run_deadline if run_deadline is not None else time.monotonic() + self.limits.run_timeout_s
        self.pool = pool

    def _budgeted(self, label: str, fn: Callable[..., T], *args: Any) -> T:
        with read_budget(self.limits, label=label, run_deadline=self.run_deadline):
            return fn(*args)

    def many(self, label: Callable[[Any], str], fn: Callable[[Any], T], items: list[Any]) -> list[T | BaseException]:
        """`fn(item)` for every item: its result, or the exception it raised (a timeout is a GraphReadError)."""
        if self.pool is None:
            out: list[T | BaseException] = []
            for item in items:
                try:
                    out.append(self._budgeted(label(item), fn, item))
                except Exception as exc:  # noqa: BLE001 - the caller turns it into a note
                    out.append(exc)
            return out
        tasks = [self.pool.submit(self._budgeted, label(item), fn, item) for item in items]
        results: list[T | BaseException] = []
        for item, task in zip(items, tasks, strict=True):
            wait = max(0.0, min(self.run_deadline, time.monotonic() + self.limits.read_timeout_s) - time.monotonic())
            try:
                results.append(task.future.result(timeout=wait + GRACE_S))
            except FutureTimeout:
                self.pool.abandon(task)
                results.append(GraphReadError(None, "ReadTimeout", f"{label(item)} did not finish in time"))
            except Exception as exc:  # noqa: BLE001 - see above
                results.append(exc)
        return results

    def one(self, label: str, fn: Callable[[Any], T], item: Any) -> T:
        result = self.many(lambda _i: label, fn, [item])[0]
        if isinstance(result, BaseException):
            raise result
        return result


def read_directory(
    client: GraphClient,
    principal_ids: Iterable[str],
    arm_groups: Iterable[str] = (),
    *,
    expand_groups: bool = False,
    runner: Bounded | None = None,
    say: Callable[[str], None] = lambda _msg: None,
) -> DirectoryRead:
    """Names for `principal_ids`; with `expand_groups`, the transitive members of every group among them.

    `arm_groups` are the IDs ARM says are groups: they are expanded even when getByIds could not say what they
    are. Never raises for a Graph failure; GraphRefused (a bug: a write or a foreign host) is a failed read too.
    """
    runner = runner or Bounded()
    out = DirectoryRead(endpoint=client.endpoint, expand_groups=expand_groups)
    wanted = sorted({p.lower() for p in principal_ids if p})
    found: dict[str, dict[str, Any]] = {}
    failed_batches: list[str] = []
    refused = ""  # the directory refused us (401/403, no token): group lists would be refused the same way
    for start in range(0, len(wanted), BATCH):
        batch = wanted[start : start + BATCH]
        say(f"reading names of {len(batch)} principals from Microsoft Graph")
        try:
            objects = runner.one("Microsoft Graph getByIds", client.get_by_ids, batch)
        except Exception as exc:  # noqa: BLE001 - Graph is enrichment: any failure is a note, never the end of the audit
            failure = _failure(exc)
            failed_batches.append(failure.describe())
            if failure.status in (401, 403) or failure.code == "NoGraphToken":
                refused = failure.describe()
                break  # every other batch would get the same answer
            continue
        out.looked_up += batch
        for obj in objects:
            found.setdefault(str(obj["id"]).lower(), obj)
    out.objects = [found[k] for k in sorted(found)]
    if failed_batches:
        out.notes.append(
            f"Microsoft Graph at {client.endpoint} could not be read ({failed_batches[0]}): principals have no names "
            f"and none is marked deleted by Graph; the verdicts do not depend on it (needs {GRAPH_PERMISSION})"
        )
    if expand_groups:
        groups = {k for k, o in found.items() if odata_type(o) == "group"} | {g.lower() for g in arm_groups if g}
        if refused:
            out.group_errors = {g: refused for g in sorted(groups)}
            if groups:
                out.notes.append(
                    f"the members of {len(groups)} groups were not read ({refused}): each stays one row and counts as "
                    "unbounded for max_template_writers"
                )
        else:
            _expand(client, sorted(groups), out, runner, say)
    out.calls = client.counter.calls
    return out


def _expand(client: GraphClient, groups: list[str], out: DirectoryRead, runner: Bounded, say: Callable[[str], None]) -> None:
    """Transitive members of each group, then of each group nested in them (for the path), level by level."""
    read: set[str] = set()
    level = groups
    budget = MAX_GROUPS

    while level and budget > 0:
        level = level[:budget]
        budget -= len(level)
        read.update(level)
        say(f"reading the members of {len(level)} groups from Microsoft Graph")
        answers = runner.many(lambda g: f"the members of group {g}", client.transitive_members, level)
        nested: set[str] = set()
        for gid, members in zip(level, answers, strict=True):
            if isinstance(members, BaseException):
                out.group_errors[gid] = _failure(members).describe()
                continue
            out.group_members.append({"id": gid, "transitiveMembers": members})
            nested |= {str(m["id"]).lower() for m in members if odata_type(m) == "group"}
        level = sorted(nested - read)
    for gid in groups[MAX_GROUPS:]:  # never read: as unknown as a refused read
        out.group_errors[gid] = f"not read: more than {MAX_GROUPS} groups hold rights"
    # A nested group that could not be read only shortens paths (its parent's transitive list is complete).
    holders = {g: why for g, why in out.group_errors.items() if g in set(groups)}
    if holders:
        gid, why = sorted(holders.items())[0]
        more = f" and {len(holders) - 1} more" if len(holders) > 1 else ""
        out.notes.append(
            f"the members of group {gid}{more} could not be read from Microsoft Graph ({why}): each such group stays "
            "one row and counts as unbounded for max_template_writers"
        )
    elif out.group_errors:
        out.notes.append(
            f"the members of {len(out.group_errors)} nested groups could not be read from Microsoft Graph: "
            "paths through them stop at the group above"
        )
    out.group_members.sort(key=lambda d: str(d["id"]))


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GraphSettings:
    """Whether and where the collector reads Graph. `endpoint` None: not read, and `note` says why (if it is news)."""

    endpoint: str | None
    expand_groups: bool = False
    note: str = ""
    turned_off: bool = False  # --no-graph: the user knows, no warning


def settings(
    arm_endpoint: str, *, enabled: bool = True, override: str | None = None, expand_groups: bool = False
) -> GraphSettings:
    if not enabled:
        return GraphSettings(None, False, "Microsoft Graph was not read (--no-graph): principals have no names", True)
    endpoint, note = graph_endpoint(arm_endpoint, override)
    return GraphSettings(endpoint, expand_groups and endpoint is not None, note)


def stderr_lines(meta: dict[str, Any]) -> list[str]:
    """The one line a person (or a job log) should see when Graph could not be read; [] when it was, or was turned off."""
    graph = meta.get("graph")
    if not isinstance(graph, dict):
        return []
    notes = [str(n) for n in graph.get("notes", []) if n]
    return notes[:1]


def collect_directory(
    snap: Snapshot,
    settings: GraphSettings,
    credential: TokenCredential,
    connection_verify: bool | str,
    retry_options: dict[str, Any] | None,
    limits: Limits,
    run_deadline: float,
    say: Callable[[str], None],
    max_workers: int = GRAPH_WORKERS,
) -> None:
    """The collector's Graph step, after the ARM reads (with an early audit, while the trigger lists are read):
    names for every principal that holds a role (active or eligible) and, with expand_groups, group members, into
    `snap` (GRAPH_KINDS and meta.graph). Never raises for a Graph failure: it becomes a note."""
    notes: list[str] = [settings.note] if settings.note else []
    if settings.endpoint is None:
        snap.meta.setdefault("notes", []).extend(notes)
        if not settings.turned_off:
            snap.meta["graph"] = {"notes": notes}  # news (no Graph for this cloud): one stderr line says it
        return
    kinds = ("roleAssignments", "roleEligibilityScheduleInstances")
    assignments = [parse_role_assignment(d) for kind in kinds for d in snap.resources.get(kind, [])]
    principals = {ra.principal_id for ra in assignments if ra.principal_id}
    arm_groups = {ra.principal_id for ra in assignments if ra.principal_type.lower() == "group"}
    client = GraphClient(credential, settings.endpoint, connection_verify, retry_options, limits)
    pool = DaemonPool(max(1, min(max_workers, GRAPH_WORKERS)), name="aib-audit-graph")
    try:
        runner = Bounded(limits, run_deadline, pool)
        read = read_directory(client, principals, arm_groups, expand_groups=settings.expand_groups, runner=runner, say=say)
    finally:
        pool.shutdown()
        client.close()
    snap.add("directoryObjects", read.objects)
    snap.add("groupMembers", read.group_members)
    snap.meta["graph"] = {**read.meta(), "notes": read.notes}
    snap.meta.setdefault("notes", []).extend(read.notes)
