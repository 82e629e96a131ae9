"""The RBAC engine: who can do what, where, computed from the inventory's role assignments.

Semantics (design.md "Least-privilege semantics"):

- A principal's rights at a scope are the union, over its assignments at that scope and every ancestor
  (resource -> resource group -> subscription -> management groups -> `/`), of each role's actions minus
  THAT permission block's notActions. notActions are not denies: another role (or block) grants back.
- A management group (or `/`) is an ancestor of a subscription only when the snapshot's
  `subscriptionAncestors` lists it for that subscription; a subscription without an entry (older snapshots,
  hand-made estates) has every management group and `/` above it (Inventory.applies_at, ids.is_ancestor_or_self).
- Patterns match case-insensitively with `*` anywhere (`*`, `*/read`, `Microsoft.Authorization/*/Write`).
  An interior `/*/` also matches a single `/`: Managed Identity Operator's
  `userAssignedIdentities/*/assign/action` is what grants `userAssignedIdentities/assign/action`.
- Data actions are evaluated apart (dataActions minus notDataActions).
- Deny assignments subtract (at the scope or above, unless doNotApplyToChildScopes; listed principals, or
  everyone minus excludePrincipals). Groups are principals of their own: membership is not expanded, so a deny
  that lists a group removes that group's own grants only, and a deny that excludes a group (or a principal of a
  type that might hold others, or of no reported type) might not apply to anyone: any principal could be a
  member. Such a deny keeps the grant and says so in the evidence (`Grant.deny_caveats`), never subtracts.
- With include_below the question is about resources under the scope, so a right held at or above it is
  judged at a child scope: a deny with doNotApplyToChildScopes does not reach there.
- An action on a child resource type of the target (`imageTemplates/triggers/write` on a template,
  `userAssignedIdentities/federatedIdentityCredentials/write` on an identity) is authorized at the child's
  scope, so it too is judged `below`.
- A deny assignment with an ABAC condition (on the deny, or on every block that would remove the right) might
  not apply: it keeps the grant with a caveat, like a deny that excludes a possible group.
- A conditional (ABAC) assignment grants and is flagged; a PIM eligibility grants and is flagged.
- An assignment whose role definition is not in the inventory, or whose permissions could not be read
  (`properties`/`permissions` missing or null), is UNRESOLVED and reported, never skipped or taken as empty.

Assignments are indexed by normalized scope and by principal, so a question about one resource only touches
its ancestor chain (and, with include_below, the sorted range of scopes under it). Role/question matches are
cached per (role, question); per-scope answers are cached per (scope, question).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, replace

from auditor import ids
from auditor.actions import (
    is_concrete,
    on_child_resource,
)
from auditor.documents import EVERYONE
from auditor.inventory import Inventory
from auditor.rbac_documents import DenyAssignment, RoleAssignment, RoleDefinition
from auditor.rbac_terms import (
    BREADTH,
    BROAD_WRITE_PROBES,
    GROUP_PRINCIPAL_TYPES,
    LEAF_PRINCIPAL_TYPES,
    RBAC_KINDS,
    Actions,
    Answer,
    Grant,
    Query,
    Unresolved,
    _block_grants,
    _block_grants_non_read,
    _deny_removes,
    _rank,
    make_query,
)
from auditor.recent import Recent
from auditor.snapshot import ReadError

# --------------------------------------------------------------------------------------------- the engine


def role_grants(role: RoleDefinition, query: Query) -> tuple[tuple[str, str], ...]:
    """(question action, granting pattern) for each question the role grants, ignoring deny assignments.

    What a role can do wherever it is assigned: the engine caches it per role (Rbac.role_matches), and the
    built-in role table test (tests/test_builtin_roles.py) asks it of every built-in role.
    """
    out: list[tuple[str, str]] = []
    if query.non_read is not None:
        patterns = [a for p in role.permissions for a in _block_grants_non_read(p, query.non_read, query.data)]
        out += ((str(query.non_read), a) for a in dict.fromkeys(patterns))
    else:
        for q in query.actions:
            patterns = [a for p in role.permissions for a in _block_grants(p, q, query.data)]
            if is_concrete(q):
                patterns = patterns[:1]  # the first block that grants it; denies are judged on q itself
            out += ((q, a) for a in dict.fromkeys(patterns))
    return tuple(out)


NO_ERRORS: tuple[tuple[ReadError, ...], tuple[int, ...]] = ((), ())
CACHED_SCOPES = 4096  # entries per cache (a (scope, question) pair in _scope_cache): far more than one template asks about


class Rbac:
    """Indexes an inventory's role and deny assignments once and answers questions about them."""

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self._by_scope: dict[str, list[RoleAssignment]] = {}
        self._by_principal: dict[str, list[RoleAssignment]] = {}
        for ra in inv.role_assignments:
            self._by_scope.setdefault(ra.scope_key, []).append(ra)
            self._by_principal.setdefault(ra.principal_id, []).append(ra)
        self._sorted_scopes = sorted(self._by_scope)
        self._above_sub = [s for s in self._by_scope if ids.is_above_subscription(s)]
        self._deny_by_scope: dict[str, list[DenyAssignment]] = {}
        for d in inv.deny_assignments:
            self._deny_by_scope.setdefault(ids.norm(d.scope), []).append(d)
        self._deny_above_sub = [s for s in self._deny_by_scope if ids.is_above_subscription(s)]
        self._role_cache: dict[tuple[str, Query], tuple[tuple[str, str], ...]] = {}  # per role: a few hundred at most
        self._scope_cache: Recent[tuple[str, Query], tuple[tuple[Grant, ...], tuple[Unresolved, ...]]] = Recent(CACHED_SCOPES)
        self._deny_cache: Recent[str, tuple[tuple[str, DenyAssignment], ...]] = Recent(CACHED_SCOPES)
        self._chain_cache: Recent[str, tuple[str, ...]] = Recent(CACHED_SCOPES)
        # Per subscription: the root and management-group scopes (with assignments, with denies) above it.
        self._above_by_sub: dict[str, tuple[str, ...]] = {}
        self._deny_above_by_sub: dict[str, tuple[str, ...]] = {}
        self._role_ids: dict[str, RoleDefinition | None] = {}
        # Per scope: its failed reads and their indexes into inv.errors (a hit marks them consulted too). Most scopes
        # have none, and share the one NO_ERRORS pair.
        self._error_cache: Recent[str, tuple[tuple[ReadError, ...], tuple[int, ...]]] = Recent(CACHED_SCOPES)

    # -- roles ------------------------------------------------------------------------------------

    def role(self, role_definition_id: str) -> RoleDefinition | None:
        """Resolve from any form of the ID (by GUID); cached per spelling.

        None also for a definition whose permissions could not be read: its rights are unknown, not empty.
        """
        if role_definition_id not in self._role_ids:
            role = self.inv.role_definition(role_definition_id)
            self._role_ids[role_definition_id] = None if role is None or role.unreadable else role
        return self._role_ids[role_definition_id]

    def _unresolved(self, ra: RoleAssignment) -> Unresolved:
        found = self.inv.role_definition(ra.role_definition_id)
        reason = found.unreadable if found is not None else ""
        return Unresolved(ra.id, ra.role_definition_id, ra.principal_id, ra.principal_type, ra.scope, reason)

    def role_matches(self, role: RoleDefinition, query: Query) -> tuple[tuple[str, str], ...]:
        """(question action, granting pattern) for each question the role grants, ignoring denies; cached.

        A pattern question or NON_READ yields one pair per granting pattern, so that a deny assignment that
        removes one pattern leaves the others standing (who_can keeps the first pair no deny removes).
        """
        key = (role.guid, query)
        hit = self._role_cache.get(key)
        if hit is None:
            hit = self._role_cache[key] = role_grants(role, query)
        return hit

    @staticmethod
    def has_star(role: RoleDefinition) -> bool:
        """`*` in the role's actions, or actions that amount to it (Owner, Contributor and look-alikes).

        "Amount to it": the role grants every write in BROAD_WRITE_PROBES (its notActions applied), e.g.
        `Microsoft.*`, `*/*` or `*/write` + `*/delete` + `*/action`.
        """
        if any(a.strip() == "*" for p in role.permissions for a in p.actions):
            return True
        return all(any(_block_grants(p, probe, False) for p in role.permissions) for probe in BROAD_WRITE_PROBES)

    @staticmethod
    def star_pattern(role: RoleDefinition) -> str:
        """The literal `*`, else the role's patterns that grant the broad writes (for evidence)."""
        if any(a.strip() == "*" for p in role.permissions for a in p.actions):
            return "*"
        found = [a for probe in BROAD_WRITE_PROBES for p in role.permissions for a in _block_grants(p, probe, False)]
        return ", ".join(dict.fromkeys(found))

    # -- scopes -----------------------------------------------------------------------------------

    def _chain(self, key: str) -> tuple[str, ...]:
        """Scope keys with assignments at `key` or above it (management groups and root included)."""
        hit = self._chain_cache.get(key)
        if hit is None:
            parts = key.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(2, len(parts) + 1)]
            found = [p for p in prefixes if p in self._by_scope]
            # Management groups and root: only those above this subscription (Inventory.applies_at).
            found += [s for s in self._applying_above(key, self._above_sub, self._above_by_sub) if s not in found]
            hit = self._chain_cache.put(key, tuple(found))
        return hit

    def _applying_above(self, key: str, above: list[str], by_sub: dict[str, tuple[str, ...]]) -> Sequence[str]:
        """The root and management-group scopes in `above` that apply at `key`, in `above`'s order.

        Whether one applies at a scope inside a subscription depends only on the subscription (ids.is_ancestor_or_self:
        what ARM listed above it), so it is worked out once per subscription, not once per scope: with 300
        management groups the per-scope scan was scopes x groups calls. Scopes outside any subscription (a
        management group, root) are few and still scanned.
        """
        sub = ids.subscription_of(key)
        if sub is None:
            return [s for s in above if self.inv.applies_at(s, key)]
        hit = by_sub.get(sub)
        if hit is None:
            sub_scope = f"/subscriptions/{sub}"
            hit = by_sub[sub] = tuple(s for s in above if self.inv.applies_at(s, sub_scope))
        return hit

    def _below(self, key: str) -> list[str]:
        """Scope keys with assignments strictly under `key` (a sorted range, no scan)."""
        prefix = key.rstrip("/") + "/"
        out = []
        i = bisect.bisect_left(self._sorted_scopes, prefix)
        while i < len(self._sorted_scopes) and self._sorted_scopes[i].startswith(prefix):
            out.append(self._sorted_scopes[i])
            i += 1
        return out

    def _scope_grants(self, scope_key: str, query: Query) -> tuple[tuple[Grant, ...], tuple[Unresolved, ...]]:
        """Grants (one per assignment and granted question, described absolutely) at exactly one scope; cached."""
        key = (scope_key, query)
        cached = self._scope_cache.get(key)
        if cached is None:
            grants: list[Grant] = []
            unresolved: list[Unresolved] = []
            for ra in self._by_scope.get(scope_key, ()):
                role = self.role(ra.role_definition_id)
                if role is None:
                    unresolved.append(self._unresolved(ra))
                    continue
                where = ids.describe_scope(ra.scope)
                grants += (_grant(ra, role, where, q, by) for q, by in self.role_matches(role, query))
            cached = self._scope_cache.put(key, (tuple(grants), tuple(unresolved)))
        return cached

    # -- deny assignments -------------------------------------------------------------------------

    def _denies_over(self, eval_key: str) -> tuple[tuple[str, DenyAssignment], ...]:
        """(scope key, deny) for deny assignments at `eval_key` or above it; cached per scope."""
        hit = self._deny_cache.get(eval_key)
        if hit is None:
            parts = eval_key.split("/")
            keys = ["/".join(parts[:i]) for i in range(2, len(parts) + 1)]
            keys += [s for s in self._applying_above(eval_key, self._deny_above_sub, self._deny_above_by_sub) if s not in keys]
            hit = self._deny_cache.put(eval_key, tuple((k, d) for k in keys for d in self._deny_by_scope.get(k, ())))
        return hit

    def _denies_at(self, principal_id: str, eval_key: str, below: bool = False) -> list[DenyAssignment]:
        """Deny assignments that name `principal_id` (or Everyone) and do not exclude it, applying at `eval_key`.

        `below`: judge at a scope strictly under `eval_key`, where no deny with doNotApplyToChildScopes applies.
        """
        out = []
        for k, d in self._denies_over(eval_key):
            if d.does_not_apply_to_child_scopes and (below or k != eval_key):
                continue
            if principal_id in d.exclude_principal_ids or EVERYONE in d.exclude_principal_ids:
                continue
            if principal_id in d.principal_ids or EVERYONE in d.principal_ids:
                out.append(d)
        return out

    def _deny_verdict(
        self, principal_id: str, eval_key: str, question: str | None, granted_by: str, data: bool, below: bool = False
    ) -> DenyVerdict:
        """Does a deny assignment remove this right? Only when sure: one that excludes a (possible) group can't be.

        `question` is None for a NonRead question: the deny is judged on the granting pattern alone.
        """
        if not self._deny_by_scope:
            return NOT_DENIED
        q = question
        caveats: list[str] = []
        for d in self._denies_at(principal_id, eval_key, below):
            removing = [p for p in d.permissions if _deny_removes(p, q, granted_by, data)]
            if not removing:
                continue
            if d.condition or all(p.condition for p in removing):
                # An ABAC condition decides per request whether the deny applies: it might not, so keep the right.
                caveats.append(conditional_deny_caveat(d))
                continue
            groups = possible_groups(d)
            if not groups:
                return REMOVED
            caveats.append(deny_caveat(d, principal_id, groups))
        return DenyVerdict(False, tuple(caveats)) if caveats else NOT_DENIED

    # -- read errors ------------------------------------------------------------------------------

    def all_errors(self) -> list[ReadError]:
        """Every failed RBAC read in the audit, wherever it was: a principal's own assignments may be anywhere."""
        out = []
        for i, e in enumerate(self.inv.errors):
            if e.kind in RBAC_KINDS:
                out.append(e)
                self.inv.consulted.add(i)
        return out

    def errors_for(self, scope: str) -> list[ReadError]:
        """Failed RBAC reads (assignments, definitions, denies, PIM) that cover `scope`."""
        key = ids.norm(scope)
        hit = self._error_cache.get(key)
        if hit is None:  # read_errors marks what it finds as consulted (Inventory.consulted)
            found = tuple(e for kind in RBAC_KINDS for e in self.inv.read_errors(kind, key))
            at = tuple(i for i, e in enumerate(self.inv.errors) if any(e is f for f in found)) if found else ()
            hit = self._error_cache.put(key, (found, at) if found else NO_ERRORS)
        else:  # from the cache: still asked about by this evaluation, whose ERROR rows then show them
            self.inv.consulted.update(hit[1])
        return list(hit[0])

    # -- the two questions ------------------------------------------------------------------------

    def who_can(self, actions: Actions, scope: str, *, data: bool = False, include_below: bool = False) -> Answer:
        """Every assignment that gives someone `actions` at `scope` (at/above it; with include_below, also under it).

        `actions` are concrete actions or patterns (any one suffices), or NON_READ. One Grant per assignment:
        the first question it grants that no deny assignment removes.
        """
        query = make_query(actions, data)
        target = ids.norm(scope)
        child_actions = {q for q in query.actions if on_child_resource(q, target)}
        keys = list(self._chain(target))
        if include_below:
            keys += self._below(target)
        ans = Answer(errors=self.errors_for(target))
        for k in keys:
            grants, unresolved = self._scope_grants(k, query)
            ans.unresolved.extend(unresolved)
            eval_key = k if len(k) > len(target) else target  # a deny is judged where the right is used
            chosen: dict[str, Grant] = {}  # assignment -> its grant, in first-seen order
            for g in grants:
                cur = chosen.get(g.assignment_id)
                if cur is not None and not cur.deny_caveats:
                    continue
                # With include_below the right is used on resources under eval_key, and an action on a child
                # resource type (triggers/write on a template) under the target: both out of reach of a deny that
                # does not apply to child scopes (judged as `below`).
                below = include_below or g.matched_action in child_actions
                asked = None if query.non_read is not None else g.matched_action
                verdict = self._deny_verdict(g.principal_id, eval_key, asked, g.granted_by, data, below)
                if verdict.removed:
                    continue
                if verdict.caveats:
                    g = replace(g, deny_caveats=verdict.caveats)
                if cur is None or not g.deny_caveats:  # a question no deny might remove beats a caveated one
                    chosen[g.assignment_id] = g
            for g in chosen.values():
                if k == target and g.scope_level == "resource":
                    g = replace(g, inherited_from="this resource")
                ans.grants.append(g)
        return ans

    def rights_of(self, principal_id: str) -> Answer:
        """Every assignment of a principal (active and eligible, at any scope), with its role resolved."""
        pid = principal_id.lower()
        ans = Answer()
        for ra in self._by_principal.get(pid, ()):
            role = self.role(ra.role_definition_id)
            if role is None:
                ans.unresolved.append(self._unresolved(ra))
                continue
            ans.grants.append(_grant(ra, role, ids.describe_scope(ra.scope)))
        ans.grants.sort(key=_rank)
        return ans

    def grant_can(self, g: Grant, actions: Actions, *, data: bool = False) -> str | None:
        """Does this (rights_of) grant give `actions` at its scope or under it, denies applied? The granting pattern.

        A deny with doNotApplyToChildScopes at the grant's scope does not cancel the right: it still holds on every
        resource under that scope (judged as `below`).
        """
        role = self.role(g.role_id)
        if role is None:
            return None
        caveated: str | None = None  # kept (fail closed) when only a deny excluding a possible group stands in the way
        query = make_query(actions, data)
        for q, by in self.role_matches(role, query):
            asked = None if query.non_read is not None else q
            verdict = self._deny_verdict(g.principal_id, g.scope_key, asked, by, data, below=True)
            if verdict.removed:
                continue
            if not verdict.caveats:
                return by
            caveated = caveated or by
        return caveated


