"""Run the checks over an inventory: findings in a deterministic order and two scores per template."""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from operator import attrgetter

from auditor import rbac
from auditor.documents import Template
from auditor.errors import UsageError
from auditor.findings import NO_EVIDENCE, Finding, Severity, Status, check_status, error, score
from auditor.inventory import Inventory, Pending
from auditor.policy import Policy
from auditor.principals import enrich
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

    @property
    def accepted_checks(self) -> list[str]:
        """Checks whose every FAIL on this template an exception accepts (the score still counts them failed)."""
        return sorted(cid for cid, s in self.statuses.items() if s == Status.ACCEPTED)


@dataclass
class AuditResult:
    checks: list[Check]
    templates: list[TemplateResult]
    findings: list[Finding]
    inventory: Inventory
    extra_errors: list[Finding] = field(default_factory=list)
    # With --baseline: findings that were FAIL in the baseline and are PASS or gone now (change "fixed").
    fixed: list[Finding] = field(default_factory=list)
    # One-line notes about the run the reports should show (e.g. stale exceptions); stderr gets them too.
    notes: list[str] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status == status)

    @property
    def incomplete(self) -> bool:
        """A read failed: the audit cannot vouch for everything (exit 3)."""
        # Every failed read is on an ERROR row: a check's, or its own (unattributed_errors).
        status = attrgetter("status")  # scanned in C: a generator over 200,000 rows took 0.06 s
        return Status.ERROR in map(status, self.findings) or Status.ERROR in map(status, self.extra_errors)


def select_checks(only: list[str] | None = None, skip: list[str] | None = None) -> list[Check]:
    cat = catalog()
    wanted = [c.upper() for c in (only or [])]
    skipped = [c.upper() for c in (skip or [])]
    unknown = sorted({c for c in wanted + skipped if c not in cat})
    if unknown:
        raise UnknownCheckError(f"unknown check ID {', '.join(unknown)} (see 'aib-audit checks')")
    chosen = wanted or list(cat)
    selected = [cat[c] for c in sorted(set(chosen)) if c not in skipped]
    if not selected:  # an audit of nothing would exit 0: a scheduled gate must not pass that way
        raise UsageError("--check and --skip-check leave no check to run")
    return selected


def _run_one(chk: Check, t: Template, inv: Inventory, policy: Policy, shown: set[int]) -> list[Finding] | None:
    """The check's rows for `t`, or None when it asked for a kind still being read (Inventory.pending)."""
    inv.consulted = set()  # the failed reads this evaluation asks about (read_errors and the RBAC engine add them)
    try:
        out = chk.fn(t, inv, policy)
    except Pending:
        return None
    except Exception as exc:  # a bug in one check must not hide the others, nor pass silently
        why = f"{type(exc).__name__}: {exc}"
        out = [error(f"internal error in aib-audit while evaluating the check (please report it): {why}")]
    if not out:
        out = [error("the check returned no result")]
    for f in out:
        f.check_id = chk.meta.id
        f.template_id = t.id
        f.resource_id = f.resource_id or t.id
    out = enrich(out, inv, policy, chk.meta.id)  # names from Microsoft Graph; --expand-groups' member rows
    if any(f.status == Status.ERROR for f in out):  # the failed reads it asked about are on its ERROR rows
        shown |= inv.consulted
    return out


