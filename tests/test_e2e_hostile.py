"""Black box, issue 7 cases 6-9: the INSTALLED `aib-audit` with hostile outputs, ARM text and snapshots.

Each run is a subprocess of the console script with a deadline; the exit code, stdout/stderr and the files it
leaves are what a scheduled job would see. Reuses test_e2e's harness (stand-in `az`, loopback guard).
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from auditor.emulator import Emulator
from fixtures import builders as b
from tests.test_e2e import AIB_AUDIT, Harness
from tests.test_textsafe import ESC, EVIL_NAME, RLO, ROLE_NAME, RUN_MESSAGE, SUB, TRIGGER_MESSAGE, hostile_estate

pytestmark = pytest.mark.e2e

CHECKS = ["--check", "AIB-OPS-001", "--check", "AIB-TRIG-001", "--check", "AIB-LP-001"]  # what the hostile text is in
ADDRESS_SPACE = 1 << 30  # 1 GiB: a child that read /dev/zero into memory would die of MemoryError (exit 4)


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def script(args: list[str], env: dict[str, str], timeout: float = 60, limit_memory: bool = False) -> tuple[int, str, str, float]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    started = time.monotonic()
    proc = subprocess.run(
        [str(AIB_AUDIT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        preexec_fn=cap if limit_memory else None,  # noqa: PLW1509 - the child execs at once; no threads involved
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aib-audit: error: ") and "Traceback" not in stderr, stderr
    return lines[0]


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------- case 6


def test_output_through_a_symlink_updates_the_target(harness: Harness, tmp_path: Path) -> None:
    snap = write(tmp_path / "estate.json", hostile_estate())
    target = tmp_path / "reports" / "latest.csv"
    target.parent.mkdir()
    target.write_text("stale\n", encoding="utf-8")
    link = tmp_path / "report.csv"
    link.symlink_to(target)
    code, out, err, _ = script(["--snapshot", str(snap), *CHECKS, "--format", "csv", "--output", str(link)], harness.env(""))
    assert (code, out, err) == (1, "", "")
    assert link.is_symlink() and os.readlink(link) == str(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8"), newline="")))
    assert EVIL_NAME in {r["resource_name"] for r in rows}


def test_output_dev_stdout_prints_the_report(harness: Harness, tmp_path: Path) -> None:
    snap = write(tmp_path / "estate.json", hostile_estate())
    code, out, err, _ = script(["--snapshot", str(snap), *CHECKS, "-f", "json", "--output", "/dev/stdout"], harness.env(""))
    assert (code, err) == (1, "")
    assert json.loads(out)["templates"][0]["name"] == EVIL_NAME
    assert not stat.S_ISREG(os.lstat("/dev/stdout").st_mode)


# --------------------------------------------------------------------------------------------- case 7


def test_live_table_shows_hostile_text_escaped(harness: Harness) -> None:
    with Emulator(hostile_estate()) as emu:
        args = ["--subscription", SUB, "--arm-endpoint", emu.endpoint, *CHECKS]
        code, out, err, _ = script(args, harness.env(emu.ca_bundle))
        json_code, json_out, _, _ = script([*args, "--format", "json"], harness.env(emu.ca_bundle))
    assert (code, err) == (1, "") and json_code == 1
    assert ESC not in out and RLO not in out and "\x07" not in out and "\u202c" not in out
    flat = " ".join(out.split())
    for shown in ("img\\x1b[2J\\u202egpj.exe", "\\x1b]0;pwned\\x07", "\\u202edeleted\\u202c", "Builder \\x1b[1mAdmin"):
        assert shown in flat, shown
    doc = json.loads(json_out)  # the JSON keeps the exact data
    details = {f["detail"] for f in doc["findings"]}
    assert any(RUN_MESSAGE in d for d in details) and any(TRIGGER_MESSAGE in d for d in details)
    assert ROLE_NAME in {f["role_name"] for f in doc["findings"]}


def test_an_error_line_echoing_arm_text_is_escaped(harness: Harness, tmp_path: Path) -> None:
    doc = hostile_estate()
    doc["subscriptions"] = [f"evil{ESC}[2J{RLO}"]
    code, out, err, _ = script(["--snapshot", str(write(tmp_path / "s.json", doc))], harness.env(""))
    line = one_line(err)
    assert code == 2 and out == "" and ESC not in err and RLO not in err
    assert "evil\\x1b[2J\\u202e" in line


# --------------------------------------------------------------------------------------------- case 8


def test_dev_zero_as_snapshot_exits_2_at_once(harness: Harness) -> None:
    code, out, err, elapsed = script(["--snapshot", "/dev/zero"], harness.env(""), timeout=60, limit_memory=True)
    assert (code, out) == (2, "")
    assert "not a JSON text" in one_line(err)
    assert elapsed < 30


def test_a_snapshot_nested_100000_deep_exits_2(harness: Harness, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    code, out, err, elapsed = script(["--snapshot", str(deep)], harness.env(""), timeout=60, limit_memory=True)
    assert (code, out) == (2, "")
    assert "deep: not an aib-audit snapshot" in one_line(err)
    assert elapsed < 30


def test_an_endless_stream_stops_at_the_size_limit(harness: Harness) -> None:
    """`yes '[' | aib-audit --snapshot /dev/stdin` with a 1 MiB limit: the read ends at the limit."""
    env = {**harness.env(""), "AIB_AUDIT_SNAPSHOT_LIMIT_MB": "1"}
    started = time.monotonic()
    with subprocess.Popen(["yes", "["], stdout=subprocess.PIPE) as yes:
        try:
            proc = subprocess.run(
                [str(AIB_AUDIT), "--snapshot", "/dev/stdin"],
                stdin=yes.stdout,
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
            )
        finally:
            yes.kill()
    assert proc.returncode == 2 and "larger than 1 MiB" in one_line(proc.stderr)
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------------------------- case 9


def test_csv_cells_hiding_formulas_behind_separators_are_quoted_and_escaped(harness: Harness, tmp_path: Path) -> None:
    templates = [b.template(SUB, "rg-images", name) for name in ("ok;=1+1", "\t=1+2")]
    doc = b.snapshot([SUB], {"imageTemplates": templates, "resourceGroups": [b.resource_group(SUB, "rg-images")]})
    report = tmp_path / "r.csv"
    code, _, err, _ = script(
        ["--snapshot", str(write(tmp_path / "s.json", doc)), "--check", "AIB-LOCK-001", "-f", "csv", "-o", str(report)],
        harness.env(""),
    )
    assert (code, err) == (1, "")
    raw = report.read_text(encoding="utf-8")
    assert ',"ok;=1+1",' in raw  # quoted: a ';'-splitting importer keeps it one cell
    assert ',"\'\t=1+2",' in raw  # quoted and defused: starts with tab, so prefixed with '
    for line in raw.split("\r\n")[:-1]:
        assert line.startswith('"') and line.endswith('"')
    names = {r["resource_name"] for r in csv.DictReader(io.StringIO(raw, newline=""))}
    assert names == {"ok;=1+1", "'\t=1+2"}
