"""Who can run, change or delete an image template (best practice "Follow the principle of least privilege":
the image template).

Anyone holding `imageTemplates/write`, `/delete`, `/run/action` or `/triggers/write` on the template (through
an assignment on it, its resource group, subscription, a management group or root; wildcards count) can run
it, tamper with its customizers or delete it. The right should come from the template or its resource group,
be held by few principals, and never by a deleted one.
"""

from __future__ import annotations

from auditor import rbac, rbac_terms
from auditor.documents import Template
from auditor.findings import Finding, failed, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from auditor.principals import Count, count_principals
from checks import common
from checks.common import with_problems
from checks.registry import check

CHECK_ID = "AIB-LP-001"
IT = "Microsoft.VirtualMachineImages/imageTemplates"
TEMPLATE_CHANGE_ACTIONS: tuple[str, ...] = (f"{IT}/write", f"{IT}/delete", f"{IT}/run/action", f"{IT}/triggers/write")
VERBS: dict[str, str] = {
    f"{IT}/write": "change",
    f"{IT}/delete": "delete",
    f"{IT}/run/action": "run",
    f"{IT}/triggers/write": "add triggers to",
}


def _row(grants: list[rbac_terms.Grant], allowed: bool, count: Count, limit: int) -> Finding:
    top = rbac_terms.top(grants)
    who = common.principal_label(top)
    verb = VERBS.get(top.matched_action, "change")
    base = f"{who} can {verb} the template through {common.via(grants)}"
    extra = {"unbounded_because": count.unbounded} if count.unbounded else {}
    fields = common.principal_fields(grants, allowed, principals_counted=count.value, max_template_writers=limit, **extra)
    if allowed:
        return passed(f"{base}; accepted by the audit policy", **fields)
    reasons = []
    if broad := [g for g in grants if g.breadth >= rbac_terms.SUBSCRIPTION_BREADTH]:
        source = rbac_terms.top(broad).inherited_from
        reasons.append(f"the right comes from {source}: grant it on the template or its resource group")
    if top.principal_deleted:
        reasons.append(
            "the principal was deleted (Microsoft Graph does not know it; ARM says principalType "
            f"{top.principal_type or 'nothing'}): remove its role assignments"
        )
    elif top.deleted:
        reasons.append("the principal was deleted (principalType Unknown): remove its role assignments")
    if count.unbounded:
        reasons.append(f"how many principals can change the template is unknown ({count.unbounded[0]}); policy allows {limit}")
    elif count.exceeds(limit):
        reasons.append(f"{count.value} principals can change the template; policy allows {limit}")
    if reasons:
        return failed(f"{base}; " + "; ".join(reasons), **fields)
    return passed(base, **fields)


@check(CHECK_ID)
def template_access(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    answer = rbac.engine(inv).who_can(TEMPLATE_CHANGE_ACTIONS, t.id)
    problems = common.problem_findings(answer)
    principals = answer.by_principal()
    # Each person once: with --expand-groups a group counts as its members, an unreadable group as unbounded.
    types = {pid: rbac_terms.top(grants).principal_type for pid, grants in principals.items()}
    count = count_principals(types, inv.directory, lambda pid: policy.allows(CHECK_ID, pid))
    limit = policy.max_template_writers
    rows = [
        _row(grants, policy.allows(CHECK_ID, pid), count, limit)
        for pid, grants in sorted(principals.items(), key=lambda kv: kv[0])
    ]
    if problems:
        # What is known to be wrong stays wrong; nothing can be vouched for while a read is missing.
        return with_problems(problems, rows)
    if not rows:
        return [passed("no principal can run, change or delete the template (checked at the template and every scope above it)")]
    return rows
