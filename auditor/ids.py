"""ARM resource IDs and scopes.

ARM IDs are case-insensitive and come back in mixed case (`resourcegroups` vs `resourceGroups`,
`stagingResourceGroup` without a leading slash). Everything that compares IDs goes through `norm()`;
the original spelling is kept for display.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache

# Per audited subscription (lower-case GUID): the normalized management-group and root scopes ARM reported above it.
Ancestors = Mapping[str, Collection[str]]

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
MG_PREFIX = "/providers/microsoft.management/managementgroups/"
ROOT = "/"


def is_guid(value: str) -> bool:
    return bool(GUID_RE.match(value or ""))


def norm(resource_id: str | None) -> str:
    """Canonical comparison key: lower case, one leading slash, no trailing slash."""
    if not resource_id:
        return ""
    s = resource_id.strip().lower()
    s = "/" + s.strip("/")
    return s


def subscription_of(resource_id: str | None) -> str | None:
    parts = norm(resource_id).split("/")
    if len(parts) > 2 and parts[1] == "subscriptions":
        return parts[2]
    return None


def resource_group_of(resource_id: str | None) -> str | None:
    """The resource group name in its original spelling, or None above RG scope."""
    parts = (resource_id or "").strip().strip("/").split("/")
    if len(parts) > 3 and parts[0].lower() == "subscriptions" and parts[2].lower() == "resourcegroups":
        return parts[3]
    return None


def resource_group_id(resource_id: str | None) -> str | None:
    """`/subscriptions/{s}/resourcegroups/{rg}` (normalized) for any ID at or below an RG."""
    parts = norm(resource_id).split("/")
    if len(parts) > 4 and parts[1] == "subscriptions" and parts[3] == "resourcegroups":
        return "/".join(parts[:5])
    return None


def name_of(resource_id: str | None) -> str:
    return (resource_id or "").rstrip("/").rsplit("/", 1)[-1]


def parent_at(resource_id: str | None, segment: str) -> str | None:
    """The ID up to its last `/{segment}/` (matched case-insensitively), in its original spelling; None without one.

    `.../images/img/versions/1.0.0` at `versions` -> `.../images/img`; `.../vnets/v/subnets/s` at `subnets` -> `.../vnets/v`.
    """
    rid = (resource_id or "").strip().rstrip("/")
    cut = rid.lower().rfind(f"/{segment.strip('/').lower()}/")
    return rid[:cut] if cut > 0 else None


def is_management_group(scope: str | None) -> bool:
    """The scope is a management group itself (not a resource, such as a role definition, under one)."""
    return scope_level(scope) == "managementGroup"


@lru_cache(maxsize=1 << 16)  # scopes repeat (every assignment at a scope); at 300 subscriptions, 100,000 calls
def scope_level(scope: str | None) -> str:
    """One of root, managementGroup, subscription, resourceGroup, resource."""
    s = norm(scope)
    if s == ROOT:
        return "root"
    if s.startswith(MG_PREFIX):
        # `/providers/microsoft.management/managementgroups/{mg}` itself; anything under it (a custom role
        # definition defined at the group, ...) is a resource.
        return "managementGroup" if s.count("/") == MG_PREFIX.count("/") else "resource"
    parts = s.split("/")
    if parts[1:2] == ["subscriptions"]:
        if len(parts) == 3:
            return "subscription"
        if len(parts) == 5 and parts[3] == "resourcegroups":
            return "resourceGroup"
        if len(parts) >= 5 and parts[3] == "providers" and len(parts) <= 6:
            # e.g. /subscriptions/x/providers/Microsoft.Authorization: still subscription-wide
            return "subscription"
    return "resource"


def is_above_subscription(scope: str | None) -> bool:
    """True for management-group and root scopes: they apply to every subscription under them."""
    return scope_level(scope) in ("root", "managementGroup")


def is_ancestor_or_self(ancestor: str | None, scope: str | None, ancestors: Ancestors | None = None) -> bool:
    """Does an assignment/lock at `ancestor` apply at `scope`?

    ARM IDs say nothing about which management groups a subscription sits under. `ancestors` (see
    `norm_ancestors`) says it per subscription: what ARM listed above it. A management group or `/` is an
    ancestor of a scope in subscription S only when S's entry lists it. When S has no entry (snapshots
    written before the field existed, hand-made fixtures, a subscription whose RBAC lists failed), every
    management group and `/` counts as an ancestor of S, as ARM only returns those from a subscription's
    listings when they are above it.
    """
    a, s = norm(ancestor), norm(scope)
    if not a or not s:
        return False
    if s == a or (a != ROOT and s.startswith(a + "/")):
        return True
    if scope_level(a) not in ("root", "managementGroup"):
        return False
    sub = subscription_of(s)
    if sub is None:
        return a == ROOT  # a management group, or anything under one, sits under root only
    known = ancestors.get(sub) if ancestors is not None else None
    return True if known is None else a in known


def norm_ancestors(raw: Mapping[str, Iterable[str]] | None) -> dict[str, frozenset[str]]:
    """Subscription ancestors keyed by lower-case subscription ID, with normalized scopes (see is_ancestor_or_self)."""
    return {str(sub).lower(): frozenset(norm(a) for a in scopes) for sub, scopes in (raw or {}).items()}


def owner_scope_of_extension(resource_id: str | None, provider_segment: str) -> str:
    """The scope an extension resource is attached to.

    `/subscriptions/s/resourceGroups/rg/providers/Microsoft.Authorization/locks/l` -> `/subscriptions/s/resourceGroups/rg`.
    `provider_segment` is e.g. `/providers/microsoft.authorization/locks/`.
    """
    s = norm(resource_id)
    idx = s.rfind(provider_segment.lower())
    if idx < 0:
        return s
    return s[:idx] or ROOT


def subscription_ids(values: list[str]) -> list[str]:
    """Subscription GUIDs from user input (`<guid>` or `/subscriptions/<guid>`): lower case, duplicates dropped,
    order kept. Raises SubscriptionError (exit 2) for anything else, before any credential is touched."""
    from auditor.errors import SubscriptionError  # errors.py is import-free; kept local so ids stays a leaf module

    out: list[str] = []
    for raw in values:
        sub = (raw or "").strip()
        if sub.lower().startswith("/subscriptions/"):
            sub = sub.split("/")[2]
        if not is_guid(sub):
            raise SubscriptionError(f"'{raw}' is not a subscription ID (a GUID)")
        if sub.lower() not in out:
            out.append(sub.lower())
    return out


@lru_cache(maxsize=65536)
def describe_scope(scope: str) -> str:
    """Where an assignment or lock sits, in words: "management group contoso-root", "resource group rg-images"."""
    level = scope_level(scope)
    if level == "root":
        return "root"
    if level == "managementGroup":
        return f"management group {name_of(scope)}"
    if level == "subscription":
        return f"subscription {subscription_of(scope) or name_of(scope)}"
    if level == "resourceGroup":
        return f"resource group {resource_group_of(scope) or name_of(scope)}"
    return f"resource {name_of(scope)}"
