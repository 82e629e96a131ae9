"""--exceptions: a covered FAIL becomes ACCEPTED (no exit 1), an expired one stays FAIL and says so, a stale one is
noted once, an ERROR or a PASS is never touched, and every mistake in the file is exit 2 naming file and entry."""

from __future__ import annotations

import json
import tomllib
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from auditor.exceptions import ExceptionsError, ExceptionSet, apply_exceptions, exceptions_from_dict, load_exceptions
from auditor.findings import Finding, Status
from checks.registry import catalog
from fixtures import builders as b
from tests.workflow_helpers import LOCKS, SUB, SUB2, assert_one_line_error, csv_rows, estate, rg, run, tid, write

FAR = "2099-12-31"
PAST = "2024-06-30"


def entry(check: str = "AIB-LOCK-001", resource: str = "", expires: str = FAR, **extra: str) -> str:
    lines = [
        "[[exception]]",
        f'check = "{check}"',
        f'resource = "{resource or tid("tpl-a")}"',
        'reason = "Drained for decommissioning"',
        'owner = "platform@contoso.com"',
        f"expires = {expires}",
    ]
    lines += [f'{k} = "{v}"' for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def exceptions_file(tmp_path: Path, *entries: str, name: str = "exceptions.toml") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(entries), encoding="utf-8")
    return p


def snapshot(tmp_path: Path, templates: dict[str, str | None], errors: list[dict[str, Any]] | None = None) -> Path:
    return write(tmp_path / "s.json", estate(templates, errors=errors))


# --------------------------------------------------------------------------------------------- accepted rows


def test_an_accepted_fail_is_in_every_report_and_does_not_set_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = snapshot(tmp_path, {"tpl-a": None})
    exc = exceptions_file(tmp_path, entry(ticket="CHG-7"))
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(exc), "-f", "csv")
    assert (code, err) == (0, "")
    rows = {r["check_id"]: r for r in csv_rows(out)}
    accepted = rows["AIB-LOCK-001"]
    assert accepted["status"] == "ACCEPTED"
    assert accepted["exception_reason"] == "Drained for decommissioning (ticket CHG-7)"
    assert (accepted["exception_owner"], accepted["exception_expires"]) == ("platform@contoso.com", FAR)
    assert rows["AIB-LOCK-002"]["status"] == "PASS" and rows["AIB-LOCK-002"]["exception_reason"] == ""

    code, out, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(exc), "-f", "json")
    doc = json.loads(out)
    assert code == 0 and doc["run"]["exit_code"] == 0 and doc["run"]["exceptions"] == str(exc)
    assert doc["summary"]["ACCEPTED"] == 1 and doc["summary"]["FAIL"] == 0
    (row,) = [f for f in doc["findings"] if f["status"] == "ACCEPTED"]
    assert row["exception_owner"] == "platform@contoso.com" and row["evidence"]["exception"]["ticket"] == "CHG-7"
    assert doc["templates"][0]["checks"]["AIB-LOCK-001"] == "ACCEPTED" and doc["templates"][0]["failed_checks"] == []
    assert doc["templates"][0]["scores"]["resilience"] == 25  # an accepted risk is still not a passed check

    code, out, _ = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(exc))
    assert code == 0 and "1 ACCEPTED" in out.splitlines()[0] and "AIB-LOCK-001 (accepted)" in out


def test_an_expired_exception_accepts_nothing_and_the_row_says_when(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = snapshot(tmp_path, {"tpl-a": None})
    exc = exceptions_file(tmp_path, entry(expires=PAST))
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(exc), "-f", "csv")
    assert (code, err) == (1, "")  # matched a row: expired, but not stale
    (row,) = [r for r in csv_rows(out) if r["check_id"] == "AIB-LOCK-001"]
    assert row["status"] == "FAIL" and f"the exception for this finding expired on {PAST}" in row["detail"]
    assert row["exception_reason"] == ""


def test_expiry_is_the_first_day_it_no_longer_applies() -> None:
    exc = load_exceptions_from_text(entry(expires="2030-01-01"))
    on_the_day, the_day_before = fail_row(), fail_row()
    apply_exceptions([on_the_day], exc, date(2030, 1, 1), [SUB], ["AIB-LOCK-001"])
    apply_exceptions([the_day_before], exc, date(2029, 12, 31), [SUB], ["AIB-LOCK-001"])
    assert (on_the_day.status, the_day_before.status) == (Status.FAIL, Status.ACCEPTED)


