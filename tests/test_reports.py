"""The reports: CSV columns and escaping, JSON shape, the terminal table, determinism, exit-code rules."""

from __future__ import annotations

import csv
import io
import json
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from auditor.audit import AuditResult, run_audit, select_checks
from auditor.findings import Finding, Status, failed
from auditor.inventory import build_inventory
from auditor.reports import RunInfo, exit_code_for, grid, iso, render, write_report
from auditor.reports.csv_report import COLUMNS, csv_line, escape_cell, resource_type_of
from auditor.reports.json_report import report_dict
from auditor.snapshot import Snapshot
from checks.registry import catalog
from fixtures import builders as b

SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"
LOCK_CHECKS = ["AIB-LOCK-001", "AIB-LOCK-002"]
STARTED = datetime(2026, 11, 2, 8, 0, 0, tzinfo=UTC)
FINISHED = datetime(2026, 11, 2, 8, 0, 7, tzinfo=UTC)


def estate(locked: bool = True, errors: list[dict[str, Any]] | None = None, shuffle: int | None = None) -> Snapshot:
    """Two templates: `tpl-linux` in `RG-Images` (locked when `locked`), `tpl-win` in `rg-win` (never locked)."""
    linux = b.template(SUB, "RG-Images", "tpl-linux", location="westeurope")
    win = b.template(SUB, "rg-win", "tpl-win", location="northeurope")
    locks = [b.lock(linux["id"], "protect")] if locked else []
    templates = [linux, win]
    if shuffle is not None:
        random.Random(shuffle).shuffle(templates)
    doc = b.snapshot(
        [SUB],
        {
            "imageTemplates": templates,
            "locks": locks,
            "resourceGroups": [b.resource_group(SUB, "RG-Images"), b.resource_group(SUB, "rg-win")],
        },
        errors=errors,
    )
    return Snapshot.from_dict(doc)


def audit(snap: Snapshot, checks: list[str] | None = None) -> AuditResult:
    return run_audit(build_inventory(snap), select_checks(checks or LOCK_CHECKS))


def run_info(result: AuditResult, finished: datetime = FINISHED) -> RunInfo:
    return RunInfo(
        source="snapshot",
        subscriptions=[SUB],
        arm_endpoint="https://management.azure.com",
        started_at=STARTED,
        finished_at=finished,
        exit_code=exit_code_for(result),
        arm_calls=17,
        throttled=2,
        collected_at="2026-11-01T00:00:00Z",
    )


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def add_findings(result: AuditResult, *extra: Finding) -> AuditResult:
    """Findings as a check would return them, completed the way run_audit completes them."""
    tid = result.templates[0].template.id
    for f in extra:
        f.template_id = tid
        f.resource_id = f.resource_id or tid
    result.findings = sorted(result.findings + list(extra), key=Finding.sort_key)
    return result


# --------------------------------------------------------------------------------------------- CSV


def test_csv_header_is_exactly_the_contract() -> None:
    text = render("csv", audit(estate()), run_info(audit(estate())))
    header = next(csv.reader(io.StringIO(text, newline="")))
    expected = (
        "subscription_id,resource_group,resource_type,resource_name,resource_id,check_id,practice,title,"
        "severity,status,detail,principal_id,principal_type,role_name,role_scope,remediation,docs_url,audited_at,"
        "finding_id,change,principal_name,principal_upn,exception_reason,exception_owner,exception_expires"
    )
    assert header == expected.split(",")  # noqa: SIM905 - the contract reads best as the one line design.md has
    assert list(COLUMNS) == header
    # Every cell is quoted (OWASP): importers that split on ';' or tab never see a bare formula.
    assert text.startswith('"subscription_id","resource_group",')


def test_csv_quotes_cells_that_hide_a_formula_behind_a_separator() -> None:
    from auditor.findings import Finding, Status
    from auditor.reports.csv_report import finding_row

    row = finding_row(Finding(Status.FAIL, "ok;=1+1", check_id="AIB-LOCK-001"), None, "t")
    assert row["detail"] == "ok;=1+1"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["detail"], quoting=csv.QUOTE_ALL)
    w.writerow({"detail": row["detail"]})
    assert buf.getvalue() == '"ok;=1+1"\r\n'
    text = render("csv", audit(estate()), run_info(audit(estate())))
    for line in text.split("\r\n")[1:]:
        if line:
            assert line.startswith('"') and line.endswith('"')


