"""The estate the emulator serves: a snapshot's raw ARM documents, indexed by normalized ID.

Documents are served exactly as stored. The store only answers questions ARM's routing needs: which
subscriptions and resource groups exist, which document has an ID, which documents of a kind live in a
subscription or resource group, which child documents hang under a parent, and at which scope each
extension resource (lock, assignment, ...) sits.
"""

from __future__ import annotations

import heapq
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from auditor.ids import norm, norm_ancestors, owner_scope_of_extension, resource_group_id, subscription_of
from auditor.snapshot import Snapshot

from .tenant import Tenant

# Resource types routed as `/subscriptions/{s}[/resourceGroups/{rg}]/providers/{ns}/{type}[/{name}]`.
TYPED_KINDS: dict[str, str] = {
    "microsoft.virtualmachineimages/imagetemplates": "imageTemplates",
    "microsoft.managedidentity/userassignedidentities": "userAssignedIdentities",
    "microsoft.compute/galleries": "galleries",
}
# (parent kind, child collection segment) -> child kind
CHILD_KINDS: dict[tuple[str, str], str] = {
    ("imageTemplates", "triggers"): "triggers",
    ("galleries", "images"): "galleryImages",
}
# Microsoft.Authorization collections (lower case) -> kind. Their documents sit at a scope.
EXTENSION_KINDS: dict[str, str] = {
    "locks": "locks",
    "roleassignments": "roleAssignments",
    "roledefinitions": "roleDefinitions",
    "denyassignments": "denyAssignments",
    "roleeligibilityscheduleinstances": "roleEligibilityScheduleInstances",
}
# The ARM type of each kind, for "not found" messages.
ARM_TYPES: dict[str, str] = {
    "imageTemplates": "Microsoft.VirtualMachineImages/imageTemplates",
    "triggers": "Microsoft.VirtualMachineImages/imageTemplates/triggers",
    "userAssignedIdentities": "Microsoft.ManagedIdentity/userAssignedIdentities",
    "galleries": "Microsoft.Compute/galleries",
    "galleryImages": "Microsoft.Compute/galleries/images",
}

_LOCK_SEGMENT = "/providers/microsoft.authorization/locks/"
_AUTH_SEGMENT = "/providers/microsoft.authorization/"


@dataclass(frozen=True)
class ScopedDoc:
    """An extension resource and the normalized scope it applies at."""

    scope: str
    doc: dict[str, Any]


def _doc_id(doc: dict[str, Any]) -> str:
    return norm(str(doc.get("id") or ""))


def _scope_of(kind: str, doc: dict[str, Any]) -> str:
    """A lock's scope is its ID prefix; assignments carry `properties.scope` (fall back to the ID prefix)."""
    if kind != "locks":
        scope = (doc.get("properties") or {}).get("scope")
        if isinstance(scope, str) and scope.strip():
            return norm(scope) or "/"
    return owner_scope_of_extension(_doc_id(doc), _LOCK_SEGMENT if kind == "locks" else _AUTH_SEGMENT)


def _seq(item: tuple[int, ScopedDoc]) -> int:
    return item[0]


