"""SARIF 2.1.0: what GitHub code scanning and Azure DevOps read from it, and the OASIS schema (every SARIF here is
validated against ../shared/schemas/sarif-schema-2.1.0.json; those checks skip when ../shared is absent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditResult
from auditor.cli import run
from auditor.findings import Status
from auditor.reports import EXIT_INCOMPLETE, render
from auditor.reports import sarif as sarif_mod
from auditor.reports.sarif import FINGERPRINT_KEY, READ_ERROR_RULE, artifact_uri, rule_name
from checks.registry import catalog
from tests.report_data import (
    accept,
    assert_valid_sarif,
    demo_result,
    error_result,
    first,
    require_sarif_schema,
    run_info,
    with_baseline,
)


def sarif(result: AuditResult, **kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(render("sarif", result, run_info(result, **kw)))
    assert_valid_sarif(doc)
    return doc


def test_demo_sarif_is_valid_and_has_one_result_per_fail() -> None:
    require_sarif_schema()
    result = demo_result()
    doc = sarif(result)
    assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    results = doc["runs"][0]["results"]
    fails = [f for f in result.findings if f.status == Status.FAIL]
    assert len(results) == len(fails) == result.count(Status.FAIL)  # PASS and N/A give no result
    assert [r["partialFingerprints"][FINGERPRINT_KEY] for r in results] == [f.finding_id for f in fails]
    assert all(r["kind"] == "fail" and r["properties"]["status"] == "FAIL" for r in results)


def test_one_rule_per_check_with_help_and_security_severity() -> None:
    result = demo_result()
    driver = sarif(result)["runs"][0]["tool"]["driver"]
    rules = driver["rules"]
    assert [r["id"] for r in rules] == sorted(catalog())
    by_id = {r["id"]: r for r in rules}
    for cid, chk in catalog().items():
        meta, rule = chk.meta, by_id[cid]
        assert rule["shortDescription"]["text"] == meta.title
        assert meta.description in rule["fullDescription"]["text"] and meta.rationale in rule["fullDescription"]["text"]
        assert meta.remediation in rule["help"]["text"] and meta.docs_url in rule["help"]["text"]
        assert rule["helpUri"] == meta.docs_url
        assert rule["name"].isalnum()
    # GitHub: >= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low; info carries none and is no security alert
    assert by_id["AIB-LP-001"]["properties"]["security-severity"] == "8.0"
    assert by_id["AIB-LOCK-001"]["properties"]["security-severity"] == "5.5"
    assert by_id["AIB-LOCK-002"]["properties"]["security-severity"] == "3.0"
    assert "security-severity" not in by_id["AIB-OPS-001"]["properties"]
    assert "security" in by_id["AIB-LP-001"]["properties"]["tags"]
    assert "security" not in by_id["AIB-OPS-001"]["properties"]["tags"]
    assert by_id["AIB-LP-001"]["defaultConfiguration"]["level"] == "error"
    assert by_id["AIB-LOCK-001"]["defaultConfiguration"]["level"] == "warning"
    assert by_id["AIB-LOCK-002"]["defaultConfiguration"]["level"] == "note"
    assert all(len(r["properties"]["tags"]) <= 10 for r in rules)  # GitHub shows at most 10 tags per rule


def test_results_point_at_the_rule_a_pseudo_file_and_the_arm_id() -> None:
    result = demo_result()
    doc = sarif(result)
    rules = doc["runs"][0]["tool"]["driver"]["rules"]
    fail = first(result, Status.FAIL, "AIB-LP-001", principal=True)
    r = next(r for r in doc["runs"][0]["results"] if r["partialFingerprints"][FINGERPRINT_KEY] == fail.finding_id)
    assert rules[r["ruleIndex"]]["id"] == r["ruleId"] == "AIB-LP-001"
    assert r["level"] == "error" and r["message"]["text"] == fail.detail
    (loc,) = r["locations"]
    # GitHub rejects a result without a physical location: a stable, lower-case pseudo-path per resource
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == "azure" + fail.resource_id.lower()
    assert loc["physicalLocation"]["region"] == {"startLine": 1}
    assert loc["logicalLocations"] == [
        {"name": fail.resource_id.rsplit("/", 1)[-1], "fullyQualifiedName": fail.resource_id, "kind": "resource"}
    ]
    assert r["properties"]["principal_id"] == fail.principal_id and r["properties"]["role_name"] == fail.role_name


def test_artifact_uri_is_stable_across_arm_case_drift_and_a_valid_reference() -> None:
    a = artifact_uri("/subscriptions/X/resourceGroups/RG (prod)/providers/Microsoft.Compute/galleries/g1")
    b = artifact_uri("/subscriptions/x/resourcegroups/rg (prod)/providers/microsoft.compute/galleries/g1/")
    assert a == b == "azure/subscriptions/x/resourcegroups/rg%20%28prod%29/providers/microsoft.compute/galleries/g1"
    assert artifact_uri("") == "azure/tenant"


def test_accepted_is_a_suppressed_result_with_the_justification() -> None:
    result = demo_result()
    accepted = accept(first(result, Status.FAIL, "AIB-GAL-004"))
    doc = sarif(result)
    r = next(r for r in doc["runs"][0]["results"] if r["partialFingerprints"][FINGERPRINT_KEY] == accepted.finding_id)
    assert r["kind"] == "fail" and r["level"] == "error"  # the same result, only suppressed
    assert r["suppressions"] == [
        {
            "kind": "external",
            "status": "accepted",
            "justification": "vendor image, risk accepted by CISO",
            "properties": {"owner": "secops@contoso.com", "expires": "2027-03-31"},
        }
    ]
    assert "accepted until 2027-03-31 by secops@contoso.com" in r["message"]["text"]
    assert sum(1 for r in doc["runs"][0]["results"] if "suppressions" in r) == 1
    assert len(doc["runs"][0]["results"]) == result.count(Status.FAIL) + 1


def test_errors_are_review_results_and_failed_reads_notifications() -> None:
    result = error_result()
    doc = sarif(result)
    (run_,) = doc["runs"]
    results = run_["results"]
    reviews = [r for r in results if r["kind"] == "review"]
    assert len(reviews) == 3 and all(r["level"] == "none" for r in reviews)  # 2 check rows + the failed template list
    assert {r["ruleId"] for r in reviews} == {"AIB-LOCK-001", "AIB-LOCK-002", READ_ERROR_RULE}
    orphan = next(r for r in reviews if r["ruleId"] == READ_ERROR_RULE)
    assert run_["tool"]["driver"]["rules"][orphan["ruleIndex"]]["id"] == READ_ERROR_RULE
    assert orphan["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "azure/subscriptions/11111111-2222-3333-4444-555555555555"
    )
    assert all(r["message"]["text"].startswith("Could not be evaluated: could not read") for r in reviews)
    (inv,) = run_["invocations"]
    assert inv["executionSuccessful"] is False and inv["exitCode"] == EXIT_INCOMPLETE == 3
    assert inv["exitCodeDescription"].startswith("audit incomplete")
    notes = inv["toolExecutionNotifications"]
    assert [n["level"] for n in notes] == ["error", "error"]
    assert "could not read locks" in notes[0]["message"]["text"]


def test_complete_audit_is_a_successful_execution_without_notifications() -> None:
    result = demo_result()
    (inv,) = sarif(result)["runs"][0]["invocations"]
    assert inv["executionSuccessful"] is True and inv["exitCode"] == 1
    assert inv["startTimeUtc"] == "2026-11-02T08:00:00Z" and inv["endTimeUtc"] == "2026-11-02T08:00:07Z"
    assert "toolExecutionNotifications" not in inv


def test_baseline_state_and_run_notes() -> None:
    result = demo_result()
    new, regressed, _ = with_baseline(result)
    result.notes = ["exception 2 (AIB-LOCK-001 on /subscriptions/x/...) matched no row: stale"]
    doc = sarif(result)
    states = {r["partialFingerprints"][FINGERPRINT_KEY]: r.get("baselineState") for r in doc["runs"][0]["results"]}
    assert states[new.finding_id] == "new" and states[regressed.finding_id] == "new"
    assert set(states.values()) == {"new", "unchanged"}  # fixed rows are PASS now: no result, nothing "absent"
    (inv,) = doc["runs"][0]["invocations"]
    assert [n["message"]["text"] for n in inv["toolConfigurationNotifications"]] == result.notes


def test_more_results_than_github_accepts_is_said_not_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sarif_mod, "GITHUB_MAX_RESULTS", 10)
    result = demo_result()
    doc = sarif(result)
    assert len(doc["runs"][0]["results"]) == result.count(Status.FAIL) > 10
    (note,) = doc["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert note["level"] == "warning" and "GitHub code scanning rejects" in note["message"]["text"]


def test_sarif_is_deterministic() -> None:
    assert render("sarif", demo_result(), run_info(demo_result())) == render("sarif", demo_result(), run_info(demo_result()))


def test_rule_name_is_an_identifier() -> None:
    assert rule_name("No ReadOnly lock blocks template runs") == "NoReadOnlyLockBlocksTemplateRuns"
    assert rule_name("VM boot optimization is enabled") == "VMBootOptimizationIsEnabled"


def test_cli_writes_sarif_with_format_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "aib.sarif"
    code = run(["--demo", "--format", "sarif", "--output", str(out), "--check", "AIB-LOCK-001"])
    assert code == 1
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert_valid_sarif(doc)
    assert [r["id"] for r in doc["runs"][0]["tool"]["driver"]["rules"]] == ["AIB-LOCK-001"]
    assert doc["runs"][0]["results"] and all(r["ruleId"] == "AIB-LOCK-001" for r in doc["runs"][0]["results"])


def test_the_schema_check_is_not_vacuous() -> None:
    """A result without its required message must fail validation, or the checks above prove nothing."""
    require_sarif_schema()
    doc = sarif(demo_result())
    del doc["runs"][0]["results"][0]["message"]
    with pytest.raises(AssertionError, match="message"):
        assert_valid_sarif(doc)
