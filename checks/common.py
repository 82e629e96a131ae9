"""Helpers shared by several check modules: identities' principals, unaudited subscriptions, partial answers.

No checks live here; each helper exists once so that the checks that use it say the same thing the same way.
"""

from __future__ import annotations

from auditor import ids
from auditor.findings import Finding, Status, error
from auditor.inventory import Inventory, Template

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
