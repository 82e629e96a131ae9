"""The typed inventory: a snapshot's raw ARM documents parsed (auditor.documents, auditor.rbac_documents) and joined.

Checks see only these dataclasses, never SDK objects or raw JSON (except `raw`, kept for evidence).
Parsing is lenient about shape (real ARM bodies vary across API versions 2020-2025: legacy
`replicationRegions`, missing `exactStagingResourceGroup`, mixed-case IDs) and strict about meaning:
anything that could not be read is recorded so that checks fail closed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from auditor import ids
from auditor.directory import Directory, build_directory
from auditor.documents import (
    Gallery,
    GalleryImage,
    Identity,
    Lock,
    ResourceGroup,
    Template,
    Trigger,
    _props,
    parse_gallery,
    parse_gallery_image,
    parse_identity,
    parse_lock,
    parse_resource_group,
    parse_template,
    parse_trigger,
)
from auditor.rbac_documents import (
    DenyAssignment,
    RoleAssignment,
    RoleDefinition,
    parse_deny_assignment,
    parse_role_assignment,
    parse_role_definition,
)
from auditor.snapshot import ReadError, Snapshot

# --------------------------------------------------------------------------------------------- the inventory


class Pending(BaseException):
    """A check asked for a kind that is still being read (Inventory.pending). A BaseException, so no check's own
    `except Exception` can turn it into an answer: the audit runner catches it and runs the check again later."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class Inventory:
    subscriptions: list[str]
    templates: list[Template]
    triggers: dict[str, list[Trigger]]  # norm(template id) -> triggers
    locks: list[Lock]
    resource_groups: dict[str, ResourceGroup]  # norm(id) -> RG
    role_assignments: list[RoleAssignment]  # active and eligible (eligible=True)
    role_definitions: dict[str, RoleDefinition]  # guid -> definition
    deny_assignments: list[DenyAssignment]
    identities: dict[str, Identity]  # norm(id) -> identity
    galleries: dict[str, Gallery]  # norm(id) -> gallery
    gallery_images: dict[str, GalleryImage]  # norm(id) -> image definition
    # Failed reads. During an early audit only those of the reads done so far: checks ask through read_errors(),
    # which refuses (Pending) a kind still being read, and scan `errors` themselves only for kinds that are final.
    errors: list[ReadError]
    meta: dict[str, Any] = field(default_factory=dict)
    # lower-case subscription ID -> normalized management-group / root scopes above it (snapshot.py, ids.py)
    subscription_ancestors: dict[str, frozenset[str]] = field(default_factory=dict)
    # Who the principals are (Microsoft Graph), and with --expand-groups who is in each group; empty without Graph.
    directory: Directory = field(default_factory=Directory)
    # Indexes into `errors` that the check being evaluated has asked about (the runner starts a new set for each):
    # the runner reports the failed reads no ERROR row asked about on their own rows.
    consulted: set[int] = field(default_factory=set, repr=False, compare=False)
    # Kinds still being read while an early audit runs (only "triggers"): asking for them raises Pending.
    pending: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    # -- joins ------------------------------------------------------------------------------------

    def triggers_of(self, template: Template) -> list[Trigger]:
        if "triggers" in self.pending:
            raise Pending("triggers")
        return self.triggers.get(template.key, [])

    def applies_at(self, ancestor: str, scope: str) -> bool:
        """Does something at `ancestor` apply at `scope`? Management groups only above their own subscriptions."""
        return ids.is_ancestor_or_self(ancestor, scope, self.subscription_ancestors)

    def unaudited_subscription(self, resource_id: str) -> str | None:
        """The resource's subscription when the audit did not cover it (so nothing was read there), else None."""
        sub = ids.subscription_of(resource_id)
        return sub if sub and sub not in self.subscriptions else None

    def locks_applying_to(self, resource_id: str) -> list[Lock]:
        """Locks on the resource or inherited from its RG / subscription, in `locks` order.

        Looks up the resource's ancestor chain in an index of lock scopes (built once) instead of testing every
        lock: the same answer as `applies_at` on each lock. Locks above a subscription (ARM has none, but a
        snapshot may) still go through `applies_at`, which knows the management-group ancestry.
        """
        s = ids.norm(resource_id)
        if not s:
            return []
        by_scope, above_sub = self._lock_index()
        parts = s.split("/")
        hits = {i for n in range(2, len(parts) + 1) for i in by_scope.get("/".join(parts[:n]), ())}
        hits.update(i for i in above_sub if self.applies_at(self.locks[i].scope, s))
        return [self.locks[i] for i in sorted(hits)]

    def _lock_index(self) -> tuple[dict[str, list[int]], list[int]]:
        """norm(lock scope) -> positions in `locks`, and the positions of locks above subscription scope.

        Kept on the instance, not as a field (invisible to eq/repr/asdict); rebuilt if `locks` is replaced or grows.
        """
        cached = vars(self).get("_locks_by_scope")
        if cached is not None and cached[0] is self.locks and cached[1] == len(self.locks):
            return cached[2], cached[3]
        by_scope: dict[str, list[int]] = {}
        above_sub: list[int] = []
        for i, lk in enumerate(self.locks):
            key = ids.norm(lk.scope)
            if ids.is_above_subscription(key):
                above_sub.append(i)  # root and management groups: ancestry is per subscription, not by prefix
            elif key:
                by_scope.setdefault(key, []).append(i)
        vars(self)["_locks_by_scope"] = (self.locks, len(self.locks), by_scope, above_sub)
        return by_scope, above_sub

    def identity(self, identity_id: str) -> Identity | None:
        return self.identities.get(ids.norm(identity_id))

    def principal_of_identity(self, identity_id: str, template: Template | None = None) -> str | None:
        """An identity's principal ID: from the identity resource, else from the template's GET body."""
        ident = self.identity(identity_id)
        if ident and ident.principal_id:
            return ident.principal_id
        if template is not None:
            pid = template.identity_principals.get(ids.norm(identity_id))
            if pid:
                return pid.lower()
        return None

    def staging_rg(self, template: Template) -> ResourceGroup | None:
        if not template.staging_rg_id:
            return None
        return self.resource_groups.get(ids.norm(template.staging_rg_id))

    def role_definition(self, role_definition_id: str) -> RoleDefinition | None:
        return self.role_definitions.get(ids.name_of(role_definition_id).lower())

    # -- failed reads (fail closed) -----------------------------------------------------------------

    def read_errors(self, kind: str, scope: str) -> list[ReadError]:
        """Failed reads of `kind` that cover `scope`.

        An error covers a scope when it was for the scope itself, an ancestor of it (a failed
        subscription-wide list taints everything in the subscription), or for a descendant that the
        caller asks about directly.
        """
        if kind in self.pending:
            raise Pending(kind)
        s = ids.norm(scope)
        out = []
        for i, e in enumerate(self.errors):
            if e.kind != kind:
                continue
            es = ids.norm(e.scope)
            if self.applies_at(es, s) or self.applies_at(s, es):
                out.append(e)
                self.consulted.add(i)
        return out


