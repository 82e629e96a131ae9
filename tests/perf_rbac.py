"""Benchmark of the RBAC engine through the least-privilege checks (not a test module: the benchmark calls it).

`measure()` builds a synthetic, reproducible estate with fixtures.builders + fixtures.roles (templates spread
over resource groups, each with a template identity and half with a build-VM identity, role assignments at
every level from root to single resources, PIM eligibilities, ABAC conditions and deny assignments), then
times run_audit over AIB-LP-001..007 on it.
"""

from __future__ import annotations

import random
import time
from typing import Any

from auditor.audit import run_audit, select_checks
from auditor.documents import EVERYONE
from auditor.inventory import build_inventory
from auditor.snapshot import Snapshot
from fixtures import builders as b
from fixtures import roles

SUB = "5a5a5a5a-1111-4222-8333-944444444444"
MG = "/providers/Microsoft.Management/managementGroups/bench-root"
TEMPLATES_PER_RG = 10
LP_CHECKS = ("AIB-LP-001", "AIB-LP-002", "AIB-LP-003", "AIB-LP-004", "AIB-LP-005", "AIB-LP-006", "AIB-LP-007")


def synthetic_snapshot(templates: int = 1000, assignments: int = 10000, seed: int = 7) -> dict[str, Any]:
    """A snapshot document with `templates` templates and exactly `assignments` role assignments + eligibilities."""
    rnd = random.Random(seed)
    creation = b.guid("bench:aib-image-creation")
    operator = b.guid("bench:template-operator")
    defs = roles.builtin_roles(SUB) + [
        roles.aib_image_creation_role(SUB, creation),
        roles.custom_role(SUB, operator, "Template operator", ["Microsoft.VirtualMachineImages/imageTemplates/*"]),
    ]
    res: dict[str, list[dict[str, Any]]] = {k: [] for k in ("imageTemplates", "resourceGroups", "userAssignedIdentities")}
    grants: list[dict[str, Any]] = []
    eligible: list[dict[str, Any]] = []
    denies: list[dict[str, Any]] = []
    users = [b.guid(f"bench:user:{i}") for i in range(400)]

    def ra(scope: str, role: str, pid: str, ptype: str = "User", **kw: Any) -> None:
        grants.append(b.role_assignment(scope, role, pid, ptype, sub=SUB, name=b.guid(f"bench:ra:{len(grants)}"), **kw))

    # Above and at the subscription: a handful, as in a governed tenant.
    ra(MG, roles.OWNER, users[0], "Group")
    ra("/", roles.READER, users[1], "Group")
    for i, role in enumerate((roles.OWNER, roles.OWNER, roles.CONTRIBUTOR, roles.CONTRIBUTOR, roles.READER, roles.READER)):
        ra(b.sub_id(SUB), role, users[2 + i])
    eligible.append(b.eligibility(b.sub_id(SUB), roles.OWNER, users[9], sub=SUB))

    scopes: list[tuple[str, str]] = []  # (kind, scope) for the random remainder
    for n in range(templates):
        rg = f"rg-images-{n // TEMPLATES_PER_RG:03d}"
        if n % TEMPLATES_PER_RG == 0:
            res["resourceGroups"].append(b.resource_group(SUB, rg))
            scopes.append(("rg", b.rg_id(SUB, rg)))
            if n % 50 == 0:
                denies.append(b.deny_assignment(b.rg_id(SUB, rg), f"deny-{n}", ["*/delete"], [EVERYONE], [users[0]]))
        ident = b.identity(SUB, "rg-identities", f"id-aib-{n}")
        res["userAssignedIdentities"].append(ident)
        build = None
        if n % 2 == 0:
            build = b.identity(SUB, "rg-identities", f"id-build-{n}")
            res["userAssignedIdentities"].append(build)
        tpl = b.template(SUB, rg, f"tpl-{n}", identity_doc=ident, build_vm_identities=[build["id"]] if build else None)
        res["imageTemplates"].append(tpl)
        staging = b.rg_id(SUB, b.staging_rg_name(tpl))
        res["resourceGroups"].append(b.resource_group(SUB, b.staging_rg_name(tpl)))
        pid = b.principal_of(ident)
        ra(staging, roles.CONTRIBUTOR, pid, "ServicePrincipal")
        ra(b.rg_id(SUB, rg), creation, pid, "ServicePrincipal")
        if build:
            ra(build["id"], roles.MANAGED_IDENTITY_OPERATOR, pid, "ServicePrincipal")
            scopes.append(("identity", build["id"]))
        scopes += [("template", tpl["id"]), ("staging", staging), ("identity", ident["id"])]
        scopes.append(("storage", f"{staging}/providers/Microsoft.Storage/storageAccounts/stg{n}"))

    picks = {
        "rg": (roles.CONTRIBUTOR, roles.READER, operator, roles.VIRTUAL_MACHINE_CONTRIBUTOR),
        "template": (operator, roles.READER),
        "staging": (roles.READER, roles.STORAGE_ACCOUNT_CONTRIBUTOR),
        "identity": (roles.MANAGED_IDENTITY_OPERATOR, roles.READER),
        "storage": (roles.STORAGE_BLOB_DATA_READER, roles.STORAGE_BLOB_DATA_CONTRIBUTOR),
    }
    while len(grants) + len(eligible) < assignments:
        kind, scope = rnd.choice(scopes)
        role, user = rnd.choice(picks[kind]), rnd.choice(users)
        if rnd.random() < 0.05:
            eligible.append(b.eligibility(scope, role, user, sub=SUB))
        elif rnd.random() < 0.03:
            ra(scope, role, user, condition="@Principal[Microsoft.Directory/CustomSecurityAttributes/Id:team] StringEquals 'img'")
        else:
            ra(scope, role, user, rnd.choice(("User", "User", "Group", "ServicePrincipal")))
    resources = {
        **res,
        "roleDefinitions": defs,
        "roleAssignments": grants,
        "roleEligibilityScheduleInstances": eligible,
        "denyAssignments": denies,
    }
    return b.snapshot([SUB], resources)


def measure(templates: int = 1000, assignments: int = 10000) -> dict[str, Any]:
    """Time AIB-LP-001..007 over a synthetic estate; returns the numbers the benchmark prints."""
    t0 = time.perf_counter()
    snap = Snapshot.from_dict(synthetic_snapshot(templates, assignments))
    inv = build_inventory(snap)
    t1 = time.perf_counter()
    result = run_audit(inv, select_checks(list(LP_CHECKS)))
    t2 = time.perf_counter()
    return {
        "templates": len(inv.templates),
        "role_assignments": len(inv.role_assignments),
        "deny_assignments": len(inv.deny_assignments),
        "checks": len(LP_CHECKS),
        "findings": len(result.findings),
        "failed": sum(1 for f in result.findings if f.status == "FAIL"),
        "errors": sum(1 for f in result.findings if f.status == "ERROR"),
        "build_seconds": round(t1 - t0, 3),
        "audit_seconds": round(t2 - t1, 3),
        "ms_per_template": round(1000 * (t2 - t1) / max(1, len(inv.templates)), 3),
    }


if __name__ == "__main__":
    print(measure())
