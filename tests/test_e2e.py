"""End to end: the INSTALLED `aib-audit` console script, as a scheduled job runs it, against the emulator.

The script runs as a subprocess with DefaultAzureCredential narrowed to the Azure CLI
(AZURE_TOKEN_CREDENTIALS=AzureCliCredential) and a stand-in `az` on PATH, the emulator's CA in REQUESTS_CA_BUNDLE,
and no AZURE_* / IDENTITY_* / MSI_* variables, so no credential can reach for the managed-identity endpoint. As a
second guard (pytest's --block-network does not reach into subprocesses) a `sitecustomize` in the child refuses
and logs every connection that is not to loopback; each test asserts that log stays empty.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from auditor.emulator import DecoyHit, Emulator, Faults, RequestRecord
from fixtures import builders as b
from fixtures import demo
from tests.conftest import FakeClock

pytestmark = pytest.mark.e2e

AIB_AUDIT = Path(sys.executable).parent / "aib-audit"
DEMO_ESTATE = Path(demo.__file__).parent / "estates" / "demo.json"
# design.md "Findings and the CSV": the columns, in this order (a contract; spelled out, not imported).
CSV_COLUMNS = [
    "subscription_id",
    "resource_group",
    "resource_type",
    "resource_name",
    "resource_id",
    "check_id",
    "practice",
    "title",
    "severity",
    "status",
    "detail",
    "principal_id",
    "principal_type",
    "role_name",
    "role_scope",
    "remediation",
    "docs_url",
    "audited_at",
    "finding_id",
    "change",
    "principal_name",
    "principal_upn",
    "exception_reason",
    "exception_owner",
    "exception_expires",
]
LP_CHECKS = [f"AIB-LP-00{n}" for n in range(1, 8)]
TOKEN = {
    "accessToken": "e2e-stand-in-token",
    "expiresOn": "2099-01-01 00:00:00.000000",
    "expires_on": 4070908800,
    "subscription": demo.SUB,
    "tenant": b.guid("tenant:contoso"),
    "tokenType": "Bearer",
}
STAND_IN_AZ = """#!/bin/sh
# A stand-in Azure CLI: answers `az account get-access-token` like the real one, logs how it was called.
echo "$@" >> "{log}"
if [ "$1" = "account" ] && [ "$2" = "get-access-token" ]; then
  cat <<'JSON'
{token}
JSON
  exit 0
fi
echo "ERROR: the stand-in az only knows 'account get-access-token'" >&2
exit 2
"""
# Refuses (and logs) any connection the child makes that is not to loopback: no IMDS, no Entra ID, no ARM.
LOOPBACK_GUARD = """
import os, socket

_LOG = os.environ.get("AIB_E2E_GUARD_LOG")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address[0] not in _LOOPBACK:
        if _LOG:
            with open(_LOG, "a") as f:
                f.write(f"{address!r}\\n")
        raise OSError(f"aib-audit e2e guard: no connection to {address!r}")


