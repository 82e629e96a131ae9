"""Reports and snapshots written through symlinks, to character devices and to FIFOs (issue 7, case 6).

A link stays a link and its target gets the new text; `/dev/stdout` and FIFOs are written in place, never
replaced by a regular file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from auditor import cli
from auditor.errors import UsageError
from auditor.findings import Finding
from auditor.output import check_writable, resolve_target, write_text_atomic
from tests.test_cli import AIB_AUDIT, LOCKS, _script_env, csv_rows, write_snapshot


def test_a_symlink_to_a_report_stays_a_link_and_its_target_is_updated(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    target = reports / "latest.csv"
    target.write_text("stale\n", encoding="utf-8")
    target.chmod(0o640)
    link = tmp_path / "report.csv"
    link.symlink_to(target)
    write_text_atomic(link, "fresh\r\n")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"fresh\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the target keeps its mode
    assert sorted(p.name for p in reports.iterdir()) == ["latest.csv"]  # no temp file left beside it


def test_a_dangling_link_creates_its_target_when_the_directory_exists(tmp_path: Path) -> None:
    link = tmp_path / "out.json"
    link.symlink_to(tmp_path / "real.json")
    write_text_atomic(link, "{}\n")
    assert link.is_symlink() and (tmp_path / "real.json").read_text(encoding="utf-8") == "{}\n"
    gone = tmp_path / "gone.json"
    gone.symlink_to(tmp_path / "no-such-dir" / "x.json")
    with pytest.raises(UsageError, match=r"no-such-dir does not exist"):
        check_writable("--output", gone)
    assert gone.is_symlink()


def test_a_link_to_a_directory_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "dir-link"
    link.symlink_to(tmp_path)
    with pytest.raises(UsageError, match="is a directory"):
        check_writable("--output", link)


def test_devices_and_descriptor_links_are_streams(tmp_path: Path) -> None:
    assert resolve_target(Path("/dev/null")).stream
    assert resolve_target(Path("/dev/stdout")).stream
    assert not resolve_target(tmp_path / "new.csv").stream
    write_text_atomic(Path("/dev/null"), "discarded\n")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_with_a_reader_gets_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []

    def reader() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    code = cli.run(["--snapshot", str(snap), *LOCKS, "--format", "csv", "--output", str(fifo)])
    thread.join(timeout=30)
    assert code == 1 and capsys.readouterr().err == ""
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still the pipe, not a regular file
    assert [r["status"] for r in csv_rows(got[0].decode("utf-8"))] == ["FAIL", "PASS"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.fifo", "s.json"]


def test_snapshot_out_through_a_symlink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "estates" / "today.json"
    saved.parent.mkdir()
    saved.write_text("old\n", encoding="utf-8")
    link = tmp_path / "estate.json"
    link.symlink_to(saved)
    code = cli.run(["--demo", *LOCKS, "--format", "csv", "--output", os.devnull, "--snapshot-out", str(link)])
    assert code in (0, 1), capsys.readouterr().err
    assert link.is_symlink()
    assert json.loads(saved.read_text(encoding="utf-8"))["format"] == "aib-audit-snapshot"


@pytest.mark.e2e
def test_script_output_dev_stdout_reaches_stdout(tmp_path: Path) -> None:
    """As root in a CI container, `--output /dev/stdout` must print the report, not replace /dev/stdout."""
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    proc = subprocess.run(
        [str(AIB_AUDIT), "--snapshot", str(snap), *LOCKS, "--format", "csv", "--output", "/dev/stdout"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_script_env(),
    )
    assert (proc.returncode, proc.stderr) == (1, "")
    rows = list(csv.DictReader(io.StringIO(proc.stdout, newline="")))
    assert [(r["check_id"], r["status"]) for r in rows] == [("AIB-LOCK-001", "FAIL"), ("AIB-LOCK-002", "PASS")]
    # /dev/stdout is still what it was (a link to the descriptor, or a device), never a regular file.
    assert not stat.S_ISREG(os.lstat("/dev/stdout").st_mode)
    # /dev itself holds no report and no temp file left by the run.
    assert not [p for p in os.listdir("/dev") if p.startswith(".stdout.")]


# --------------------------------------------------------------------------------------------- streamed reports


@pytest.mark.parametrize("flag", ["--output", "--report"])
def test_a_report_interrupted_half_way_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    """The CSV is written row by row into the temp file: Ctrl-C after the first rows must not replace the old
    report with half a new one, nor leave the temp file behind."""
    from auditor.reports import csv_report

    out = tmp_path / "findings.csv"
    out.write_text("last night's report\n", encoding="utf-8")
    real = csv_report.Records.line
    written: list[str] = []

    def interrupted_after_one_row(self: csv_report.Records, f: Finding) -> str:
        if written:
            raise KeyboardInterrupt
        written.append("row")
        return real(self, f)

    monkeypatch.setattr(csv_report.Records, "line", interrupted_after_one_row)
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    target = ["--format", "csv", "--output", str(out)] if flag == "--output" else ["--report", f"csv={out}"]
    code = cli.run(["--snapshot", str(snap), *LOCKS, *target])
    assert code == 130 and capsys.readouterr().err == "aib-audit: error: interrupted\n"
    assert written  # it was interrupted half-way through the rows ...
    assert out.read_text(encoding="utf-8") == "last night's report\n"  # ... and the old report is whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["findings.csv", "s.json"]


def test_a_streamed_report_reaches_stdout_and_a_file_alike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    assert cli.run(["--snapshot", str(snap), *LOCKS, "--format", "json"]) == 1
    printed = capsys.readouterr().out
    out = tmp_path / "r.json"
    assert cli.run(["--snapshot", str(snap), *LOCKS, "--format", "json", "--output", str(out)]) == 1
    written = out.read_text(encoding="utf-8")
    assert (
        json.loads(printed)["summary"]
        == json.loads(written)["summary"]
        == {"FAIL": 1, "ERROR": 0, "ACCEPTED": 0, "PASS": 1, "N/A": 0, "new": 0, "regressed": 0, "fixed": 0}
    )
    assert printed.split('"started_at"')[0] == written.split('"started_at"')[0]


def test_all_rows_lists_pass_rows_in_the_table_and_is_refused_without_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    assert cli.run(["--snapshot", str(snap), *LOCKS]) == 1
    default = capsys.readouterr().out
    assert "no ReadOnly lock applies" not in default and "1 PASS / 0 N/A findings not shown (--all-rows" in default
    assert cli.run(["--snapshot", str(snap), *LOCKS, "--all-rows"]) == 1
    assert "no ReadOnly lock applies" in capsys.readouterr().out
    table = tmp_path / "t.txt"
    assert cli.run(["--snapshot", str(snap), *LOCKS, "-f", "csv", "--report", f"table={table}", "--all-rows"]) == 1
    assert "no ReadOnly lock applies" in table.read_text(encoding="utf-8")
    capsys.readouterr()
    assert cli.run(["--snapshot", str(snap), *LOCKS, "-f", "csv", "--all-rows"]) == 2
    assert capsys.readouterr().err == (
        "aib-audit: error: --all-rows only applies to the table (--format table or --report table=PATH)\n"
    )
