"""Issue 7, cases 1-5, black box: the INSTALLED `aib-audit` against an emulator that misbehaves, as a scheduled job
runs it. Each fault ends within its bound, with the exit code and rows the README promises; no token leaves for a
host that is not the endpoint named; Ctrl-C stops at once and leaves the previous report as it was.

The harness (stand-in `az`, loopback guard, CSV parsing) is tests/test_e2e.py's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from auditor.emulator import BlackHole, Emulator, Faults
from fixtures import demo
from tests.test_e2e import AIB_AUDIT, DEMO_ESTATE, Harness, ScriptRun, assert_quiet, template_id_of

pytestmark = pytest.mark.e2e

LOCKS = "/providers/Microsoft.Authorization/locks"
# Small per-read limits keep these runs short; the defaults are what a scheduled job gets.
QUICK = ("--read-timeout", "3", "--connect-timeout", "1")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    assert AIB_AUDIT.exists(), "the console script is not installed: pip install -e ."
    return Harness(tmp_path_factory.mktemp("e2e-net"))


@pytest.fixture(scope="module")
def clean_run(harness: Harness) -> ScriptRun:
    return harness.run()


def lock_rows(run: ScriptRun) -> dict[str, str]:
    return {r["resource_name"]: r["status"] for r in run.rows if r["check_id"] == "AIB-LOCK-001"}


def assert_locks_unread(run: ScriptRun, clean_run: ScriptRun) -> None:
    """The lock checks could not be judged: ERROR for every template, never the PASS a merged page would give."""
    assert run.code == 3, run.stderr
    assert set(lock_rows(run)) == set(lock_rows(clean_run))
    assert set(lock_rows(run).values()) == {"ERROR"}
    # What does not need locks is as it was.
    assert run.status("ubuntu2404-prod-weu", "AIB-TRIG-001") == clean_run.status("ubuntu2404-prod-weu", "AIB-TRIG-001")


# --------------------------------------------------------------------------------------------- case 1


def test_a_self_looping_next_link_ends_with_error_rows(harness: Harness, clean_run: ScriptRun) -> None:
    run = harness.run(Faults(loop_paths=(LOCKS,)), extra=QUICK)
    assert_locks_unread(run, clean_run)
    assert_quiet(run)
    assert run.elapsed < 30
    assert len([r for r in run.requests if "/locks" in r.path.lower()]) <= 10
    errors = [r for r in run.rows if r["check_id"] == "AIB-LOCK-001"]
    assert all("nextLink" in r["detail"] for r in errors)


# --------------------------------------------------------------------------------------------- case 2


@pytest.mark.parametrize("fault", ["foreign_link_paths", "redirect_paths"])
def test_no_token_leaves_for_another_host_and_nothing_it_says_is_merged(
    harness: Harness, clean_run: ScriptRun, fault: str
) -> None:
    assert "FAIL" in set(lock_rows(clean_run).values())  # the decoy's CanNotDelete lock would turn these into PASS
    run = harness.run(Faults(**{fault: (LOCKS,)}), extra=QUICK)  # type: ignore[arg-type]
    assert run.decoy_hits == []  # no request at all, so no Authorization header either
    assert_locks_unread(run, clean_run)
    assert_quiet(run)
    assert all("ARM endpoint" in r["detail"] or "trusted" in r["detail"] for r in run.rows if r["check_id"] == "AIB-LOCK-001")


# --------------------------------------------------------------------------------------------- case 3


def timeout_lines(run: ScriptRun) -> list[str]:
    return [ln for ln in run.stderr.splitlines() if "timed out" in ln]


def test_an_answer_that_never_comes_is_error_rows_and_one_line(harness: Harness, clean_run: ScriptRun) -> None:
    triggers = template_id_of("ubuntu2404-prod-weu") + "/triggers"
    run = harness.run(Faults(hang_paths=(triggers,)), extra=QUICK)
    assert run.code == 3 and run.elapsed < 30
    assert run.status("ubuntu2404-prod-weu", "AIB-TRIG-001") == "ERROR"
    assert run.status("ubuntu2404-prod-neu", "AIB-TRIG-001") == clean_run.status("ubuntu2404-prod-neu", "AIB-TRIG-001")
    (line,) = run.stderr.splitlines()
    assert line.startswith("aib-audit: ") and "1 read timed out" in line and "triggers at " in line
    assert "ubuntu2404-prod-weu" in line


def test_a_drip_fed_body_is_cut_off_by_the_read_timeout(harness: Harness, clean_run: ScriptRun) -> None:
    run = harness.run(Faults(drip_paths=(LOCKS,), drip_interval_s=1.0), extra=QUICK)
    assert_locks_unread(run, clean_run)
    assert run.elapsed < 30
    (line,) = timeout_lines(run)
    assert "locks at /subscriptions/" in line


def test_the_run_timeout_ends_a_hung_audit_with_error_rows(harness: Harness) -> None:
    run = harness.run(Faults(hang_paths=("/providers/",)), extra=("--timeout", "3"))
    assert run.code == 3 and run.elapsed < 20
    assert run.rows and {r["status"] for r in run.rows} == {"ERROR"}
    (line,) = run.stderr.splitlines()
    assert "timed out" in line and "--timeout 3 s" in line


def test_a_black_hole_endpoint_is_exit_2_within_seconds(harness: Harness) -> None:
    with BlackHole() as hole:
        run = harness.run(endpoint=hole.endpoint, extra=("--connect-timeout", "1"))
    assert run.code == 2 and run.rows == []
    assert run.elapsed < 15
    (line,) = run.stderr.splitlines()
    assert line.startswith("aib-audit: error: cannot reach ARM endpoint") and "timed out" in line


# --------------------------------------------------------------------------------------------- case 4


@pytest.mark.parametrize("retry_after", [3600, 30])
def test_a_long_retry_after_fails_the_read_instead_of_sleeping(harness: Harness, clean_run: ScriptRun, retry_after: int) -> None:
    run = harness.run(Faults(retry_after_paths=(LOCKS,), retry_after_s=retry_after))  # default limits
    assert_locks_unread(run, clean_run)
    assert run.elapsed < 30
    assert any(f"retry after {retry_after} s" in r["detail"] for r in run.rows if r["check_id"] == "AIB-LOCK-001")


def test_transient_throttling_5xx_and_resets_give_identical_findings(harness: Harness, clean_run: ScriptRun) -> None:
    run = harness.run(Faults(throttle_rate=0.3, error_rate=0.05, reset_rate=0.05, seed=11))
    assert (run.code, run.stderr) == (1, "")
    assert_quiet(run)
    assert any(r.status == 429 for r in run.requests)
    assert run.outcome() == clean_run.outcome()


# --------------------------------------------------------------------------------------------- case 5


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stop_signal_ends_the_run_at_once_and_leaves_the_old_report(
    harness: Harness, sig: signal.Signals, code: int, said: str
) -> None:
    """Ctrl-C, and SIGTERM (what a scheduler, a CI runner's timeout or `kill` sends): one line, a distinct exit
    code, the previous report untouched and no temp file or partial snapshot left behind."""
    out_dir = harness.root / f"stopped-{sig.name}"
    out_dir.mkdir()
    report = out_dir / "report.csv"
    report.write_text("the previous report\n", encoding="utf-8")
    snapshot_out = out_dir / "estate.json"
    estate = json.loads(Path(DEMO_ESTATE).read_text(encoding="utf-8"))
    with Emulator(estate, faults=Faults(hang_paths=("/providers/",))) as emu:
        args = [str(AIB_AUDIT), "-s", demo.SUB, "--arm-endpoint", emu.endpoint, "--format", "csv"]
        args += ["--output", str(report), "--snapshot-out", str(snapshot_out)]
        child = subprocess.Popen(args, env=harness.env(emu.ca_bundle), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while not any(r.status == 0 for r in emu.requests):  # status 0: a request the emulator holds unanswered
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline, "no read reached the emulator"
                time.sleep(0.05)
            time.sleep(0.3)  # let the other reads pile up on hung sockets too
            sent = time.monotonic()
            child.send_signal(sig)
            stdout, stderr = child.communicate(timeout=10)
            took = time.monotonic() - sent
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == code, stderr
    assert took < 3, f"exit came {took:.1f} s after {sig.name}"
    assert stderr.splitlines() == [f"aib-audit: error: {said}"] and stdout == ""
    assert report.read_text(encoding="utf-8") == "the previous report\n"
    assert sorted(os.listdir(out_dir)) == ["report.csv"]  # no temp file, no partial snapshot
