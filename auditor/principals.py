"""Principal rows seen through the directory (directory.py): names on every row, and groups opened up.

The runner calls `enrich` on each check's rows. It never changes what ARM decided for a principal's own row,
except in the one way --expand-groups asks for: a person who can act through a group gets a row of their own
("through group G > H"), and a person whose own row passed but who also acts through a failing group fails too.
`count_principals` is AIB-LP-001's count for max_template_writers: each person once, however many paths lead to
them; a group whose members could not be read makes the count unbounded (fail closed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from auditor import ids
from auditor.directory import Directory, Principal
from auditor.findings import Finding, Status
from auditor.inventory import Inventory
from auditor.policy import Policy

# ARM principal types that stand for several people. A ForeignGroup lives in another tenant: Graph here cannot
# list it, so with --expand-groups it is always unbounded.
ARM_GROUP_TYPES = frozenset({"group", "foreigngroup"})
# Graph's @odata.type -> ARM's principalType spelling, for member rows.
ARM_TYPE_OF: dict[str, str] = {"user": "User", "servicePrincipal": "ServicePrincipal", "device": "Device", "group": "Group"}


def is_group(principal_id: str, arm_type: str, directory: Directory) -> bool:
    p = directory.principal(principal_id)
    if p is not None:
        return p.is_group
    return arm_type.lower() in ARM_GROUP_TYPES


@dataclass
class Count:
    """How many principals hold a right; `unbounded` lists why the number is not known (groups not expanded)."""

    people: set[str] = field(default_factory=set)
    unbounded: list[str] = field(default_factory=list)

    @property
    def value(self) -> int | None:
        return None if self.unbounded else len(self.people)

    def exceeds(self, limit: int) -> bool:
        return bool(self.unbounded) or len(self.people) > limit


def count_principals(principals: Mapping[str, str], directory: Directory, allowed: Callable[[str], bool]) -> Count:
    """`principals`: ID -> ARM principalType of everyone who holds the right. Allowed principals do not count.

    Without --expand-groups a group is one principal, as ARM sees it. With it, a group counts as its members
    (people and service principals, each once across all groups and direct assignments).
    """
    out = Count()
    for pid, arm_type in principals.items():
        if allowed(pid):
            continue
        if not directory.expand or not is_group(pid, arm_type, directory):
            out.people.add(pid.lower())
            continue
        members = directory.members_of(pid)
        if members is None:
            out.unbounded.append(f"group {directory.name(pid)}: {directory.unreadable_reason(pid, arm_type)}")
            continue
        out.people |= {m.id for m in members if not m.is_group and not allowed(m.id)}
    return out


# --------------------------------------------------------------------------------------------- rows


def _name(f: Finding, directory: Directory) -> None:
    if not f.principal_id:
        return
    p = directory.principal(f.principal_id)
    if p is not None:
        f.principal_name = f.principal_name or p.name
        f.principal_upn = f.principal_upn or p.upn
        f.evidence.setdefault("principal", directory.evidence_of(p))
        if p.name and p.name not in f.detail:  # "User <id> can ..." -> "User Alice Andersen <alice@...> (<id>) can ..."
            label = p.name + (f" <{p.upn}>" if p.upn else "")
            f.detail = f.detail.replace(f.principal_id, f"{label} ({f.principal_id})", 1)
    elif directory.is_deleted(f.principal_id):
        f.evidence["principal_deleted"] = "Microsoft Graph does not know this principal: it was deleted"
        if "deleted" not in f.detail:
            f.detail += " (a deleted principal: Microsoft Graph does not know it)"


def _member_row(f: Finding, m: Principal, via: str, path: list[str], allowed: bool) -> Finding:
    detail = f"{m.label} {via}: {f.detail}"
    status = f.status
    if allowed and status == Status.FAIL:
        status, detail = Status.PASS, f"{detail}; this member is accepted by the audit policy"
    return Finding(
        status,
        detail,
        check_id=f.check_id,
        resource_id=f.resource_id,
        template_id=f.template_id,
        principal_id=m.id,
        principal_type=ARM_TYPE_OF.get(m.kind, m.kind),
        principal_name=m.name,
        principal_upn=m.upn,
        role_name=f.role_name,
        role_scope=f.role_scope,
        evidence={
            **f.evidence,
            "principal": m.evidence(),
            "through_group": f.principal_id,
            "group_path": path,
            "allowed": allowed,
        },
    )


def enrich(rows: list[Finding], inv: Inventory, policy: Policy, check_id: str) -> list[Finding]:
    """Names on every principal row; with --expand-groups, a row per member of each group row (see the module doc)."""
    directory = inv.directory
    for f in rows:
        _name(f, directory)
    if not directory.expand:
        return rows
    judged = [f for f in rows if f.principal_id and f.status in (Status.PASS, Status.FAIL)]
    own: dict[tuple[str, str], Finding] = {(ids.norm(f.resource_id), f.principal_id.lower()): f for f in judged}
    added: dict[tuple[str, str], Finding] = {}
    for f in rows:
        if not f.principal_id or f.status not in (Status.PASS, Status.FAIL) or "grants" not in f.evidence:
            continue
        if not is_group(f.principal_id, f.principal_type, directory):
            continue
        members = directory.members_of(f.principal_id)
        if members is None:
            why = directory.unreadable_reason(f.principal_id, f.principal_type)
            f.detail += f"; the group was not expanded: {why}"
            f.evidence["group_expanded"] = False
            continue
        people = [m for m in members if not m.is_group]
        f.evidence["group_expanded"] = True
        f.evidence["group_members"] = len(people)
        for m in people:
            path = directory.path(f.principal_id, m.id)
            via = "through group " + " > ".join(directory.name(g) for g in path)
            key = (ids.norm(f.resource_id), m.id)
            allowed = policy.allows(check_id, m.id)
            target = own.get(key) or added.get(key)
            if target is None:
                added[key] = _member_row(f, m, via, path, allowed)
                continue
            target.evidence.setdefault("also_through_groups", []).append(path)
            if f.status == Status.FAIL and target.status == Status.PASS and not allowed:
                target.status = Status.FAIL
                target.detail += f"; also {via}, which fails: {f.detail}"
            else:
                target.detail += f"; also {via}"
    return rows + sorted(added.values(), key=lambda x: (x.resource_id.lower(), x.principal_id))
