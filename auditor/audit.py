"""Run the checks over an inventory: findings in a deterministic order and two scores per template."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field

from auditor import ids
from auditor.errors import UsageError
from auditor.findings import Finding, Severity, Status, check_status, error, score
from auditor.inventory import Inventory, Template
from auditor.policy import Policy
from checks.registry import Check, catalog


class UnknownCheckError(UsageError):
    """--check / --skip-check named an ID that is not in the catalog (exit 2)."""


@dataclass
class TemplateResult:
    template: Template
    statuses: dict[str, Status]  # check ID -> overall status for this template
    resilience: int | None
    least_privilege: int | None

    @property
    def failed_checks(self) -> list[str]:
        return sorted(cid for cid, s in self.statuses.items() if s == Status.FAIL)

    @property
    def error_checks(self) -> list[str]:
        return sorted(cid for cid, s in self.statuses.items() if s == Status.ERROR)


@dataclass
class AuditResult:
    checks: list[Check]
    templates: list[TemplateResult]
    findings: list[Finding]
    inventory: Inventory
    extra_errors: list[Finding] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status == status)

    @property
    def incomplete(self) -> bool:
        """A read failed: the audit cannot vouch for everything (exit 3)."""
        return bool(self.inventory.errors) or self.count(Status.ERROR) > 0


def select_checks(only: list[str] | None = None, skip: list[str] | None = None) -> list[Check]:
    cat = catalog()
    wanted = [c.upper() for c in (only or [])]
    skipped = [c.upper() for c in (skip or [])]
    unknown = sorted({c for c in wanted + skipped if c not in cat})
    if unknown:
        raise UnknownCheckError(f"unknown check ID {', '.join(unknown)} (see 'aib-audit checks')")
    ids = wanted or list(cat)
    return [cat[c] for c in sorted(set(ids)) if c not in skipped]


def _run_one(chk: Check, t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    try:
        out = chk.fn(t, inv, policy)
    except Exception as exc:  # a bug in one check must not hide the others, nor pass silently
        out = [error(f"internal error in aib-audit while evaluating the check (please report it): {type(exc).__name__}: {exc}")]
    if not out:
        out = [error("the check returned no result")]
    for f in out:
        f.check_id = chk.meta.id
        f.template_id = t.id
        f.resource_id = f.resource_id or t.id
    return out


def run_audit(inv: Inventory, checks: list[Check], policy: Policy | None = None) -> AuditResult:
    policy = policy or Policy()
    findings: list[Finding] = []
    results: list[TemplateResult] = []
    for t in inv.templates:
        per_check: dict[str, Status] = {}
        buckets: dict[str, list[tuple[Severity, Status]]] = defaultdict(list)
        for chk in checks:
            out = _run_one(chk, t, inv, policy)
            findings.extend(out)
            status = check_status(out)
            per_check[chk.meta.id] = status
            buckets[chk.meta.score].append((chk.meta.severity, status))
        results.append(TemplateResult(t, per_check, score(buckets["resilience"]), score(buckets["least_privilege"])))
    findings.sort(key=Finding.sort_key)
    return AuditResult(checks=checks, templates=results, findings=findings, inventory=inv, extra_errors=unattributed_errors(inv))


def unattributed_errors(inv: Inventory) -> list[Finding]:
    """ERROR rows for failed reads that no template's checks can show, so the CSV is never silently short.

    A failed template list hides the templates themselves; any failed read in a subscription where no template
    was seen would otherwise leave the report empty while the exit code says 3.
    """
    seen_subs = {t.subscription_id.lower() for t in inv.templates}
    out = []
    for e in inv.errors:
        sub = ids.subscription_of(e.scope)
        if e.kind == "imageTemplates" or (sub not in seen_subs if sub else not inv.templates):
            what = "image templates here were not audited" if e.kind == "imageTemplates" else "no template here to attach it to"
            out.append(error(f"{e.describe()}; {what}", resource_id=e.scope, evidence={"read_error": asdict(e)}))
    return out
