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
