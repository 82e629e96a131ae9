"""The runner: a failed read is never silently missing from the report."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from auditor.audit import run_audit, select_checks
from auditor.findings import Status
from auditor.inventory import build_inventory
from auditor.reports import RunInfo, exit_code_for, render
from auditor.snapshot import Snapshot
from fixtures import builders as b

SUB = b.guid("audit-sub")
OTHER = b.guid("audit-other-sub")
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def read_error(kind: str, scope: str) -> dict[str, object]:
    return {
        "kind": kind,
        "scope": scope,
        "status": 403,
        "code": "AuthorizationFailed",
        "message": "denied",
        "permission": "x/read",
    }


def csv_rows(snapshot: dict[str, object]) -> tuple[int, list[dict[str, str]]]:
    result = run_audit(build_inventory(Snapshot.from_dict(snapshot)), select_checks())
    run = RunInfo("snapshot", [SUB, OTHER], "https://management.azure.com", NOW, NOW, exit_code_for(result))
    return exit_code_for(result), list(csv.DictReader(io.StringIO(render("csv", result, run))))


def test_a_failed_template_list_is_a_row_not_an_empty_report() -> None:
    code, rows = csv_rows(b.snapshot([SUB], {}, [read_error("imageTemplates", b.sub_id(SUB))]))
    assert code == 3
    assert [(r["status"], r["subscription_id"], r["check_id"]) for r in rows] == [("ERROR", SUB, "")]
    assert "could not read imageTemplates" in rows[0]["detail"] and "not audited" in rows[0]["detail"]
    result = run_audit(
        build_inventory(Snapshot.from_dict(b.snapshot([SUB], {}, [read_error("imageTemplates", b.sub_id(SUB))]))), select_checks()
    )
    table = render("table", result, RunInfo("snapshot", [SUB], "", NOW, NOW, 3))
    assert "Image templates could not be listed" in table and "No image templates found" not in table


def test_a_failed_read_where_no_template_was_seen_is_a_row() -> None:
    tpl = b.template(SUB, "rg", "tpl", identity_doc=b.identity(SUB, "rg", "id"))
    snapshot = b.snapshot([SUB, OTHER], {"imageTemplates": [tpl]}, [read_error("locks", b.sub_id(OTHER))])
    code, rows = csv_rows(snapshot)
    unattributed = [r for r in rows if r["status"] == "ERROR" and not r["check_id"]]
    assert code == 3 and [r["subscription_id"] for r in unattributed] == [OTHER]
    assert "could not read locks" in unattributed[0]["detail"]


def test_a_failed_read_that_a_template_check_shows_is_not_repeated() -> None:
    tpl = b.template(SUB, "rg", "tpl", identity_doc=b.identity(SUB, "rg", "id"))
    snapshot = b.snapshot([SUB], {"imageTemplates": [tpl]}, [read_error("locks", b.sub_id(SUB))])
    result = run_audit(build_inventory(Snapshot.from_dict(snapshot)), select_checks(["AIB-LOCK-001"]))
    assert result.extra_errors == []
    assert [f.status for f in result.findings] == [Status.ERROR]


def test_narrowing_the_checks_still_shows_why_the_audit_is_incomplete() -> None:
    """--check AIB-NET-001 does not need role assignments; their failed read still gets a row, so exit 3 is explained."""
    tpl = b.template(SUB, "rg", "tpl", identity_doc=b.identity(SUB, "rg", "id"))
    snapshot = b.snapshot([SUB], {"imageTemplates": [tpl]}, [read_error("roleAssignments", b.sub_id(SUB))])
    result = run_audit(build_inventory(Snapshot.from_dict(snapshot)), select_checks(["AIB-NET-001"]))
    assert exit_code_for(result) == 3
    assert [f.status for f in result.findings] == [Status.FAIL]
    assert [(f.status, f.resource_id) for f in result.extra_errors] == [(Status.ERROR, b.sub_id(SUB))]
    # With the checks that need it, the same failed read shows on their own ERROR rows instead.
    full = run_audit(build_inventory(Snapshot.from_dict(snapshot)), select_checks(["AIB-NET-001", "AIB-LP-001"]))
    assert full.extra_errors == [] and any(f.status == Status.ERROR and f.check_id == "AIB-LP-001" for f in full.findings)


def test_a_check_that_reads_an_error_but_does_not_say_error_leaves_the_row() -> None:
    """DR-001 can PASS on a standby it sees although another subscription's template list failed: that failed
    read is still reported on a row of its own."""
    image = [("westeurope", 1, "Standard_LRS")]
    t1 = b.template(SUB, "rg", "a", location="westeurope", distribute=[b.gallery_target(SUB, "rg", "g", "img", image)])
    t2 = b.template(SUB, "rg", "b", location="northeurope", distribute=[b.gallery_target(SUB, "rg", "g", "img", image)])
    snapshot = b.snapshot([SUB, OTHER], {"imageTemplates": [t1, t2]}, [read_error("imageTemplates", b.sub_id(OTHER))])
    result = run_audit(build_inventory(Snapshot.from_dict(snapshot)), select_checks(["AIB-DR-001"]))
    assert {f.status for f in result.findings} == {Status.PASS}
    assert [f.resource_id for f in result.extra_errors] == [b.sub_id(OTHER)] and exit_code_for(result) == 3


def test_findings_are_in_sort_key_order_although_sorted_a_template_at_a_time() -> None:
    """run_audit sorts each template's rows and orders the templates (no key tuple per row for all rows at once):
    the result is the one global Finding.sort_key order, whatever order the templates and checks come in."""
    from fixtures.generate import generate

    result = run_audit(build_inventory(Snapshot.from_dict(generate(12, seed=3))), select_checks())
    assert len({f.template_id for f in result.findings}) == 12
    assert [f.sort_key() for f in result.findings] == sorted(f.sort_key() for f in result.findings)
    # Equal detail texts are one string (rows about one subscription-wide grant repeat it on every template).
    by_text: dict[str, int] = {}
    assert all(by_text.setdefault(f.detail, id(f.detail)) == id(f.detail) for f in result.findings)
