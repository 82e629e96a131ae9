"""CSV records rendered while ARM is read (auditor.reports.csv_spool): the report is byte for byte the one
rendered at the end, whichever rows were spooled, through a file (sendfile) or a stream without one."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from itertools import groupby
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from auditor.audit import AuditResult, run_audit, select_checks
from auditor.findings import Finding, Status
from auditor.inventory import build_inventory
from auditor.reports import RunInfo, all_findings, iso, write_report
from auditor.reports import csv_spool as spool_module
from auditor.reports.csv_spool import PLACEHOLDER, CsvSpool
from auditor.snapshot import Snapshot
from auditor.sources import demo_estate
from tests.report_data import run_info
from tests.test_cli import csv_rows, run, strip_audited_at
from tests.test_staged_audit import with_trigger_errors


def audited() -> AuditResult:
    """The demo estate with failed trigger reads, and rows whose text is not ASCII or starts like a formula."""
    snap = Snapshot.from_dict(with_trigger_errors(demo_estate()))
    result = run_audit(build_inventory(snap), select_checks())
    principal_rows = [f for f in result.findings if f.principal_id]
    principal_rows[0].detail = "Zoë Ångström ✓ can run the template"  # two- and three-byte UTF-8
    principal_rows[0].principal_name = "Zoë Ångström"
    principal_rows[1].detail = "=HYPERLINK(\"http://x\")"  # a formula: escaped in the cell
    return result


def blocks(rows: list[Finding], late: str) -> Iterator[list[Finding]]:
    """Each template's rows but those of checks starting with `late` (what the early pass had, in its order)."""
    for _, group in groupby(rows, key=lambda f: f.template_id.lower()):
        yield [f for f in group if not f.check_id.startswith(late)]


def rendered(result: AuditResult, run: RunInfo, spool: CsvSpool | None = None) -> str:
    out = io.StringIO(newline="")
    write_report("csv", result, run, out, csv_spool=spool)
    return out.getvalue()


def to_file(path: Path, result: AuditResult, run: RunInfo, spool: CsvSpool) -> bytes:
    with path.open("w", encoding="utf-8", newline="") as out:
        write_report("csv", result, run, out, csv_spool=spool)
    return path.read_bytes()


@pytest.mark.parametrize("late", ["AIB-TRIG", "AIB-LP", "AIB-"])
def test_the_report_is_the_same_whichever_rows_were_spooled(tmp_path: Path, late: str) -> None:
    result = audited()
    run = run_info(result)
    expected = rendered(result, run)
    assert "Zoë Ångström ✓" in expected and "'=HYPERLINK" in expected
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), late))
        spooled = sum(1 for f in result.findings if f._spooled >= 0)
        assert spooled == (0 if late == "AIB-" else len([f for f in result.findings if not f.check_id.startswith(late)]))
        assert to_file(tmp_path / "r.csv", result, run, spool) == expected.encode("utf-8")  # copied by sendfile
        assert rendered(result, run, spool) == expected  # a stream with no file behind it: copied through Python
    assert PLACEHOLDER not in expected


def test_a_stream_gets_multibyte_characters_whole_however_the_copy_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "_COPY_CHUNK", 7)  # cuts inside "ë", "Å" and "✓"
    result = audited()
    run = run_info(result)
    expected = rendered(result, run)
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"))
        assert rendered(result, run, spool) == expected


def test_every_row_says_when_the_run_finished_and_a_second_time_is_stamped_over_the_first(tmp_path: Path) -> None:
    result = audited()
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"))
        for finished in ("2026-12-01T03:04:05Z", "2027-01-02T06:07:08Z"):
            run = run_info(result)
            run.finished_at = run.finished_at.fromisoformat(finished.replace("Z", "+00:00"))
            text = to_file(tmp_path / "r.csv", result, run, spool).decode("utf-8")
            assert {r["audited_at"] for r in csv_rows(text)} == {finished}
            assert text == rendered(result, run)


def test_a_spool_stopped_half_way_leaves_the_rest_to_the_report(tmp_path: Path) -> None:
    result = audited()
    run = run_info(result)
    calls = iter(range(1_000))
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"), stop=lambda: next(calls) >= 2)  # two templates, then over
        assert 0 < len(spool) < len(result.findings)
        assert to_file(tmp_path / "r.csv", result, run, spool) == rendered(result, run).encode("utf-8")


class FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError(28, "No space left on device")


def test_a_spool_that_could_not_be_written_is_not_used(tmp_path: Path) -> None:
    result = audited()
    run = run_info(result)
    with CsvSpool(FullDisk()) as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"))
        assert spool.broken
        assert to_file(tmp_path / "r.csv", result, run, spool) == rendered(result, run).encode("utf-8")


def test_a_torn_spool_is_not_used_and_a_copy_that_runs_short_fails_the_report(tmp_path: Path) -> None:
    result = audited()
    run = run_info(result)
    expected = rendered(result, run).encode("utf-8")
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"))
        spool._file.flush()
        spool._file.truncate(100)  # most of what the report would copy is gone before it starts
        assert to_file(tmp_path / "r.csv", result, run, spool) == expected and spool.broken
    result = audited()  # rows not spooled yet (a row keeps the place its spool gave it)
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"))
        spool._file.flush()
        spool._stamp(iso(run.finished_at))
        spool._file.truncate(100)  # gone while it copies: an error, never a short report that looks whole
        with pytest.raises(OSError, match="the CSV spool ended"):
            to_file(tmp_path / "r.csv", result, run, spool)


