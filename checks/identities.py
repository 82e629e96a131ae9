"""The template identity and the build-VM identities (best practice "Follow the principle of least privilege":
template identity and build VM identity).

AIB acts with the template identity (`identity.userAssignedIdentities`); customizer scripts act with the
build-VM identities (`vmProfile.userAssignedIdentities`). Whoever controls the build controls what those
identities can reach, so each should hold only the documented minimum, the two should differ, and only the
template identity should be able to use (assign, or add federated credentials to) a build-VM identity.
"""

from __future__ import annotations

from typing import Any

from auditor import ids, rbac, rbac_terms
from auditor.documents import Template
from auditor.findings import Finding, Status, failed, not_applicable, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks import common
from checks.common import (
    BUILD_VM_IDENTITY,
    TEMPLATE_IDENTITY,
    identity_principal,
    unaudited_identity,
    unreadable_template_identity,
    with_problems,
)
from checks.registry import check
from checks.staging_rg import template_identity_principals

ROLE_WRITE = "Microsoft.Authorization/roleAssignments/write"
# Whoever can write role definitions can rewrite a custom role it holds into '*': privilege escalation.
ROLE_DEFINITION_WRITE = "Microsoft.Authorization/roleDefinitions/write"
# The action ARM checks when an identity is attached to a resource. Roles write it as
# `userAssignedIdentities/*/assign/action` (Managed Identity Operator); the RBAC engine lets an interior `/*/`
# match one `/`, so asking about the concrete action finds those roles, `*`, and custom look-alikes alike.
ASSIGN = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
FIC_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
USE_VERBS = {ASSIGN: "assign", FIC_WRITE: "add federated credentials to"}

# What the AIB documentation says the identities need (azure-reference/aib-custom-roles, permissions docs).
DOCUMENTED_MINIMUM: dict[str, list[str]] = {
    TEMPLATE_IDENTITY: [
        "Azure Image Builder Service Image Creation Role (gallery read, image version write; managed image "
        "read/write/delete) on the gallery / image resource group",
        "Azure Image Builder Service Networking Role (virtualNetworks/read, subnets/join/action) on the VNet resource group",
        "Storage Blob Data Reader on the container holding private scripts",
        "Managed Identity Operator on each build-VM identity",
        "Contributor only on a staging resource group that the user supplied (AIB grants it on its own IT_ group)",
    ],
    BUILD_VM_IDENTITY: [
        "only what the customizer scripts reach, at the narrowest scope (for example Storage Blob Data Reader on one "
        "container, Key Vault Secrets User on one vault)",
        "no subscription-wide roles, no role that can write role assignments, no Owner/Contributor",
    ],
}


# --------------------------------------------------------------------------------------------- LP-004 / LP-005


def _violations(g: rbac_terms.Grant, engine: rbac.Rbac, t: Template) -> list[str]:
    """Why one assignment of an identity breaks least privilege (empty: it doesn't)."""
    reasons: list[str] = []
    if g.breadth >= rbac_terms.SUBSCRIPTION_BREADTH:
        reasons.append(f"assigned at {g.inherited_from} (subscription scope or above)")
    if by := engine.grant_can(g, ROLE_WRITE):
        reasons.append(f"{g.role_name} can write role assignments (through '{by}')")
    elif by := engine.grant_can(g, ROLE_DEFINITION_WRITE):
        reasons.append(
            f"{g.role_name} can write role definitions (through '{by}'): it could rewrite a custom role it holds into '*'"
        )
    on_staging = bool(t.staging_rg_id) and ids.is_ancestor_or_self(t.staging_rg_id, g.assignment_scope)
    broad_builtin = g.role_guid in (rbac_terms.OWNER_GUID, rbac_terms.CONTRIBUTOR_GUID)
    role = engine.role(g.role_id)
    if broad_builtin and not on_staging:
        reasons.append(f"{g.role_name} outside the template's staging resource group")
    elif role is not None and engine.has_star(role) and not (g.role_guid == rbac_terms.CONTRIBUTOR_GUID and on_staging):
        star = engine.star_pattern(role)
        if star == "*":
            reasons.append(f"{g.role_name} has '*' in its actions")
        else:
            reasons.append(f"{g.role_name} has actions equivalent to '*' (writes on every resource provider through '{star}')")
    return reasons