def test_a_stale_exception_is_noted_once_on_stderr_and_in_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = snapshot(tmp_path, {"tpl-a": "CanNotDelete", "tpl-b": "CanNotDelete"})
    # Matches PASS rows only (two of them, through the wildcard): stale, and said once, not per row.
    every_in_rg_a = f"/subscriptions/{SUB}/resourceGroups/{rg('tpl-a')}/providers/Microsoft.VirtualMachineImages/imageTemplates/*"
    exc = exceptions_file(tmp_path, entry(resource=every_in_rg_a))
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(exc), "-f", "json")
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aib-audit: note: ") and "exception #1 (AIB-LOCK-001" in lines[0]
    assert "stale" in lines[0] and str(exc) in lines[0]
    doc = json.loads(out)
    assert len(doc["run"]["notes"]) == 1 and "stale" in doc["run"]["notes"][0]
    assert all(f["status"] == "PASS" for f in doc["findings"])


def test_an_exception_where_the_run_did_not_look_is_not_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = snapshot(tmp_path, {"tpl-a": "CanNotDelete"})
    exc = exceptions_file(
        tmp_path,
        entry(resource=tid("tpl-x", SUB2)),  # a subscription this run did not audit
        entry(check="AIB-NET-001"),  # a check this run did not run
    )
    code, _, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(exc), "-f", "csv")
    assert (code, err) == (0, "")


def test_an_error_or_a_pass_is_never_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locks_failed = {"kind": "locks", "scope": b.rg_id(SUB, rg("tpl-b")), "status": 403, "code": "AuthorizationFailed"}
    locks_failed["message"] = "no"
    snap = snapshot(tmp_path, {"tpl-a": "CanNotDelete", "tpl-b": None}, errors=[locks_failed])
    wildcard = f"/subscriptions/{SUB}/resourceGroups/*"
    every = f"/subscriptions/{SUB}/resourceGroups/{rg('tpl-b')}/providers/Microsoft.VirtualMachineImages/imageTemplates/*"
    exc = exceptions_file(tmp_path, entry(resource=tid("tpl-a")), entry(resource=every), entry(resource=wildcard))
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(exc), "-f", "csv")
    assert code == 3  # the failed read still makes the audit incomplete
    statuses = {(r["resource_name"], r["check_id"]): r["status"] for r in csv_rows(out)}
    assert statuses[("tpl-a", "AIB-LOCK-001")] == "PASS" and statuses[("tpl-b", "AIB-LOCK-001")] == "ERROR"
    assert "ACCEPTED" not in statuses.values()
    # #1 matched a PASS only: stale. #2 matched an ERROR: it may still be needed, so not stale. #3 (a resource
    # group wildcard) matches no template row at all: stale.
    notes = err.splitlines()
    assert [n.split("exception #")[1][0] for n in notes] == ["1", "3"]


def test_the_wildcard_covers_the_last_segment_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = snapshot(tmp_path, {"tpl-a": None, "tpl-b": None, "other": None})
    in_rg_a = f"/subscriptions/{SUB}/resourceGroups/{rg('tpl-a')}/providers/Microsoft.VirtualMachineImages/imageTemplates/TPL-*"
    exc = exceptions_file(tmp_path, entry(resource=in_rg_a))
    code, out, _ = run(capsys, "--snapshot", str(snap), "--check", "AIB-LOCK-001", "--exceptions", str(exc), "-f", "csv")
    assert code == 1
    assert {r["resource_name"]: r["status"] for r in csv_rows(out)} == {"tpl-a": "ACCEPTED", "tpl-b": "FAIL", "other": "FAIL"}


def test_a_principal_exception_accepts_only_that_principals_rows() -> None:
    alice, bob = b.guid("alice"), b.guid("bob")
    exc = load_exceptions_from_text(entry(check="AIB-LP-001", principal=alice.upper()))
    rows = [fail_row("AIB-LP-001", alice), fail_row("AIB-LP-001", bob), fail_row("AIB-LP-001")]
    notes = apply_exceptions(rows, exc, date(2026, 1, 1), [SUB], ["AIB-LP-001"])
    assert [r.status for r in rows] == [Status.ACCEPTED, Status.FAIL, Status.FAIL] and notes == []