def latin1_result() -> AuditResult:
    result = audited()
    for f in result.findings:
        f.detail = f.detail.replace("✓", "v")  # every character Latin-1 can write
    return result


@pytest.mark.parametrize("latin1_only", [True, False])
def test_a_stream_in_another_encoding_gets_every_row_in_it(tmp_path: Path, latin1_only: bool) -> None:
    """stdout under a Latin-1 locale (or PYTHONIOENCODING): spooled rows are not copied as UTF-8 bytes beside
    rows the stream encoded; a name it cannot encode fails the report as it would without the spool."""
    result = latin1_result() if latin1_only else audited()
    run = run_info(result)

    def latin1(spool: CsvSpool | None) -> bytes | type[Exception]:
        path = tmp_path / "r.csv"
        try:
            with path.open("w", encoding="latin-1", newline="") as out:
                write_report("csv", result, run, out, csv_spool=spool)
        except UnicodeEncodeError as exc:
            return type(exc)
        return path.read_bytes()

    expected = latin1(None)
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"))
        assert len(spool) > 0
        assert latin1(spool) == expected
    assert (expected is UnicodeEncodeError) is not latin1_only
    if latin1_only:
        assert isinstance(expected, bytes) and "Zoë Ångström".encode("latin-1") in expected


def test_the_spool_leaves_room_for_the_report_on_its_filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With TMPDIR and the report on one filesystem, a run that fits without the spool fits with it: the spool
    stops (and gives its space back) before it would leave less free than the report will need."""
    result = audited()
    run = run_info(result)
    expected = rendered(result, run).encode("utf-8")
    room = spool_module._RESERVE + len(expected)  # free: room for the report, not for a spool beside it
    monkeypatch.setattr(spool_module.os, "fstatvfs", lambda fd: SimpleNamespace(f_frsize=1, f_bavail=room))
    with CsvSpool() as spool:
        spool.add(blocks(all_findings(result), "AIB-TRIG"))
        assert spool.broken and os.fstat(spool._file.fileno()).st_size == 0  # given up, and its space back
        assert to_file(tmp_path / "r.csv", result, run, spool) == expected


# --------------------------------------------------------------------------------------------- the command


def watch_spools(monkeypatch: pytest.MonkeyPatch) -> list[list[bool]]:
    """Each CsvSpool the command makes: whether each report it was offered to used it. The early pass and the
    spool run to the end, though the demo's few trigger reads are over before they start: their rows are final
    whenever they are made, and the test must not hang on the machine's speed."""
    import auditor.audit

    made: list[list[bool]] = []

    class Early(auditor.audit.StagedAudit):
        def early(self, inv: Any, stop: Any = None) -> None:
            super().early(inv)

    class Watched(CsvSpool):
        def __init__(self) -> None:
            super().__init__()
            made.append([])

        def add(self, blocks: Any, stop: Any = None) -> None:
            super().add(blocks)

        def write(self, rows: list[Finding], records: Any, out: Any) -> bool:
            used = super().write(rows, records, out)
            made[-1].append(used)
            return used

    monkeypatch.setattr(spool_module, "CsvSpool", Watched)
    monkeypatch.setattr(auditor.audit, "StagedAudit", Early)
    return made


def test_a_live_csv_is_written_from_the_spool_and_matches_the_snapshot_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made = watch_spools(monkeypatch)
    out, extra, saved = tmp_path / "live.csv", tmp_path / "extra.csv", tmp_path / "snap.json"
    code, _, err = run(capsys, "--demo", "-f", "csv", "-o", str(out), "--report", f"csv={extra}", "--snapshot-out", str(saved))
    assert code == 1, err
    assert made == [[True, True]]  # the collection spooled; both CSV reports copied from it
    live = out.read_text(encoding="utf-8")
    assert extra.read_text(encoding="utf-8") == live
    collected = json.loads(saved.read_text(encoding="utf-8"))["meta"]["finished_at"]  # when the reads ended
    stamps = {r["audited_at"] for r in csv_rows(live)}
    assert PLACEHOLDER not in live and len(stamps) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamped := stamps.pop()) and stamped >= collected[:19]
    code, again, err = run(capsys, "--snapshot", str(saved), "-f", "csv")
    assert code == 1, err
    assert strip_audited_at(again) == strip_audited_at(live)
    assert any(r["check_id"] == "AIB-TRIG-001" for r in csv_rows(live))


def test_no_spool_when_exceptions_or_a_baseline_change_rows_after_the_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made = watch_spools(monkeypatch)
    first = tmp_path / "first.json"
    code, _, err = run(capsys, "--demo", "-f", "json", "-o", str(first))
    assert code == 1, err
    assert made == []  # no CSV asked for
    code, out, err = run(capsys, "--demo", "-f", "csv", "--baseline", str(first))
    assert code == 1, err
    assert made == [] and {r["change"] for r in csv_rows(out)} == {"unchanged"}
    exceptions = Path(__file__).resolve().parents[1] / "fixtures" / "demo-exceptions.toml"
    code, out, err = run(capsys, "--demo", "-f", "csv", "--exceptions", str(exceptions))
    assert code == 1, err
    assert made == [] and any(r["status"] == Status.ACCEPTED for r in csv_rows(out))


def test_no_spool_where_the_copy_cannot_read_at_an_offset(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    made = watch_spools(monkeypatch)
    monkeypatch.delattr(spool_module.os, "pread")  # Windows: every row is rendered at the end
    code, out, err = run(capsys, "--demo", "-f", "csv")
    assert code == 1, err
    assert made == [] and any(r["check_id"] == "AIB-TRIG-001" for r in csv_rows(out))
