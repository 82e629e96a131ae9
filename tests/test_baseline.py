"""--baseline: every row says new, unchanged or regressed; what failed then and passes or is gone now is fixed; only
where both runs looked; never "fixed" for what this run could not see; --fail-on-new; a bad baseline is exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.baseline import Baseline, BaselineRow, apply_baseline
from auditor.findings import Finding, Status, finding_id
from fixtures import builders as b
from tests.workflow_helpers import LOCKS, SUB, SUB2, assert_one_line_error, csv_rows, estate, rg, run, tid, write


def report(tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, Any], *extra: str, name: str = "base") -> Path:
    """Audit `doc` and keep its JSON report, as the previous night's job would have."""
    snap = write(tmp_path / f"{name}-snap.json", doc)
    out = tmp_path / f"{name}.json"
    code, _, _ = run(capsys, "--snapshot", str(snap), *(extra or LOCKS), "--format", "json", "--output", str(out))
    assert code in (0, 1, 3)
    return out


THEN = {"fixed": None, "regressed": "CanNotDelete", "still": None, "deleted": None, "quiet": "CanNotDelete"}
NOW = {"fixed": "CanNotDelete", "regressed": None, "still": None, "added": None, "quiet": "CanNotDelete"}


def test_rows_are_new_unchanged_regressed_or_fixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = report(tmp_path, capsys, estate(THEN))
    snap = write(tmp_path / "now.json", estate(NOW))
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--baseline", str(base), "-f", "json")
    assert code == 1 and err == ""
    doc = json.loads(out)
    lock1 = {
        f["resource_id"].rsplit("/", 1)[1]: (f["status"], f["change"]) for f in doc["findings"] if f["check_id"] == "AIB-LOCK-001"
    }
    assert lock1 == {
        "fixed": ("PASS", "fixed"),
        "regressed": ("FAIL", "regressed"),
        "still": ("FAIL", "unchanged"),
        "added": ("FAIL", "new"),
        "quiet": ("PASS", "unchanged"),
    }
    fixed = {(f["resource_id"].rsplit("/", 1)[1], f["status"], f["change"]) for f in doc["fixed"]}
    # The deleted template's FAIL is fixed by going away: N/A, since there is nothing left to audit.
    assert fixed == {("fixed", "PASS", "fixed"), ("deleted", "N/A", "fixed")}
    assert {k: doc["summary"][k] for k in ("new", "regressed", "fixed")} == {"new": 1, "regressed": 1, "fixed": 2}
    assert doc["run"]["baseline"] == str(base)

    code, out, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "--baseline", str(base), "-f", "csv")
    rows = csv_rows(out)
    gone = [r for r in rows if r["resource_name"] == "deleted"]
    assert [(r["check_id"], r["status"], r["change"]) for r in gone] == [("AIB-LOCK-001", "N/A", "fixed")]
    assert "fixed since the baseline: FAIL then" in gone[0]["detail"]
    assert rows[-1] is gone[0] or rows[-1]["resource_name"] == "deleted"  # gone rows come after this run's rows

    code, out, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "--baseline", str(base))
    assert "since baseline: 1 new, 1 regressed, 2 fixed" in " ".join(out.split())


def test_fail_on_new_fails_only_for_new_or_regressed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = report(tmp_path, capsys, estate({"still": None, "ok": "CanNotDelete"}))
    same = write(tmp_path / "same.json", estate({"still": None, "ok": "CanNotDelete"}))
    code, out, _ = run(capsys, "--snapshot", str(same), *LOCKS, "--baseline", str(base), "--fail-on-new", "-f", "json")
    assert code == 0 and json.loads(out)["run"]["fail_on_new"] is True  # a known FAIL does not fail the job
    code, _, _ = run(capsys, "--snapshot", str(same), *LOCKS, "--baseline", str(base))
    assert code == 1  # without --fail-on-new it does
    worse = write(tmp_path / "worse.json", estate({"still": None, "ok": None}))
    code, out, _ = run(capsys, "--snapshot", str(worse), *LOCKS, "--baseline", str(base), "--fail-on-new")
    assert code == 1 and "gate: --fail-on-new" in out
    added = write(tmp_path / "added.json", estate({"still": None, "ok": "CanNotDelete", "added": None}))
    code, _, _ = run(capsys, "--snapshot", str(added), *LOCKS, "--baseline", str(base), "--fail-on-new")
    assert code == 1
    # A new FAIL below --fail-on does not fail the job either: both gates apply.
    code, _, _ = run(capsys, "--snapshot", str(added), *LOCKS, "--baseline", str(base), "--fail-on-new", "--fail-on", "high")
    assert code == 0