@dataclass(frozen=True)
class DenyVerdict:
    """What the deny assignments over a scope do to one right: remove it for sure, or maybe (caveats)."""

    removed: bool = False
    caveats: tuple[str, ...] = ()


NOT_DENIED = DenyVerdict()
REMOVED = DenyVerdict(removed=True)


def possible_groups(d: DenyAssignment) -> tuple[tuple[str, str], ...]:
    """(id, type) of the deny's excluded principals that might contain others (no Graph: membership is unknown).

    A missing type (hand-made data, a body without it) counts as a possible group: fail closed.
    """
    types = d.exclude_principal_types
    out = []
    for i, pid in enumerate(d.exclude_principal_ids):
        ptype = types[i] if i < len(types) else ""
        if ptype.strip().lower() not in LEAF_PRINCIPAL_TYPES:
            out.append((pid, ptype))
    return tuple(out)


def conditional_deny_caveat(d: DenyAssignment) -> str:
    """`deny assignment 'X' at S applies only when its condition holds`, for a reviewer to settle."""
    return f"deny assignment '{d.name or d.id}' at {ids.describe_scope(d.scope)} applies only when its condition holds"


def deny_caveat(d: DenyAssignment, principal_id: str, groups: Sequence[tuple[str, str]]) -> str:
    """`deny assignment 'X' would remove this unless P is a member of excluded group G`, for a reviewer to settle."""
    names = []
    for gid, gtype in groups:
        if gtype.strip().lower() in GROUP_PRINCIPAL_TYPES:
            names.append(f"excluded group {gid}")
        else:
            names.append(f"excluded principal {gid} (type {gtype or 'not reported'}: possibly a group)")
    name = d.name or d.id
    return (
        f"deny assignment '{name}' at {ids.describe_scope(d.scope)} would remove this unless {principal_id} is a member of"
        f" {' or '.join(names)}"
    )


