"""Audit results for the report-format tests (SARIF, HTML, Markdown), and the SARIF schema check they share.

Not a test module. The demo estate is audited straight from its snapshot (no emulator: the reports only need the
result). The second-release fields (ACCEPTED, exceptions, `change`, `fixed`, notes) are set directly on the
findings, the way `--exceptions` and `--baseline` fill them.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditResult, run_audit, select_checks
from auditor.findings import Finding, Status
from auditor.inventory import build_inventory
from auditor.reports import RunInfo, exit_code_for
from auditor.snapshot import Snapshot
from auditor.sources import demo_estate
from fixtures import builders as b

ROOT = Path(__file__).resolve().parents[1]
STARTED = datetime(2026, 11, 2, 8, 0, 0, tzinfo=UTC)
FINISHED = datetime(2026, 11, 2, 8, 0, 7, tzinfo=UTC)
SUB = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def shared_dir() -> Path | None:
    """$AIB_AUDIT_SHARED, else `../shared` beside the repository (CI's layout) or beside a folder above it (a worktree
    nested deeper)."""
    env = os.environ.get("AIB_AUDIT_SHARED")
    if env:
        return Path(env) if (Path(env) / "schemas").is_dir() else None
    for parent in ROOT.parents:
        if (parent / "shared" / "schemas").is_dir():
            return parent / "shared"
    return None


@cache
def _sarif_validator() -> Any:
    import jsonschema

    shared = shared_dir()
    if shared is None:
        return None
    schema = json.loads((shared / "schemas" / "sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def require_sarif_schema() -> None:
    """Skip the calling test when the OASIS schema (../shared/schemas) is not beside the repository."""
    if _sarif_validator() is None:
        pytest.skip("../shared/schemas/sarif-schema-2.1.0.json is not beside the repository")


def assert_valid_sarif(doc: dict[str, Any]) -> None:
    """Validate against the OASIS SARIF 2.1.0 schema from ../shared/schemas, when it is there (the tests' other
    assertions run either way; require_sarif_schema() makes a test skip without it)."""
    validator = _sarif_validator()
    if validator is None:
        return
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


@cache
def _demo_snapshot_doc() -> str:
    return json.dumps(demo_estate())


def demo_result() -> AuditResult:
    """The demo estate, audited with every check: every check has a PASS and a FAIL there."""
    snap = Snapshot.from_dict(json.loads(_demo_snapshot_doc()))
    return run_audit(build_inventory(snap), select_checks())


def error_result() -> AuditResult:
    """Two templates; the locks of one RG cannot be read (ERROR rows) and one subscription's template list failed
    (a row of its own, belonging to no template)."""
    other = "11111111-2222-3333-4444-555555555555"
    denied = {"status": 403, "code": "AuthorizationFailed", "message": "denied"}
    errors = [
        {"kind": "locks", "scope": b.rg_id(SUB, "rg-win"), **denied},
        {"kind": "imageTemplates", "scope": f"/subscriptions/{other}", **denied},
    ]
    linux = b.template(SUB, "RG-Images", "tpl-linux", location="westeurope")
    win = b.template(SUB, "rg-win", "tpl-win", location="northeurope")
    doc = b.snapshot(
        [SUB, other],
        {
            "imageTemplates": [linux, win],
            "locks": [b.lock(linux["id"], "protect")],
            "resourceGroups": [b.resource_group(SUB, "RG-Images"), b.resource_group(SUB, "rg-win")],
        },
        errors=errors,
    )
    return run_audit(build_inventory(Snapshot.from_dict(doc)), select_checks(["AIB-LOCK-001", "AIB-LOCK-002"]))


def run_info(result: AuditResult, **kw: Any) -> RunInfo:
    values: dict[str, Any] = {
        "source": "snapshot",
        "subscriptions": sorted({t.template.subscription_id for t in result.templates}) or [SUB],
        "arm_endpoint": "https://management.azure.com",
        "started_at": STARTED,
        "finished_at": FINISHED,
        "exit_code": exit_code_for(result),
        "arm_calls": 17,
        "throttled": 0,
        "collected_at": "2026-11-01T00:00:00Z",
    }
    values.update(kw)
    return RunInfo(**values)


def first(result: AuditResult, status: Status, check_prefix: str = "", principal: bool | None = None) -> Finding:
    for f in result.findings:
        if f.status != status or not f.check_id.startswith(check_prefix):
            continue
        if principal is not None and bool(f.principal_id) != principal:
            continue
        return f
    raise AssertionError(f"no {status} finding for {check_prefix!r}")


def accept(f: Finding, reason: str = "vendor image, risk accepted by CISO", owner: str = "secops@contoso.com") -> Finding:
    """What --exceptions does to a FAIL that an unexpired exception covers."""
    assert f.status == Status.FAIL
    f.status = Status.ACCEPTED
    f.exception_reason, f.exception_owner, f.exception_expires = reason, owner, "2027-03-31"
    return f


def with_baseline(result: AuditResult) -> tuple[Finding, Finding, Finding]:
    """What --baseline does: every row gets a change; one FAIL is new, one regressed, one PASS was fixed."""
    for f in result.findings:
        f.change = "unchanged"
    fails = [f for f in result.findings if f.status == Status.FAIL]
    new = next(f for f in fails if f.check_id == "AIB-LOCK-001")
    new.change = "new"
    regressed = next(f for f in fails if f.check_id == "AIB-NET-001")
    regressed.change = "regressed"
    fixed = next(f for f in result.findings if f.status == Status.PASS and f.check_id == "AIB-BOOT-001")
    fixed.change = "fixed"
    gone = Finding(
        Status.NA,
        "the template is gone",
        check_id="AIB-TRIG-001",
        resource_id=b.template_id(SUB, "rg-old", "tpl-retired"),
        template_id=b.template_id(SUB, "rg-old", "tpl-retired"),
        change="fixed",
    )
    result.fixed = [fixed, gone]
    return new, regressed, fixed
