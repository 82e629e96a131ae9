"""The run-to-run diff (`--baseline PREVIOUS.json`): which findings are new, regressed, unchanged or fixed.

The baseline is a JSON report of an earlier run (`--format json` or `--report json=...`) from any version of
aib-audit whose findings carry `finding_id` (findings.finding_id: a hash of check ID, resource ID and principal
ID, so it is the same across runs, machines and formats). Nothing is read from Azure for it.

Several rows can share a finding ID (one principal holding two roles on one template; one gallery targeted by
two templates): the diff compares per ID, by the worst status of the ID's rows in each run (FAIL, then ERROR,
then PASS, then N/A), and an ACCEPTED row counts as the FAIL it is underneath, so adding or expiring an
exception is not a change. Every row of an ID gets the ID's change:

- `new`        the baseline has no row with this ID (including subscriptions or checks it did not audit);
- `regressed`  FAIL now, and not FAIL then (PASS, N/A or ERROR);
- `fixed`      FAIL then, PASS or N/A now; also listed in `AuditResult.fixed`;
- `unchanged`  anything else (still FAIL, still PASS, ERROR now, ...).

A baseline FAIL whose ID has no row now is fixed too, with status PASS when its template was audited now (the
check no longer flags it) and N/A when the template is gone; but only where both runs looked (the subscription
and the check are in both runs' `run.subscriptions` and `run.checks`), and never when this run could not see
it: an ERROR row for the same check and template, or a failed template list in its subscription, keeps it out
of `fixed` (fail closed) and the run notes how many were left uncompared.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor import ids
from auditor.errors import UsageError
from auditor.findings import STATUS_ORDER, Finding, Status
from auditor.inputs import baseline_limit, parse_json, read_text

NEW, UNCHANGED, REGRESSED, FIXED = "new", "unchanged", "regressed", "fixed"
_FINDING_ID = re.compile(r"[0-9a-f]{16}")
_STATUSES = {str(s): s for s in Status}


class BaselineError(UsageError):
    """The baseline file is missing, corrupt, or not an aib-audit JSON report with finding IDs (exit 2)."""


@dataclass(frozen=True)
class BaselineRow:
    finding_id: str
    check_id: str
    status: Status
    resource_id: str
    template_id: str
    detail: str
    principal_id: str = ""
    principal_type: str = ""
    role_name: str = ""
    role_scope: str = ""

    @property
    def subscription(self) -> str:
        return ids.subscription_of(self.template_id or self.resource_id) or ""


@dataclass(frozen=True)
class Baseline:
    source: str  # the file, for messages
    subscriptions: frozenset[str]
    checks: frozenset[str]
    rows: tuple[BaselineRow, ...]
    finished_at: str = ""


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"'{key}' is not a string")
    return value


def _strings(doc: Any, key: str) -> list[str]:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"'run.{key}' is not a list of strings")
    return value


def _row(raw: Any) -> BaselineRow:
    if not isinstance(raw, dict):
        raise ValueError("is not an object")
    fid = raw.get("finding_id")
    if not isinstance(fid, str) or not fid:
        raise ValueError("has no finding_id (reports of aib-audit before finding IDs cannot be a baseline)")
    if not _FINDING_ID.fullmatch(fid):
        raise ValueError(f"has a malformed finding_id {fid!r}")
    status = _STATUSES.get(str(raw.get("status")))
    if status is None:
        raise ValueError(f"has an unknown status {raw.get('status')!r}")
    return BaselineRow(
        finding_id=fid,
        check_id=_str(raw, "check_id").upper(),
        status=status,
        resource_id=_str(raw, "resource_id"),
        template_id=_str(raw, "template_id"),
        detail=_str(raw, "detail"),
        principal_id=_str(raw, "principal_id"),
        principal_type=_str(raw, "principal_type"),
        role_name=_str(raw, "role_name"),
        role_scope=_str(raw, "role_scope"),
    )


def baseline_from_dict(doc: Any, source: str) -> Baseline:
    if not isinstance(doc, dict) or not isinstance(doc.get("tool"), dict) or doc["tool"].get("name") != "aib-audit":
        raise BaselineError(f"baseline {source} is not an aib-audit JSON report (--format json)")
    run = doc.get("run")
    findings = doc.get("findings")
    try:
        if not isinstance(run, dict):
            raise ValueError("has no 'run' object")
        if not isinstance(findings, list):
            raise ValueError("has no 'findings' list")
        subscriptions = frozenset(s.lower() for s in _strings(run, "subscriptions"))
        checks = frozenset(c.upper() for c in _strings(run, "checks"))
        finished = run.get("finished_at", "")
    except ValueError as exc:
        raise BaselineError(f"baseline {source} {exc}") from None
    rows = []
    for i, raw in enumerate(findings, start=1):
        try:
            rows.append(_row(raw))
        except ValueError as exc:
            raise BaselineError(f"baseline {source}: finding #{i} {exc}") from None
    return Baseline(source, subscriptions, checks, tuple(rows), finished if isinstance(finished, str) else "")


def load_baseline(path: str | Path) -> Baseline:
    p = Path(path)
    text = read_text(p, "baseline", BaselineError, limit=baseline_limit())
    return baseline_from_dict(parse_json(text, "baseline", p, BaselineError), str(p))


def _failing(status: Status) -> bool:
    return status in (Status.FAIL, Status.ACCEPTED)


def _worst(statuses: Iterable[Status]) -> Status:
    # ACCEPTED is a FAIL underneath: an exception added or expired between the runs is not a change.
    return min((Status.FAIL if s == Status.ACCEPTED else s for s in statuses), key=lambda s: STATUS_ORDER[s])


def _change(base: Status | None, now: Status) -> str:
    if base is None:
        return NEW
    if _failing(now) and not _failing(base):
        return REGRESSED
    if _failing(base) and now in (Status.PASS, Status.NA):
        return FIXED
    return UNCHANGED


def _gone_row(row: BaselineRow, template_audited: bool) -> Finding:
    why = "the check no longer flags it" if template_audited else "its template is no longer there"
    return Finding(
        status=Status.PASS if template_audited else Status.NA,
        detail=f"fixed since the baseline: {row.status} then, no finding now ({why}); then: {row.detail}",
        check_id=row.check_id,
        resource_id=row.resource_id,
        principal_id=row.principal_id,
        principal_type=row.principal_type,
        role_name=row.role_name,
        role_scope=row.role_scope,
        template_id=row.template_id,
        change=FIXED,
        evidence={"baseline_status": str(row.status), "baseline_detail": row.detail},
    )


@dataclass
class Diff:
    fixed: list[Finding]
    notes: list[str]


def apply_baseline(
    findings: list[Finding],
    baseline: Baseline,
    subscriptions: Iterable[str],
    checks: Iterable[str],
    audited_templates: Iterable[str],
    unlisted_subscriptions: Iterable[str] = (),
) -> Diff:
    """Set `change` on every row in place; return the fixed findings and the notes about what was not compared.

    `audited_templates`: IDs of the templates this run audited. `unlisted_subscriptions`: subscriptions whose
    template list failed now, where a finding that is missing proves nothing.
    """
    subs = {s.lower() for s in subscriptions}
    chks = {c.upper() for c in checks}
    by_id_now: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_id_now[f.finding_id].append(f)
    by_id_then: dict[str, list[BaselineRow]] = defaultdict(list)
    for row in baseline.rows:
        by_id_then[row.finding_id].append(row)

    fixed: list[Finding] = []
    for fid, rows in by_id_now.items():
        then = by_id_then.get(fid)
        change = _change(_worst(r.status for r in then) if then else None, _worst(f.status for f in rows))
        for f in rows:
            f.change = change
        if change == FIXED:
            fixed.extend(rows)

    templates = {ids.norm(t) for t in audited_templates}
    unlisted = {s.lower() for s in unlisted_subscriptions}
    errored = {(f.check_id, ids.norm(f.template_id)) for f in findings if f.status == Status.ERROR}
    unseen = 0
    for fid, then_rows in sorted(by_id_then.items()):
        if fid in by_id_now or not _failing(_worst(r.status for r in then_rows)):
            continue
        for row in then_rows:
            if not _failing(row.status):
                continue
            if row.check_id not in chks or row.check_id not in baseline.checks:
                continue  # a check only one of the runs ran: not compared
            if row.subscription not in subs or row.subscription not in baseline.subscriptions:
                continue  # a subscription only one of the runs audited: not compared
            if (row.check_id, ids.norm(row.template_id)) in errored or row.subscription in unlisted:
                unseen += 1  # this run could not evaluate it: not fixed, whatever the reason it has no row
                continue
            fixed.append(_gone_row(row, ids.norm(row.template_id) in templates))
    return Diff(fixed=sorted(fixed, key=Finding.sort_key), notes=_notes(baseline, subs, chks, unseen))


def _notes(baseline: Baseline, subs: set[str], chks: set[str], unseen: int) -> list[str]:
    notes = []
    src = f"baseline {baseline.source}"
    if only_then := sorted(baseline.subscriptions - subs):
        notes.append(f"{src} also audited subscription(s) {', '.join(only_then)}: not compared (not audited now)")
    if only_now := sorted(subs - baseline.subscriptions):
        notes.append(f"{src} did not audit subscription(s) {', '.join(only_now)}: their findings count as new")
    if checks_then := sorted(baseline.checks - chks):
        notes.append(f"{src} also ran check(s) {', '.join(checks_then)}: not compared (not run now)")
    if checks_now := sorted(chks - baseline.checks):
        notes.append(f"{src} did not run check(s) {', '.join(checks_now)}: their findings count as new")
    if unseen:
        notes.append(
            f"{src}: {unseen} finding(s) that failed then could not be evaluated now (ERROR or unlisted templates):"
            " not counted as fixed"
        )
    return notes
