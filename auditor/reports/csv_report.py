"""The CSV report: one row per finding, so every row is one thing a reviewer can act on.

Columns are a contract (design.md "Findings and the CSV"); spreadsheet formulas are defused (OWASP CSV
injection): ARM names, tags-derived text and role names are attacker-influenced strings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

from auditor import ids
from auditor.audit import AuditResult
from auditor.findings import Finding, Status
from auditor.reports import RunInfo, all_findings, fixed_gone, iso
from checks.registry import CheckMeta, catalog_metas

if TYPE_CHECKING:
    from auditor.reports.csv_spool import CsvSpool

COLUMNS: tuple[str, ...] = (
    "subscription_id",
    "resource_group",
    "resource_type",
    "resource_name",
    "resource_id",
    "check_id",
    "practice",
    "title",
    "severity",
    "status",
    "detail",
    "principal_id",
    "principal_type",
    "role_name",
    "role_scope",
    "remediation",
    "docs_url",
    "audited_at",
    # Second release: appended, so the first release's columns keep their positions.
    "finding_id",
    "change",
    "principal_name",
    "principal_upn",
    "exception_reason",
    "exception_owner",
    "exception_expires",
)

# A cell starting with one of these is run as a formula by Excel, LibreOffice or Google Sheets.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_cell(value: str) -> str:
    """Prefix a formula-like cell with a single quote so spreadsheets show it as text."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


def resource_type_of(resource_id: str) -> str:
    """The ARM resource type named by an ID, e.g. `Microsoft.VirtualMachineImages/imageTemplates`.

    The last `/providers/` segment wins, so extension resources (a lock on a gallery) give their own type;
    nested types join their segments (`Microsoft.Compute/galleries/images`).
    """
    parts = [p for p in (resource_id or "").strip().split("/") if p]
    low = [p.lower() for p in parts]
    if "providers" in low:
        at = len(low) - 1 - low[::-1].index("providers")
        if at + 1 >= len(parts):
            return ""
        return "/".join([parts[at + 1], *parts[at + 2 :: 2]])
    if len(parts) >= 4 and low[0] == "subscriptions" and low[2] == "resourcegroups":
        return "Microsoft.Resources/resourceGroups"
    if len(parts) >= 2 and low[0] == "subscriptions":
        return "Microsoft.Resources/subscriptions"
    return ""


def remediation_text(meta: CheckMeta | None) -> str:
    """What to do, then the example that fixes it: the `az` line, or the Bicep where there is no CLI line."""
    if meta is None:
        return ""
    example = meta.remediation_cli or (f"Bicep: {meta.remediation_bicep}" if meta.remediation_bicep else "")
    return f"{meta.remediation} {example}".strip()


def finding_row(f: Finding, meta: CheckMeta | None, audited_at: str) -> dict[str, str]:
    return dict(zip(COLUMNS, finding_cells(f, meta, audited_at), strict=True))


def finding_cells(f: Finding, meta: CheckMeta | None, audited_at: str) -> list[str]:
    """One row's cells in COLUMNS order, formula-escaped (Records builds the CSV's lines from these, once per
    resource and check)."""
    rid = f.resource_id
    where = _escaped(
        ids.subscription_of(rid) or "",
        ids.resource_group_of(rid) or "",
        resource_type_of(rid),
        ids.name_of(rid) if rid else "",
        rid,
    )
    about = _escaped(
        meta.practice if meta else "",
        meta.title if meta else "",
        str(meta.severity) if meta else "",
        remediation_text(meta),
        meta.docs_url if meta else "",
        audited_at,
    )
    return [
        *where,
        escape_cell(f.check_id),
        *about[:3],
        *_escaped(str(f.status), f.detail, f.principal_id, f.principal_type, f.role_name, f.role_scope),
        *about[3:],
        *_escaped(*f.second_release_fields().values()),
    ]


def _escaped(*values: object) -> tuple[str, ...]:
    return tuple(escape_cell(str(v)) for v in values)


