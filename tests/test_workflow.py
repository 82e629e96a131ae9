"""The severity gate (--fail-on), several reports from one collection (--report FORMAT=PATH), and the demo's
exceptions and changed estate."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditResult, run_audit, select_checks
from auditor.inventory import build_inventory
from auditor.reports import FORMATS
from auditor.snapshot import Snapshot
from auditor.workflow import Workflow, apply
from checks.registry import catalog
from fixtures import builders as b
from fixtures import demo
from tests.workflow_helpers import LOCKS, SUB, assert_one_line_error, csv_rows, estate, rg, run, write

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------- --fail-on


@pytest.mark.parametrize(
    ("level", "code"), [("info", 1), ("low", 1), ("medium", 1), ("high", 0), ("critical", 0)]
)
def test_fail_on_sets_which_fails_make_exit_1(level: str, code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """AIB-LOCK-001 is medium: it fails the job at medium and below, not at high (nor critical: no check is)."""
    snap = write(tmp_path / "s.json", estate({"a": None}))
    got, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--fail-on", level, "-f", "json")
    doc = json.loads(out)
    assert (got, err) == (code, "") and doc["run"]["exit_code"] == code and doc["run"]["fail_on"] == level
    assert doc["summary"]["FAIL"] == 1  # the gate decides the exit code, never what is reported


def test_fail_on_low_catches_a_low_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path / "s.json", estate({"a": "ReadOnly"}))  # ReadOnly: AIB-LOCK-002 (low) fails, LOCK-001 too
    code, _, _ = run(capsys, "--snapshot", str(snap), "--check", "AIB-LOCK-002", "--fail-on", "low")
    assert code == 1
    code, out, _ = run(capsys, "--snapshot", str(snap), "--check", "AIB-LOCK-002", "--fail-on", "medium")
    assert code == 0 and "Exit code 0" in out and "(gate: --fail-on medium)" in out


def test_an_incomplete_audit_exits_3_whatever_the_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    denied = {"kind": "locks", "scope": b.rg_id(SUB, rg("b")), "status": 403, "code": "AuthorizationFailed", "message": "no"}
    snap = write(tmp_path / "s.json", estate({"a": None, "b": None}, errors=[denied]))
    for gate in (["--fail-on", "critical"], ["--fail-on", "high"], ["--fail-on", "info"]):
        code, _, _ = run(capsys, "--snapshot", str(snap), *LOCKS, *gate)
        assert code == 3, gate


def test_a_bad_fail_on_level_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--subscription", SUB, "--fail-on", "severe")
    assert_one_line_error(code, out, err, "'severe' is not one of")


# --------------------------------------------------------------------------------------------- --report


def test_several_reports_from_one_run_carry_the_same_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path / "s.json", estate({"a": None, "b": "CanNotDelete"}))
    paths = {fmt: tmp_path / f"r.{fmt}" for fmt in ("csv", "json", "table")}
    args = [a for fmt, p in paths.items() for a in ("--report", f"{fmt}={p}")]
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, *args)
    assert (code, err) == (1, "")
    assert out == paths["table"].read_text(encoding="utf-8")  # the terminal table still goes to stdout
    rows = csv_rows(paths["csv"].read_text(encoding="utf-8"))
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    from_csv = sorted((r["finding_id"], r["status"], r["detail"]) for r in rows)
    from_json = sorted((f["finding_id"], f["status"], f["detail"]) for f in doc["findings"])
    assert from_csv == from_json and len(from_csv) == 4
    assert doc["run"]["exit_code"] == 1


def test_report_next_to_format_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path / "s.json", estate({"a": None}))
    out_csv, rep_json = tmp_path / "main.csv", tmp_path / "extra.json"
    code, out, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "-f", "csv", "-o", str(out_csv), "--report", f"JSON={rep_json}")
    assert code == 1 and out == ""  # --output said where the one report goes: nothing on stdout
    assert len(csv_rows(out_csv.read_text(encoding="utf-8"))) == 2 and len(json.loads(rep_json.read_text())["findings"]) == 2


def test_the_nightly_job_may_overwrite_its_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--baseline aib.json --report json=aib.json`: the baseline is read before collecting, then replaced."""
    report = tmp_path / "aib.json"
    first = write(tmp_path / "first.json", estate({"a": None}))
    assert run(capsys, "--snapshot", str(first), *LOCKS, "--report", f"json={report}")[0] == 1
    second = write(tmp_path / "second.json", estate({"a": None, "b": None}))
    code, _, _ = run(capsys, "--snapshot", str(second), *LOCKS, "--baseline", str(report), "--report", f"json={report}")
    doc = json.loads(report.read_text(encoding="utf-8"))
    assert code == 1 and doc["run"]["baseline"] == str(report) and doc["summary"]["new"] == 1


