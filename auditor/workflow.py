"""What a scheduled audit does around the audit itself: accepted risks, the diff against the last run, the
severity gate and several reports from one collection. No ARM reads: everything here works on the result.

Order: everything is loaded and validated before collecting (a typo costs no ARM calls), then after run_audit
the exceptions turn covered FAILs into ACCEPTED, the baseline labels every row's change, the gate picks the exit
code, and each `--report FORMAT=PATH` is rendered from the same result.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from auditor import ids
from auditor.audit import AuditResult
from auditor.baseline import Baseline, apply_baseline, load_baseline
from auditor.errors import UsageError
from auditor.exceptions import ExceptionSet, apply_exceptions, load_exceptions
from auditor.findings import Finding, check_status
from auditor.output import check_writable, report_stream
from auditor.reports import FORMATS, RunInfo, exit_code_for, write_report

if TYPE_CHECKING:
    from auditor.reports.csv_spool import CsvSpool

PROG = "aib-audit"


@dataclass(frozen=True)
class ReportTarget:
    """One `--report FORMAT=PATH`."""

    fmt: str
    path: Path

    @property
    def flag(self) -> str:
        return f"--report {self.fmt}={self.path}"


def parse_report(value: str) -> ReportTarget:
    fmt, sep, path = value.partition("=")
    fmt = fmt.strip().lower()
    if not sep or not fmt or not path:
        raise UsageError(f"--report {value!r}: expected FORMAT=PATH, e.g. --report csv=findings.csv")
    if fmt not in FORMATS:
        raise UsageError(f"--report {value!r}: unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    target = ReportTarget(fmt, Path(path))
    check_writable(target.flag, target.path)
    return target


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a.absolute() == b.absolute()


def parse_reports(values: list[str], taken: dict[str, Path | None], inputs: dict[str, Path | None]) -> list[ReportTarget]:
    """Validate every `--report` before collecting. Two outputs to one file would leave only the last one, and a
    report over an input (the snapshot, the policy, the exceptions) would destroy it. The baseline is the one
    input a report may replace: a nightly job keeps one JSON and compares with it before overwriting it."""
    targets = [parse_report(v) for v in values]
    claimed: list[tuple[str, Path]] = []
    for flag, path in taken.items():  # --output and --snapshot-out obey the same rules as every --report
        if path is None:
            continue
        for other_flag, other in inputs.items():
            if other is not None and _same_file(path, other):
                raise UsageError(f"{flag} {path} would overwrite the {other_flag} file it reads")
        for other_flag, other in claimed:
            if _same_file(path, other):
                raise UsageError(f"{flag} {path}: {other_flag} already writes it; give each output its own file")
        claimed.append((flag, path))
    for t in targets:
        for flag, other in inputs.items():
            if other is not None and _same_file(t.path, other):
                raise UsageError(f"{t.flag} would overwrite the {flag} file it reads")
        for flag, other in claimed:
            if _same_file(t.path, other):
                raise UsageError(f"{t.flag}: {flag} already writes {other}; give each report its own file")
        claimed.append((t.flag, t.path))
    return targets


@dataclass
class Workflow:
    exceptions: ExceptionSet | None = None
    baseline: Baseline | None = None
    fail_on: str = "info"
    fail_on_new: bool = False
    reports: list[ReportTarget] = field(default_factory=list)
    exceptions_path: str = ""
    baseline_path: str = ""


def prepare(
    *,
    exceptions: Path | None,
    baseline: Path | None,
    fail_on: str,
    fail_on_new: bool,
    reports: list[str],
    taken: dict[str, Path | None],
    inputs: dict[str, Path | None],
    known_checks: list[str],
) -> Workflow:
    """Load and validate every workflow input; any mistake is a UsageError (exit 2) before a single ARM call."""
    if fail_on_new and baseline is None:
        raise UsageError("--fail-on-new needs --baseline PREVIOUS.json (new compared with what?)")
    snapshot_out = taken.get("--snapshot-out")
    if snapshot_out is not None and baseline is not None and _same_file(snapshot_out, baseline):
        # A report may replace the baseline it was compared with; a snapshot is not a report.
        raise UsageError(f"--snapshot-out {snapshot_out} would overwrite the --baseline file it reads")
    return Workflow(
        exceptions=load_exceptions(exceptions, known_checks) if exceptions is not None else None,
        baseline=load_baseline(baseline) if baseline is not None else None,
        fail_on=fail_on,
        fail_on_new=fail_on_new,
        reports=parse_reports(reports, taken, inputs),
        exceptions_path=str(exceptions or ""),
        baseline_path=str(baseline or ""),
    )


def _restatus_templates(result: AuditResult) -> None:
    """A check whose FAILs on a template are all accepted is ACCEPTED for that template (scores stay as they were:
    an accepted risk is still not a passed check)."""
    rows: dict[tuple[str, str], list[Finding]] = {}
    for f in result.findings:
        rows.setdefault((ids.norm(f.template_id), f.check_id), []).append(f)
    for tr in result.templates:
        for cid in tr.statuses:
            found = rows.get((tr.template.key, cid))
            if found:
                tr.statuses[cid] = check_status(found)


def apply(wf: Workflow, result: AuditResult, subscriptions: list[str], today: date) -> None:
    """Exceptions, then the baseline diff, in place on `result`; their notes go to `result.notes`."""
    checks = [c.meta.id for c in result.checks]
    if wf.exceptions is not None:
        result.notes.extend(apply_exceptions(result.findings, wf.exceptions, today, subscriptions, checks))
        _restatus_templates(result)
    if wf.baseline is not None:
        unlisted = [ids.subscription_of(e.scope) or "" for e in result.inventory.errors if e.kind == "imageTemplates"]
        diff = apply_baseline(
            result.findings + result.extra_errors,
            wf.baseline,
            subscriptions,
            checks,
            [tr.template.id for tr in result.templates],
            unlisted,
        )
        result.fixed = diff.fixed
        result.notes.extend(diff.notes)


def exit_code(wf: Workflow, result: AuditResult) -> int:
    return exit_code_for(result, wf.fail_on, wf.fail_on_new)


def write_reports(
    wf: Workflow, result: AuditResult, run: RunInfo, *, all_rows: bool = False, csv_spool: CsvSpool | None = None
) -> None:
    """Each `--report FORMAT=PATH`, written as it is rendered (report_stream: atomic, links followed)."""
    for t in wf.reports:
        with report_stream(t.path, t.flag) as out:
            write_report(t.fmt, result, run, out, all_rows=all_rows, csv_spool=csv_spool)


def spools_csv(wf: Workflow) -> bool:
    """Whether CSV records may be rendered before the audit ends: exceptions and a baseline change rows after it."""
    return wf.exceptions is None and wf.baseline is None


def print_notes(result: AuditResult) -> None:
    """Each note once, one line each, on stderr: a scheduled job's log shows a stale exception without a report."""
    for note in result.notes:
        sys.stderr.write(f"{PROG}: note: {' '.join(note.split())}\n")
    sys.stderr.flush()
