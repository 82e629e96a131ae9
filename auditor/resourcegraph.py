"""Resource Graph discovery: which subscriptions in scope hold image templates, and what those templates reach.

One paged query (1,000 rows a page) across up to 1,000 subscriptions per request finds every image template,
with the galleries it distributes to and the identities it uses. The subscriptions that hold a template, or a
target gallery or identity of one, are audited through ARM; the others are skipped as empty. So a tenant of
1,000 subscriptions where 30 hold templates costs 30 subscriptions' reads, not 1,000.

Fail closed: Resource Graph is eventually consistent and has its own quota (about 15 queries per 5 s per
user), so it only narrows the scope and never replaces ARM. What ARM lists in an audited subscription is
audited, whatever Resource Graph said. A query that fails (403, 429 past the retries, a truncated result
without `$skipToken`, a body that does not parse) raises `GraphUnavailable`; the collector then audits every
subscription in scope through ARM and says so.

This module holds no I/O: `find_holders` is handed a `send(subscriptions, skip_token) -> body` callable by the
collector (`auditor.discover`), which sends the POST through the read-only pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from auditor import ids

API_VERSION = "2021-03-01"
PAGE_ROWS = 1000  # Resource Graph's largest page
SUBSCRIPTIONS_PER_QUERY = 1000  # the most subscriptions one query request may name
MAX_PAGES = 1000  # a runaway `$skipToken` loop is a failed query, not a hung audit

# The only query the collector sends; the emulator evaluates exactly this subset of KQL and refuses the rest.
# `order by id` keeps paging stable; every reference a template makes to another subscription is projected.
QUERY = (
    "resources"
    " | where type =~ 'microsoft.virtualmachineimages/imagetemplates'"
    " | project id, subscriptionId, identity,"
    " distribute = properties.distribute, buildVmIdentities = properties.vmProfile.userAssignedIdentities"
    " | order by id asc"
)

Send = Callable[[list[str], str | None], dict[str, Any]]


class GraphUnavailable(Exception):
    """The Resource Graph query could not give a complete answer: fall back to ARM for the whole scope."""


@dataclass
class Holders:
    """What the query found, restricted to the subscriptions it was asked about."""

    subscriptions: set[str] = field(default_factory=set)  # hold a template, or a gallery/identity one references
    templates: int = 0
    queries: int = 0  # POSTs sent (pages included)


def request_body(subscriptions: list[str], skip_token: str | None) -> dict[str, Any]:
    """The QueryRequest JSON (what the SDK's model serializes to); used by the emulator tests too."""
    options: dict[str, Any] = {"resultFormat": "objectArray", "$top": PAGE_ROWS}
    if skip_token:
        options["$skipToken"] = skip_token
    return {"subscriptions": list(subscriptions), "query": QUERY, "options": options}


def _referenced_subscriptions(row: dict[str, Any]) -> set[str]:
    """The template's own subscription, and those of its target galleries and identities."""
    found: set[str] = set()
    refs: list[Any] = [row.get("id"), row.get("subscriptionId") and f"/subscriptions/{row.get('subscriptionId')}"]
    for dist in row.get("distribute") or []:
        if isinstance(dist, dict):
            refs.append(dist.get("galleryImageId"))
    identity = row.get("identity")
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), dict):
        refs.extend(identity["userAssignedIdentities"].keys())
    build_vm = row.get("buildVmIdentities")
    if isinstance(build_vm, list):
        refs.extend(build_vm)
    for ref in refs:
        if isinstance(ref, str) and (sub := ids.subscription_of(ref)):
            found.add(sub)
    return found


def _page(body: Any) -> tuple[list[dict[str, Any]], str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise GraphUnavailable('the answer has no "data" array (not an objectArray query result)')
    rows = [r for r in body["data"] if isinstance(r, dict)]
    token = body.get("$skipToken") or body.get("skipToken")
    truncated = str(body.get("resultTruncated", "false")).lower() == "true"
    if truncated and not token:
        raise GraphUnavailable("the result was truncated and no $skipToken was given to read the rest")
    return rows, (str(token) if token else None)


def find_holders(subscriptions: Iterable[str], send: Send) -> Holders:
    """Run the query over `subscriptions` (in batches), following `$skipToken`; raises GraphUnavailable."""
    subs = [s.lower() for s in subscriptions]
    wanted = set(subs)
    out = Holders()
    for start in range(0, len(subs), SUBSCRIPTIONS_PER_QUERY):
        batch = subs[start : start + SUBSCRIPTIONS_PER_QUERY]
        token: str | None = None
        for _ in range(MAX_PAGES):
            rows, token = _page(send(batch, token))
            out.queries += 1
            for row in rows:
                out.templates += 1
                out.subscriptions |= _referenced_subscriptions(row) & wanted
            if not token:
                break
        else:
            raise GraphUnavailable(f"more than {MAX_PAGES} pages: the $skipToken never ended")
    return out