def test_csv_rows_carry_resource_fields_and_check_metadata() -> None:
    result = audit(estate(locked=False))
    rows = csv_rows(render("csv", result, run_info(result)))
    assert len(rows) == 4  # 2 templates x 2 checks, one finding each
    row = next(r for r in rows if r["check_id"] == "AIB-LOCK-001" and r["resource_name"] == "tpl-linux")
    meta = catalog()["AIB-LOCK-001"].meta
    assert row["subscription_id"] == SUB
    assert row["resource_group"] == "RG-Images"  # original spelling kept for display
    assert row["resource_type"] == "Microsoft.VirtualMachineImages/imageTemplates"
    assert row["resource_id"] == b.template_id(SUB, "RG-Images", "tpl-linux")
    assert row["status"] == "FAIL"
    assert row["detail"] == "no CanNotDelete lock on the template, its resource group or its subscription"
    assert (row["practice"], row["title"], row["severity"]) == (meta.practice, meta.title, "medium")
    assert row["remediation"] == f"{meta.remediation} {meta.remediation_cli}"
    assert row["docs_url"] == meta.docs_url
    assert {r["audited_at"] for r in rows} == {"2026-11-02T08:00:07Z"}


def test_csv_escapes_formula_like_cells() -> None:
    result = add_findings(
        audit(estate()),
        failed('=HYPERLINK("https://evil.example","click")', principal_id="p1"),
        failed("-2+3 principals can delete the template", principal_id="p2"),
        failed("@SUM(A1:A9)", principal_id="p3"),
        failed("+1 more", principal_id="p4", role_name="=cmd|' /C calc'!A0"),
        failed("\tTAB first", principal_id="p5"),
        failed("a - b = c is fine in the middle", principal_id="p6"),
    )
    rows = {r["principal_id"]: r for r in csv_rows(render("csv", result, run_info(result))) if r["principal_id"]}
    assert rows["p1"]["detail"] == '\'=HYPERLINK("https://evil.example","click")'
    assert rows["p2"]["detail"] == "'-2+3 principals can delete the template"
    assert rows["p3"]["detail"] == "'@SUM(A1:A9)"
    assert rows["p4"]["detail"] == "'+1 more"
    assert rows["p4"]["role_name"] == "'=cmd|' /C calc'!A0"
    assert rows["p5"]["detail"] == "'\tTAB first"
    assert rows["p6"]["detail"] == "a - b = c is fine in the middle"


