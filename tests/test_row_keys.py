"""Rows keep their key when they fail (issue 7, case 10), and failed reads say what happened.

A dashboard keys on (resource_id, check_id): when an RBAC read fails, the LP-002/003 ERROR rows must name the
staging RG and the LP-004/005 ones the identity, as their PASS/FAIL rows do. A 403 on a staging RG is "access
denied", not "deleted?"; an HTML body (a proxy's sign-in page) is said to be one.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from typing import Any

import pytest

from auditor.audit import run_audit, select_checks
from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.emulator import Faults
from auditor.findings import Finding, Status
from auditor.inventory import build_inventory
from fixtures import demo
from tests.conftest import StartEmulator

KEYED_CHECKS = ("AIB-LP-002", "AIB-LP-003", "AIB-LP-004", "AIB-LP-005")
ROLE_ASSIGNMENTS = f"/subscriptions/{demo.SUB}/providers/Microsoft.Authorization/roleAssignments"


def estate() -> dict[str, Any]:
    return json.loads(demo.PATH.read_text(encoding="utf-8"))


def audit(emulator: StartEmulator, doc: dict[str, Any], faults: Faults | None = None) -> list[Finding]:
    emu = emulator(doc, faults=faults)
    subs = list(doc["subscriptions"])
    snap = collect(subs, StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
    return run_audit(build_inventory(snap), select_checks(list(KEYED_CHECKS) + ["AIB-LP-001"])).findings


def keys(findings: list[Finding]) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for f in findings:
        out[f.check_id].add((f.resource_id.lower(), f.check_id))
    return out


@pytest.mark.parametrize(
    "faults",
    [
        Faults(forbidden_scopes=(ROLE_ASSIGNMENTS,)),  # 403 on the subscription's role assignments
        Faults(broken_paths=("html:/providers/microsoft.authorization/roleassignments",)),  # a proxy's sign-in page
    ],
    ids=["403", "html"],
)
def test_error_rows_keep_the_resource_their_pass_and_fail_rows_name(emulator: StartEmulator, faults: Faults) -> None:
    clean = audit(emulator, estate())
    faulted = audit(emulator, estate(), faults)
    assert {f.status for f in clean} <= {Status.PASS, Status.FAIL, Status.NA}
    clean_keys, faulted_keys = keys(clean), keys(faulted)
    for check in KEYED_CHECKS:
        errors = [f for f in faulted if f.check_id == check and f.status == Status.ERROR]
        assert errors, check
        # Not one row vanished or appeared under another resource: the same (resource, check) keys in both runs.
        assert faulted_keys[check] == clean_keys[check], check
    staging = {f.resource_id.lower() for f in clean if f.check_id == "AIB-LP-002"}
    assert staging and all("/resourcegroups/" in r and "/providers/" not in r for r in staging)
    identities = {f.resource_id.lower() for f in clean if f.check_id in ("AIB-LP-004", "AIB-LP-005") and f.status != Status.NA}
    assert identities and all("/userassignedidentities/" in r for r in identities)


def test_a_html_body_says_what_came_back(emulator: StartEmulator) -> None:
    faulted = audit(emulator, estate(), Faults(broken_paths=("html:/providers/microsoft.authorization/roleassignments",)))
    errors = [f for f in faulted if f.status == Status.ERROR]
    assert errors
    for f in errors:
        assert 'an HTML page titled "Sign in – Contoso Web Proxy" came back instead of ARM JSON' in f.detail, f.detail
        assert "Content-Type text/html" in f.detail
        assert "<" not in f.detail and "Expecting value" not in f.detail and "Error(" not in f.detail


def _without_staging_rg(doc: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The demo estate with one template's staging RG left out of the RG list (a caller who cannot read it does
    not see it listed), so the collector GETs it."""
    doc = copy.deepcopy(doc)
    tpl = next(t for t in doc["resources"]["imageTemplates"] if t["name"] == "ubuntu2404-prod-weu")
    rg_id = "/" + tpl["properties"]["exactStagingResourceGroup"].strip("/")
    doc["resources"]["resourceGroups"] = [r for r in doc["resources"]["resourceGroups"] if r["id"].lower() != rg_id.lower()]
    return doc, rg_id, tpl["id"]


def test_a_403_on_the_staging_rg_says_access_denied_with_the_permission(emulator: StartEmulator) -> None:
    doc, rg_id, _ = _without_staging_rg(estate())
    findings = audit(emulator, doc, Faults(forbidden_scopes=(rg_id,)))
    for check in ("AIB-LP-002", "AIB-LP-003"):
        [row] = [f for f in findings if f.check_id == check and f.resource_id.lower() == rg_id.lower()]
        assert row.status == Status.ERROR
        assert "could not be read: access denied (needs Microsoft.Resources/subscriptions/resourceGroups/read)" in row.detail
        assert "deleted?" not in row.detail and "HTTP 403" in row.detail


def test_a_missing_staging_rg_still_says_deleted(emulator: StartEmulator) -> None:
    doc, rg_id, _ = _without_staging_rg(estate())
    findings = audit(emulator, doc)
    [row] = [f for f in findings if f.check_id == "AIB-LP-002" and f.resource_id.lower() == rg_id.lower()]
    assert row.status == Status.ERROR and "was not found (deleted?)" in row.detail and "HTTP 404" in row.detail
