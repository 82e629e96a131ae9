"""Helpers shared by several check modules: identities' principals, unaudited subscriptions, partial answers,
and RBAC answers turned into rows (one per principal, with its evidence).

No checks live here; each helper exists once so that the checks that use it say the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from auditor import ids
from auditor.documents import Template
from auditor.findings import Finding, Status, error
from auditor.inventory import Inventory
from auditor.rbac_terms import Answer, Grant, by_rank
from auditor.snapshot import PERMISSIONS

TEMPLATE_IDENTITY = "template identity"
BUILD_VM_IDENTITY = "build-VM identity"


def identity_principal(iid: str, label: str, t: Template, inv: Inventory) -> tuple[str | None, list[Finding]]:
    """The identity's principal ID (from the identity, else the template's GET body), or an ERROR saying why it is unknown."""
    pid = inv.principal_of_identity(iid, t)
    if pid:
        return pid, []
    name = ids.name_of(iid)
    errs = inv.read_errors("userAssignedIdentities", iid)
    if inv.identity(iid) is None and errs:
        why = f"{label} {name} could not be read: {errs[0].describe()}"
    else:
        why = f"the principal ID of {label} {name} is unknown (the identity was not found: deleted?)"
    return None, [error(why, resource_id=iid, evidence={"identity_id": iid})]


def unreadable_template_identity(t: Template) -> Finding | None:
    """An ERROR when the template body names no user-assigned identity although it does not say it has none.

    Image Builder requires exactly one user-assigned identity (API 2020-02-14 on): an `identity` block that is
    absent, null, or lists no identities is an incomplete body. Only `identity.type` "None" says there is none.
    """
    if t.identity_ids or str(t.identity_type or "").strip().lower() == "none":
        return None
    return error(
        "the template's identity could not be read (the identity block is absent, null or lists no user-assigned "
        "identity; Image Builder requires one), so its rights cannot be checked",
        resource_id=t.id,
        evidence={"identity": t.raw.get("identity") if isinstance(t.raw, dict) else None},
    )


def unaudited_identity(iid: str, label: str, inv: Inventory) -> list[Finding]:
    """An ERROR when the identity lives in a subscription the audit did not read (its role assignments are unknown)."""
    sub = inv.unaudited_subscription(iid)
    if sub is None:
        return []
    return [
        error(
            f"{label} {ids.name_of(iid)} lives in subscription {sub}, which was not audited: "
            "role assignments there were not read",
            resource_id=iid,
            evidence={"identity_id": iid, "subscription_id": sub},
        )
    ]


def with_problems(problems: list[Finding], rows: list[Finding]) -> list[Finding]:
    """An incomplete answer: its ERRORs, and the FAIL rows that are wrong whatever is missing. Nothing can be
    vouched for (PASS) while a read is missing."""
    return problems + [f for f in rows if f.status == Status.FAIL]


# --------------------------------------------------------------------------------------------- RBAC answers -> findings


def problem_findings(ans: Answer) -> list[Finding]:
    """ERROR findings for everything that makes an answer incomplete (fail closed)."""
    out = []
    for e in ans.errors:
        e = e if e.permission else replace(e, permission=PERMISSIONS.get(e.kind, ""))  # say what the auditor lacks
        out.append(error(e.describe(), evidence={"kind": e.kind, "scope": e.scope, "permission": e.permission}))
    for u in ans.unresolved:
        out.append(
            error(
                u.message(),
                principal_id=u.principal_id,
                principal_type=u.principal_type,
                role_scope=u.scope,
                evidence={"assignment_id": u.assignment_id, "role_definition_id": u.role_definition_id},
            )
        )
    return out


def principal_fields(grants: Sequence[Grant], allowed: bool, **extra: Any) -> dict[str, Any]:
    """Finding keyword arguments for one principal's row: the most significant grant, every grant in evidence."""
    ordered = by_rank(grants)
    first = ordered[0]
    evidence: dict[str, Any] = {
        "inherited_from": first.inherited_from,
        "eligible": first.eligible,
        "conditional": first.conditional,
        "assignment_id": first.assignment_id,
        "matched_action": first.matched_action,
        "granted_by": first.granted_by,
        "allowed": allowed,
        "grants": [g.evidence() for g in ordered],
    }
    if caveats := list(dict.fromkeys(c for g in ordered for c in g.deny_caveats)):
        evidence["deny_caveats"] = caveats  # a deny might remove these rights: group membership is unknown
    evidence.update(extra)
    return {
        "principal_id": first.principal_id,
        "principal_type": first.principal_type,
        "role_name": first.role_name,
        "role_scope": first.assignment_scope,
        "evidence": evidence,
    }


def grant_flags(g: Grant) -> str:
    """Words that qualify a grant: PIM eligibility, ABAC condition."""
    flags = []
    if g.eligible:
        flags.append("PIM-eligible: can activate it at will")
    if g.conditional:
        flags.append("the assignment has an ABAC condition")
    flags += g.deny_caveats
    return f" ({'; '.join(flags)})" if flags else ""


def principal_label(g: Grant) -> str:
    kind = "deleted principal" if g.deleted else (g.principal_type or "principal")
    return f"{kind} {g.principal_id}"


def via(grants: Sequence[Grant]) -> str:
    """`Owner at subscription S; Contributor at resource group X` for a principal's grants."""
    ordered = by_rank(grants)
    parts = []
    seen: set[tuple[str, str]] = set()
    for g in ordered:
        k = (g.role_name, g.scope_key)
        if k in seen:
            continue
        seen.add(k)
        parts.append(f"{g.role_name} at {g.inherited_from}{grant_flags(g)}")
    return "; ".join(parts)
