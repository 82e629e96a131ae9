"""The command line: sources, exit codes 0/1/2/3, one-line errors, output files, the catalog, the demo."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from auditor import cli, sources
from checks.registry import catalog
from fixtures import builders as b
from tests.conftest import read_lines

SUB = "6f0c1a52-8a4e-4c52-9d0b-3c1d2e3f4a5b"
LOCKS = ["--check", "AIB-LOCK-001", "--check", "AIB-LOCK-002"]
AIB_AUDIT = Path(sys.executable).parent / "aib-audit"


def write_snapshot(path: Path, locked: bool = True, errors: list[dict[str, Any]] | None = None) -> Path:
    """One template in `rg-images`; a CanNotDelete lock on its resource group when `locked`."""
    tpl = b.template(SUB, "rg-images", "tpl-linux")
    locks = [b.lock(b.rg_id(SUB, "rg-images"), "rg-lock")] if locked else []
    doc = b.snapshot(
        [SUB], {"imageTemplates": [tpl], "locks": locks, "resourceGroups": [b.resource_group(SUB, "rg-images")]}, errors
    )
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("aib-audit: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# --------------------------------------------------------------------------------------------- exit codes 0, 1, 3


def test_exit_0_when_every_selected_check_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json", locked=True)
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--format", "csv")
    assert (code, err) == (0, "")
    rows = csv_rows(out)
    assert [(r["check_id"], r["status"]) for r in rows] == [("AIB-LOCK-001", "PASS"), ("AIB-LOCK-002", "PASS")]
    assert rows[0]["detail"] == "CanNotDelete lock 'rg-lock' on its resource group"


def test_exit_1_when_a_check_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--format", "json")
    assert (code, err) == (1, "")
    doc = json.loads(out)
    assert doc["run"]["exit_code"] == 1 and doc["run"]["source"] == "snapshot" and doc["run"]["subscriptions"] == [SUB]
    assert doc["templates"][0]["failed_checks"] == ["AIB-LOCK-001"]


def test_exit_3_when_a_read_failed_even_with_a_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = b.template(SUB, "rg-other", "tpl-other")
    doc = b.snapshot(
        [SUB],
        {"imageTemplates": [b.template(SUB, "rg-images", "tpl-linux"), other]},
        errors=[
            {"kind": "locks", "scope": b.rg_id(SUB, "rg-other"), "status": 403, "code": "AuthorizationFailed", "message": "no"}
        ],
    )
    snap = tmp_path / "s.json"
    snap.write_text(json.dumps(doc), encoding="utf-8")
    code, out, err = run(capsys, "--snapshot", str(snap), "--check", "AIB-LOCK-001", "--format", "csv")
    assert (code, err) == (3, "")
    statuses = {r["resource_name"]: (r["status"], r["detail"]) for r in csv_rows(out)}
    assert statuses["tpl-linux"][0] == "FAIL"
    assert statuses["tpl-other"][0] == "ERROR" and "AuthorizationFailed" in statuses["tpl-other"][1]


def test_table_is_the_default_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    code, out, _ = run(capsys, "--snapshot", str(snap), *LOCKS)
    assert code == 1
    assert "1 template audited" in out.splitlines()[0] and "Exit code 1: audit complete, at least one check failed." in out
    assert "\x1b[" not in out  # stdout is not a terminal here


def test_skip_check_and_policy_are_applied(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    policy = tmp_path / "policy.toml"
    policy.write_text("max_template_writers = 2\n", encoding="utf-8")
    code, out, _ = run(
        capsys, "--snapshot", str(snap), *LOCKS, "--skip-check", "aib-lock-001", "--policy", str(policy), "-f", "csv"
    )
    assert code == 0
    assert [r["check_id"] for r in csv_rows(out)] == ["AIB-LOCK-002"]


# --------------------------------------------------------------------------------------------- exit code 2


def _not_json(tmp_path: Path) -> list[str]:
    p = tmp_path / "broken.json"
    p.write_text("{not json", encoding="utf-8")
    return ["--snapshot", str(p)]


def _not_a_snapshot(tmp_path: Path) -> list[str]:
    p = tmp_path / "other.json"
    p.write_text(json.dumps({"value": []}), encoding="utf-8")
    return ["--snapshot", str(p)]


def _bad_policy(tmp_path: Path) -> list[str]:
    p = tmp_path / "policy.toml"
    p.write_text("max_template_writers = 'three'\n", encoding="utf-8")
    return ["--snapshot", str(write_snapshot(tmp_path / "s.json")), "--policy", str(p)]


BAD_INPUTS = {
    "malformed subscription": (lambda t: ["--subscription", "not-a-guid"], ["'not-a-guid' is not a subscription ID (a GUID)"]),
    "unknown check": (
        lambda t: ["--snapshot", str(write_snapshot(t / "s.json")), "--check", "AIB-NOPE-001"],
        ["unknown check ID AIB-NOPE-001"],
    ),
    "unknown skipped check": (
        lambda t: ["--snapshot", str(write_snapshot(t / "s.json")), "--skip-check", "X"],
        ["unknown check ID"],
    ),
    "missing snapshot": (lambda t: ["--snapshot", str(t / "nope.json")], ["snapshot file not found"]),
    "snapshot is a directory": (lambda t: ["--snapshot", str(t)], ["is a directory"]),
    "corrupt snapshot": (_not_json, ["is not valid JSON"]),
    "json but not a snapshot": (_not_a_snapshot, ["is not an aib-audit snapshot"]),
    "bad policy": (_bad_policy, ["max_template_writers must be a whole number"]),
    "missing policy": (
        lambda t: ["--snapshot", str(write_snapshot(t / "s.json")), "--policy", str(t / "p.yaml")],
        ["policy file not found"],
    ),
    "no source": (lambda t: [], ["say what to audit"]),
    "only options, no source": (lambda t: ["--format", "csv"], ["say what to audit"]),
    "two sources": (lambda t: ["--demo", "--snapshot", str(write_snapshot(t / "s.json"))], ["--demo and --snapshot"]),
    "subscription and demo": (lambda t: ["--subscription", SUB, "--demo"], ["only one of"]),
    "unknown option": (lambda t: ["--bogus"], ["No such option: --bogus"]),
    "bad format": (lambda t: ["--demo", "--format", "xml"], ["'xml' is not one of"]),
    "option without value": (lambda t: ["--snapshot"], ["--snapshot"]),
    "http endpoint": (lambda t: ["--subscription", SUB, "--arm-endpoint", "http://management.azure.com"], ["https"]),
    "endpoint with a path": (lambda t: ["--subscription", SUB, "--arm-endpoint", "https://x.example/api"], ["--arm-endpoint"]),
    # urlsplit reads management.azure.com, urllib3 would connect to evil.example with the token
    "endpoint whose host depends on the parser": (
        lambda t: ["--subscription", SUB, "--arm-endpoint", "https://evil.example\\@management.azure.com"],
        ["--arm-endpoint"],
    ),
    "endpoint without subscription": (
        lambda t: ["--snapshot", str(write_snapshot(t / "s.json")), "--arm-endpoint", "https://management.azure.com"],
        ["--arm-endpoint only applies to a live scope"],
    ),
    "snapshot-out with snapshot": (
        lambda t: ["--snapshot", str(write_snapshot(t / "s.json")), "--snapshot-out", str(t / "o.json")],
        ["--snapshot-out"],
    ),
    "output directory missing": (
        lambda t: ["--snapshot", str(write_snapshot(t / "s.json")), "--output", str(t / "no" / "r.csv")],
        ["does not exist"],
    ),
    "max workers zero": (lambda t: ["--demo", "--max-workers", "0"], ["--max-workers"]),
    "timeout with a snapshot": (
        lambda t: ["--snapshot", str(write_snapshot(t / "s.json")), "--timeout", "60"],
        ["--timeout only applies when reading ARM"],
    ),
    "negative timeout": (lambda t: ["--demo", "--timeout", "-1"], ["--timeout must be a positive number"]),
    "zero read timeout": (lambda t: ["--demo", "--read-timeout", "0"], ["--read-timeout must be a positive number"]),
    "endless connect timeout": (lambda t: ["--demo", "--connect-timeout", "inf"], ["--connect-timeout must be a positive"]),
    "not a number": (lambda t: ["--demo", "--timeout", "soon"], ["--timeout"]),
    "timeout with a command": (lambda t: ["--timeout", "5", "checks"], ["cannot be combined"]),
    "unknown command": (lambda t: ["audit-everything"], ["No such command"]),
    "audit options with a command": (lambda t: ["--demo", "checks"], ["cannot be combined"]),
    "bad catalog format": (lambda t: ["checks", "--format", "csv"], ["'csv' is not one of"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_args, fragments = BAD_INPUTS[case]
    code, out, err = run(capsys, *make_args(tmp_path))
    assert_one_line_error(code, err, *fragments)
    assert out == ""


def test_unreadable_snapshot_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = write_snapshot(tmp_path / "s.json")
    snap.chmod(0)
    try:
        if os.access(snap, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
        code, _, err = run(capsys, "--snapshot", str(snap))
        assert_one_line_error(code, err, "permission denied")
    finally:
        snap.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_an_existing_output_survives_a_failed_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.csv"
    report.write_text("yesterday's report\n", encoding="utf-8")
    code, _, err = run(capsys, *_not_json(tmp_path), "--format", "csv", "--output", str(report))
    assert_one_line_error(code, err)
    assert report.read_text(encoding="utf-8") == "yesterday's report\n"
    snap = write_snapshot(tmp_path / "s.json", locked=False)
    code, out, err = run(capsys, "--snapshot", str(snap), *LOCKS, "--format", "csv", "--output", str(report))
    assert (code, out, err) == (1, "", "")
    assert [r["status"] for r in csv_rows(report.read_text(encoding="utf-8"))] == ["FAIL", "PASS"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json", "report.csv", "s.json"]  # no temp file left


def test_a_bug_exits_4_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("first line\n  second line")

    monkeypatch.setattr("auditor.audit.StagedAudit.finish", broken)
    code, out, err = run(capsys, "--snapshot", str(write_snapshot(tmp_path / "s.json")))
    assert (code, out) == (4, "")
    assert err.splitlines() == ["aib-audit: internal error: RuntimeError: first line second line"]


# --------------------------------------------------------------------------------------------- help, version, catalog


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--help")
    assert (code, err) == (0, "")
    assert "--subscription" in out and "--snapshot-out" in out and "4 internal error" in " ".join(out.split())
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (0, f"aib-audit {cli.__version__}\n")


def test_checks_lists_the_whole_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "checks")
    assert (code, err) == (0, "")
    for cid, chk in catalog().items():
        line = next(line for line in out.splitlines() if line.startswith(cid))
        assert chk.meta.practice in line and str(chk.meta.severity) in line
    code, out, _ = run(capsys, "checks", "--format", "json")
    listed = json.loads(out)
    assert code == 0 and [c["id"] for c in listed] == list(catalog())
    assert all(c["docs_url"].startswith("https://learn.microsoft.com/") for c in listed)


# --------------------------------------------------------------------------------------------- the installed script


def _script_env(bin_dir: Path | None = None) -> dict[str, str]:
    """The caller's environment without any Azure credential settings, and only the stand-in CLI on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_", "IMDS_"))}
    env["AZURE_TOKEN_CREDENTIALS"] = "AzureCliCredential"  # DefaultAzureCredential tries az only: no IMDS probe
    env["PATH"] = os.pathsep.join([*([str(bin_dir)] if bin_dir else []), "/usr/bin", "/bin"])
    env["NO_COLOR"] = "1"
    return env


