"""The RBAC engine's vocabulary: the questions it is asked (an action set, "any non-read action") and the
answers it gives (grants with where they come from, unresolved assignments, a failed read), ranked for rows.

auditor.rbac holds the engine itself; its docstring states the semantics.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from auditor import ids
from auditor.actions import (
    covers,
    intersects,
    is_concrete,
    is_read_only,
    matches,
)
from auditor.rbac_documents import Permission
from auditor.snapshot import PERMISSIONS, ReadError

# Reads whose failure makes any RBAC answer incomplete (fail closed).
RBAC_KINDS: tuple[str, ...] = ("roleAssignments", "roleDefinitions", "denyAssignments", "roleEligibilityScheduleInstances")

OWNER_GUID = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR_GUID = "b24988ac-6180-42a0-ab88-20f7382dd24c"

# How broad a scope is; higher is broader.
BREADTH: dict[str, int] = {"resource": 1, "resourceGroup": 2, "subscription": 3, "managementGroup": 4, "root": 5}
SUBSCRIPTION_BREADTH = BREADTH["subscription"]

# Principal types that hold no other principal. An excluded principal of any other type (Group, ForeignGroup,
# SystemDefined, Unknown, or no type at all) might contain the principal asked about.
LEAF_PRINCIPAL_TYPES: frozenset[str] = frozenset({"user", "serviceprincipal", "device"})
GROUP_PRINCIPAL_TYPES: frozenset[str] = frozenset({"group", "foreigngroup"})

# Actions that a "non-read" question ignores because they change nothing in a resource group: support tickets,
# ARM deployments (which run with the caller's own rights), the retired classic alert rules, and the user
# delegation key (a SAS signed with it carries no more than the caller's own data rights). Reader-like
# built-ins (Monitoring Reader, Managed Identity Operator, Storage Blob Data Reader, ...) carry them, and
# counting them would flood the report with readers.
NON_READ_IGNORED: tuple[str, ...] = (
    "Microsoft.Support/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
)


# Writes on four unrelated providers: a role that grants all of them (net of its notActions) writes across
# providers, whatever its spelling (`*`, `Microsoft.*`, `*/*`, `*/write`, ...): a copy of Contributor or Owner.
BROAD_WRITE_PROBES: tuple[str, ...] = (
    "Microsoft.Compute/virtualMachines/write",
    "Microsoft.Storage/storageAccounts/write",
    "Microsoft.Network/virtualNetworks/write",
    "Microsoft.KeyVault/vaults/write",
)


# --------------------------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class NonRead:
    """The question "any action that is not a read" (`*` counts; a pattern fully removed by notActions doesn't).

    `counts` narrows it: a predicate (pattern, data) that says which granted non-read patterns matter
    (auditor/staging_reach.py: those that can change a staging resource group). Without one, every non-read
    pattern but NON_READ_IGNORED counts.
    """

    counts: Callable[[str, bool], bool] | None = None
    label: str = "any non-read action"

    def __str__(self) -> str:
        return self.label


NON_READ = NonRead()
Actions = str | Sequence[str] | NonRead


@dataclass(frozen=True)
class Query:
    actions: tuple[str, ...]  # the question's patterns, as asked; empty for non_read
    data: bool = False
    non_read: NonRead | None = None


def make_query(actions: Actions, data: bool = False) -> Query:
    if isinstance(actions, NonRead):
        return Query((), data, actions)
    if isinstance(actions, str):
        actions = (actions,)
    acts = tuple(a.strip() for a in actions if a and a.strip())
    if not acts:
        raise ValueError("who_can needs at least one action")
    return Query(acts, data, None)


def _block_lists(perm: Permission, data: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (perm.data_actions, perm.not_data_actions) if data else (perm.actions, perm.not_actions)


def _block_grants(perm: Permission, question: str, data: bool) -> list[str]:
    """The block's action patterns that grant `question` (a concrete action or a pattern), notActions applied.

    Every granting pattern is kept for a pattern question: a deny assignment may remove one of them and not
    another (judged per pattern in `_deny_removes`). A concrete question needs one: a deny is judged on the
    action itself, whichever pattern granted it.
    """
    allow, deny = _block_lists(perm, data)
    if is_concrete(question):
        if any(matches(n, question) for n in deny):
            return []
        return [a for a in allow if matches(a, question)][:1]
    return [a for a in allow if intersects(a, question) and not any(covers(n, a) or covers(n, question) for n in deny)]


def _counts_non_read(pattern: str, data: bool) -> bool:
    return not is_read_only(pattern) and not any(covers(ig, pattern) for ig in NON_READ_IGNORED)


def _block_grants_non_read(perm: Permission, question: NonRead, data: bool) -> list[str]:
    """Every pattern of the block that grants a non-read action the question counts (notActions applied)."""
    allow, deny = _block_lists(perm, data)
    counts = question.counts or _counts_non_read
    return [a for a in allow if not is_read_only(a) and counts(a, data) and not any(covers(n, a) for n in deny)]


def _deny_removes(perm: Permission, question: str | None, granted_by: str, data: bool) -> bool:
    """Does a deny block remove what `granted_by` grants for `question`? Conservative: only when sure."""
    actions, exceptions = _block_lists(perm, data)
    if question is not None and is_concrete(question):
        return any(matches(d, question) for d in actions) and not any(matches(x, question) for x in exceptions)
    covered = any(covers(d, granted_by) or (question is not None and covers(d, question)) for d in actions)
    return covered and not any(intersects(x, granted_by) for x in exceptions)


# --------------------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Grant:
    """One role assignment that gives a principal the asked-for right (or, from rights_of, any right)."""

    principal_id: str
    principal_type: str
    role_name: str
    role_id: str  # the role definition ID as the assignment names it
    role_guid: str
    assignment_id: str
    assignment_scope: str  # as ARM wrote it
    scope_level: str  # root | managementGroup | subscription | resourceGroup | resource
    inherited_from: str  # "this resource", "resource group X", "subscription S", "management group M", "root"
    eligible: bool  # a PIM eligibility, not an active assignment
    conditional: bool  # the assignment carries an ABAC condition
    matched_action: str = ""  # the question's action that matched
    granted_by: str = ""  # the role's pattern that granted it
    scope_key: str = ""  # normalized assignment scope (computed once: grants are sorted and grouped a lot)
    breadth: int = 1  # BREADTH of scope_level
    deny_caveats: tuple[str, ...] = ()  # deny assignments that remove this unless the principal is in an excluded group
    principal_deleted: bool = False  # Microsoft Graph does not know the principal (RoleAssignment.principal_deleted)

    @cached_property
    def rank(self) -> tuple[int, int, int, str, str]:
        """Sort key, most significant first: broadest scope, active before eligible, unconditional first.

        Cached: grants are shared across templates and sorted a lot.
        """
        return (-self.breadth, int(self.eligible), int(self.conditional), self.role_name.lower(), self.assignment_id.lower())

    @property
    def deleted(self) -> bool:
        """The principal was deleted but its assignment never removed: ARM says principalType Unknown, or Microsoft
        Graph was asked and does not know it."""
        return self.principal_deleted or self.principal_type.lower() == "unknown"

    def evidence(self) -> dict[str, Any]:
        """The grant as JSON evidence. One dict per grant, shared by every finding that cites it (a grant at a
        subscription or management group is cited by every template's rows): treat it as read-only."""
        return self._evidence

    @cached_property
    def _evidence(self) -> dict[str, Any]:
        return {
            "role_name": self.role_name,
            "role_id": self.role_id,
            "role_scope": self.assignment_scope,
            "inherited_from": self.inherited_from,
            "eligible": self.eligible,
            "conditional": self.conditional,
            "assignment_id": self.assignment_id,
            "matched_action": self.matched_action,
            "granted_by": self.granted_by,
            **({"deny_caveats": list(self.deny_caveats)} if self.deny_caveats else {}),
        }


@dataclass(frozen=True)
class Unresolved:
    """An assignment whose role definition is not in the inventory: its rights are unknown."""

    assignment_id: str
    role_definition_id: str
    principal_id: str
    principal_type: str
    scope: str
    reason: str = ""  # set when the definition was read but its permissions could not be (RoleDefinition.unreadable)

    def message(self) -> str:
        where = f"(assignment {self.assignment_id} for principal {self.principal_id} at {self.scope})"
        if self.reason:
            return (
                f"the permissions of role definition {self.role_definition_id} could not be read ({self.reason}), "
                f"so what it grants is unknown {where}"
            )
        return f"role definition {self.role_definition_id} could not be read; needs {PERMISSIONS['roleDefinitions']} {where}"


@dataclass
class Answer:
    """Grants, plus everything that makes the answer incomplete. Iterating yields the grants."""

    grants: list[Grant] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    errors: list[ReadError] = field(default_factory=list)

    def __iter__(self) -> Iterator[Grant]:
        return iter(self.grants)

    def __len__(self) -> int:
        return len(self.grants)

    def merge(self, other: Answer) -> Answer:
        def uniq(xs: Iterable[Any], key: Any) -> list[Any]:
            seen: set[Any] = set()
            out = []
            for x in xs:
                k = key(x)
                if k not in seen:
                    seen.add(k)
                    out.append(x)
            return out

        return Answer(
            grants=self.grants + other.grants,
            unresolved=uniq(self.unresolved + other.unresolved, lambda u: u.assignment_id.lower()),
            errors=uniq(self.errors + other.errors, lambda e: (e.kind, ids.norm(e.scope), e.code)),
        )

    def by_principal(self) -> dict[str, list[Grant]]:
        out: dict[str, list[Grant]] = {}
        for g in self.grants:
            out.setdefault(g.principal_id, []).append(g)
        return out


def by_rank(grants: Iterable[Grant]) -> list[Grant]:
    """Grants, most significant first (see Grant.rank)."""
    return sorted(grants, key=_rank)


def top(grants: Iterable[Grant]) -> Grant:
    """The most significant grant (see Grant.rank); `grants` must not be empty."""
    return min(grants, key=_rank)


def _rank(g: Grant) -> tuple[int, int, int, str, str]:
    return g.rank


