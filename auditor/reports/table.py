"""The terminal report (rich): a summary line, one line per template, the FAIL/ERROR findings, a footer.

Every cell is a rich `Text`, never markup: ARM names and details may contain `[...]`, which rich would
otherwise read as style tags. Every string that came from ARM (or a snapshot) goes through `textsafe.visible`
first: an ESC sequence or a bidi override in a template name or a run message is shown as `\x1b` or
`\u202e`, never sent to the terminal. Colour only when writing to a terminal.
"""

from __future__ import annotations

import io

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from auditor import ids
from auditor.audit import AuditResult, TemplateResult
from auditor.findings import Finding, Status
from auditor.reports import EXIT_MEANINGS, GATING_CHANGES, RunInfo, all_findings, change_counts, status_counts
from auditor.textsafe import visible
from checks.registry import catalog

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


def _failed_cell(tr: TemplateResult) -> Text:
    cell = Text()
    for cid in tr.failed_checks:
        cell.append(("" if not cell else ", ") + visible(cid), style="red")
    for cid in tr.error_checks:
        cell.append(("" if not cell else ", ") + f"{visible(cid)} (ERROR)", style="magenta")
    for cid in tr.accepted_checks:
        cell.append(("" if not cell else ", ") + f"{visible(cid)} (accepted)", style="yellow")
    return cell if cell else Text("none", style="green")


def _templates_table(result: AuditResult) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=False)
    table.add_column("Template", overflow="fold")
    table.add_column("Resource group", overflow="fold")
    table.add_column("Location")
    table.add_column("Resilience", justify="right")
    table.add_column("Least priv.", justify="right")
    table.add_column("Failed checks", overflow="fold")
    for tr in sorted(result.templates, key=lambda tr: tr.template.key):
        t = tr.template
        table.add_row(
            _text(t.name),
            _text(t.resource_group),
            _text(t.location),
            _score(tr.resilience),
            _score(tr.least_privilege),
            _failed_cell(tr),
        )
    return table


def _where(scope: str, template_id: str) -> str:
    """A short name for an assignment's scope (the CSV and JSON carry the full ID)."""
    same_sub = ids.scope_level(scope) == "subscription" and ids.subscription_of(scope) == ids.subscription_of(template_id)
    return "its subscription" if same_sub else ids.describe_scope(scope)


def _detail_cell(f: Finding) -> Text:
    """The detail, then (dim) the principal and role when the detail does not already name them."""
    cell = _text(f.detail)
    extra = []
    if f.principal_id and f.principal_id.lower() not in f.detail.lower():
        extra.append(f"{f.principal_type or 'principal'} {f.principal_id}")
    if f.role_name and f.role_name not in f.detail:
        extra.append(f.role_name + (f" at {_where(f.role_scope, f.template_id or f.resource_id)}" if f.role_scope else ""))
    if extra:
        cell.append("\n" + visible("; ".join(extra)), style="dim")
    return cell


def _findings_table(findings: list[Finding], names: dict[str, str]) -> Table:
    metas = {cid: chk.meta for cid, chk in catalog().items()}
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, expand=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Check", no_wrap=True)
    table.add_column("Sev", no_wrap=True)
    table.add_column("Template", overflow="fold", max_width=26)
    table.add_column("Detail (principal and role for principal findings)", overflow="fold", ratio=1)
    for f in findings:
        meta = metas.get(f.check_id)
        sev = str(meta.severity) if meta else ""
        template = names.get(ids.norm(f.template_id)) or ids.name_of(f.template_id or f.resource_id)
        status = Text(str(f.status), style=STATUS_STYLE[f.status])
        if f.change in (*GATING_CHANGES, "fixed"):
            status.append(f"\n{f.change}", style="bold")
        table.add_row(
            status,
            _text(f.check_id),
            _text(sev, SEVERITY_STYLE.get(sev, "")),
            _text(template),
            _detail_cell(f),
        )
    return table


def render_table(result: AuditResult, run: RunInfo, *, color: bool = False, width: int = 120) -> str:
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
    console.print(_summary(result, run, findings))
    console.print()
    if result.templates:
        console.print(_templates_table(result))
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
        console.print(_findings_table(changed, {tr.template.key: tr.template.name for tr in result.templates}))
    shown = [f for f in findings if f.status in (Status.FAIL, Status.ERROR)]
    if shown:
        console.print()
        console.print(Text("Findings that need action (FAIL) or could not be evaluated (ERROR):", style="bold"))
        names = {tr.template.key: tr.template.name for tr in result.templates}
        console.print(_findings_table(shown, names))
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
        console.print(
            Text(
                f"{counts[str(Status.PASS)]} PASS / {counts[str(Status.NA)]} N/A findings not shown;"
                " use --format csv (or json) for every finding."
            ),
            style="dim",
        )
    return buf.getvalue()