def _stand_in_az(tmp_path: Path, body: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    az.chmod(0o755)
    return bin_dir


def _script(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AIB_AUDIT), *args], capture_output=True, text=True, timeout=60, env=env or _script_env())


@pytest.mark.e2e
@pytest.mark.parametrize("args", [["--bogus"], ["--snapshot", "/nonexistent/aib-audit.json"], ["--format", "xml", "--demo"]])
def test_script_errors_are_one_line_without_traceback(args: list[str]) -> None:
    proc = _script(args)
    assert_one_line_error(proc.returncode, proc.stderr)
    assert proc.stdout == ""


@pytest.mark.e2e
def test_script_without_a_usable_credential_exits_2(tmp_path: Path) -> None:
    bin_dir = _stand_in_az(tmp_path, "echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n")
    proc = _script(["--subscription", SUB, "--arm-endpoint", "https://127.0.0.1:9"], _script_env(bin_dir))
    assert_one_line_error(proc.returncode, proc.stderr, "credential")
    assert proc.stdout == ""


@pytest.mark.e2e
def test_script_with_an_unreachable_endpoint_exits_2(tmp_path: Path, refused_port: int) -> None:
    token = '{"accessToken": "stand-in-token", "expires_on": 9999999999, "tokenType": "Bearer"}'
    bin_dir = _stand_in_az(tmp_path, f"echo '{token}'\n")
    port = refused_port
    proc = _script(["--subscription", SUB, "--arm-endpoint", f"https://127.0.0.1:{port}"], _script_env(bin_dir))
    assert_one_line_error(proc.returncode, proc.stderr, f"127.0.0.1:{port}")
    assert proc.stdout == ""