def test_the_compare_is_limited_to_where_both_runs_looked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The baseline audited two subscriptions with both lock checks; a's ReadOnly lock fails both of them there.
    base = report(tmp_path, capsys, estate({"a": "ReadOnly"}, extra_subs={SUB2: {"far": None}}), *LOCKS)
    base_doc = json.loads(base.read_text())
    failed_then = {(f["check_id"], f["resource_id"].rsplit("/", 1)[1]) for f in base_doc["findings"] if f["status"] == "FAIL"}
    assert failed_then == {("AIB-LOCK-001", "a"), ("AIB-LOCK-002", "a"), ("AIB-LOCK-001", "far")}
    # This run audits SUB only, with AIB-LOCK-001 only; a now has a CanNotDelete lock.
    snap = write(tmp_path / "now.json", estate({"a": "CanNotDelete", "new": None}))
    code, out, err = run(capsys, "--snapshot", str(snap), "--check", "AIB-LOCK-001", "--baseline", str(base), "-f", "json")
    doc = json.loads(out)
    # SUB2's FAIL and a's AIB-LOCK-002 FAIL have no row now, yet they are not "fixed": this run did not look there.
    assert [(f["check_id"], f["resource_id"].rsplit("/", 1)[1]) for f in doc["fixed"]] == [("AIB-LOCK-001", "a")]
    assert code == 1 and [f["change"] for f in doc["findings"] if f["resource_id"].endswith("/new")] == ["new"]
    notes = doc["run"]["notes"]
    assert any(SUB2 in n and "not compared" in n for n in notes) and any("AIB-LOCK-002" in n for n in notes)
    assert err.count("aib-audit: note: ") == len(notes) == 2


def test_what_this_run_could_not_see_is_never_fixed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = report(tmp_path, capsys, estate({"a": None, "b": None}))
    denied = {"kind": "imageTemplates", "scope": f"/subscriptions/{SUB}", "status": 403, "code": "AuthorizationFailed"}
    denied["message"] = "no"
    blind = write(tmp_path / "blind.json", estate({}, errors=[denied]))
    code, out, err = run(capsys, "--snapshot", str(blind), *LOCKS, "--baseline", str(base), "-f", "json")
    doc = json.loads(out)
    assert code == 3 and doc["fixed"] == [] and doc["summary"]["fixed"] == 0
    assert "could not be evaluated now" in err

    # Here the template is listed but its locks cannot be read: ERROR now, so its FAIL is not fixed either.
    locks_denied = {**denied, "kind": "locks", "scope": b.rg_id(SUB, rg("a"))}
    partial = write(tmp_path / "partial.json", estate({"a": None, "b": "CanNotDelete"}, errors=[locks_denied]))
    code, out, _ = run(capsys, "--snapshot", str(partial), *LOCKS, "--baseline", str(base), "-f", "json", "--fail-on-new")
    doc = json.loads(out)
    assert code == 3  # incomplete wins over everything
    assert [f["resource_id"].rsplit("/", 1)[1] for f in doc["fixed"]] == ["b"]


