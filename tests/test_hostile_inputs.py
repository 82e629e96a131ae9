"""Files and values the user hands the CLI that once crashed it (exit 4), hung it, or destroyed an input.

Each case is what a hostile reviewer found by running the installed CLI as a black box: every one must be exit 2
with one line on stderr naming the file or flag, in bounded time, with every input file left as it was.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tests.test_cli import LOCKS, run, write_snapshot
from tests.workflow_helpers import assert_one_line_error

SUB = "8c527ca4-57b7-53b2-b150-a4d89ad66a66"
TOML_ENTRY = '[[exception]]\ncheck = "AIB-LOCK-001"\nresource = "/x"\nreason = "r"\nowner = "o"\nexpires = 2099-01-01\n'
YAML_ENTRY = "exception:\n - check: AIB-LOCK-001\n   resource: /x\n   reason: r\n   owner: o\n   expires: 2099-01-01\n"


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("bad-date.yaml", YAML_ENTRY.replace("2099-01-01", "2027-02-30"), "day is out of range"),
        ("bad-date.toml", TOML_ENTRY.replace("2099-01-01", "2027-02-30"), "does not parse"),
        ("deep.yaml", "exception: " + "[" * 50_000 + "\n", "exceptions file"),
        ("deep.toml", "x = " + "[" * 50_000 + "\n", "nests too deep"),
        ("bigint.yaml", "exception: " + "9" * 5000 + "\n", "4300 digits"),
        ("nul.toml", "x = 1\n\0\0", "NUL bytes"),
    ],
)  # fmt: skip
def test_a_hostile_exceptions_file_is_one_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, needle: str
) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    bad = tmp_path / name
    bad.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--exceptions", str(bad))
    assert_one_line_error(code, out, err, str(bad), needle)


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("deep.yaml", "[" * 50_000 + "\n", "policy file"),
        ("big.yaml", "max_template_writers: " + "9" * 5000 + "\n", "4300 digits"),
        ("date.yaml", "x: 2027-02-30\n", "day is out of range"),
    ],
)
def test_a_hostile_policy_file_is_one_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, needle: str
) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    bad = tmp_path / name
    bad.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--policy", str(bad))
    assert_one_line_error(code, out, err, str(bad), needle)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("[" * 100_000, "more than 100 deep"), ('{"schema_version": ' + "9" * 5000 + "}", "4300 digits"), ("{", "not valid JSON")],
)
def test_a_hostile_baseline_is_one_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, needle: str
) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    bad = tmp_path / "baseline.json"
    bad.write_text(text, encoding="utf-8")
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--baseline", str(bad))
    assert_one_line_error(code, out, err, "baseline", needle)


@pytest.mark.parametrize("flag", ["--baseline", "--exceptions", "--policy"])
def test_devices_are_refused_before_reading_a_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, flag, "/dev/zero")
    assert_one_line_error(code, out, err, "/dev/zero", "not a regular file")


def test_a_fifo_without_a_writer_does_not_hang_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    fifo = tmp_path / "exceptions.toml"
    os.mkfifo(fifo)
    result: list[tuple[int, str, str]] = []
    args = ("--snapshot", str(snap), *LOCKS, "--exceptions", str(fifo))
    worker = threading.Thread(target=lambda: result.append(run(capsys, *args)), daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():  # unblock the reader so the test process can end, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("--exceptions on a FIFO without a writer hung")
    code, out, err = result[0]
    assert_one_line_error(code, out, err, "not a regular file")


@pytest.mark.parametrize(
    ("flag", "content"),
    [("--snapshot", ""), ("--exceptions", TOML_ENTRY), ("--policy", "max_template_writers = 3\n")],
)
def test_output_never_overwrites_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, content: str) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    other = tmp_path / "in.toml"
    other.write_text(content)
    target = snap if flag == "--snapshot" else other
    extra = [] if flag == "--snapshot" else [flag, str(other)]
    before = {p: p.read_bytes() for p in (snap, other)}
    code, out, err = run(capsys, "--snapshot", str(snap), *extra, "--format", "csv", "--output", str(target), *LOCKS)
    assert_one_line_error(code, out, err, f"{flag} file it reads")
    assert {p: p.read_bytes() for p in (snap, other)} == before


def test_output_and_snapshot_out_cannot_share_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a.json"
    code, out, err = run(capsys, "--demo", *LOCKS, "--snapshot-out", str(target), "--format", "json", "--output", str(target))
    assert_one_line_error(code, out, err, "give each output its own file")
    assert not target.exists()


def test_snapshot_out_never_overwrites_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    baseline = tmp_path / "prev.json"
    baseline.write_text("{}")
    code, out, err = run(capsys, "--demo", *LOCKS, "--baseline", str(baseline), "--snapshot-out", str(baseline))
    assert_one_line_error(code, out, err, "--baseline file it reads")
    assert baseline.read_text() == "{}"


def test_no_check_left_is_a_usage_error_not_a_clean_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    code, out, err = run(capsys, "--snapshot", str(snap), "--check", "AIB-LOCK-001", "--skip-check", "AIB-LOCK-001")
    assert_one_line_error(code, out, err, "no check to run")


def test_a_snapshot_with_a_huge_integer_is_one_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "big.json"
    bad.write_text('{"format": "aib-audit-snapshot", "version": ' + "9" * 5000 + "}")
    code, out, err = run(capsys, "--snapshot", str(bad))
    assert_one_line_error(code, out, err, "4300 digits")


@pytest.mark.parametrize(
    "args",
    [
        ["-s", SUB, "--arm-endpoint", "https://[::1"],
        ["-s", SUB, "--arm-endpoint", "https://127.0.0.1:1", "--graph-endpoint", "https://[::1"],
        ["-s", SUB, "--arm-endpoint", "https://host:99999"],
    ],
)
def test_a_malformed_endpoint_is_one_usage_error(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, out, err = run(capsys, *args)
    assert_one_line_error(code, out, err, "endpoint")