_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
"""


def template_id_of(name: str) -> str:
    for t in json.loads(DEMO_ESTATE.read_text(encoding="utf-8"))["resources"]["imageTemplates"]:
        if t["name"] == name:
            return str(t["id"])
    raise KeyError(name)


@dataclass
class ScriptRun:
    code: int
    stdout: str
    stderr: str
    rows: list[dict[str, str]]
    header: list[str]
    requests: list[RequestRecord]
    writes: list[RequestRecord]
    throttled: int
    az_calls: list[str]
    blocked: list[str]
    elapsed: float = 0.0  # seconds the script ran
    decoy_hits: list[DecoyHit] = field(default_factory=list)  # what reached the other host, with faults that name one

    def rows_for(self, resource_name: str, check_id: str) -> list[dict[str, str]]:
        return [r for r in self.rows if r["resource_name"] == resource_name and r["check_id"] == check_id]

    def status(self, resource_name: str, check_id: str) -> str:
        statuses = {r["status"] for r in self.rows_for(resource_name, check_id)}
        assert len(statuses) == 1, (resource_name, check_id, statuses)
        return statuses.pop()

    def outcome(self) -> list[tuple[str, ...]]:
        """Every row without the timestamp: what must not depend on how ARM behaved on the way."""
        return sorted(tuple(v for k, v in r.items() if k != "audited_at") for r in self.rows)


class Harness:
    """Starts the emulator in this process and runs the installed script against it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0
        bin_dir = root / "bin"
        guard_dir = root / "guard"
        bin_dir.mkdir()
        guard_dir.mkdir()
        self.az_log = root / "az.log"
        self.guard_log = root / "guard.log"
        az = bin_dir / "az"
        az.write_text(STAND_IN_AZ.format(log=self.az_log, token=json.dumps(TOKEN)), encoding="utf-8")
        az.chmod(0o755)
        (guard_dir / "sitecustomize.py").write_text(LOOPBACK_GUARD, encoding="utf-8")
        self.bin_dir, self.guard_dir = bin_dir, guard_dir

    def env(self, ca_bundle: str) -> dict[str, str]:
        strip = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "AIB_AUDIT_", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "PYTHON")
        env = {k: v for k, v in os.environ.items() if not k.startswith(strip)}
        env.update(
            AZURE_TOKEN_CREDENTIALS="AzureCliCredential",
            REQUESTS_CA_BUNDLE=ca_bundle,
            PATH=f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=str(self.guard_dir),
            AIB_E2E_GUARD_LOG=str(self.guard_log),
            NO_COLOR="1",
        )
        return env

    def run(
        self,
        faults: Faults | None = None,
        subscriptions: tuple[str, ...] = (demo.SUB, demo.SUB2),
        extra: tuple[str, ...] = (),
        endpoint: str | None = None,
    ) -> ScriptRun:
        """Run the script against a fresh emulator (or `endpoint`, e.g. a black hole); `extra` are more options."""
        self.count += 1
        report = self.root / f"report-{self.count}.csv"
        self.az_log.unlink(missing_ok=True)
        self.guard_log.unlink(missing_ok=True)
        estate = json.loads(DEMO_ESTATE.read_text(encoding="utf-8"))
        with Emulator(estate, faults=faults) as emu:
            args = [str(AIB_AUDIT)]
            for sub in subscriptions:
                args += ["--subscription", sub]
            args += ["--arm-endpoint", endpoint or emu.endpoint, "--format", "csv", "--output", str(report), *extra]
            started = time.monotonic()
            proc = subprocess.run(args, env=self.env(emu.ca_bundle), capture_output=True, text=True, timeout=120)
            elapsed = time.monotonic() - started
            requests, writes, throttled = emu.requests, emu.writes, emu.throttled
            decoy_hits = emu.decoy.requests if emu.faults.needs_decoy else []
        text = report.read_text(encoding="utf-8") if report.exists() else ""
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
        return ScriptRun(
            code=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            rows=rows,
            header=list(reader.fieldnames or []),
            requests=requests,
            writes=writes,
            throttled=throttled,
            az_calls=self.az_log.read_text(encoding="utf-8").splitlines() if self.az_log.exists() else [],
            blocked=self.guard_log.read_text(encoding="utf-8").splitlines() if self.guard_log.exists() else [],
            elapsed=elapsed,
            decoy_hits=decoy_hits,
        )


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    assert AIB_AUDIT.exists(), f"the console script is not installed next to {sys.executable}: pip install -e ."
    return Harness(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def clean_run(harness: Harness) -> ScriptRun:
    return harness.run()


GET_BY_IDS = "/v1.0/directoryObjects/getByIds"


def only_reads(requests: list[RequestRecord]) -> bool:
    """GET, and Microsoft Graph's getByIds: the one POST that reads."""
    return bool(requests) and all(r.method == "GET" or (r.method, r.path) == ("POST", GET_BY_IDS) for r in requests)


def assert_quiet(run: ScriptRun) -> None:
    """No traceback, no stdout (the report went to --output), only reads, no connection anywhere but loopback."""
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert run.writes == [] and only_reads(run.requests)
    assert run.blocked == []


GUARD_PROBE = """
import sys
import sitecustomize  # the guard, or this probe stops before touching any socket
assert sitecustomize.__file__.startswith(sys.argv[1]), sitecustomize.__file__
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.connect(("192.0.2.1", 9))  # TEST-NET-1; the guard refuses it before any packet is sent
except OSError as exc:
    print(exc)
"""


def test_the_child_interpreter_can_reach_loopback_only(harness: Harness) -> None:
    probe_log = harness.root / "probe.log"
    env = {**harness.env("/nonexistent-ca.pem"), "AIB_E2E_GUARD_LOG": str(probe_log)}
    python = AIB_AUDIT.parent / "python"
    proc = subprocess.run([str(python), "-c", GUARD_PROBE, str(harness.guard_dir)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "aib-audit e2e guard: no connection to ('192.0.2.1', 9)" in proc.stdout
    assert "192.0.2.1" in probe_log.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------- the clean run


def test_audit_of_the_demo_exits_1_with_the_contract_columns(clean_run: ScriptRun) -> None:
    assert (clean_run.code, clean_run.stderr) == (1, "")
    assert_quiet(clean_run)
    assert clean_run.header == CSV_COLUMNS
    assert {r["subscription_id"] for r in clean_run.rows} <= {demo.SUB, demo.SUB2}
    assert {r["status"] for r in clean_run.rows} == {"PASS", "FAIL", "N/A"}  # no ERROR: everything was readable


def test_the_credential_came_from_the_stand_in_az(clean_run: ScriptRun) -> None:
    assert clean_run.az_calls, "DefaultAzureCredential did not use the Azure CLI"
    assert all(c.startswith("account get-access-token") for c in clean_run.az_calls)
    assert "--resource https://management.azure.com" in clean_run.az_calls[0]
    # Microsoft Graph's token is asked for its own audience, and is sent to Graph's endpoint only.
    assert any("--resource https://graph.microsoft.com" in c for c in clean_run.az_calls)


def test_the_audit_only_read(clean_run: ScriptRun) -> None:
    assert clean_run.writes == []
    assert only_reads(clean_run.requests)
    assert [r.path for r in clean_run.requests if r.method == "POST"] == [GET_BY_IDS]
    assert all(r.status == 200 for r in clean_run.requests)


def test_rows_say_what_the_demo_estate_implies(clean_run: ScriptRun) -> None:
    run = clean_run
    # The community-shared gallery is the finding, on the gallery itself.
    (community,) = run.rows_for(demo.GAL_PUBLIC, "AIB-GAL-004")
    assert community["status"] == "FAIL" and community["severity"] == "high"
    assert community["resource_type"] == "Microsoft.Compute/galleries" and "community" in community["detail"]
    assert run.status(demo.GAL_PROD, "AIB-GAL-004") == "PASS"

    # The deleted contractor's Contributor on the dev resource group: one actionable row, principal by principal.
    dev_rg = b.rg_id(demo.SUB, demo.RG_DEV)
    deleted = [r for r in run.rows_for("win2022-dev-weu", "AIB-LP-001") if r["principal_id"] == demo.DELETED]
    assert len(deleted) == 1
    assert (deleted[0]["status"], deleted[0]["principal_type"], deleted[0]["role_name"]) == ("FAIL", "Unknown", "Contributor")
    assert deleted[0]["role_scope"].lower() == dev_rg.lower()
    assert deleted[0]["resource_id"] == template_id_of("win2022-dev-weu")

    # Owner inherited from the root management group reaches the dev templates.
    mg = [r for r in run.rows_for("rhel9-managed-weu", "AIB-LP-001") if r["principal_id"] == demo.PLATFORM_OWNERS]
    assert [(r["status"], r["principal_type"], r["role_name"], r["role_scope"]) for r in mg] == [
        ("FAIL", "Group", "Owner", demo.MG)
    ]

    # The reference template: only the release pipeline, at the template itself.
    reference = run.rows_for("ubuntu2404-prod-weu", "AIB-LP-001")
    assert [(r["status"], r["principal_id"], r["role_name"]) for r in reference] == [
        ("PASS", demo.RELEASE_PIPELINE, "Image Template Publisher")
    ]
    assert run.status("ubuntu2404-prod-weu", "AIB-LOCK-001") == "PASS"
    assert run.status("ubuntu2404-prod-weu", "AIB-TRIG-001") == "PASS"
    assert run.status("ubuntu2404-prod-neu", "AIB-TRIG-001") == "FAIL"  # its trigger is unhealthy
    assert run.status("win2022-dev-weu", "AIB-LOCK-002") == "FAIL"  # ReadOnly lock blocks `run`


# --------------------------------------------------------------------------------------------- faults


def test_forbidden_role_assignments_make_the_lp_checks_error_and_exit_3(harness: Harness, clean_run: ScriptRun) -> None:
    forbidden = f"/subscriptions/{demo.SUB}/providers/Microsoft.Authorization/roleAssignments"
    run = harness.run(Faults(forbidden_scopes=(forbidden,)))
    assert run.code == 3, run.stderr
    assert_quiet(run)
    assert any(r.status == 403 for r in run.requests)
    templates = {r["resource_id"] for r in clean_run.rows if r["resource_type"].endswith("/imageTemplates")}
    assert len(templates) == 7
    assert {r["resource_id"] for r in clean_run.rows if r["check_id"] == "AIB-LP-001"} == templates
    for check in ("AIB-LP-001", "AIB-LP-002", "AIB-LP-004"):
        rows = [r for r in run.rows if r["check_id"] == check]
        errors = [r for r in rows if r["status"] == "ERROR"]
        # Each template says it could not be evaluated, and why; nothing passes on what could not be read. The
        # ERROR rows name the resources the clean run's rows named (the template for LP-001, the staging RG for
        # LP-002, the identity for LP-004), so a dashboard keyed on (resource_id, check_id) loses no row.
        clean_keys = {r["resource_id"] for r in clean_run.rows if r["check_id"] == check and r["status"] != "N/A"}
        assert {r["resource_id"] for r in errors} == clean_keys, check
        assert {r["resource_id"] for r in rows} == clean_keys, check
        assert all("roleAssignments" in r["detail"] and "403" in r["detail"] for r in errors)
        assert {r["status"] for r in rows} <= {"ERROR", "FAIL"}, check
        # Principals still visible (Owner from the management group, listed through the second subscription)
        # keep their FAIL rows: an incomplete audit still reports what it knows.
        assert all(r["principal_id"] == demo.PLATFORM_OWNERS for r in rows if r["status"] == "FAIL")
    # Checks that need no role assignment are unaffected.
    for name, check in (
        ("ubuntu2404-prod-weu", "AIB-LOCK-001"),
        (demo.GAL_PUBLIC, "AIB-GAL-004"),
        ("win2022-dev-weu", "AIB-SC-001"),
    ):
        assert run.status(name, check) == clean_run.status(name, check)


def test_throttling_is_waited_out_and_changes_nothing(
    harness: Harness, clean_run: ScriptRun, clock_until_throttled: FakeClock
) -> None:
    # No refill until the first 429 (so throttling is certain however slow the machine), real time after it.
    run = harness.run(Faults(throttle=True, burst=10, refill_per_s=20.0, clock=clock_until_throttled))
    assert (run.code, run.stderr) == (1, "")
    assert_quiet(run)
    assert run.throttled > 0 and any(r.status == 429 for r in run.requests)
    assert run.outcome() == clean_run.outcome()


def test_a_broken_trigger_body_errors_that_template_only(harness: Harness, clean_run: ScriptRun) -> None:
    broken = template_id_of("ubuntu2404-prod-weu") + "/triggers"
    run = harness.run(Faults(broken_paths=(f"truncated:{broken}",)))
    assert run.code == 3
    assert_quiet(run)
    assert run.stderr == ""
    assert clean_run.status("ubuntu2404-prod-weu", "AIB-TRIG-001") == "PASS"
    (row,) = run.rows_for("ubuntu2404-prod-weu", "AIB-TRIG-001")
    assert row["status"] == "ERROR" and "triggers" in row["detail"]
    others = {r["resource_name"] for r in clean_run.rows if r["check_id"] == "AIB-TRIG-001"} - {"ubuntu2404-prod-weu"}
    assert others and all(run.status(n, "AIB-TRIG-001") == clean_run.status(n, "AIB-TRIG-001") for n in others)
    assert run.status("ubuntu2404-prod-weu", "AIB-LOCK-001") == "PASS"


def test_a_live_audit_gives_the_rows_of_an_audit_of_its_snapshot(harness: Harness, tmp_path: Path) -> None:
    """A live run checks while it reads the trigger lists (the checks that need none run first; a failed trigger
    read arrives after them); an audit of the saved snapshot runs every check in one pass. Same rows, same exit."""
    saved = tmp_path / "collected.json"
    broken = template_id_of("ubuntu2404-prod-weu") + "/triggers"
    live = harness.run(Faults(broken_paths=(f"truncated:{broken}",)), extra=("--snapshot-out", str(saved)))
    assert live.code == 3 and live.rows_for("ubuntu2404-prod-weu", "AIB-TRIG-001")[0]["status"] == "ERROR"
    report = tmp_path / "from-snapshot.csv"
    args = [str(AIB_AUDIT), "--snapshot", str(saved), "--format", "csv", "--output", str(report)]
    proc = subprocess.run(args, env=harness.env(""), capture_output=True, text=True, timeout=120)
    assert (proc.returncode, proc.stderr) == (3, "")
    offline = list(csv.DictReader(io.StringIO(report.read_text(encoding="utf-8"), newline="")))
    assert sorted(tuple(v for k, v in r.items() if k != "audited_at") for r in offline) == live.outcome()


def test_an_unknown_subscription_is_a_one_line_exit_2(harness: Harness) -> None:
    missing = b.guid("subscription:nobody")
    run = harness.run(subscriptions=(missing,))
    assert run.code == 2 and run.rows == []
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert missing in run.stderr and run.blocked == []


# --------------------------------------------------------------------------------------------- Microsoft Graph


DELETED_PRINCIPALS = {demo.DELETED, demo.ERIK}


def verdicts(run: ScriptRun) -> list[tuple[str, ...]]:
    """What the audit decided, row by row: everything but names (which Graph adds) and the timestamp."""
    return sorted((r["resource_id"], r["check_id"], r["principal_id"], r["role_scope"], r["status"]) for r in run.rows)


def test_every_principal_row_has_a_name_or_says_the_principal_is_deleted(clean_run: ScriptRun) -> None:
    # Directory principals; AIB-GAL-005's rows name a subscription or tenant a gallery is shared with, not a principal.
    principal_rows = [r for r in clean_run.rows if r["principal_id"] and r["principal_type"] not in ("Subscription", "AADTenant")]
    assert principal_rows
    for r in principal_rows:
        if r["principal_id"] in DELETED_PRINCIPALS:
            assert r["principal_name"] == "" and "deleted" in r["detail"], r
        else:
            assert r["principal_name"], r
    (bob,) = [r for r in clean_run.rows_for("win2022-dev-weu", "AIB-LP-001") if r["principal_id"] == demo.BOB]
    assert (bob["principal_name"], bob["principal_upn"]) == ("Bob Berg", "bob@contoso.com")
    assert "Bob Berg <bob@contoso.com>" in bob["detail"]
    # Erik left: ARM still says principalType User, Graph does not know him, so his row says deleted and fails.
    (erik,) = [r for r in clean_run.rows_for("win2022-dev-weu", "AIB-LP-001") if r["principal_id"] == demo.ERIK]
    assert (erik["status"], erik["principal_type"]) == ("FAIL", "User")
    assert "Microsoft Graph does not know it" in erik["detail"]


def test_a_graph_403_leaves_every_verdict_and_the_exit_code_as_they_were(harness: Harness, clean_run: ScriptRun) -> None:
    run = harness.run(Faults(forbidden_scopes=("/v1.0",)))
    assert run.code == clean_run.code == 1
    assert_quiet(run)
    assert [r.status for r in run.requests if r.path.startswith("/v1.0")] == [403]  # one getByIds, refused; no retry storm
    (line,) = run.stderr.splitlines()
    assert line.startswith("aib-audit: warning:") and "Microsoft Graph" in line and "403" in line
    assert {r["principal_name"] for r in run.rows} == {""}
    # Nothing is marked deleted on the strength of an answer that was not given; everything else is the same.
    clean = [v for v in verdicts(clean_run) if v[2] != demo.ERIK]
    assert [v for v in verdicts(run) if v[2] != demo.ERIK] == clean
    (erik,) = [r for r in run.rows_for("win2022-dev-weu", "AIB-LP-001") if r["principal_id"] == demo.ERIK]
    assert erik["status"] == "FAIL" and "deleted" not in erik["detail"]  # fails for the limit only, as before Graph


def test_no_graph_sends_nothing_to_graph(harness: Harness, clean_run: ScriptRun) -> None:
    run = harness.run(extra=("--no-graph",))
    assert (run.code, run.stderr) == (1, "")
    assert not any(r.path.startswith("/v1.0") for r in run.requests)
    assert not any("graph" in c for c in run.az_calls)
    assert {r["principal_name"] for r in run.rows} == {""}


def test_expand_groups_reports_each_member_through_its_group(harness: Harness) -> None:
    run = harness.run(extra=("--expand-groups",))
    assert (run.code, run.stderr) == (1, "")
    assert_quiet(run)
    reads = sorted(r.path for r in run.requests if r.path.startswith("/v1.0/groups/"))
    groups = sorted({demo.PLATFORM_OWNERS, demo.IMAGE_ENGINEERS, demo.IMAGE_CONTRACTORS})
    assert reads == [f"/v1.0/groups/{g}/transitiveMembers" for g in groups]  # one list per group, nested too
    rows = run.rows_for("win2022-dev-weu", "AIB-LP-001")
    (frank,) = [r for r in rows if r["principal_id"] == demo.FRANK]
    assert frank["principal_name"] == "Frank Fischer" and frank["status"] == "FAIL"
    assert "through group grp-image-engineers > grp-image-contractors" in frank["detail"]
    # Carol is in both groups: one row, both paths.
    carol = [r for r in rows if r["principal_id"] == demo.CAROL]
    assert len(carol) == 1 and "grp-platform-owners" in carol[0]["detail"] and "grp-image-engineers" in carol[0]["detail"]
    # The groups keep their own rows.
    assert {demo.PLATFORM_OWNERS, demo.IMAGE_ENGINEERS} <= {r["principal_id"] for r in rows}