def test_an_accepted_risk_is_still_the_same_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adding (or letting expire) an exception between two runs is not a change in the estate."""
    base = report(tmp_path, capsys, estate({"a": None}))
    exc = tmp_path / "exc.toml"
    exc.write_text(
        f'[[exception]]\ncheck = "AIB-LOCK-001"\nresource = "{tid("a")}"\nreason = "r"\nowner = "o"\nexpires = 2099-01-01\n'
    )
    snap = write(tmp_path / "now.json", estate({"a": None}))
    code, out, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "--baseline", str(base), "--exceptions", str(exc), "-f", "csv")
    (row,) = [r for r in csv_rows(out) if r["check_id"] == "AIB-LOCK-001"]
    assert code == 0 and (row["status"], row["change"]) == ("ACCEPTED", "unchanged")


def test_rows_sharing_an_id_are_compared_by_their_worst_status() -> None:
    tpl = tid("a")
    pid = b.guid("principal")
    fid = finding_id("AIB-LP-001", tpl, pid)

    def then(*statuses: Status) -> Baseline:
        rows = tuple(BaselineRow(fid, "AIB-LP-001", s, tpl, tpl, "then", principal_id=pid) for s in statuses)
        return Baseline("base.json", frozenset({SUB}), frozenset({"AIB-LP-001"}), rows)

    def now(*statuses: Status) -> list[Finding]:
        return [Finding(s, "now", check_id="AIB-LP-001", resource_id=tpl, template_id=tpl, principal_id=pid) for s in statuses]

    def diff(base: Baseline, rows: list[Finding]) -> tuple[list[str], int]:
        result = apply_baseline(rows, base, [SUB], ["AIB-LP-001"], [tpl])
        return [f.change for f in rows], len(result.fixed)

    # One role still fails and one passes now: the ID still fails, so both rows are unchanged, nothing fixed.
    assert diff(then(Status.FAIL, Status.FAIL), now(Status.FAIL, Status.PASS)) == (["unchanged", "unchanged"], 0)
    # Both pass now: fixed, and both rows are listed.
    assert diff(then(Status.FAIL, Status.PASS), now(Status.PASS, Status.PASS)) == (["fixed", "fixed"], 2)
    # PASS then (every row), one FAIL now: regressed.
    assert diff(then(Status.PASS), now(Status.PASS, Status.FAIL)) == (["regressed", "regressed"], 0)
    # FAIL then, ERROR now: not fixed (could not tell), not regressed.
    assert diff(then(Status.FAIL), now(Status.ERROR)) == (["unchanged"], 0)


def test_finding_ids_are_the_same_in_csv_and_json_and_across_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write(tmp_path / "s.json", estate({"a": None, "b": "CanNotDelete"}))
    _, out_csv, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "-f", "csv")
    _, out_json, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "-f", "json")
    from_csv = {(r["check_id"], r["resource_id"]): r["finding_id"] for r in csv_rows(out_csv)}
    from_json = {(f["check_id"], f["resource_id"]): f["finding_id"] for f in json.loads(out_json)["findings"]}
    assert from_csv == from_json and len(set(from_csv.values())) == 4
    assert from_csv[("AIB-LOCK-001", tid("a"))] == finding_id("AIB-LOCK-001", tid("a").upper(), "")  # case-insensitive


# --------------------------------------------------------------------------------------------- bad baselines: exit 2


def _report_without_ids(tmp_path: Path) -> Path:
    doc = {"schema_version": "1", "tool": {"name": "aib-audit"}, "run": {"subscriptions": [SUB], "checks": ["AIB-LOCK-001"]}}
    doc["findings"] = [{"check_id": "AIB-LOCK-001", "status": "FAIL", "resource_id": tid("a"), "template_id": tid("a")}]
    return write(tmp_path / "old.json", doc)


def _report_with(tmp_path: Path, **finding: Any) -> Path:
    row = {"finding_id": "0123456789abcdef", "check_id": "AIB-LOCK-001", "status": "FAIL", "resource_id": "", "template_id": ""}
    doc = {"tool": {"name": "aib-audit"}, "run": {"subscriptions": [SUB], "checks": []}, "findings": [{**row, **finding}]}
    return write(tmp_path / "r.json", doc)


BAD = {
    "missing": (lambda t: t / "nope.json", "baseline file not found"),
    "directory": (lambda t: t, "is a directory"),
    "not JSON": (lambda t: _text(t, "{ half"), "is not valid JSON"),
    "a snapshot, not a report": (lambda t: write(t / "snap.json", estate({"a": None})), "is not an aib-audit JSON report"),
    "a CSV report": (lambda t: _text(t, '"subscription_id","resource_group"\r\n'), "is not valid JSON"),
    "first-release report": (_report_without_ids, "finding #1 has no finding_id"),
    "bad status": (lambda t: _report_with(t, status="MAYBE"), "finding #1 has an unknown status 'MAYBE'"),
    "bad finding id": (lambda t: _report_with(t, finding_id="xyz"), "malformed finding_id"),
    "run without checks": (
        lambda t: write(t / "r.json", {"tool": {"name": "aib-audit"}, "run": {"subscriptions": []}, "findings": []}),
        "'run.checks' is not a list",
    ),
}


def _text(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "b.json"
    p.write_text(body, encoding="utf-8")
    return p


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_baseline_is_exit_2_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, fragment = BAD[case]
    code, out, err = run(capsys, "--subscription", SUB, "--baseline", str(make(tmp_path)))  # before any network call
    assert_one_line_error(code, out, err, fragment)


def test_fail_on_new_needs_a_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--subscription", SUB, "--fail-on-new")
    assert_one_line_error(code, out, err, "--fail-on-new needs --baseline")
