"""The tenant around an estate: management groups, every subscription with its state, and where each one sits.

An estate may carry an optional `"tenant"` object (emulator-only; the auditor's snapshots never hold one):

    "tenant": {
      "managementGroups": [{"name": "contoso", "displayName": "Contoso", "parent": null}, ...],
      "subscriptions": [{"subscriptionId": "<guid>", "displayName": "...", "state": "Enabled", "parent": "contoso"}]
    }

`parent` names a management group (null: directly under the tenant root group). It drives `GET /subscriptions`
(with `state`), the subscription GET, and the management-group descendants API. Without it, every subscription
the estate mentions is Enabled and no management group exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MG_TYPE = "Microsoft.Management/managementGroups"
SUBSCRIPTION_TYPE = "/subscriptions"  # what the descendants API says for a subscription (sic)


def mg_id(name: str) -> str:
    return f"/providers/Microsoft.Management/managementGroups/{name}"


@dataclass(frozen=True)
class TenantSubscription:
    subscription_id: str
    display_name: str
    state: str
    parent: str | None


@dataclass
class Tenant:
    groups: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # lower name -> (name, parent lower name)
    group_names: dict[str, str] = field(default_factory=dict)  # lower name -> display name
    subscriptions: dict[str, TenantSubscription] = field(default_factory=dict)  # lower id -> subscription

    @classmethod
    def from_estate(cls, raw: Any) -> Tenant:
        tenant = cls()
        if not isinstance(raw, dict):
            return tenant
        for g in raw.get("managementGroups") or []:
            name = str(g["name"])
            parent = g.get("parent")
            tenant.groups[name.lower()] = (name, str(parent).lower() if parent else None)
            tenant.group_names[name.lower()] = str(g.get("displayName") or name)
        for s in raw.get("subscriptions") or []:
            sub = str(s["subscriptionId"])
            parent = s.get("parent")
            tenant.subscriptions[sub.lower()] = TenantSubscription(
                sub, str(s.get("displayName") or f"Emulated subscription {sub}"), str(s.get("state") or "Enabled"),
                str(parent).lower() if parent else None,
            )
        return tenant

    def has_group(self, name: str) -> bool:
        return name.lower() in self.groups

    def _below(self, group: str) -> list[str]:
        """Every management group below `group` (lower names), breadth first."""
        out: list[str] = []
        frontier = [group.lower()]
        while frontier:
            children = [g for g, (_, parent) in self.groups.items() if parent in frontier and g not in out]
            out += children
            frontier = children
        return out

    def descendants(self, group: str) -> list[dict[str, Any]]:
        """The descendants API's items: child groups (transitively), then the subscriptions under any of them."""
        below = self._below(group)
        items: list[dict[str, Any]] = []
        for g in below:
            name, parent = self.groups[g]
            parent_id = mg_id(self.groups[parent][0]) if parent else None
            props = {"displayName": self.group_names[g], "parent": {"id": parent_id}}
            items.append({"id": mg_id(name), "type": MG_TYPE, "name": name, "properties": props})
        under = {group.lower(), *below}
        for sub in self.subscriptions.values():
            if sub.parent in under:
                items.append(
                    {
                        "id": f"/subscriptions/{sub.subscription_id}",
                        "type": SUBSCRIPTION_TYPE,
                        "name": sub.subscription_id,
                        "properties": {"displayName": sub.display_name, "parent": {"id": mg_id(self.groups[sub.parent][0])}},
                    }
                )
        return items

    def ancestors(self, sub: str) -> list[str]:
        """The management-group scopes above a subscription, nearest first (for `subscriptionAncestors`)."""
        out: list[str] = []
        entry = self.subscriptions.get(sub.lower())
        group = entry.parent if entry else None
        while group and group in self.groups and mg_id(self.groups[group][0]) not in out:
            out.append(mg_id(self.groups[group][0]))
            group = self.groups[group][1]
        return out


def is_descendants_path(path: str) -> str | None:
    """The group name when `path` is `/providers/Microsoft.Management/managementGroups/{id}/descendants`."""
    parts = [p for p in path.split("/") if p]
    low = [p.lower() for p in parts]
    if len(parts) == 5 and low[:3] == ["providers", "microsoft.management", "managementgroups"] and low[4] == "descendants":
        return parts[3]
    return None