@pytest.mark.parametrize(
    ("cell", "expected"),
    [("=1", "'=1"), ("+1", "'+1"), ("-1", "'-1"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("x=1", "x=1"), ("", "")],
)
def test_escape_cell(cell: str, expected: str) -> None:
    assert escape_cell(cell) == expected


def test_csv_has_one_row_per_principal() -> None:
    rg_scope = b.rg_id(SUB, "RG-Images")
    result = add_findings(
        audit(estate(), ["AIB-LOCK-001"]),
        *(
            failed(
                f"{ptype} {pid} can run the template",
                principal_id=pid,
                principal_type=ptype,
                role_name=role,
                role_scope=scope,
            )
            for pid, ptype, role, scope in (
                ("11111111-0000-0000-0000-000000000001", "User", "Contributor", b.sub_id(SUB)),
                ("11111111-0000-0000-0000-000000000002", "Group", "Owner", rg_scope),
                ("11111111-0000-0000-0000-000000000003", "Unknown", "Image Builder Operator", rg_scope),
            )
        ),
    )
    rows = [r for r in csv_rows(render("csv", result, run_info(result))) if r["principal_id"]]
    assert [(r["principal_id"][-1], r["principal_type"], r["role_name"], r["role_scope"]) for r in rows] == [
        ("1", "User", "Contributor", f"/subscriptions/{SUB}"),
        ("2", "Group", "Owner", rg_scope),
        ("3", "Unknown", "Image Builder Operator", rg_scope),
    ]
    assert all(r["status"] == "FAIL" and r["resource_name"] == "tpl-linux" for r in rows)


def test_reports_are_deterministic_apart_from_timestamps() -> None:
    first = audit(estate(locked=False, shuffle=1))
    second = audit(estate(locked=False, shuffle=7))
    csv_a = render("csv", first, run_info(first))
    csv_b = render("csv", second, run_info(second, finished=datetime(2027, 1, 1, tzinfo=UTC)))
    assert csv_a != csv_b  # audited_at differs ...
    at = COLUMNS.index("audited_at")
    strip = lambda text: [r[:at] + r[at + 1 :] for r in csv.reader(io.StringIO(text, newline=""))]  # noqa: E731
    assert strip(csv_a) == strip(csv_b)  # ... and nothing else
    json_a, json_b = report_dict(first, run_info(first)), report_dict(second, run_info(second))
    assert json.dumps(json_a) == json.dumps(json_b)


@pytest.mark.parametrize(
    ("resource_id", "expected"),
    [
        (b.template_id(SUB, "rg", "t"), "Microsoft.VirtualMachineImages/imageTemplates"),
        (b.gallery_id(SUB, "rg", "g") + "/images/i", "Microsoft.Compute/galleries/images"),
        (b.gallery_id(SUB, "rg", "g") + "/providers/Microsoft.Authorization/locks/l", "Microsoft.Authorization/locks"),
        (f"/subscriptions/{SUB}/resourcegroups/rg", "Microsoft.Resources/resourceGroups"),
        (f"/subscriptions/{SUB}", "Microsoft.Resources/subscriptions"),
        ("/providers/Microsoft.Management/managementGroups/mg1", "Microsoft.Management/managementGroups"),
        ("/", ""),
    ],
)
def test_resource_type_of(resource_id: str, expected: str) -> None:
    assert resource_type_of(resource_id) == expected


def test_remediation_carries_the_cli_line_or_else_the_bicep() -> None:
    """Every check's remediation in the CSV/JSON shows a concrete fix (design.md: a CLI or Bicep line)."""
    from auditor.reports.csv_report import remediation_text

    for chk in catalog().values():
        meta, text = chk.meta, remediation_text(chk.meta)
        assert text.startswith(meta.remediation)
        if meta.remediation_cli:
            assert text.endswith(meta.remediation_cli)
        else:
            assert meta.remediation_bicep and text.endswith(f"Bicep: {meta.remediation_bicep}"), meta.id


# --------------------------------------------------------------------------------------------- JSON


def test_json_written_row_by_row_is_exactly_the_whole_document() -> None:
    """write_json streams one finding at a time; the text is byte for byte json.dumps of the whole report, with
    evidence, notes, failed reads and fixed findings (and empty lists) laid out the same way."""
    err = {"kind": "locks", "scope": b.rg_id(SUB, "rg-win"), "status": 403, "code": "AuthorizationFailed", "message": "dé\nnied"}
    result = audit(estate(locked=False, errors=[err]))
    result.notes.append("a note \u202e with\ttabs")
    result.fixed = [failed("gone now", check_id="AIB-LOCK-001", resource_id=b.template_id(SUB, "rg", "old"), change="fixed")]
    for res in (result, audit(Snapshot.from_dict(b.snapshot([SUB], {})))):
        run = run_info(res)
        whole = json.dumps(report_dict(res, run), indent=2, ensure_ascii=False) + "\n"
        out = io.StringIO()
        write_report("json", res, run, out)
        assert out.getvalue() == whole
        assert render("json", res, run) == whole


def test_json_has_schema_run_metadata_scores_and_findings() -> None:
    result = audit(estate(locked=False))
    doc = json.loads(render("json", result, run_info(result)))
    assert doc["schema_version"] == "1"
    assert doc["tool"]["name"] == "aib-audit" and doc["tool"]["version"]
    assert doc["run"] == {
        "source": "snapshot",
        "subscriptions": [SUB],
        "arm_endpoint": "https://management.azure.com",
        "collected_at": "2026-11-01T00:00:00Z",
        "started_at": "2026-11-02T08:00:00Z",
        "finished_at": "2026-11-02T08:00:07Z",
        "arm_calls": 17,
        "throttled": 2,
        "checks": LOCK_CHECKS,
        "failed_reads": [],
        "collection_notes": [],
        "scope": None,  # only a discovered scope (--management-group, --all-subscriptions) says how it was found
        "exit_code": 1,
        "fail_on": "info",
        "fail_on_new": False,
        "exceptions": "",
        "baseline": "",
        "notes": [],
    }
    assert doc["summary"] == {"FAIL": 2, "ERROR": 0, "ACCEPTED": 0, "PASS": 2, "N/A": 0, "new": 0, "regressed": 0, "fixed": 0}
    assert doc["fixed"] == []
    linux = next(t for t in doc["templates"] if t["name"] == "tpl-linux")
    # LOCK-001 (medium, 3) fails, LOCK-002 (low, 1) passes: 1/4 of the weight; no least-privilege check ran.
    assert linux["scores"] == {"resilience": 25, "least_privilege": None}
    assert linux["failed_checks"] == ["AIB-LOCK-001"] and linux["error_checks"] == []
    assert linux["checks"] == {"AIB-LOCK-001": "FAIL", "AIB-LOCK-002": "PASS"}
    assert (linux["resource_group"], linux["location"], linux["subscription_id"]) == ("RG-Images", "westeurope", SUB)
    finding = doc["findings"][0]
    assert set(finding) == {
        "check_id", "status", "severity", "practice", "title", "resource_id", "template_id", "detail",
        "principal_id", "principal_type", "role_name", "role_scope", "evidence", "remediation", "docs_url",
        "finding_id", "change", "principal_name", "principal_upn", "exception_reason", "exception_owner",
        "exception_expires",
    }  # fmt: skip
    assert len(finding["finding_id"]) == 16 and finding["change"] == "" and finding["exception_reason"] == ""


def test_json_lists_failed_reads_and_error_templates() -> None:
    err = {
        "kind": "locks",
        "scope": f"/subscriptions/{SUB}",
        "status": 403,
        "code": "AuthorizationFailed",
        "message": "no",
        "permission": "Microsoft.Authorization/locks/read",
    }
    result = audit(estate(errors=[err]))
    doc = json.loads(render("json", result, run_info(result)))
    assert doc["run"]["exit_code"] == 3
    assert doc["run"]["failed_reads"] == [
        {
            "code": "AuthorizationFailed",
            "kind": "locks",
            "message": "no",
            "permission": "Microsoft.Authorization/locks/read",
            "scope": f"/subscriptions/{SUB}",
            "status": 403,
        }
    ]
    assert doc["summary"]["ERROR"] == 4 and doc["summary"]["PASS"] == 0
    assert all(t["error_checks"] == LOCK_CHECKS and t["scores"]["resilience"] == 0 for t in doc["templates"])


def test_json_keeps_the_collectors_notes() -> None:
    """An error answer taken as "none can exist" (no PIM without Entra ID P2) stays visible to the reviewer."""
    result = audit(estate())
    note = "roleEligibilityScheduleInstances at /subscriptions/x: none can exist (AadPremiumLicenseRequired: ...)"
    result.inventory.meta["notes"] = [note]
    doc = json.loads(render("json", result, run_info(result)))
    assert doc["run"]["collection_notes"] == [note]


# --------------------------------------------------------------------------------------------- table


def test_table_summarises_templates_and_shows_only_actionable_findings() -> None:
    err = {"kind": "locks", "scope": b.rg_id(SUB, "rg-win"), "status": 403, "code": "AuthorizationFailed", "message": "denied"}
    result = audit(estate(locked=False, errors=[err]))
    text = render("table", result, run_info(result), color=False, width=120)
    assert "\x1b[" not in text  # no colour outside a terminal
    assert max(len(line) for line in text.splitlines()) <= 120
    first, second = text.splitlines()[:2]
    assert first == "aib-audit: 2 templates audited in 1 subscription | 1 FAIL | 2 ERROR | 1 PASS | 0 N/A"
    assert second == f"subscriptions: {SUB}"
    linux_line = next(line for line in text.splitlines() if line.startswith("tpl-linux"))
    assert "RG-Images" in linux_line and "westeurope" in linux_line and "AIB-LOCK-001" in linux_line and " 25 " in linux_line
    win_line = next(line for line in text.splitlines() if line.startswith("tpl-win"))
    assert "AIB-LOCK-001 (ERROR)" in win_line and "AIB-LOCK-002 (ERROR)" in win_line
    assert "no CanNotDelete lock on the template" in text  # the FAIL is listed
    assert "could not read locks" in text  # so are the ERRORs and the failed read
    assert "no ReadOnly lock applies" not in text  # PASS findings are not
    assert "Exit code 3: audit incomplete" in text
    assert "1 PASS / 0 N/A findings not shown (--all-rows lists them); every row: --format csv" in text
    # One line per check with its counts per status, over every row (the PASS ones included).
    lock1 = next(line for line in text.splitlines() if line.startswith("AIB-LOCK-001 "))
    lock2 = next(line for line in text.splitlines() if line.startswith("AIB-LOCK-002 "))
    assert "CanNotDelete lock" in lock1 and lock1.split()[-4:] == ["1", "1", "0", "0"]  # FAIL ERROR PASS N/A
    assert lock2.split()[-4:] == ["0", "1", "1", "0"]


def test_table_lists_every_row_with_all_rows() -> None:
    result = audit(estate(locked=False))
    text = render("table", result, run_info(result), all_rows=True)
    assert "no ReadOnly lock applies" in text and "no CanNotDelete lock on the template" in text
    assert "findings not shown" not in text


def test_table_renders_thousands_of_rows_each_on_its_own_lines() -> None:
    """The long parts are plain lines (reports/grid.py), not rich tables: 20,000 FAIL rows, every one listed and
    none wider than the screen, wrapped at spaces."""
    base = audit(estate(), ["AIB-LOCK-001"])
    detail = "no CanNotDelete lock on the template " + "and a long explanation " * 8
    rows = [failed(f"{detail}#{i}", principal_id=f"p-{i}", principal_type="User") for i in range(20000)]
    result = add_findings(base, *rows)
    text = render("table", result, run_info(result), width=100)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert all(f"#{i}" in text for i in (0, 9999, 19999))
    assert text.count("User p-") == 20000


@pytest.mark.parametrize(
    ("text", "width", "lines"),
    [
        ("short", 10, ["short"]),
        ("one two three four", 9, ["one two", "three", "four"]),
        ("abcdefghijkl xy", 5, ["abcde", "fghij", "kl xy"]),
        ("a  b", 3, ["a ", "b"]),
    ],
)
def test_grid_wrap_breaks_at_spaces_and_cuts_long_words(text: str, width: int, lines: list[str]) -> None:
    assert grid.wrap(text, width) == lines


def test_table_names_principal_and_role_unless_the_detail_does() -> None:
    pid, named = "11111111-0000-0000-0000-00000000000a", "11111111-0000-0000-0000-00000000000b"
    result = add_findings(
        audit(estate(), ["AIB-LOCK-001"]),
        failed(
            "can run the template",
            principal_id=pid,
            principal_type="User",
            role_name="Contributor",
            role_scope=f"/subscriptions/{SUB}",
        ),
        failed(
            f"Group {named} can run the template through Owner",
            principal_id=named,
            principal_type="Group",
            role_name="Owner",
            role_scope=b.rg_id(SUB, "RG-Images"),
        ),
    )
    lines = render("table", result, run_info(result)).splitlines()
    at = next(i for i, line in enumerate(lines) if line.rstrip().endswith("can run the template"))
    assert lines[at + 1].strip() == f"User {pid}; Contributor at its subscription"
    text = "\n".join(lines)
    assert text.count(named) == 1 and "Owner at resource group" not in text  # the detail said it already


def test_table_prints_arm_names_literally_and_colours_only_when_asked() -> None:
    snap = Snapshot.from_dict(b.snapshot([SUB], {"imageTemplates": [b.template(SUB, "rg", "[bold]tpl[/bold]")]}))
    result = audit(snap)
    plain = render("table", result, run_info(result), color=False)
    assert "[bold]tpl[/bold]" in plain
    assert "\x1b[" in render("table", result, run_info(result), color=True)


def test_table_says_when_there_are_no_templates() -> None:
    result = audit(Snapshot.from_dict(b.snapshot([SUB], {})))
    text = render("table", result, run_info(result))
    assert "No image templates found." in text and "Exit code 0: audit complete, nothing failed." in text


# --------------------------------------------------------------------------------------------- exit codes


def test_exit_code_incomplete_wins_over_failed() -> None:
    err = {"kind": "locks", "scope": b.rg_id(SUB, "rg-win"), "status": 500, "code": "InternalServerError", "message": "x"}
    mixed = audit(estate(locked=False, errors=[err]))
    assert mixed.count(Status.FAIL) and mixed.count(Status.ERROR)
    assert exit_code_for(mixed) == 3
    assert exit_code_for(audit(estate(locked=False))) == 1
    assert exit_code_for(audit(estate(locked=True), ["AIB-LOCK-001"])) == 1  # tpl-win is never locked
    assert exit_code_for(audit(estate(locked=True), ["AIB-LOCK-002"])) == 0


def test_iso_is_utc_with_z() -> None:
    assert iso(datetime(2026, 1, 2, 3, 4, 5, 999, tzinfo=UTC)) == "2026-01-02T03:04:05Z"


def test_csv_rows_with_shared_cells_equal_rows_worked_out_alone() -> None:
    """write_csv works out the resource and check cells once per report; every row must still be its own."""
    from auditor.reports import all_findings
    from auditor.reports.csv_report import finding_row
    from tests.test_e2e import DEMO_ESTATE

    result = run_audit(build_inventory(Snapshot.load(DEMO_ESTATE)), select_checks())
    out = io.StringIO(newline="")
    write_report("csv", result, run_info(result), out)
    metas = {cid: chk.meta for cid, chk in catalog().items()}
    alone = [finding_row(f, metas.get(f.check_id), iso(FINISHED)) for f in all_findings(result)]
    rows = csv_rows(out.getvalue())
    assert len({r["resource_id"] for r in rows}) > 10 and len({r["check_id"] for r in rows}) > 10
    assert rows == alone


@pytest.mark.parametrize(
    "cells",
    [
        ["plain", "", "with,comma", 'say "hi"', '""', "line\nbreak", "cr\r\nlf", "=1+1", "'quoted", "é ☃ \u2028", ";\t"],
        [],
        [""],
    ],
)
def test_csv_lines_are_what_the_csv_module_writes(cells: list[str]) -> None:
    """The report writes its records itself (the csv module was most of its time): byte for byte what
    csv.writer(quoting=QUOTE_ALL) writes, hostile cells included, and they read back the same."""
    expected = io.StringIO(newline="")
    csv.writer(expected, quoting=csv.QUOTE_ALL).writerow(cells)
    assert csv_line(cells) == expected.getvalue()
    if cells:
        assert next(csv.reader(io.StringIO(csv_line(cells), newline=""))) == cells


def test_csv_records_from_cached_pieces_are_the_bytes_of_each_row_worked_out_alone() -> None:
    """Records.line quotes a resource's, a check's and the short cells once each; every line must still be
    exactly csv_line(finding_cells(...)), hostile values (formulas, quotes, line breaks) and repeats included."""
    from auditor.reports.csv_report import Records, finding_cells

    metas = {cid: chk.meta for cid, chk in catalog().items()}
    hostile = ["", "=cmd|' /C calc'!A0", 'a "quoted" name', "line\nbreak\r\n", "-1", "+sum", "@x", "\tx", "é ☃ \u2028", ","]
    rng = random.Random(5)
    findings = []
    for i in range(400):
        pick = lambda: rng.choice(hostile)  # noqa: E731 - a short local helper
        f = Finding(
            rng.choice(list(Status)),
            pick() + str(i % 7),
            check_id=rng.choice([*metas, "AIB-NOT-A-CHECK", pick()]),
            resource_id=rng.choice([b.sub_id(b.guid("r")) + "/resourceGroups/rg/providers/X.Y/z/" + pick(), pick()]),
            principal_id=pick(),
            principal_type=pick(),
            role_name=pick(),
            role_scope=pick(),
            principal_name=pick(),
            principal_upn=pick(),
            change=pick(),
            exception_reason=pick(),
            exception_owner=pick(),
            exception_expires=pick(),
        )
        findings.append(f)
    records = Records(metas, "2026-11-30T00:00:00Z")
    for f in findings:
        assert records.line(f) == csv_line(finding_cells(f, metas.get(f.check_id), "2026-11-30T00:00:00Z"))