def _triggers(docs: list[Any]) -> dict[str, list[Trigger]]:
    triggers: dict[str, list[Trigger]] = defaultdict(list)
    for doc in docs:
        trig = parse_trigger(doc)
        if parent := ids.parent_at(trig.id, "triggers"):
            triggers[ids.norm(parent)].append(trig)
    return dict(triggers)


def build_early_inventory(snapshot: Snapshot, expand_groups: bool = False) -> Inventory:
    """The inventory of a collection whose trigger reads are still running (collect's `early`): everything else
    is final; asking for triggers (or their read errors) raises Pending until `complete_inventory`."""
    if snapshot.resources.get("triggers"):
        raise ValueError("an early inventory is built before any trigger is read")
    inv = build_inventory(snapshot, expand_groups)
    inv.pending = frozenset({"triggers"})
    return inv


def complete_inventory(inv: Inventory, snapshot: Snapshot) -> None:
    """Add what was read after `build_early_inventory(snapshot)`: the triggers, the reads that failed since (after
    the ones the inventory holds, whose indexes checks have recorded) and the final metadata."""
    known = len(inv.errors)
    if list(snapshot.errors[:known]) != inv.errors:
        raise ValueError("the snapshot's read errors changed under the early inventory")
    inv.triggers = _triggers(snapshot.resources.get("triggers", []))
    inv.errors.extend(snapshot.errors[known:])
    inv.meta = dict(snapshot.meta)
    inv.pending = frozenset()


def build_inventory(snapshot: Snapshot, expand_groups: bool = False) -> Inventory:
    """The typed view of a snapshot; `expand_groups` (--expand-groups) judges groups by their members."""
    r = snapshot.resources
    templates = sorted((parse_template(d) for d in r.get("imageTemplates", [])), key=lambda t: t.key)
    role_defs: dict[str, RoleDefinition] = {}
    for doc in r.get("roleDefinitions", []):
        rd = parse_role_definition(doc)
        role_defs.setdefault(rd.guid, rd)
    assignments = [parse_role_assignment(d) for d in r.get("roleAssignments", [])]
    assignments += [parse_role_assignment(d, eligible=True) for d in r.get("roleEligibilityScheduleInstances", [])]
    directory = build_directory(r, snapshot.meta, expand_groups)
    docs = [*r.get("roleAssignments", []), *r.get("roleEligibilityScheduleInstances", [])]
    # A principal of another tenant (a ForeignGroup, a delegated managed identity) is unknown to this tenant's
    # Graph by nature: that says nothing about whether it still exists.
    directory.foreign = {
        ra.principal_id
        for ra, doc in zip(assignments, docs, strict=True)
        if ra.principal_type.lower() == "foreigngroup" or _props(doc).get("delegatedManagedIdentityResourceId")
    }
    for ra in assignments:
        ra.principal_deleted = directory.is_deleted(ra.principal_id)
    return Inventory(
        subscriptions=[s.lower() for s in snapshot.subscriptions],
        templates=templates,
        triggers=_triggers(r.get("triggers", [])),
        locks=[parse_lock(d) for d in r.get("locks", [])],
        resource_groups={ids.norm(rg.id): rg for rg in map(parse_resource_group, r.get("resourceGroups", []))},
        role_assignments=assignments,
        role_definitions=role_defs,
        deny_assignments=[parse_deny_assignment(d) for d in r.get("denyAssignments", [])],
        identities={ids.norm(i.id): i for i in map(parse_identity, r.get("userAssignedIdentities", []))},
        galleries={ids.norm(g.id): g for g in map(parse_gallery, r.get("galleries", []))},
        gallery_images={ids.norm(g.id): g for g in map(parse_gallery_image, r.get("galleryImages", []))},
        errors=list(snapshot.errors),
        meta=dict(snapshot.meta),
        subscription_ancestors=ids.norm_ancestors(snapshot.subscription_ancestors),
        directory=directory,
    )
