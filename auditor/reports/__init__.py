"""Reports: the audit result as a terminal table, a CSV for reviewers, JSON for pipelines, SARIF for code scanning,
HTML to share with a reviewer, or a Markdown summary for a CI job page.

Every renderer is a pure function of `(AuditResult, RunInfo)`; the CLI decides where the text goes. The CSV and
JSON reports are written row by row to a text stream (`write_report`): at thousands of templates they are
hundreds of MiB, never held as one string. Other formats render a string (`render`), which `write_report` writes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

from auditor.audit import AuditResult
from auditor.findings import Finding, Status
from checks.registry import catalog

if TYPE_CHECKING:
    from auditor.reports.csv_spool import CsvSpool

# Exit codes (design.md "Command line"): the reports state them, the CLI returns them.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTERNAL = 4

EXIT_MEANINGS: dict[int, str] = {
    EXIT_OK: "audit complete, nothing failed",
    EXIT_FAILED: "audit complete, at least one check failed",
    EXIT_USAGE: "usage, configuration or authentication error",
    EXIT_INCOMPLETE: "audit incomplete: a read failed and the affected checks say ERROR",
    EXIT_INTERNAL: "internal error in aib-audit (a bug)",
}

FORMATS = ("table", "csv", "json", "sarif", "html", "markdown")
# The formats that print a finding's evidence. An audit whose reports are all others drops it as each check's rows
# come in (StagedAudit keep_evidence): at 10,000 templates, about 290 MiB of a live run's peak.
EVIDENCE_FORMATS = frozenset({"json"})
STATUSES: tuple[Status, ...] = (Status.FAIL, Status.ERROR, Status.ACCEPTED, Status.PASS, Status.NA)

# `--fail-on LEVEL`: a FAIL of this severity or above sets exit 1. No check is `critical` (the catalog's
# severities are high, medium, low, info); the level is accepted because CI gates commonly say it, and
# `--fail-on critical` therefore fails on nothing: the run reports, and exits 3 only when it is incomplete.
FAIL_ON_LEVELS: tuple[str, ...] = ("critical", "high", "medium", "low", "info")
_RANK = {level: len(FAIL_ON_LEVELS) - i for i, level in enumerate(FAIL_ON_LEVELS)}
GATING_CHANGES = ("new", "regressed")  # with --fail-on-new, only these FAILs set exit 1


def gating_failures(result: AuditResult, fail_on: str = "info", fail_on_new: bool = False) -> list[Finding]:
    """The FAIL rows that set exit 1: at or above `fail_on`, and with `fail_on_new` only new or regressed ones.

    ACCEPTED rows never gate. A FAIL whose check is not in the catalog gates at any level (fail closed).
    """
    return list(_gating(result, fail_on, fail_on_new))


def _gating(result: AuditResult, fail_on: str, fail_on_new: bool) -> Iterator[Finding]:
    threshold = _RANK[fail_on]
    ranks = {cid: _RANK[str(chk.meta.severity)] for cid, chk in catalog().items()}
    for f in all_findings(result):
        if f.status != Status.FAIL or (fail_on_new and f.change not in GATING_CHANGES):
            continue
        rank = ranks.get(f.check_id)
        if rank is None or rank >= threshold:
            yield f


def exit_code_for(result: AuditResult, fail_on: str = "info", fail_on_new: bool = False) -> int:
    """3 (incomplete) wins over 1 (a FAIL): a partial audit cannot vouch for the checks it could not run."""
    if result.incomplete:
        return EXIT_INCOMPLETE
    if next(_gating(result, fail_on, fail_on_new), None) is not None:  # the first one decides
        return EXIT_FAILED
    return EXIT_OK


@dataclass
class RunInfo:
    """What the reports say about the run itself, beside the findings."""

    source: str  # live | demo | snapshot
    subscriptions: list[str]
    arm_endpoint: str
    started_at: datetime
    finished_at: datetime
    exit_code: int
    arm_calls: int = 0  # ARM requests the collection made (for --snapshot: as the snapshot recorded them)
    throttled: int = 0  # 429 responses met while collecting
    collected_at: str = ""  # when the audited data was read from ARM
    # The workflow options (auditor/workflow.py): what decided exit 1, and the files the run was compared with.
    fail_on: str = "info"
    fail_on_new: bool = False
    exceptions: str = ""  # --exceptions FILE, as given
    baseline: str = ""  # --baseline FILE, as given


def iso(ts: datetime) -> str:
    """ISO-8601 in UTC with a Z, to the second: what spreadsheets and `jq` both read."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def all_findings(result: AuditResult) -> list[Finding]:
    """The run's findings, then any that belong to no template (e.g. a failed template list), in a stable order."""
    return list(result.findings) + sorted(result.extra_errors, key=Finding.sort_key)


