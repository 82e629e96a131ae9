"""Resource locks on image templates (best practice: "Use resource locks for image templates").

Locks inherit: a lock on the template's resource group or subscription applies to the template. The
collector lists locks subscription-wide (at and below the subscription), so every lock that can apply
is in the inventory unless that read failed.
"""

from __future__ import annotations

from auditor import ids
from auditor.documents import Lock, Template
from auditor.findings import Finding, error, failed, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check


def _where(lock: Lock, template: Template) -> str:
    level = ids.scope_level(lock.scope)
    where = {"resource": "on the template", "resourceGroup": "on its resource group", "subscription": "on its subscription"}
    if ids.norm(lock.scope) != template.key and level == "resource":
        return f"on {lock.scope}"
    return where.get(level, f"at {lock.scope}")


def _lock_read_failed(t: Template, inv: Inventory) -> list[Finding]:
    return [error(e.describe()) for e in inv.read_errors("locks", t.id)]


@check("AIB-LOCK-001")
def cannot_delete_lock(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if errs := _lock_read_failed(t, inv):
        return errs
    locks = [lk for lk in inv.locks_applying_to(t.id) if lk.level.lower() == "cannotdelete"]
    if locks:
        return [
            passed(
                f"CanNotDelete lock '{lk.name}' {_where(lk, t)}",
                evidence={"lock_id": lk.id, "level": lk.level, "applied_at": lk.scope},
            )
            for lk in sorted(locks, key=lambda lk: lk.id.lower())
        ]
    return [failed("no CanNotDelete lock on the template, its resource group or its subscription")]


@check("AIB-LOCK-002")
def no_read_only_lock(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if errs := _lock_read_failed(t, inv):
        return errs
    locks = [lk for lk in inv.locks_applying_to(t.id) if lk.level.lower() == "readonly"]
    if not locks:
        return [passed("no ReadOnly lock applies to the template")]
    return [
        failed(
            f"ReadOnly lock '{lk.name}' {_where(lk, t)} blocks 'run' (a POST) and so triggered builds",
            evidence={"lock_id": lk.id, "level": lk.level, "applied_at": lk.scope},
        )
        for lk in sorted(locks, key=lambda lk: lk.id.lower())
    ]