def _roles_evidence(grants: list[rbac_terms.Grant]) -> list[dict[str, Any]]:
    return [g.evidence() for g in rbac_terms.by_rank(grants)]


def identity_rights(check_id: str, label: str, iid: str, t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    """LP-004/LP-005 for one identity: one FAIL row per offending (role, scope), else one PASS."""
    pid, problems = identity_principal(iid, label, t, inv)
    if pid is None:
        return problems
    engine = rbac.engine(inv)
    name = ids.name_of(iid)
    answer = engine.rights_of(pid)
    # The identity's own assignments may be anywhere in the audit (any subscription, management group or root):
    # any failed RBAC read may hide one.
    answer.errors.extend(e for e in engine.all_errors() if e not in answer.errors)
    problems = common.problem_findings(answer) + unaudited_identity(iid, label, inv)
    for f in problems:  # keyed on the identity like its PASS/FAIL rows, so (resource, check) stays the same
        f.resource_id = iid
    minimum = DOCUMENTED_MINIMUM[label]
    allowed = policy.allows(check_id, pid)
    groups: dict[tuple[str, str], list[rbac_terms.Grant]] = {}
    for g in answer.grants:
        groups.setdefault((g.role_guid, g.scope_key), []).append(g)
    rows: list[Finding] = []
    for grants in groups.values():
        reasons = _violations(grants[0], engine, t)
        if not reasons:
            continue
        fields = common.principal_fields(grants, allowed, identity_id=iid, violations=reasons, documented_minimum=minimum)
        detail = f"{label} {name} holds {common.via(grants)}: " + "; ".join(reasons)
        if allowed:
            rows.append(passed(f"{detail}; accepted by the audit policy", resource_id=iid, **fields))
        else:
            rows.append(failed(f"{detail}; grant only the documented minimum (see evidence)", resource_id=iid, **fields))
    if problems:
        return with_problems(problems, rows)
    if rows:
        return rows
    evidence = {"identity_id": iid, "roles": _roles_evidence(answer.grants), "documented_minimum": minimum, "allowed": allowed}
    if not answer.grants:
        return [passed(f"{label} {name} has no role assignments", resource_id=iid, principal_id=pid, evidence=evidence)]
    top = rbac_terms.top(answer.grants)
    return [
        passed(
            f"{label} {name} holds only {common.via(answer.grants)}: nothing at subscription scope or above, "
            "no role that can write role assignments, no Owner/Contributor outside the staging resource group",
            resource_id=iid,
            principal_id=pid,
            principal_type=top.principal_type,
            evidence=evidence,
        )
    ]


@check("AIB-LP-004")
def template_identity_rights(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if not t.identity_ids:
        return [unreadable_template_identity(t) or not_applicable("template has no user-assigned identity")]
    return [f for iid in t.identity_ids for f in identity_rights("AIB-LP-004", TEMPLATE_IDENTITY, iid, t, inv, policy)]


@check("AIB-LP-005")
def build_vm_identity_rights(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if not t.build_vm_identity_ids:
        return [not_applicable("template has no build-VM identity (vmProfile.userAssignedIdentities is empty)")]
    return [f for iid in t.build_vm_identity_ids for f in identity_rights("AIB-LP-005", BUILD_VM_IDENTITY, iid, t, inv, policy)]


# --------------------------------------------------------------------------------------------- LP-006


@check("AIB-LP-006")
def build_vm_identity_differs(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if not t.build_vm_identity_ids:
        return [not_applicable("template has no build-VM identity (vmProfile.userAssignedIdentities is empty)")]
    template_ids = {ids.norm(i) for i in t.identity_ids}
    template_pids = {p for i in t.identity_ids if (p := inv.principal_of_identity(i, t))}
    out: list[Finding] = []
    for bid in t.build_vm_identity_ids:
        pid = inv.principal_of_identity(bid)
        if ids.norm(bid) in template_ids or (pid and pid in template_pids):
            out.append(
                failed(
                    f"build-VM identity {ids.name_of(bid)} is also the template identity: customizer code on the build VM "
                    "would hold every right of the template identity; use a separate identity for the build VM",
                    principal_id=pid or "",
                    evidence={"identity_id": bid, "template_identity_ids": list(t.identity_ids)},
                )
            )
    if out:
        return out
    names = ", ".join(ids.name_of(b) for b in t.build_vm_identity_ids)
    return [
        passed(
            f"the build-VM identities ({names}) are not the template identity", evidence={"identities": t.build_vm_identity_ids}
        )
    ]


# --------------------------------------------------------------------------------------------- LP-007


def _use_rows(
    label: str, iid: str, answer: rbac_terms.Answer, template_pids: set[str], own_pid: str | None, policy: Policy, build_vm: bool
) -> list[Finding]:
    name = ids.name_of(iid)
    rows: list[Finding] = []
    for pid, grants in sorted(answer.by_principal().items(), key=lambda kv: kv[0]):
        top = rbac_terms.top(grants)
        who = common.principal_label(top)
        verb = USE_VERBS.get(top.matched_action, "use")
        base = f"{who} can {verb} {label} {name} through {common.via(grants)}"
        if pid == own_pid:
            # An identity that can assign itself gains nothing it does not hold already; its breadth is LP-004/005's.
            fields = common.principal_fields(grants, False, identity_id=iid, expected=True)
            rows.append(
                passed(
                    f"{label} {name} can {verb} itself through {common.via(grants)}: it gains no one else's rights",
                    resource_id=iid,
                    **fields,
                )
            )
            continue
        if build_vm and pid in template_pids:
            fields = common.principal_fields(grants, False, identity_id=iid, expected=True)
            rows.append(
                passed(
                    f"the template identity can {verb} {label} {name} through {common.via(grants)}: expected "
                    "(AIB needs Managed Identity Operator on each build-VM identity)",
                    resource_id=iid,
                    **fields,
                )
            )
            continue
        allowed = policy.allows("AIB-LP-007", pid)
        fields = common.principal_fields(grants, allowed, identity_id=iid, expected=False)
        if allowed:
            rows.append(passed(f"{base}; accepted by the audit policy", resource_id=iid, **fields))
        else:
            rows.append(failed(f"{base}, and so act as it", resource_id=iid, **fields))
    return rows


@check("AIB-LP-007")
def identity_use(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    targets = [(iid, TEMPLATE_IDENTITY, False) for iid in t.identity_ids]
    targets += [(iid, BUILD_VM_IDENTITY, True) for iid in t.build_vm_identity_ids]
    unreadable = unreadable_template_identity(t)
    if not targets:
        return [unreadable or not_applicable("template has no user-assigned identity")]
    engine = rbac.engine(inv)
    # A template identity whose principal is unknown says so under its own target below.
    template_pids, _ = template_identity_principals(t, inv)
    out: list[Finding] = []
    for iid, label, build_vm in targets:
        if unaudited := unaudited_identity(iid, label, inv):
            out += unaudited
            continue
        # Assignments on a child of the identity (an existing federated credential) grant FIC writes there too.
        below = engine.who_can(FIC_WRITE, iid, include_below=True)
        answer = engine.who_can((ASSIGN, FIC_WRITE), iid).merge(
            rbac_terms.Answer([g for g in below if g.scope_key.startswith(ids.norm(iid) + "/")], below.unresolved, below.errors)
        )
        # Without its principal, the identity's own grants cannot be told from anyone else's.
        own_pid, id_problems = identity_principal(iid, label, t, inv)
        problems = common.problem_findings(answer) + id_problems
        for f in problems:
            f.resource_id = f.resource_id or iid
        rows = _use_rows(label, iid, answer, template_pids, own_pid, policy, build_vm)
        if problems:
            out += with_problems(problems, rows)
            continue
        out += rows
        if not any(f.status == Status.FAIL or not f.evidence.get("expected") for f in rows):
            nobody = "only the template identity" if build_vm else "no other principal"
            out.append(
                passed(
                    f"{nobody} can assign {label} {ids.name_of(iid)} or add federated credentials to it",
                    resource_id=iid,
                    evidence={"identity_id": iid},
                )
            )
    if unreadable:
        # Without the template identity, its expected Managed Identity Operator rows cannot be told from others':
        # nothing can be vouched for.
        return [unreadable] + [f for f in out if f.status != Status.PASS]
    return out