def status_counts(findings: list[Finding]) -> dict[str, int]:
    return {str(s): sum(1 for f in findings if f.status == s) for s in STATUSES}


def change_counts(result: AuditResult) -> dict[str, int]:
    """Against a baseline: FAIL rows that are new or regressed, and findings fixed (all 0 without --baseline)."""
    findings = all_findings(result)
    return {
        "new": sum(1 for f in findings if f.status == Status.FAIL and f.change == "new"),
        "regressed": sum(1 for f in findings if f.status == Status.FAIL and f.change == "regressed"),
        "fixed": len(result.fixed),
    }


def fixed_gone(result: AuditResult) -> list[Finding]:
    """Fixed findings that have no row in this run (their template, resource or principal is gone); the ones
    that PASS now are already among the findings, with change `fixed`."""
    if not result.fixed:
        return []
    # Only the fixed findings' identities are kept: a set of every row's (668,000 at 10,000 templates) cost the
    # run 60 MiB at its peak.
    fixed = {id(f) for f in result.fixed}
    present = {id(f) for f in all_findings(result) if id(f) in fixed}
    return [f for f in result.fixed if id(f) not in present]


STREAMED_FORMATS = ("csv", "json")  # written row by row (write_report); the others render a string first


def write_report(
    fmt: str,
    result: AuditResult,
    run: RunInfo,
    out: TextIO,
    *,
    color: bool = False,
    width: int = 120,
    all_rows: bool = False,
    csv_spool: CsvSpool | None = None,
) -> None:
    """Write one report format to `out` as it is rendered. `color`, `width` and `all_rows` only matter for the table;
    `csv_spool`, the CSV records rendered while ARM was read, for the CSV."""
    # Imported here so that a renderer's dependencies (rich) load only when that format is asked for.
    if fmt == "csv":
        from auditor.reports.csv_report import write_csv

        write_csv(result, run, out, csv_spool)
    elif fmt == "json":
        from auditor.reports.json_report import write_json

        write_json(result, run, out)
    else:
        out.write(render(fmt, result, run, color=color, width=width, all_rows=all_rows))


def render(fmt: str, result: AuditResult, run: RunInfo, *, color: bool = False, width: int = 120, all_rows: bool = False) -> str:
    """Render one report format as a string (small results, tests). `color`, `width`, `all_rows`: the table's."""
    if fmt in STREAMED_FORMATS:
        buf = io.StringIO(newline="")  # no newline translation: the CSV's CRLF stays as written
        write_report(fmt, result, run, buf)
        return buf.getvalue()
    if fmt == "table":
        from auditor.reports.table import render_table

        return render_table(result, run, color=color, width=width, all_rows=all_rows)
    if fmt == "sarif":
        from auditor.reports.sarif import render_sarif

        return render_sarif(result, run)
    if fmt == "html":
        from auditor.reports.html import render_html

        return render_html(result, run)
    if fmt == "markdown":
        from auditor.reports.markdown import render_markdown

        return render_markdown(result, run)
    raise ValueError(f"unknown report format {fmt!r}")