def test_yaml_and_toml_give_the_same_exceptions(tmp_path: Path) -> None:
    toml = exceptions_file(tmp_path, entry(expires="2030-01-31", ticket="T-1"))
    yaml = tmp_path / "exceptions.yaml"
    yaml.write_text(
        f"exception:\n  - check: aib-lock-001\n    resource: {tid('tpl-a')}\n    reason: Drained for decommissioning\n"
        "    owner: platform@contoso.com\n    expires: '2030-01-31'\n    ticket: T-1\n",
        encoding="utf-8",
    )
    assert load_exceptions(toml, catalog()).entries == load_exceptions(yaml, catalog()).entries


# --------------------------------------------------------------------------------------------- bad input: exit 2

# Entry-level mistakes sit in the second entry, after a good one, so the message must say which entry.
BAD_ENTRY = {
    "unknown check": (entry(check="AIB-LOCK-009"), "exception #2 (AIB-LOCK-009): unknown check ID 'AIB-LOCK-009'"),
    "malformed date": (entry(expires='"2026-13-01"'), "exception #2 (AIB-LOCK-001): 'expires' must be a date"),
    "date in words": (entry(expires='"next year"'), "'expires' must be a date"),
    "datetime, not a date": (entry(expires="2026-01-01T00:00:00Z"), "'expires' must be a date"),
    "missing reason": (entry().replace('reason = "Drained for decommissioning"\n', ""), "'reason' is required"),
    "missing owner": (entry().replace('owner = "platform@contoso.com"\n', ""), "#2 (AIB-LOCK-001): 'owner' is required"),
    "blank owner": (entry().replace('"platform@contoso.com"', '"  "'), "'owner' must be a non-empty string"),
    "missing expiry": (entry().replace(f"expires = {FAR}\n", ""), "'expires' is required"),
    "wildcard mid-path": (entry(resource=f"/subscriptions/{SUB}/resourceGroups/*/providers/x/y/z"), "'*' is allowed only in"),
    "not an ARM ID": (entry(resource="tpl-a"), "'resource' must be an ARM resource ID"),
    "principal not a GUID": (entry(principal="alice@contoso.com"), "'principal' must be a principal object ID"),
    "unknown key": (entry(owners="x"), "unknown keys ['owners']"),
}
BAD_FILE = {
    "not a list": ('exception = "all of them"\n', "'exception' must be a list"),
    "unknown top-level key": ("max_template_writers = 3\n", "only a list of entries under 'exception'"),
    "does not parse": ("[[exception]\n", "does not parse"),
}


@pytest.mark.parametrize("case", list(BAD_ENTRY) + list(BAD_FILE))
def test_a_mistake_in_the_exceptions_file_is_exit_2_naming_file_and_entry(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if case in BAD_ENTRY:
        body, fragment = BAD_ENTRY[case]
        exc = exceptions_file(tmp_path, entry(), body)
        fragments = [str(exc), "exception #2", fragment]
    else:
        body, fragment = BAD_FILE[case]
        exc = exceptions_file(tmp_path, body)
        fragments = [str(exc), fragment]
    # --subscription: a validation that came after collecting would try the network, which the tests block.
    code, out, err = run(capsys, "--subscription", SUB, "--exceptions", str(exc))
    assert_one_line_error(code, out, err, *fragments)


def test_a_missing_exceptions_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--subscription", SUB, "--exceptions", str(tmp_path / "nope.toml"))
    assert_one_line_error(code, out, err, "exceptions file not found")


def test_the_loader_raises_a_usage_error() -> None:
    with pytest.raises(ExceptionsError, match="x.toml: exception #1"):
        exceptions_from_dict({"exception": [{"check": "AIB-LOCK-001"}]}, "x.toml", catalog())


# --------------------------------------------------------------------------------------------- helpers


def load_exceptions_from_text(text: str) -> ExceptionSet:
    return exceptions_from_dict(tomllib.loads(text), "inline.toml", catalog())


def fail_row(check: str = "AIB-LOCK-001", principal: str = "") -> Finding:
    tpl = tid("tpl-a")
    return Finding(Status.FAIL, "no lock", check_id=check, resource_id=tpl, principal_id=principal, template_id=tpl)