BAD_REPORTS = {
    "no equals sign": (lambda t: ["--report", "csv"], "expected FORMAT=PATH"),
    "no path": (lambda t: ["--report", "csv="], "expected FORMAT=PATH"),
    "no format": (lambda t: ["--report", f"={t / 'x'}"], "expected FORMAT=PATH"),
    "unknown format": (lambda t: ["--report", f"xlsx={t / 'x.xlsx'}"], "unknown format 'xlsx'"),
    "missing directory": (lambda t: ["--report", f"csv={t / 'no' / 'x.csv'}"], "does not exist"),
    "a directory": (lambda t: ["--report", f"csv={t}"], "is a directory"),
    "same path twice": (lambda t: ["--report", f"csv={t / 'x'}", "--report", f"json={t / 'x'}"], "already writes"),
    "same as --output": (lambda t: ["--output", str(t / "x"), "--report", f"json={t / 'x'}"], "--output already writes"),
    "over the exceptions": (
        lambda t: ["--exceptions", str(_exceptions(t)), "--report", f"json={t / 'exc.toml'}"],
        "would overwrite the --exceptions file it reads",
    ),
}


def _exceptions(tmp_path: Path) -> Path:
    p = tmp_path / "exc.toml"
    p.write_text("", encoding="utf-8")
    return p


def test_a_report_never_overwrites_the_snapshot_it_audits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path / "s.json", estate({"a": None}))
    before = snap.read_text(encoding="utf-8")
    code, out, err = run(capsys, "--snapshot", str(snap), "--report", f"json={tmp_path / '.' / 's.json'}")
    assert_one_line_error(code, out, err, "would overwrite the --snapshot file")
    assert snap.read_text(encoding="utf-8") == before


@pytest.mark.parametrize("case", list(BAD_REPORTS))
def test_a_bad_report_is_exit_2_before_collecting(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, fragment = BAD_REPORTS[case]
    code, out, err = run(capsys, "--subscription", SUB, *make(tmp_path))  # the network is blocked: no collection
    assert_one_line_error(code, out, err, fragment)


def test_fail_on_levels_are_the_same_in_the_cli_and_the_gate() -> None:
    from auditor.cli import FailOn
    from auditor.reports import FAIL_ON_LEVELS

    assert tuple(level.value for level in FailOn) == FAIL_ON_LEVELS


def test_every_registered_format_is_accepted_by_report() -> None:
    from auditor.workflow import parse_report

    for fmt in FORMATS:
        assert parse_report(f"{fmt}=out.{fmt}").fmt == fmt


def test_workflow_options_cannot_ride_along_with_a_subcommand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--fail-on", "high"], ["--fail-on-new"], ["--report", f"csv={tmp_path / 'x'}"]):
        code, out, err = run(capsys, *extra, "checks")
        assert_one_line_error(code, out, err, "cannot be combined")


# --------------------------------------------------------------------------------------------- the demo


def test_committed_demo_changed_json_is_what_fixtures_demo_builds() -> None:
    assert demo.CHANGED_PATH.read_text(encoding="utf-8") == demo.render(demo.build_changed()), "run: python -m fixtures.demo"


def _demo_audit(doc: dict[str, Any], flow: Workflow) -> AuditResult:
    snap = Snapshot.from_dict(doc)
    result = run_audit(build_inventory(snap), select_checks())
    apply(flow, result, [s.lower() for s in snap.subscriptions], date(2026, 11, 30))
    return result


def test_the_demo_exceptions_accept_one_fail_and_show_one_expired() -> None:
    from auditor.exceptions import load_exceptions

    exc = load_exceptions(ROOT / "fixtures" / "demo-exceptions.toml", catalog())
    result = _demo_audit(demo.build(), Workflow(exceptions=exc))
    accepted = [f for f in result.findings if f.status.value == "ACCEPTED"]
    assert [(f.check_id, f.resource_id.rsplit("/", 1)[1]) for f in accepted] == [("AIB-GAL-004", "galcontosocommunity")]
    expired = [f for f in result.findings if "exception for this finding expired on 2024-06-30" in f.detail]
    assert [(f.status.value, f.check_id, f.template_id.rsplit("/", 1)[1]) for f in expired] == [
        ("FAIL", "AIB-LOCK-001", "rhel9-managed-weu")
    ]
    assert result.notes == []  # neither is stale


def test_the_changed_demo_shows_new_and_fixed_findings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = write(tmp_path / "demo.json", demo.build())
    base = tmp_path / "base.json"
    exc = ROOT / "fixtures" / "demo-exceptions.toml"
    code, _, _ = run(capsys, "--snapshot", str(before), "--exceptions", str(exc), "--report", f"json={base}")
    assert code == 1
    code, out, err = run(
        capsys, "--snapshot", str(demo.CHANGED_PATH), "--exceptions", str(exc), "--baseline", str(base), "-f", "json"
    )
    doc = json.loads(out)
    assert code == 1 and err == ""
    new = [(f["check_id"], f["template_id"].rsplit("/", 1)[1]) for f in doc["findings"] if f["change"] == "new"]
    assert new == [("AIB-LP-001", "ubuntu2404-gpu-neu")]
    fixed = sorted((f["check_id"], f["status"], f["principal_id"]) for f in doc["fixed"])
    assert fixed == [("AIB-LP-007", "PASS", demo.ALICE), ("AIB-OPS-001", "PASS", "")]
    assert doc["summary"]["new"] == 1 and doc["summary"]["fixed"] == 2 and doc["summary"]["ACCEPTED"] == 1
