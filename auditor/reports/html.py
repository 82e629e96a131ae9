"""The HTML report: one self-contained file a reviewer opens offline and shares.

Rendered with jinja2 (templates/report.html.j2) with autoescaping on: template names, details, role names and
exception reasons come from ARM or from people, so they are text, never markup. The page fetches nothing: CSS
and the filter script are inline and allowed by their SHA-256 hashes in a Content-Security-Policy that
forbids everything else (`default-src 'none'`), so even markup that escaped escaping could not run a script or
load a byte. Control and bidi characters in that text are shown as escapes (auditor/textsafe.py), as the
terminal table does. Charts are inline SVG with presentation attributes (no `style=""`, which the policy would block).

What the page shows, top to bottom: the run and its totals; a scorecard per practice and per subscription
(PASS/FAIL/ERROR/ACCEPTED counts as stacked bars); with a baseline, the new or regressed findings and the fixed
ones; failed reads and run notes; every template with its check statuses and its FAIL/ERROR/ACCEPTED rows
(PASS and N/A checks are named, not listed row by row, so 1,000 templates stay a readable page); the
least-privilege rows grouped per principal; the check catalog with per-check counts. One filter box narrows every
table as you type (`#q=text` in the URL pre-fills it, so a filtered view can be shared as a link).
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import jinja2
from markupsafe import Markup

from auditor import __version__, ids
from auditor.audit import AuditResult, TemplateResult
from auditor.findings import STATUS_ORDER, Finding, Severity, Status
from auditor.reports import EXIT_MEANINGS, STATUSES, RunInfo, all_findings, change_counts, iso, status_counts
from auditor.textsafe import visible
from checks.registry import CheckMeta, catalog_metas

CHART_STATUSES: tuple[Status, ...] = (Status.FAIL, Status.ERROR, Status.ACCEPTED, Status.PASS)
SHOWN_STATUSES = frozenset({Status.FAIL, Status.ERROR, Status.ACCEPTED})  # rows listed one by one
STATUS_CLASS = {Status.FAIL: "fail", Status.ERROR: "error", Status.ACCEPTED: "accepted", Status.PASS: "pass", Status.NA: "na"}
SEVERITY_RANK = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2, Severity.INFO: 3}
OPEN_TEMPLATES_UP_TO = 10  # a small estate opens every template; a large one starts folded
CHART_WIDTH = 1000
LABEL_WIDTH = 270
BAR_WIDTH = 480
ROW_HEIGHT = 24


# --------------------------------------------------------------------------------------------- view model


@dataclass
class Row:
    """One finding as the page shows it: text only, the template escapes it."""

    status: str
    css: str
    check_id: str
    severity: str
    detail: str
    who: str  # the principal and role, when the detail does not already name them (and a Graph name when known)
    template: str
    resource: str  # the resource's name when it is not the template itself
    change: str
    exception: str
    finding_id: str


@dataclass
class Segment:
    status: str
    css: str
    count: int
    x: float
    width: float


@dataclass
class Bar:
    label: str
    y: int
    total: int
    segments: list[Segment]
    counts: dict[str, int]

    @property
    def summary(self) -> str:
        parts = [f"{self.counts[str(s)]} {s}" for s in CHART_STATUSES if self.counts[str(s)]]
        return " · ".join(parts) or "no findings"


@dataclass
class Chart:
    title: str
    key: str
    bars: list[Bar]
    width: int = CHART_WIDTH

    @property
    def height(self) -> int:
        return max(1, len(self.bars)) * ROW_HEIGHT + 8


@dataclass
class CheckChip:
    check_id: str
    status: str
    css: str


@dataclass
class TemplateView:
    name: str
    id: str
    subscription: str
    resource_group: str
    location: str
    resilience: str
    least_privilege: str
    counts: dict[str, int]
    chips: list[CheckChip]
    rows: list[Row]
    quiet: dict[str, list[str]]  # PASS / N/A -> check IDs, named but not listed row by row
    open: bool


@dataclass
class PrincipalView:
    """One principal's least-privilege rows, summed up; the rows themselves are the templates' (a link filters them)."""

    principal_id: str
    label: str
    principal_type: str
    counts: dict[str, int]
    rows: int
    templates: int
    checks: list[str]
    roles: list[str]


@dataclass
class CheckView:
    meta: CheckMeta
    counts: dict[str, int]


@dataclass
class Page:
    run: RunInfo
    version: str
    generated_at: str
    exit_meaning: str
    totals: dict[str, int]
    templates_total: int
    checks_total: int
    charts: list[Chart]
    templates: list[TemplateView]
    principals: list[PrincipalView]
    checks: list[CheckView]
    orphan_rows: list[Row]  # findings that belong to no template (failed reads no check showed)
    failed_reads: list[str]
    notes: list[str]
    baseline: bool
    changed_rows: list[Row]
    fixed_rows: list[Row]
    change_counts: dict[str, int] = field(default_factory=dict)


def _principal_label(f: Finding) -> str:
    if f.principal_name and f.principal_upn:
        return f"{f.principal_name} ({f.principal_upn})"
    return f.principal_name or f.principal_upn or f.principal_id


def _exception(f: Finding) -> str:
    if not (f.exception_reason or f.exception_owner or f.exception_expires):
        return ""
    parts = [f.exception_reason]
    if f.exception_owner:
        parts.append(f"owner {f.exception_owner}")
    if f.exception_expires:
        parts.append(f"expires {f.exception_expires}")
    return "; ".join(p for p in parts if p)


def _who(f: Finding) -> str:
    """What the row adds to its detail: a principal and role the detail does not name (as the table report does)."""
    parts = []
    if f.principal_name or f.principal_upn:
        parts.append(_principal_label(f))
    if f.principal_id and f.principal_id.lower() not in f.detail.lower():
        parts.append(f"{f.principal_type or 'principal'} {f.principal_id}")
    if f.role_name and f.role_name not in f.detail:
        parts.append(f.role_name + (f" at {ids.describe_scope(f.role_scope)}" if f.role_scope else ""))
    return "; ".join(parts)


def _row(f: Finding, metas: dict[str, CheckMeta]) -> Row:
    meta = metas.get(f.check_id)
    template = ids.name_of(f.template_id) if f.template_id else ""
    same = ids.norm(f.resource_id) == ids.norm(f.template_id)
    return Row(
        status=str(f.status),
        css=STATUS_CLASS[f.status],
        check_id=f.check_id or "read",
        severity=str(meta.severity) if meta else "",
        detail=f.detail,
        who=_who(f),
        template=template,
        resource="" if same else (ids.name_of(f.resource_id) or f.resource_id),
        change=f.change,
        exception=_exception(f),
        finding_id=f.finding_id,
    )


def _counts(findings: Iterable[Finding]) -> dict[str, int]:
    c = Counter(str(f.status) for f in findings)
    return {str(s): c.get(str(s), 0) for s in STATUSES}


def _chart(title: str, key: str, groups: list[tuple[str, list[Finding]]]) -> Chart:
    bars: list[Bar] = []
    for i, (label, findings) in enumerate(groups):
        counts = _counts(findings)
        total = sum(counts[str(s)] for s in CHART_STATUSES)
        x = float(LABEL_WIDTH)
        segments: list[Segment] = []
        for s in CHART_STATUSES:
            n = counts[str(s)]
            if not n:
                continue
            width = BAR_WIDTH * n / total
            segments.append(Segment(str(s), STATUS_CLASS[s], n, round(x, 2), round(width, 2)))
            x += width
        bars.append(Bar(label=label, y=i * ROW_HEIGHT + 4, total=total, segments=segments, counts=counts))
    return Chart(title=title, key=key, bars=bars)


def _score(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def _template_view(tr: TemplateResult, findings: list[Finding], metas: dict[str, CheckMeta], open_: bool) -> TemplateView:
    t = tr.template
    shown = [f for f in findings if f.status in SHOWN_STATUSES]
    shown.sort(key=lambda f: (STATUS_ORDER[f.status], f.check_id, f.resource_id.lower(), f.principal_id))
    quiet: dict[str, list[str]] = {"PASS": [], "N/A": []}
    for cid in sorted(tr.statuses):
        status = tr.statuses[cid]
        if status in (Status.PASS, Status.NA):
            quiet[str(status)].append(cid)
    return TemplateView(
        name=t.name,
        id=t.id,
        subscription=t.subscription_id,
        resource_group=t.resource_group,
        location=t.location,
        resilience=_score(tr.resilience),
        least_privilege=_score(tr.least_privilege),
        counts=_counts(findings),
        chips=[CheckChip(cid, str(tr.statuses[cid]), STATUS_CLASS[tr.statuses[cid]]) for cid in sorted(tr.statuses)],
        rows=[_row(f, metas) for f in shown],
        quiet=quiet,
        open=open_,
    )


def _principals(findings: list[Finding]) -> list[PrincipalView]:
    """Least-privilege rows grouped per principal: the people and identities a reviewer has to talk to.

    Only the sums are listed here; the rows are in the templates' tables, and each principal's link filters the
    page down to them. Listing them twice would double a 1,000-template page."""
    by_principal: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        if f.principal_id and f.check_id.startswith("AIB-LP-"):
            by_principal[f.principal_id.lower()].append(f)
    views: list[PrincipalView] = []
    for rows in by_principal.values():
        first = rows[0]
        named = next((f for f in rows if f.principal_name or f.principal_upn), first)
        views.append(
            PrincipalView(
                principal_id=first.principal_id,
                label=_principal_label(named),
                principal_type=next((f.principal_type for f in rows if f.principal_type), ""),
                counts=_counts(rows),
                rows=len(rows),
                templates=len({f.template_id.lower() for f in rows if f.template_id}),
                checks=sorted({f.check_id for f in rows}),
                roles=sorted({f.role_name for f in rows if f.role_name}),
            )
        )
    views.sort(key=lambda p: (-p.counts["FAIL"], -p.counts["ERROR"], -p.counts["ACCEPTED"], p.label.lower(), p.principal_id))
    return views


def build_page(result: AuditResult, run: RunInfo) -> Page:
    metas = catalog_metas()
    findings = all_findings(result)
    per_template: dict[str, list[Finding]] = defaultdict(list)
    for f in result.findings:
        per_template[ids.norm(f.template_id)].append(f)
    templates = sorted(result.templates, key=lambda tr: tr.template.key)
    open_all = len(templates) <= OPEN_TEMPLATES_UP_TO

    by_practice: dict[str, list[Finding]] = defaultdict(list)
    by_subscription: dict[str, list[Finding]] = defaultdict(list)
    by_check: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        meta = metas.get(f.check_id)
        by_practice[meta.practice if meta else "Reads that failed"].append(f)
        by_subscription[ids.subscription_of(f.template_id or f.resource_id) or "(no subscription)"].append(f)
        by_check[f.check_id].append(f)
    practice_order = {m.practice: i for i, m in enumerate(sorted(metas.values(), key=lambda m: m.id))}
    practices = sorted(by_practice.items(), key=lambda kv: (practice_order.get(kv[0], len(practice_order)), kv[0]))

    baseline = bool(result.fixed) or any(f.change for f in findings)
    changed = [f for f in findings if f.change in ("new", "regressed") and f.status in SHOWN_STATUSES]
    changed.sort(
        key=lambda f: (f.status != Status.FAIL, SEVERITY_RANK.get(metas[f.check_id].severity, 9) if f.check_id in metas else 9)
    )
    ran = sorted((c.meta for c in result.checks), key=lambda m: m.id)
    return Page(
        run=run,
        version=__version__,
        generated_at=iso(run.finished_at),
        exit_meaning=EXIT_MEANINGS.get(run.exit_code, ""),
        totals=status_counts(findings),
        templates_total=len(templates),
        checks_total=len(ran),
        charts=[
            _chart("By practice", "practice", practices),
            _chart("By subscription", "subscription", sorted(by_subscription.items())),
        ],
        templates=[_template_view(tr, per_template.get(tr.template.key, []), metas, open_all) for tr in templates],
        principals=_principals(findings),
        checks=[CheckView(meta, _counts(by_check.get(meta.id, []))) for meta in ran],
        orphan_rows=[_row(f, metas) for f in result.extra_errors],
        failed_reads=[e.describe() for e in result.inventory.errors],
        notes=[str(n) for n in result.notes] + [str(n) for n in result.inventory.meta.get("notes", [])],
        baseline=baseline,
        changed_rows=[_row(f, metas) for f in changed],
        fixed_rows=[_row(f, metas) for f in result.fixed],
        change_counts=change_counts(result),
    )


# --------------------------------------------------------------------------------------------- rendering


def _asset(name: str) -> str:
    return resources.files("auditor.reports").joinpath("templates", name).read_text(encoding="utf-8")


def csp_hash(text: str) -> str:
    """The CSP source expression that allows exactly this inline script or style element's content."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _finalize(value: object) -> object:
    """Every `{{ value }}`: ARM text with control and bidi characters shown as escapes (textsafe), so a U+202E in a
    template name cannot make the page read otherwise than it says; our own assets (Markup) pass unchanged."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        finalize=_finalize,
        loader=jinja2.PackageLoader("auditor.reports", "templates"),
        autoescape=True,  # every value is text: ARM names and details are attacker-influenced
        undefined=jinja2.StrictUndefined,  # a typo in the template is a bug, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def render_html(result: AuditResult, run: RunInfo) -> str:
    page = build_page(result, run)
    script, style = _asset("report.js"), _asset("report.css")
    csp = (
        f"default-src 'none'; script-src {csp_hash(script)}; style-src {csp_hash(style)}; "
        "img-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
    )
    template = _environment().get_template("report.html.j2")
    return template.render(
        page=page,
        csp=csp,
        script=Markup(script),  # our own static asset, hashed into the CSP above
        style=Markup(style),
        statuses=[str(s) for s in STATUSES],
        chart_statuses=[(str(s), STATUS_CLASS[s]) for s in CHART_STATUSES],
        label_width=LABEL_WIDTH,
        bar_width=BAR_WIDTH,
    )