class StagedAudit:
    """Runs the checks over an inventory, possibly in two passes.

    `early(inv, stop)` runs, over an inventory whose trigger reads are still going (auditor.inventory.pending), every
    check that does not ask for them: the collector calls it while ARM's bucket paces one trigger read per
    template, so the audit's time is not added after the last read. `finish(inv)` runs what is left over the
    complete inventory and assembles the result. Checks are pure functions of the inventory, so the rows are the
    ones a single pass gives; a check that asks for a pending kind is simply run again in `finish`.
    """

    def __init__(self, checks: list[Check], policy: Policy | None = None, *, keep_evidence: bool = True) -> None:
        self.checks = checks
        self.policy = policy or Policy()
        # False when no report prints evidence (reports.EVIDENCE_FORMATS): each row lets go of it once its check's
        # enrichment (which reads it) is done, so a large audit never holds it all at once.
        self.keep_evidence = keep_evidence
        self.inventory: Inventory | None = None
        self._done: list[_Progress] = []  # per template: its checks' statuses so far, and their rows in order
        self._shown: set[int] = set()  # failed reads that a check asked about and answered with ERROR
        self._details: dict[str, str] = {}  # one copy of each detail text: rows about a subscription-wide grant repeat it

    def early(self, inv: Inventory, stop: Callable[[], bool] = lambda: False) -> None:
        """The first pass, template by template until `stop()` says the reads it fills the wait of are over (what
        is left runs in `finish`): the collection is never held up by its own audit."""
        self.inventory = inv
        self._run(inv, stop, fix_ids=True)

    def rows_so_far(self) -> Iterator[list[Finding]]:
        """Each template's rows from the checks run so far, in report order; later checks' rows go in between."""
        return (progress.ordered for progress in self._done)

    def restart(self, inv: Inventory) -> None:
        """Forget what the early pass did (it failed half-way): `finish(inv)` then runs every check."""
        self.inventory = inv
        self._done = []
        self._shown = set()
        self._details = {}

    def _run(self, inv: Inventory, stop: Callable[[], bool] = lambda: False, fix_ids: bool = False) -> None:
        """`fix_ids`: work out each row's finding ID now (Finding.fix_id). The early pass runs while the collector
        waits on ARM, so the reports after the last read need not hash every row; it costs a string per row
        (about 45 MiB at 10,000 templates), which a single pass, with no wait to fill, does not spend."""
        if not self._done:
            self._done = [_Progress([None] * len(self.checks), []) for _ in inv.templates]
        for t, progress in zip(inv.templates, self._done, strict=True):
            if stop():
                return
            new: list[Finding] = []
            for i, chk in enumerate(self.checks):
                if progress.statuses[i] is not None:
                    continue
                out = _run_one(chk, t, inv, self.policy, self._shown)
                if out is not None:
                    for f in out:
                        f.detail = self._details.setdefault(f.detail, f.detail)
                        if fix_ids:
                            f.fix_id()
                        if not self.keep_evidence:
                            f.evidence = NO_EVIDENCE
                    progress.statuses[i] = check_status(out)
                    new.extend(out)
            progress.add(new)

    def finish(self, inv: Inventory) -> AuditResult:
        if self.inventory is not None and inv is not self.inventory:
            raise ValueError("finish() takes the inventory early() ran over, completed")
        if inv.pending:
            raise ValueError(f"the inventory is still waiting for {', '.join(sorted(inv.pending))}")
        self._run(inv)
        rbac.drop_engine(inv)
        groups: dict[str, list[list[Finding]]] = {}  # template_id.lower() (Finding.sort_key's first part) -> rows
        results: list[TemplateResult] = []
        for t, progress in zip(inv.templates, self._done, strict=True):
            per_check: dict[str, Status] = {}
            buckets: dict[str, list[tuple[Severity, Status]]] = defaultdict(list)
            for chk, status in zip(self.checks, progress.statuses, strict=True):
                assert status is not None  # _run over a complete inventory ran every check
                per_check[chk.meta.id] = status
                buckets[chk.meta.score].append((chk.meta.severity, status))
            results.append(TemplateResult(t, per_check, score(buckets["resilience"]), score(buckets["least_privilege"])))
            groups.setdefault(t.id.lower(), []).append(progress.ordered)
        self._done = []
        # Finding.sort_key order, each template's rows sorted on their own: one sort over every row would hold a key
        # tuple (and lower-cased copies of its IDs) for each of hundreds of thousands of rows at once.
        findings: list[Finding] = []
        for key in sorted(groups):
            parts = groups.pop(key)
            if len(parts) == 1:
                findings.extend(parts[0])
            else:  # templates whose IDs differ only in case: one group, as Finding.sort_key orders them
                rows = [f for part in parts for f in part]
                rows.sort(key=Finding.sort_key)
                findings.extend(rows)
        return AuditResult(
            checks=self.checks,
            templates=results,
            findings=findings,
            inventory=inv,
            extra_errors=unattributed_errors(inv, self._shown),
        )


@dataclass
class _Progress:
    """One template's audit so far: each check's status (None: not run yet), and the rows in Finding.sort_key
    order. The rows of checks run late (the trigger check) are put in place, not re-sorted with the others: after
    the last read only they are left to order."""

    statuses: list[Status | None]
    ordered: list[Finding]

    def add(self, rows: list[Finding]) -> None:
        if not rows:
            return
        if self.ordered and len(rows) <= LATE_INSERTS:
            for f in rows:  # after any equal key: the order a stable sort of all rows gives (one check's rows)
                bisect.insort_right(self.ordered, f, key=Finding.sort_key)
            return
        self.ordered.extend(rows)
        self.ordered.sort(key=Finding.sort_key)


LATE_INSERTS = 16  # more new rows than this are sorted in with the others


def run_audit(
    inv: Inventory, checks: list[Check], policy: Policy | None = None, *, keep_evidence: bool = True
) -> AuditResult:
    """Every check over a complete inventory, in one pass."""
    return StagedAudit(checks, policy, keep_evidence=keep_evidence).finish(inv)


def unattributed_errors(inv: Inventory, shown: set[int]) -> list[Finding]:
    """ERROR rows for failed reads that no check showed, so exit code 3 always comes with rows that explain it.

    A failed template list hides the templates themselves, so it always gets a row. Any other failed read that
    none of the selected checks asked about (no template in its subscription, or --check left out the checks
    that need it) would otherwise leave the report silent while the exit code says 3.
    """
    out = []
    for i, e in enumerate(inv.errors):
        if e.kind == "imageTemplates":
            why = "image templates here were not audited"
        elif e.kind == "subscriptions":
            why = "this subscription is in scope but was not audited"
        elif i not in shown:
            why = "no check result shows it, but the audit could not read everything"
        else:
            continue
        out.append(error(f"{e.describe()}; {why}", resource_id=e.scope, evidence={"read_error": asdict(e)}))
    return out
