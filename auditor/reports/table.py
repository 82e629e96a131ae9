"""The terminal report: a summary line, one line per check with its counts per status, one line per template, the
FAIL and ERROR rows (every row with `--all-rows`), the failed reads, a footer that points to the CSV.

The short parts are rich renderables, and every cell there is a rich `Text`, never markup: ARM names and details
may contain `[...]`, which rich would otherwise read as style tags. The long parts (templates, finding rows) are
plain lines (grid.py): rich takes about a millisecond a row, and 1,000 templates have tens of thousands of FAIL
rows. Every string that came from ARM (or a snapshot) goes through `textsafe.visible`
first: an ESC sequence or a bidi override in a template name or a run message is shown as `\x1b` or
`\u202e`, never sent to the terminal. Colour only when writing to a terminal.
"""

from __future__ import annotations

import io
from collections import Counter

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditor import ids
from auditor.audit import AuditResult, TemplateResult
from auditor.findings import Finding, Status
from auditor.reports import EXIT_MEANINGS, GATING_CHANGES, STATUSES, RunInfo, all_findings, change_counts, status_counts
from auditor.reports.grid import Cell, Column, Grid
from auditor.textsafe import visible
from checks.registry import catalog_metas

STATUS_STYLE = {
    Status.FAIL: "bold red",
    Status.ERROR: "bold magenta",
    Status.ACCEPTED: "yellow",
    Status.PASS: "green",
    Status.NA: "dim",
}
SEVERITY_STYLE = {"high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _text(value: object, style: str = "") -> Text:
    """A cell or line from data (ARM, a snapshot): control and bidi characters escaped (see the docstring)."""
    return Text(visible(value), style=style)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _score(value: int | None) -> Text:
    if value is None:
        return Text("n/a", style="dim")
    style = "green" if value >= 80 else "yellow" if value >= 50 else "red"
    return Text(str(value), style=style)


def _summary(result: AuditResult, run: RunInfo, findings: list[Finding]) -> Text:
    line = Text("aib-audit", style="bold")
    line.append(f": {_plural(len(result.templates), 'template')} audited in {_plural(len(run.subscriptions), 'subscription')}")
    for status, n in status_counts(findings).items():
        if status == Status.ACCEPTED and not n:  # only runs with --exceptions can have any
            continue
        line.append(" | ")
        line.append(f"{n} {status}", style=STATUS_STYLE[Status(status)] if n else "")
    if run.baseline:  # the FAILs a reviewer has not seen yet, and what went away since the last run
        changes = change_counts(result)
        line.append(" | since baseline: ")
        line.append(f"{changes['new']} new", style="bold red" if changes["new"] else "")
        line.append(", ")
        line.append(f"{changes['regressed']} regressed", style="bold red" if changes["regressed"] else "")
        line.append(", ")
        line.append(f"{changes['fixed']} fixed", style="green" if changes["fixed"] else "")
    subs = visible(", ".join(run.subscriptions) or "none")
    source = f"subscriptions: {subs}\nsource: {visible(run.source)}"
    if run.collected_at:  # from the snapshot's meta: data
        source += f", data read {visible(run.collected_at)}"
    line.append(f"\n{source}", style="dim")
    return line


def _failed_cell(tr: TemplateResult) -> Cell:
    parts = [visible(cid) for cid in tr.failed_checks]
    parts += [f"{visible(cid)} (ERROR)" for cid in tr.error_checks]
    parts += [f"{visible(cid)} (accepted)" for cid in tr.accepted_checks]
    # One style per cell (rows are rendered as plain lines, see grid.py): the worst status colours it.
    style = "red" if tr.failed_checks else "magenta" if tr.error_checks else "yellow" if tr.accepted_checks else "green"
    return Cell(", ".join(parts) or "none", style)


def _score_cell(value: int | None) -> Cell:
    if value is None:
        return Cell("n/a", "dim")
    return Cell(str(value), "green" if value >= 80 else "yellow" if value >= 50 else "red")


def _templates_grid(result: AuditResult) -> Grid:
    grid = Grid(
        [
            Column("Template", max_width=40),
            Column("Resource group", max_width=30),
            Column("Location", max_width=20),
            Column("Resilience", right=True),
            Column("Least priv.", right=True),
            Column("Failed checks"),
        ]
    )
    for tr in sorted(result.templates, key=lambda tr: tr.template.key):
        t = tr.template
        grid.add(
            Cell(visible(t.name)),
            Cell(visible(t.resource_group)),
            Cell(visible(t.location)),
            _score_cell(tr.resilience),
            _score_cell(tr.least_privilege),
            _failed_cell(tr),
        )
    return grid


def _where(scope: str, template_id: str) -> str:
    """A short name for an assignment's scope (the CSV and JSON carry the full ID)."""
    same_sub = ids.scope_level(scope) == "subscription" and ids.subscription_of(scope) == ids.subscription_of(template_id)
    return "its subscription" if same_sub else ids.describe_scope(scope)


def _detail_cell(f: Finding) -> Cell:
    """The detail, then (dim, on its own line) the principal and role when the detail does not already name them."""
    extra = []
    if f.principal_id and f.principal_id.lower() not in f.detail.lower():
        extra.append(f"{f.principal_type or 'principal'} {f.principal_id}")
    if f.role_name and f.role_name not in f.detail:
        extra.append(f.role_name + (f" at {_where(f.role_scope, f.template_id or f.resource_id)}" if f.role_scope else ""))
    return Cell(visible(f.detail), "", visible("; ".join(extra)) if extra else "", "dim")


def _findings_grid(findings: list[Finding], names: dict[str, str]) -> Grid:
    metas = catalog_metas()
    grid = Grid(
        [
            Column("Status"),
            Column("Check"),
            Column("Sev"),
            Column("Template", max_width=26),
            Column("Detail (principal and role for principal findings)"),
        ]
    )
    for f in findings:
        meta = metas.get(f.check_id)
        sev = str(meta.severity) if meta else ""
        template = names.get(ids.norm(f.template_id)) or ids.name_of(f.template_id or f.resource_id)
        change = f.change if f.change in (*GATING_CHANGES, "fixed") else ""
        grid.add(
            Cell(str(f.status), STATUS_STYLE[f.status], change, "bold"),
            Cell(visible(f.check_id)),
            Cell(visible(sev), SEVERITY_STYLE.get(sev, "")),
            Cell(visible(template)),
            _detail_cell(f),
        )
    return grid


def _checks_table(result: AuditResult, findings: list[Finding]) -> Table:
    """One line per check: its counts per status over every row (the table shows only some of the rows)."""
    metas = {chk.meta.id: chk.meta for chk in result.checks}
    counts: dict[str, Counter[Status]] = {cid: Counter() for cid in sorted(metas)}
    for f in findings:
        counts.setdefault(f.check_id, Counter())[f.status] += 1
    statuses = [s for s in STATUSES if s != Status.ACCEPTED or any(c[s] for c in counts.values())]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    table.add_column("Check", no_wrap=True)
    table.add_column("Sev", no_wrap=True)
    table.add_column("Title", overflow="fold")
    for status in statuses:
        table.add_column(str(status), justify="right", no_wrap=True)
    for cid, per in counts.items():
        meta = metas.get(cid)
        sev = str(meta.severity) if meta else ""
        title = meta.title if meta else ("failed reads no check shows" if not cid else "")
        cells = [Text(str(per[s]), style=STATUS_STYLE[s] if per[s] and s != Status.PASS else "") for s in statuses]
        table.add_row(_text(cid or "-"), _text(sev, SEVERITY_STYLE.get(sev, "")), _text(title), *cells)
    return table


SHOWN = (Status.FAIL, Status.ERROR)  # the rows the table lists without --all-rows


def render_table(result: AuditResult, run: RunInfo, *, color: bool = False, width: int = 120, all_rows: bool = False) -> str:
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        emoji=False,
        soft_wrap=False,
    )
    findings = all_findings(result)
    names = {tr.template.key: tr.template.name for tr in result.templates}
    console.print(_summary(result, run, findings))
    console.print()
    if result.checks or findings:
        console.print(_checks_table(result, findings))
        console.print()
    if result.templates:
        buf.write(_templates_grid(result).render(width, color))
    else:
        unlisted = any(e.kind == "imageTemplates" for e in result.inventory.errors)
        # An empty list that ARM refused to give is not "none": say so, so nobody reads it as a clean bill.
        console.print(
            Text("Image templates could not be listed: see the reads that failed." if unlisted else "No image templates found.")
        )
    changed = [f for f in findings if f.status == Status.FAIL and f.change in GATING_CHANGES] + list(result.fixed)
    if run.baseline and changed:  # the few rows a weekly reviewer has not seen, before the many they have
        console.print()
        console.print(_text(f"Since the baseline ({run.baseline}): new or regressed FAILs, and fixed findings:", "bold"))
        buf.write(_findings_grid(changed, names).render(width, color))
    shown = findings if all_rows else [f for f in findings if f.status in SHOWN]
    if shown:
        console.print()
        heading = "Every finding:" if all_rows else "Findings that need action (FAIL) or could not be evaluated (ERROR):"
        console.print(Text(heading, style="bold"))
        buf.write(_findings_grid(shown, names).render(width, color))
    if result.inventory.errors:
        console.print()
        console.print(Text("Reads that failed (the checks that needed them say ERROR):", style="bold magenta"))
        for e in result.inventory.errors:
            console.print(_text(f"- {e.describe()}"), overflow="fold")
    console.print()
    hidden = len(findings) - len(shown)
    counts = status_counts(findings)
    gate = [f"--fail-on {run.fail_on}"] if run.fail_on != "info" else []
    gate += ["--fail-on-new"] if run.fail_on_new else []
    said = f" (gate: {' '.join(gate)})" if gate else ""
    console.print(Text(f"Exit code {run.exit_code}: {EXIT_MEANINGS.get(run.exit_code, '')}{said}.", style="bold"))
    if hidden:
        left_out = [f"{counts[str(s)]} {s}" for s in STATUSES if s not in SHOWN and (counts[str(s)] or s != Status.ACCEPTED)]
        console.print(
            Text(
                f"{' / '.join(left_out)} findings not shown (--all-rows lists them); every row: --format csv"
                " (or --report csv=FILE)."
            ),
            style="dim",
        )
    return buf.getvalue()
