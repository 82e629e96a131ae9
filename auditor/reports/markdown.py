"""The Markdown summary, sized for a CI job page (`>> $GITHUB_STEP_SUMMARY`, an Azure DevOps `##vso[task.uploadsummary]`).

GitHub caps a step summary at 1 MiB and renders it as GitHub Flavored Markdown, so the summary stays small and
inert: the counts; with a baseline, what changed; a table of the rows that need attention, new and regressed
FAILs first, then ERRORs, then the other FAILs by severity, capped at `MAX_ROWS` ("... N more, see the CSV");
the checks that failed with their counts; the run's notes. No links: the table carries no URL and no markup, and
every cell is escaped (`|` and newlines, Markdown punctuation, `<` so no HTML gets through), with URLs in details
set as code so GitHub does not turn them into links. The full rows are in the CSV, JSON or HTML report.
"""

from __future__ import annotations

import re
from collections import Counter

from auditor import ids
from auditor.audit import AuditResult
from auditor.findings import Finding, Severity, Status
from auditor.reports import EXIT_MEANINGS, STATUSES, RunInfo, all_findings, change_counts, iso, status_counts
from auditor.textsafe import visible
from checks.registry import CheckMeta, catalog_metas

MAX_ROWS = 50  # table rows; the rest is counted, not listed
MAX_CELL = 300  # characters per cell: one row is one line on a job page
MAX_NOTES = 20
SEVERITY_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2, Severity.INFO: 3}
ATTENTION = (Status.FAIL, Status.ERROR)
# What GitHub would turn into a link even when escaped: URLs, www. hosts and e-mail addresses (UPNs). Code spans
# are never linked, so these go into one.
_URL_CHARS = r"[^\s,;'\")\]]+"  # a URL ends at white space or the punctuation that usually follows one in prose
_LINKY = re.compile(rf"(?:https?|ftp)://{_URL_CHARS}|www\.{_URL_CHARS}|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.IGNORECASE)
# CommonMark lets a backslash escape any ASCII punctuation; these can start markup inside a table cell.
_PUNCT = re.compile(r"([\\`*_\[\]<>|~])")


def _code(text: str) -> str:
    """A code span that holds `text` whatever backticks it contains; `|` stays escaped (GFM splits cells first)."""
    text = text.replace("|", "\\|")
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def cell(value: str, limit: int = MAX_CELL) -> str:
    """One table cell: a single line, no markup, no links, at most `limit` characters of the text."""
    text = visible(" ".join(str(value).split()))  # a bidi override must not reorder what the job page shows
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    out: list[str] = []
    pos = 0
    for m in _LINKY.finditer(text):
        out.append(_PUNCT.sub(r"\\\1", text[pos : m.start()]))
        out.append(_code(m.group(0)))
        pos = m.end()
    out.append(_PUNCT.sub(r"\\\1", text[pos:]))
    return "".join(out)


def _severity(meta: CheckMeta | None) -> str:
    return str(meta.severity) if meta else ""


def attention_rows(result: AuditResult) -> list[Finding]:
    """FAIL and ERROR rows in the order a reader should see them: new/regressed FAILs, ERRORs, the other FAILs."""
    metas = catalog_metas()

    def key(f: Finding) -> tuple[int, int, str, str, str]:
        if f.status == Status.FAIL and f.change in ("new", "regressed"):
            group = 0
        elif f.status == Status.ERROR:
            group = 1
        else:
            group = 2
        meta = metas.get(f.check_id)
        rank = SEVERITY_RANK[meta.severity] if meta else 0
        return (group, rank, f.check_id, f.template_id.lower(), f.principal_id)

    return sorted((f for f in all_findings(result) if f.status in ATTENTION), key=key)


def _row(f: Finding, meta: CheckMeta | None, with_change: bool) -> str:
    template = ids.name_of(f.template_id) if f.template_id else ""
    resource = "" if ids.norm(f.resource_id) == ids.norm(f.template_id) else ids.name_of(f.resource_id)
    principal = f.principal_name or f.principal_upn or f.principal_id
    if principal and f.principal_type:
        principal = f"{principal} ({f.principal_type})"
    cells = [
        *([f.change] if with_change else []),
        str(f.status),
        _severity(meta),
        f.check_id,
        template,
        resource,
        principal,
        f.detail,
    ]
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def render_markdown(result: AuditResult, run: RunInfo) -> str:
    metas = catalog_metas()
    findings = all_findings(result)
    counts = status_counts(findings)
    templates = len(result.templates)
    lines = [
        f"## aib-audit: {counts['FAIL']} FAIL, {counts['ERROR']} ERROR",
        "",
        f"Exit {run.exit_code}: {EXIT_MEANINGS.get(run.exit_code, '')}. {templates} template{'' if templates == 1 else 's'} in "
        f"{len(run.subscriptions)} subscription{'' if len(run.subscriptions) == 1 else 's'}, {len(result.checks)} checks, "
        f"source {run.source}, finished {iso(run.finished_at)}. "
        f"Exit 1 on a{' new or regressed' if run.fail_on_new else ''} FAIL of severity {run.fail_on} or above.",
        "",
        "| " + " | ".join(str(s) for s in STATUSES) + " |",
        "|" + "---:|" * len(STATUSES),
        "| " + " | ".join(str(counts[str(s)]) for s in STATUSES) + " |",
        "",
    ]
    changed = any(f.change for f in findings) or bool(result.fixed)
    if changed:
        c = change_counts(result)
        lines += [f"Since the baseline: **{c['new']} new** and **{c['regressed']} regressed** FAIL, **{c['fixed']} fixed**.", ""]

    rows = attention_rows(result)
    if rows:
        lines += [
            "### Needs attention" + (" (new first)" if changed else ""),
            "",
            ("| Change " if changed else "") + "| Status | Severity | Check | Template | Resource | Principal | Detail |",
            ("|---" if changed else "") + "|---|---|---|---|---|---|---|",
        ]
        lines += [_row(f, metas.get(f.check_id), changed) for f in rows[:MAX_ROWS]]
        if len(rows) > MAX_ROWS:
            lines += ["", f"… {len(rows) - MAX_ROWS:,} more FAIL/ERROR rows: see the CSV, JSON or HTML report."]
        lines.append("")
    else:
        lines += ["Nothing failed.", ""]

    per_check: Counter[tuple[str, Status]] = Counter(
        (f.check_id, f.status) for f in findings if f.status in (Status.FAIL, Status.ERROR, Status.ACCEPTED)
    )
    failing = sorted({cid for cid, _ in per_check})
    if failing:
        lines += ["### Checks", "", "| Check | Severity | Title | FAIL | ERROR | ACCEPTED |", "|---|---|---|---:|---:|---:|"]
        for cid in failing:
            meta = metas.get(cid)
            lines.append(
                "| "
                + " | ".join(
                    [
                        cell(cid or "read"),
                        cell(_severity(meta)),
                        cell(meta.title if meta else "a read that failed"),
                        *(str(per_check[(cid, s)]) for s in (Status.FAIL, Status.ERROR, Status.ACCEPTED)),
                    ]
                )
                + " |"
            )
        lines.append("")

    notes = [str(n) for n in result.notes] + [e.describe() for e in result.inventory.errors]
    if notes:
        lines += ["### Notes", ""]
        lines += [f"- {cell(n, 500)}" for n in notes[:MAX_NOTES]]
        if len(notes) > MAX_NOTES:
            lines.append(f"- … {len(notes) - MAX_NOTES} more in the JSON report")
        lines.append("")
    return "\n".join(lines)
