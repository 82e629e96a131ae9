"""ARM resource IDs and scopes.

ARM IDs are case-insensitive and come back in mixed case (`resourcegroups` vs `resourceGroups`,
`stagingResourceGroup` without a leading slash). Everything that compares IDs goes through `norm()`;
the original spelling is kept for display.
"""

from __future__ import annotations

import re

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


def is_management_group(scope: str | None) -> bool:
    return norm(scope).startswith(MG_PREFIX)


def is_root(scope: str | None) -> bool:
    return norm(scope) == ROOT


def scope_level(scope: str | None) -> str:
    """One of root, managementGroup, subscription, resourceGroup, resource."""
    s = norm(scope)
    if s == ROOT:
        return "root"
    if s.startswith(MG_PREFIX):
        return "managementGroup"
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


def is_ancestor_or_self(ancestor: str | None, scope: str | None) -> bool:
    """Does an assignment/lock at `ancestor` apply at `scope`?

    Management groups and `/` count as ancestors of every subscription scope: ARM only returns them
    from an `atScope()` listing at a subscription when they are above it, so the estate we see is
    already filtered to the subscription's own hierarchy.
    """
    a, s = norm(ancestor), norm(scope)
    if not a or not s:
        return False
    if a == ROOT:
        return True
    if a.startswith(MG_PREFIX):
        return s == a or s.startswith(a + "/") or s.startswith("/subscriptions/")
    return s == a or s.startswith(a + "/")


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