class EstateStore:
    def __init__(self, snapshot: Snapshot, tenant: Tenant | None = None) -> None:
        self.tenant = tenant or Tenant()
        self._docs: dict[str, list[dict[str, Any]]] = {k: list(v) for k, v in snapshot.resources.items()}
        self._by_id: dict[tuple[str, str], dict[str, Any]] = {}
        self._by_sub: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._by_rg: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._children: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        self._scoped: dict[str, list[ScopedDoc]] = {k: [] for k in EXTENSION_KINDS.values()}
        # The same, by the subscription of their scope ("" above any subscription), in estate order: a list at a
        # subscription's scope only ever shows its own and what sits above it (not every subscription's).
        self._scoped_by_sub: dict[tuple[str, str], list[tuple[int, ScopedDoc]]] = defaultdict(list)
        self._scoped_at: dict[tuple[str, str], list[tuple[int, ScopedDoc]]] = defaultdict(list)  # by exact scope
        self._role_defs: dict[str, dict[str, Any]] = {}
        self._subs: dict[str, str] = {}  # lower -> first spelling seen
        self._rg_docs: dict[str, dict[str, Any]] = {}
        self._known_rgs: set[str] = set()
        # Which management groups (and `/`) sit above each subscription; a subscription without an entry has all
        # of them above it (ids.is_ancestor_or_self), as estates written before the field existed expect.
        self.ancestors: dict[str, frozenset[str]] = norm_ancestors(snapshot.subscription_ancestors)
        for sub in snapshot.subscriptions:
            self._add_sub(sub)
        for entry in self.tenant.subscriptions.values():
            self._add_sub(entry.subscription_id)
        for kind, docs in self._docs.items():
            for doc in docs:
                self._index(kind, doc)
        self.tenant_id = self._tenant()

    # --- indexing -------------------------------------------------------------------------------------------

    def _add_sub(self, sub: str | None) -> None:
        if sub:
            self._subs.setdefault(sub.lower(), sub)

    def _index(self, kind: str, doc: dict[str, Any]) -> None:
        doc_id = _doc_id(doc)
        self._by_id.setdefault((kind, doc_id), doc)
        raw_id = str(doc.get("id") or "")
        sub = subscription_of(doc_id)
        if sub:
            self._add_sub(raw_id.strip("/").split("/")[1])
            self._by_sub[(kind, sub)].append(doc)
        rg = resource_group_id(doc_id)
        if rg:
            self._known_rgs.add(rg)
            self._by_rg[(kind, rg)].append(doc)
        if kind == "resourceGroups":
            self._rg_docs.setdefault(doc_id, doc)
            self._known_rgs.add(doc_id)
        elif kind in ("triggers", "galleryImages"):
            self._children[(kind, doc_id.rsplit("/", 2)[0])].append(doc)
        elif kind in self._scoped:
            scope = _scope_of(kind, doc)
            scoped = ScopedDoc(scope, doc)
            self._scoped_by_sub[(kind, subscription_of(scope) or "")].append((len(self._scoped[kind]), scoped))
            self._scoped_at[(kind, scope)].append((len(self._scoped[kind]), scoped))
            self._scoped[kind].append(scoped)
            self._add_sub(subscription_of(scope))
            if kind == "roleDefinitions":
                self._role_defs.setdefault(str(doc.get("name") or doc_id.rsplit("/", 1)[-1]).lower(), doc)

    def _tenant(self) -> str:
        """The tenant the estate's identities report, else a stable made-up one."""
        for doc in self._docs.get("userAssignedIdentities", []):
            tenant = (doc.get("properties") or {}).get("tenantId")
            if isinstance(tenant, str) and tenant:
                return tenant
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "aib-audit-emulator:tenant"))

    # --- queries --------------------------------------------------------------------------------------------

    def has_subscription(self, sub: str) -> bool:
        return sub.lower() in self._subs

    def subscription_doc(self, sub: str) -> dict[str, Any]:
        spelled = self._subs[sub.lower()]
        entry = self.tenant.subscriptions.get(sub.lower())
        return {
            "id": f"/subscriptions/{spelled}",
            "subscriptionId": spelled,
            "displayName": entry.display_name if entry else f"Emulated subscription {spelled}",
            "state": entry.state if entry else "Enabled",
            "tenantId": self.tenant_id,
            "authorizationSource": "RoleBased",
            "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01", "quotaId": "PayAsYouGo_2014-09-01"},
        }

    def subscription_docs(self) -> list[dict[str, Any]]:
        return [self.subscription_doc(s) for s in self._subs]

    def resource_group_known(self, sub: str, rg: str) -> bool:
        """An RG exists if the estate lists it or holds anything inside it."""
        return norm(f"/subscriptions/{sub}/resourcegroups/{rg}") in self._known_rgs

    def resource_group_doc(self, sub: str, rg: str) -> dict[str, Any] | None:
        return self._rg_docs.get(norm(f"/subscriptions/{sub}/resourcegroups/{rg}"))

    def resource_groups(self, sub: str) -> list[dict[str, Any]]:
        return list(self._by_sub.get(("resourceGroups", sub.lower()), []))

    def get(self, kind: str, resource_id: str) -> dict[str, Any] | None:
        return self._by_id.get((kind, norm(resource_id)))

    def in_subscription(self, kind: str, sub: str) -> list[dict[str, Any]]:
        return list(self._by_sub.get((kind, sub.lower()), []))

    def in_resource_group(self, kind: str, sub: str, rg: str) -> list[dict[str, Any]]:
        return list(self._by_rg.get((kind, norm(f"/subscriptions/{sub}/resourcegroups/{rg}")), []))

    def children(self, kind: str, parent_id: str) -> list[dict[str, Any]]:
        return list(self._children.get((kind, norm(parent_id)), []))

    def scoped(self, kind: str, within: str | None = None) -> list[ScopedDoc]:
        """Extension resources of `kind`, in estate order; with `within` (a request scope inside a subscription),
        only those that can be at, above or below it: its subscription's, and those at the management groups (and
        root) above it (all of them for a subscription the estate says nothing about)."""
        sub = subscription_of(norm(within)) if within else None
        if sub is None:
            return list(self._scoped[kind])
        above = self._scoped_by_sub.get((kind, ""), [])
        known = self.ancestors.get(sub)
        if known is not None:
            above = sorted((item for scope in known for item in self._scoped_at.get((kind, scope), [])), key=_seq)
        own = self._scoped_by_sub.get((kind, sub), [])
        return [doc for _, doc in heapq.merge(own, above, key=_seq)]

    def role_definition(self, name: str) -> dict[str, Any] | None:
        return self._role_defs.get(name.lower())

    def all(self, kind: str) -> list[dict[str, Any]]:
        return list(self._docs.get(kind, []))

    def typed_resources(self) -> list[dict[str, Any]]:
        """Every typed resource (what Resource Graph's `resources` table holds of this estate)."""
        return [doc for kind in TYPED_KINDS.values() for doc in self._docs.get(kind, [])]