def write_csv(result: AuditResult, run: RunInfo, out: TextIO, spool: CsvSpool | None = None) -> None:
    """The CSV, one row at a time to `out` (opened with newline="": the rows end in CRLF as RFC 4180 says).
    `spool`: the records of rows already rendered while ARM was read, copied instead of rendered again."""
    records = Records(catalog_metas(), iso(run.finished_at))
    out.write(csv_line(COLUMNS))
    # With --baseline, findings fixed by going away get a row too (change "fixed"), after this run's rows.
    rows = all_findings(result) + fixed_gone(result)
    if spool is not None and spool.write(rows, records, out):
        return
    for start in range(0, len(rows), WRITE_BATCH):  # one write per batch: a write per row cost 0.8 s in 200,000
        out.write("".join(map(records.line, rows[start : start + WRITE_BATCH])))


WRITE_BATCH = 500  # rows per write (about 600 KiB with the remediation text)


class _QuotedCells(dict[str, str]):
    """value -> its CSV cell (formula-escaped, quoted), worked out on first use."""

    def __missing__(self, value: str) -> str:
        quoted = self[value] = _quoted(escape_cell(value))
        return quoted


class Records:
    """CSV records of findings: `line(f)` is `csv_line(finding_cells(f, ...))`, byte for byte, built from quoted
    pieces worked out once. A template's rows repeat its resource cells, a check's rows its remediation text, and
    most other cells take few values; quoting them again on each of 200,000 rows was most of the report's time.
    The detail, nearly unique per row, is quoted as it comes (no cache grows with it); the finding ID is 16 hex
    digits, which need neither a formula guard nor quote doubling."""

    def __init__(self, metas: dict[str, CheckMeta], audited_at: str) -> None:
        self.metas = metas
        self.audited_at = audited_at
        self._resources: dict[str, str] = {}  # resource ID -> its five quoted cells, joined
        self._checks: dict[str, tuple[str, str]] = {}  # check ID -> the quoted cells before and after the finding's
        self._cells = _QuotedCells()  # a low-cardinality value -> its quoted cell

    def share(self, other: Records) -> None:
        """Use `other`'s quoted resource and value cells (they do not depend on audited_at): the few rows left to
        render after a spool need not quote their templates' cells again (0.3 s at 3,000 templates)."""
        self._resources, self._cells = other._resources, other._cells

    def line(self, f: Finding) -> str:
        head, tail = self.pieces(f)
        return head + tail

    def pieces(self, f: Finding) -> tuple[str, str]:
        """The record in two: up to and including the audited_at cell, and the rest (the spool needs the cut)."""
        rid, cid = f.resource_id, f.check_id
        where = self._resources.get(rid)
        if where is None:
            cells = finding_cells(Finding(Status.PASS, "", resource_id=rid), None, "")[:5]
            where = self._resources[rid] = ",".join(map(_quoted, cells))
        about = self._checks.get(cid)
        if about is None:
            cells = finding_cells(Finding(Status.PASS, "", check_id=cid), self.metas.get(cid), self.audited_at)
            about = self._checks[cid] = (",".join(map(_quoted, cells[5:9])), ",".join(map(_quoted, cells[15:18])))
        c = self._cells
        return (
            f"{where},{about[0]},{c[f.status]},{_quoted(escape_cell(f.detail))},{c[f.principal_id]},"
            f"{c[f.principal_type]},{c[f.role_name]},{c[f.role_scope]},{about[1]}",
            f',"{f.finding_id}",{c[f.change]},{c[f.principal_name]},{c[f.principal_upn]},{c[f.exception_reason]},'
            f"{c[f.exception_owner]},{c[f.exception_expires]}\r\n",
        )


def _quoted(cell: str) -> str:
    return '"' + cell.replace('"', '""') + '"'


def csv_line(cells: Iterable[str]) -> str:
    """One CSV record exactly as `csv.writer(quoting=csv.QUOTE_ALL)` writes it: every cell quoted (OWASP: an
    importer that splits on `;` or tab must not see `ok;=1+1` as a formula cell), quotes doubled, CRLF line end
    (RFC 4180). The csv module copies each character of each cell on its own: with a check's remediation text on
    every row, it took 37 us a row (2.4 s of 3.4 at 1,000 templates)."""
    return ",".join(map(_quoted, cells)) + "\r\n"
