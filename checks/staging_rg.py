"""Who can reach into a template's staging resource group (best practice "Follow the principle of least
privilege": the staging resource group).

AIB builds in the staging resource group (`exactStagingResourceGroup`), delegates the template and build-VM
identities' privileges to resources there, and keeps a copy of the customizer artifacts in a storage account
there. Anyone else who can change resources in it can compromise the build; anyone who can read the
artifact copies can read what the customizers carry. Assignments on the group, above it, and on resources
inside it all count.
"""

from __future__ import annotations

from functools import lru_cache

from auditor import ids, rbac, rbac_terms, staging_reach
from auditor.documents import Template
from auditor.findings import Finding, Status, error, failed, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks import common
from checks.common import TEMPLATE_IDENTITY, identity_principal, with_problems
from checks.registry import check

LIST_KEYS = "Microsoft.Storage/storageAccounts/listKeys/action"
# Other management-plane ways to the artifact copies: an account or service SAS token, and key regeneration
# (its response carries the new keys).
ARTIFACT_KEY_ACTIONS: tuple[str, ...] = (
    LIST_KEYS,
    "Microsoft.Storage/storageAccounts/ListAccountSas/action",
    "Microsoft.Storage/storageAccounts/ListServiceSas/action",
    "Microsoft.Storage/storageAccounts/regeneratekey/action",
)
BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"

# AIB-LP-002's question: an action that can change what the staging RG holds, or the rights and rules over it
# (auditor/staging_reach.py). Monitoring Reader's Microsoft.Support/* and workspace search do not count.
STAGING_CHANGE = rbac_terms.NonRead(counts=staging_reach.reaches, label="an action that can change the staging resource group")


def staging_scope(t: Template, inv: Inventory) -> tuple[str | None, list[Finding]]:
    """The staging RG's ID, or ERROR findings saying why it cannot be audited."""
    if not t.staging_rg_id:
        return None, [
            error(
                "the template does not report its staging resource group (exactStagingResourceGroup is empty; "
                "API versions before 2022-02-14 do not return it), so who can reach it cannot be checked"
            )
        ]
    if inv.staging_rg(t) is not None:
        return t.staging_rg_id, []
    name = ids.name_of(t.staging_rg_id)
    errs = inv.read_errors("resourceGroups", t.staging_rg_id)
    evidence: dict[str, object] = {"staging_rg_id": t.staging_rg_id}
    # A 404 (or no error: the RG list succeeded without it) means the group is gone; anything else (403, 5xx,
    # a body that did not parse) means it could not be read, which is not the same thing to fix.
    unread = [e for e in errs if e.status != 404]
    if unread:
        e = unread[0]
        evidence["read_error"] = {"kind": e.kind, "scope": e.scope, "status": e.status, "code": e.code}
        detail = f"staging resource group {name} of template {t.name} could not be read: {e.reason()}; {e.describe()}"
    else:
        why = errs[0].describe() if errs else "it is not among the subscription's resource groups"
        detail = f"staging resource group {name} of template {t.name} was not found (deleted?): {why}"
    return None, [error(detail, resource_id=t.staging_rg_id, evidence=evidence)]


def template_identity_principals(t: Template, inv: Inventory) -> tuple[set[str], list[Finding]]:
    """Principal IDs of the template identity, and ERRORs for identities whose principal is unknown."""
    pids: set[str] = set()
    problems: list[Finding] = []
    for iid in t.identity_ids:
        pid, unknown = identity_principal(iid, TEMPLATE_IDENTITY, t, inv)
        if pid:
            pids.add(pid)
        problems += unknown
    return pids, problems