# --------------------------------------------------------------------------------------------- through the emulator


def estate_doc() -> dict[str, Any]:
    """Two templates: one locked (passes both lock checks), one not (fails AIB-LOCK-001); their staging RGs exist."""
    locked = b.template(SUB, "rg-images", "tpl-locked")
    bare = b.template(SUB, "rg-images", "tpl-bare")
    groups = ["rg-images", b.staging_rg_name(locked), b.staging_rg_name(bare)]
    return b.snapshot(
        [SUB],
        {
            "imageTemplates": [locked, bare],
            "locks": [b.lock(locked["id"], "keep")],
            "resourceGroups": [b.resource_group(SUB, rg) for rg in groups],
        },
    )


def strip_audited_at(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    at = rows[0].index("audited_at")
    return [row[:at] + row[at + 1 :] for row in rows]


def test_demo_collects_through_the_emulator_and_snapshot_round_trips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "demo_estate", estate_doc)
    first, saved = tmp_path / "first.csv", tmp_path / "snap.json"
    code, out, err = run(capsys, "--demo", *LOCKS, "-f", "csv", "-o", str(first), "--snapshot-out", str(saved))
    assert (code, out, err) == (1, "", "")
    rows = csv_rows(first.read_text(encoding="utf-8"))
    assert {(r["resource_name"], r["check_id"]): r["status"] for r in rows} == {
        ("tpl-bare", "AIB-LOCK-001"): "FAIL",
        ("tpl-bare", "AIB-LOCK-002"): "PASS",
        ("tpl-locked", "AIB-LOCK-001"): "PASS",
        ("tpl-locked", "AIB-LOCK-002"): "PASS",
    }
    meta = json.loads(saved.read_text(encoding="utf-8"))["meta"]
    assert meta["arm_endpoint"].startswith("https://127.0.0.1:") and meta["arm_calls"] > 0

    code, out, err = run(capsys, "--snapshot", str(saved), *LOCKS, "-f", "csv")
    assert (code, err) == (1, "")
    assert strip_audited_at(out) == strip_audited_at(first.read_text(encoding="utf-8"))

    code, out, _ = run(capsys, "--snapshot", str(saved), *LOCKS, "-f", "json")
    run_meta = json.loads(out)["run"]
    assert run_meta["arm_calls"] == meta["arm_calls"] and run_meta["collected_at"] == meta["collected_at"]