def _grant(ra: RoleAssignment, role: RoleDefinition, inherited_from: str, matched: str = "", by: str = "") -> Grant:
    level = ids.scope_level(ra.scope)
    return Grant(
        principal_id=ra.principal_id,
        principal_type=ra.principal_type,
        role_name=role.role_name,
        role_id=ra.role_definition_id,
        role_guid=role.guid,
        assignment_id=ra.id,
        assignment_scope=ra.scope,
        scope_level=level,
        inherited_from=inherited_from,
        eligible=ra.eligible,
        conditional=bool(ra.condition),
        matched_action=matched,
        granted_by=by,
        scope_key=ra.scope_key,
        breadth=BREADTH.get(level, 1),
        principal_deleted=ra.principal_deleted,
    )


_ENGINE_ATTR = "_rbac_engine"


def engine(inv: Inventory) -> Rbac:
    """The engine for an inventory, built once and shared by every check and template.

    Kept on the inventory object itself (not a dataclass field, so invisible to eq, repr and asdict): it lives
    and dies with the inventory. An inventory is not meant to change after build_inventory.
    """
    rb = vars(inv).get(_ENGINE_ATTR)
    if isinstance(rb, Rbac) and rb.inv is inv:
        return rb
    rb = Rbac(inv)
    vars(inv)[_ENGINE_ATTR] = rb
    return rb


def drop_engine(inv: Inventory) -> None:
    """Let the inventory's engine and its caches go: once every check has run nothing asks it again (and if
    something did, `engine(inv)` would build a new one). At 10,000 templates its caches are tens of MiB that the
    reports would otherwise be written beside."""
    vars(inv).pop(_ENGINE_ATTR, None)