def _staging_rows(
    check_id: str, t: Template, policy: Policy, scope: str, answer: rbac_terms.Answer, template_pids: set[str], what: str
) -> list[Finding]:
    rg = ids.name_of(scope)
    rows: list[Finding] = []
    for pid, grants in sorted(answer.by_principal().items(), key=lambda kv: kv[0]):
        who = common.principal_label(rbac_terms.top(grants))
        if pid in template_pids:
            fields = common.principal_fields(grants, False, template_identity=True)
            rows.append(
                passed(
                    f"the template identity ({who}) can {what} in staging resource group {rg} through {common.via(grants)}: "
                    "expected, AIB needs Contributor there (its own rights are judged by AIB-LP-004)",
                    resource_id=scope,
                    **fields,
                )
            )
            continue
        allowed = policy.allows(check_id, pid)
        fields = common.principal_fields(grants, allowed, template_identity=False)
        detail = f"{who} can {what} in staging resource group {rg} of template {t.name} through {common.via(grants)}"
        if allowed:
            rows.append(passed(f"{detail}; accepted by the audit policy", resource_id=scope, **fields))
        else:
            rows.append(failed(detail, resource_id=scope, **fields))
    return rows


def _finish(rows: list[Finding], problems: list[Finding], scope: str, t: Template, nobody: str) -> list[Finding]:
    if problems:
        # ERROR rows key on the staging RG, as the PASS/FAIL rows do: a dashboard keyed on (resource, check) must
        # see the row turn ERROR, not vanish and reappear under the template. The detail names what failed.
        for f in problems:
            f.resource_id = scope
        return with_problems(problems, rows)
    if not any(f.status == Status.FAIL or not f.evidence.get("template_identity") for f in rows):
        rows.append(passed(nobody.format(rg=ids.name_of(scope), t=t.name), resource_id=scope))
    return rows


@check("AIB-LP-002")
def staging_rg_change(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    scope, problems = staging_scope(t, inv)
    if scope is None:
        return problems
    engine = rbac.engine(inv)
    # Data writes count too: overwriting the artifact copies in the staging storage account tampers with the build.
    control = engine.who_can(STAGING_CHANGE, scope, include_below=True)
    data = engine.who_can(STAGING_CHANGE, scope, data=True, include_below=True)
    answer = control.merge(data)
    template_pids, id_problems = template_identity_principals(t, inv)
    rows = _staging_rows("AIB-LP-002", t, policy, scope, answer, template_pids, "change resources")
    _add_reach(rows, data)
    return _finish(
        rows,
        common.problem_findings(answer) + id_problems,
        scope,
        t,
        "no principal but the template identity can change resources in staging resource group {rg} of template {t}",
    )


def _add_reach(rows: list[Finding], data: rbac_terms.Answer) -> None:
    """Say in each row's evidence why its granting patterns reach the staging RG (`reaches`: pattern -> why)."""
    data_pairs = {(g.assignment_id, g.granted_by) for g in data}
    for f in rows:
        grants = f.evidence.get("grants") or []
        patterns = tuple(
            (g["granted_by"], (g["assignment_id"], g["granted_by"]) in data_pairs) for g in grants if g.get("granted_by")
        )
        if patterns:
            f.evidence["reaches"] = _reaches(patterns)


@lru_cache(maxsize=4096)
def _reaches(patterns: tuple[tuple[str, bool], ...]) -> dict[str, str]:
    """pattern -> why it reaches a staging RG. One dict per set of patterns, shared by the rows that cite the same
    grants (a subscription-wide Contributor is cited on every template's row): read-only evidence."""
    return {pattern: staging_reach.classify(pattern, data).why for pattern, data in patterns}


@check("AIB-LP-003")
def staging_rg_artifacts(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    scope, problems = staging_scope(t, inv)
    if scope is None:
        return problems
    engine = rbac.engine(inv)
    answer = engine.who_can(ARTIFACT_KEY_ACTIONS, scope, include_below=True).merge(
        engine.who_can(BLOB_READ, scope, data=True, include_below=True)
    )
    template_pids, id_problems = template_identity_principals(t, inv)
    rows = _staging_rows(
        "AIB-LP-003",
        t,
        policy,
        scope,
        answer,
        template_pids,
        "read the customizer artifact copies (storage account keys, SAS tokens or blob data)",
    )
    return _finish(
        rows,
        common.problem_findings(answer) + id_problems,
        scope,
        t,
        "no principal but the template identity can read the artifact copies in staging resource group {rg} of template {t}",
    )