@pytest.mark.e2e
def test_script_audits_live_through_default_credential(tmp_path: Path) -> None:
    """The live path end to end: DefaultAzureCredential (stand-in az), REQUESTS_CA_BUNDLE, the emulator as ARM."""
    from auditor.emulator import Emulator

    token = '{"accessToken": "stand-in-token", "expires_on": 9999999999, "tokenType": "Bearer"}'
    env = _script_env(_stand_in_az(tmp_path, f"echo '{token}'\n"))
    with Emulator(estate_doc()) as emu:
        env["REQUESTS_CA_BUNDLE"] = emu.ca_bundle
        proc = _script(["--subscription", SUB.upper(), "--arm-endpoint", emu.endpoint, *LOCKS, "-f", "json"], env)
        writes, calls = emu.writes, emu.calls
    assert (proc.returncode, proc.stderr) == (1, "")
    doc = json.loads(proc.stdout)
    assert doc["run"]["source"] == "live" and doc["run"]["subscriptions"] == [SUB]
    assert doc["run"]["arm_endpoint"] == emu.endpoint and doc["run"]["arm_calls"] == calls > 0
    assert {t["name"]: t["failed_checks"] for t in doc["templates"]} == {"tpl-bare": ["AIB-LOCK-001"], "tpl-locked": []}
    assert writes == []  # read-only


