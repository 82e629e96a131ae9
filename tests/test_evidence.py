"""An audit whose reports print no evidence lets go of it (StagedAudit keep_evidence, reports.EVIDENCE_FORMATS).

At 10,000 templates the evidence is about 290 MiB of a live run's peak. Dropping it must change no byte of a
report that does not print it, and an audit that writes JSON anywhere must keep it.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from auditor.audit import AuditResult, run_audit, select_checks
from auditor.findings import NO_EVIDENCE, Status
from auditor.inventory import Inventory, build_inventory
from auditor.reports import EVIDENCE_FORMATS, FORMATS, write_report
from auditor.snapshot import Snapshot
from auditor.sources import demo_estate
from fixtures import demo
from tests.report_data import accept, first, run_info, with_baseline
from tests.test_cli import csv_rows, run
from tests.test_staged_audit import with_trigger_errors


def audited(keep_evidence: bool) -> AuditResult:
    """The demo estate with failed trigger reads, one accepted FAIL and a baseline's changes: every kind of row."""
    estate = with_trigger_errors(demo_estate())
    estate["errors"] = [e for e in estate["errors"] if e["kind"] == "triggers"]  # keep AIB-LOCK-001's FAILs
    snap = Snapshot.from_dict(estate)
    result = run_audit(build_inventory(snap), select_checks(), keep_evidence=keep_evidence)
    accept(first(result, Status.FAIL, "AIB-LP-001"))
    with_baseline(result)
    return result


def rendered(fmt: str, result: AuditResult, **kw: bool) -> str:
    out = io.StringIO()
    write_report(fmt, result, run_info(result), out, **kw)
    return out.getvalue()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f not in EVIDENCE_FORMATS])
def test_a_report_that_prints_no_evidence_is_the_same_without_it(fmt: str) -> None:
    kept, dropped = audited(True), audited(False)
    for all_rows in (False, True) if fmt == "table" else (False,):
        assert rendered(fmt, dropped, all_rows=all_rows) == rendered(fmt, kept, all_rows=all_rows)


def test_json_prints_the_evidence_so_it_is_kept() -> None:
    assert EVIDENCE_FORMATS.issubset(FORMATS)
    kept, dropped = audited(True), audited(False)
    assert rendered("json", kept) != rendered("json", dropped)  # the comparison above can tell


def test_dropping_evidence_changes_nothing_else() -> None:
    kept, dropped = audited(True), audited(False)
    assert any(f.evidence for f in kept.findings)
    assert {Status.ERROR, Status.ACCEPTED, Status.FAIL, Status.PASS} <= {f.status for f in dropped.findings}
    assert all(f.evidence is NO_EVIDENCE for f in dropped.findings)

    def rows(result: AuditResult) -> list[dict[str, object]]:
        return [{k: v for k, v in asdict(f).items() if k != "evidence"} for f in result.findings]

    assert rows(dropped) == rows(kept)
    assert [(t.template.id, t.statuses, t.resilience, t.least_privilege) for t in dropped.templates] == [
        (t.template.id, t.statuses, t.resilience, t.least_privilege) for t in kept.templates
    ]
    assert [asdict(f) for f in dropped.extra_errors] == [asdict(f) for f in kept.extra_errors]


def test_the_dropped_evidence_refuses_to_be_filled() -> None:
    """One empty dict is shared by every row: filling it would put one row's evidence on all of them."""
    for fill in (
        lambda d: d.__setitem__("a", 1),
        lambda d: d.setdefault("a", []),
        lambda d: d.update(a=1),
        lambda d: d.pop("a", None),
        lambda d: d.clear(),
    ):
        with pytest.raises(TypeError, match="dropped the evidence"):
            fill(NO_EVIDENCE)
    assert NO_EVIDENCE == {} and {**NO_EVIDENCE, "exception": {}} == {"exception": {}}


def test_a_csv_run_with_a_json_report_keeps_the_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap, doc = demo.PATH, tmp_path / "findings.json"
    code, out, err = run(capsys, "--snapshot", str(snap), "-f", "csv", "--report", f"json={doc}")
    assert code == 1, err
    findings = json.loads(doc.read_text(encoding="utf-8"))["findings"]
    assert len(findings) == len(csv_rows(out))
    lp = [f for f in findings if f["check_id"] == "AIB-LP-001" and f["principal_id"]]
    assert lp and all(f["evidence"]["grants"] and f["evidence"]["assignment_id"] for f in lp)

    code, alone, err = run(capsys, "--snapshot", str(snap), "-f", "csv")
    assert code == 1, err

    def without_time(text: str) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k != "audited_at"} for r in csv_rows(text)]

    assert without_time(alone) == without_time(out)


def test_json_alone_prints_the_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--snapshot", str(demo.PATH), "-f", "json")
    assert code == 1, err
    lp = [f for f in json.loads(out)["findings"] if f["check_id"] == "AIB-LP-001" and f["principal_id"]]
    assert lp and all(f["evidence"]["grants"] and f["evidence"]["assignment_id"] for f in lp)


@pytest.mark.parametrize(
    ("args", "kept"),
    [
        (["-f", "csv"], False),
        (["-f", "table", "--report", "sarif={dir}/r.sarif", "--report", "html={dir}/r.html"], False),
        (["-f", "markdown", "--report", "csv={dir}/r.csv"], False),
        (["-f", "json"], True),
        (["-f", "csv", "--report", "json={dir}/r.json"], True),
    ],
)
def test_the_audit_keeps_evidence_exactly_when_a_report_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str], kept: bool
) -> None:
    import auditor.audit

    seen: list[bool] = []

    class Recording(auditor.audit.StagedAudit):
        def finish(self, inv: Inventory) -> AuditResult:
            result = super().finish(inv)
            seen.append(any(f.evidence for f in result.findings))
            return result

    monkeypatch.setattr(auditor.audit, "StagedAudit", Recording)
    argv = [a.format(dir=tmp_path) for a in args]
    code, _, err = run(capsys, "--snapshot", str(demo.PATH), *argv)
    assert code == 1, err
    assert seen == [kept]