def test_bundled_demo_fails_and_reports_every_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "demo.csv"
    code, _, err = run(capsys, "--demo", "--format", "csv", "--output", str(report))
    assert (code, err) == (1, "")
    rows = csv_rows(report.read_text(encoding="utf-8"))
    assert {r["check_id"] for r in rows} == set(catalog())
    assert any(r["status"] == "FAIL" for r in rows)


def test_emulate_rejects_a_bad_estate_and_a_taken_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "emulate", "--estate", str(tmp_path / "missing.json"))
    assert_one_line_error(code, err, "not found")
    estate = tmp_path / "estate.json"
    estate.write_text(json.dumps(estate_doc()), encoding="utf-8")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "emulate", "--estate", str(estate), "--port", str(port))
    assert_one_line_error(code, err, f"cannot serve on 127.0.0.1:{port}")


def test_emulate_rejects_bad_fault_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    estate = tmp_path / "estate.json"
    estate.write_text(json.dumps(estate_doc()), encoding="utf-8")
    code, _, err = run(capsys, "emulate", "--estate", str(estate), "--error-rate", "1.5")
    assert_one_line_error(code, err, "--error-rate")


@pytest.mark.e2e
def test_script_emulate_serves_the_estate_until_stopped(tmp_path: Path) -> None:
    estate = tmp_path / "estate.json"
    estate.write_text(json.dumps(estate_doc()), encoding="utf-8")
    forbidden = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments"
    args = [str(AIB_AUDIT), "emulate", "--estate", str(estate), "--page-size", "1", "--latency-ms", "1", "--throttle"]
    args += ["--forbid", forbidden, "--break", "/triggers"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_script_env())
    try:
        assert proc.stdout is not None
        lines = read_lines(proc.stdout, 3)
        endpoint = lines[1].split(":", 1)[1].strip()
        bundle = lines[2].split(":", 1)[1].strip()
        assert endpoint.startswith("https://127.0.0.1:")
        url = f"{endpoint}/subscriptions/{SUB}/providers/Microsoft.VirtualMachineImages/imageTemplates?api-version=2025-10-01"
        request = urllib.request.Request(url, headers={"Authorization": "Bearer t"})
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=bundle), timeout=10) as resp:
            page = json.loads(resp.read())
        assert len(page["value"]) == 1 and page["nextLink"]  # --page-size 1 reached the emulator
        denied = urllib.request.Request(f"{endpoint}{forbidden}?api-version=2022-04-01", headers={"Authorization": "Bearer t"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(denied, context=ssl.create_default_context(cafile=bundle), timeout=10)
        assert refused.value.code == 403  # --forbid reached the emulator
        assert json.loads(refused.value.read())["error"]["code"] == "AuthorizationFailed"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
