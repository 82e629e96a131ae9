"""SARIF 2.1.0, for GitHub code scanning and Azure DevOps (the SARIF SAST Scans Tab): one run, one rule per check.

How an audit maps onto SARIF, and why:

- **Rules.** One `reportingDescriptor` per check that ran (sorted by ID): `name` from the title, the full
  description and rationale, `help` with the remediation, the `az`/Bicep example and the docs link, `helpUri`.
  `properties.security-severity` is what GitHub ranks alerts by (>= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium,
  0.1-3.9 low): high 8.0, medium 5.5, low 3.0 (`SECURITY_SEVERITY`). `info` checks carry none and no `security`
  tag, so GitHub lists them as plain notes rather than security alerts.
- **Results.** One per FAIL, ACCEPTED and ERROR row; PASS and N/A produce none. `level` follows the check's
  severity (high error, medium warning, low and info note). An ACCEPTED row is the same result with a
  `suppressions` entry (`kind: external`, `status: accepted`, the exception's reason as justification, owner and
  expiry in its properties). An ERROR row is a result of `kind: "review"` (level `none`, as SARIF requires for a
  kind other than `fail`): the check could not be evaluated and a person has to look. Failed reads that no
  check's row shows (AuditResult.extra_errors) are review results of the `AIB-READ-ERROR` rule, which is not a
  check; every failed read is also a `toolExecutionNotification`, and `executionSuccessful` is false when the
  audit is incomplete (exit 3).
- **Locations.** GitHub code scanning rejects a result without `physicalLocation.artifactLocation.uri`, and a
  cloud resource has no file. Each result points at a stable pseudo-path derived from the ARM ID,
  `azure/<ARM ID in lower case>` (line 1), so the same resource is the same "file" in every run however ARM
  cases the ID; the ARM ID itself, as ARM wrote it, is the result's logical location (`kind: resource`).
- **Fingerprints.** `partialFingerprints["aibAuditFindingId/v1"]` is the row's `finding_id` (findings.finding_id),
  so GitHub and ADO track one alert per check, resource and principal across runs. With `--baseline`,
  `baselineState` says `new` (new or regressed) or `unchanged`.
- **Deterministic.** Rows come in Finding.sort_key order and keys are emitted in a fixed order, so two runs over
  the same estate give byte-identical SARIF apart from the run's timestamps.

GitHub's upload limits (25,000 results per run, 10 MB gzipped) are large, but a big estate can pass them: past
`GITHUB_MAX_RESULTS` the run carries a warning notification saying so (nothing is dropped).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from auditor import __version__, ids
from auditor.audit import AuditResult
from auditor.findings import Finding, Severity, Status
from auditor.reports import EXIT_INCOMPLETE, EXIT_MEANINGS, RunInfo, all_findings, iso
from checks.registry import CheckMeta, catalog

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
FINGERPRINT_KEY = "aibAuditFindingId/v1"
READ_ERROR_RULE = "AIB-READ-ERROR"  # failed reads that no check's row shows; not a check, never in the catalog
GITHUB_MAX_RESULTS = 25_000  # GitHub code scanning rejects a run with more results than this

SECURITY_SEVERITY: dict[Severity, str] = {Severity.HIGH: "8.0", Severity.MEDIUM: "5.5", Severity.LOW: "3.0"}
LEVEL: dict[Severity, str] = {Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "note", Severity.INFO: "note"}
REPORTED = (Status.FAIL, Status.ACCEPTED, Status.ERROR)
BASELINE_STATE = {"new": "new", "regressed": "new", "unchanged": "unchanged"}


def rule_name(title: str) -> str:
    """A SARIF rule `name` is an identifier-like string: the title in PascalCase ("No ReadOnly lock" -> NoReadOnlyLock)."""
    words = re.findall(r"[A-Za-z0-9]+", title)
    return "".join(w[:1].upper() + w[1:] for w in words) or "Check"


def _rule(meta: CheckMeta) -> dict[str, Any]:
    example = ""
    if meta.remediation_cli:
        example = meta.remediation_cli
    elif meta.remediation_bicep:
        example = meta.remediation_bicep
    help_text = f"{meta.remediation}\n\n{example}\n\nDocumentation: {meta.docs_url}" if example else (
        f"{meta.remediation}\n\nDocumentation: {meta.docs_url}"
    )
    help_md = f"{meta.remediation}\n\n" + (f"```\n{example}\n```\n\n" if example else "") + f"[Documentation]({meta.docs_url})"
    props: dict[str, Any] = {"tags": ["azure", "image-builder", meta.practice.lower()], "precision": "very-high"}
    if meta.severity in SECURITY_SEVERITY:
        props["tags"] = ["security", *props["tags"]]
        props["security-severity"] = SECURITY_SEVERITY[meta.severity]
    props["severity"] = str(meta.severity)
    props["practice"] = meta.practice
    return {
        "id": meta.id,
        "name": rule_name(meta.title),
        "shortDescription": {"text": meta.title},
        "fullDescription": {"text": f"{meta.description} {meta.rationale}"},
        "help": {"text": help_text, "markdown": help_md},
        "helpUri": meta.docs_url,
        "defaultConfiguration": {"level": LEVEL[meta.severity]},
        "properties": props,
    }


def _read_error_rule() -> dict[str, Any]:
    return {
        "id": READ_ERROR_RULE,
        "name": "AuditIncomplete",
        "shortDescription": {"text": "A read failed, so part of the estate was not audited"},
        "fullDescription": {
            "text": "aib-audit could not read something it needs (a 403, a deleted scope, a 5xx after retries, a body that "
            "does not parse) and no check's result shows it. Nothing that depends on it was judged."
        },
        "help": {
            "text": "Grant the Reader role (the permission named in the message) on the scope, then audit again.",
            "markdown": "Grant the **Reader** role (the permission named in the message) on the scope, then audit again.",
        },
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["azure", "image-builder", "audit-incomplete"]},
    }


def artifact_uri(resource_id: str) -> str:
    """The pseudo-path a result's physical location names: `azure/` + the ARM ID in lower case, percent-encoded."""
    path = resource_id.strip().strip("/").lower() or "tenant"
    return "azure/" + quote(path, safe="/")


def _location(resource_id: str) -> dict[str, Any]:
    logical: dict[str, Any] = {"kind": "resource"}
    if resource_id:
        logical = {"name": ids.name_of(resource_id), "fullyQualifiedName": resource_id, "kind": "resource"}
    return {
        "physicalLocation": {"artifactLocation": {"uri": artifact_uri(resource_id)}, "region": {"startLine": 1}},
        "logicalLocations": [logical],
    }


def _message(f: Finding, meta: CheckMeta | None) -> str:
    if f.status == Status.ERROR:
        return f"Could not be evaluated: {f.detail}"
    text = f.detail
    if (f.principal_name or f.principal_upn) and not (f.principal_name and f.principal_name in text):  # not twice
        who = " ".join(p for p in (f.principal_name, f"({f.principal_upn})" if f.principal_upn else "") if p)
        text = f"{text} [principal: {who}]"
    if f.status == Status.ACCEPTED:
        text = f"{text} [accepted until {f.exception_expires} by {f.exception_owner}: {f.exception_reason}]"
    return text


def _properties(f: Finding, meta: CheckMeta | None) -> dict[str, Any]:
    props: dict[str, Any] = {
        "status": str(f.status),
        "severity": str(meta.severity) if meta else "",
        "finding_id": f.finding_id,
        "resource_id": f.resource_id,
        "template_id": f.template_id,
        "principal_id": f.principal_id,
        "principal_type": f.principal_type,
        "principal_name": f.principal_name,
        "principal_upn": f.principal_upn,
        "role_name": f.role_name,
        "role_scope": f.role_scope,
        "change": f.change,
    }
    return {k: v for k, v in props.items() if v}  # empty means "does not apply": leave it out


def _result(f: Finding, rule_index: dict[str, int], metas: dict[str, CheckMeta]) -> dict[str, Any]:
    meta = metas.get(f.check_id)
    rule_id = f.check_id or READ_ERROR_RULE
    out: dict[str, Any] = {"ruleId": rule_id, "ruleIndex": rule_index[rule_id]}
    if f.status == Status.ERROR:
        out["kind"] = "review"
        out["level"] = "none"
    else:
        out["kind"] = "fail"
        out["level"] = LEVEL[meta.severity] if meta else "error"
    out["message"] = {"text": _message(f, meta)}
    out["locations"] = [_location(f.resource_id)]
    out["partialFingerprints"] = {FINGERPRINT_KEY: f.finding_id}
    if f.change in BASELINE_STATE:
        out["baselineState"] = BASELINE_STATE[f.change]
    if f.status == Status.ACCEPTED:
        suppression: dict[str, Any] = {"kind": "external", "status": "accepted"}
        if f.exception_reason:
            suppression["justification"] = f.exception_reason
        extra = {"owner": f.exception_owner, "expires": f.exception_expires}
        if any(extra.values()):
            suppression["properties"] = {k: v for k, v in extra.items() if v}
        out["suppressions"] = [suppression]
    out["properties"] = _properties(f, meta)
    return out


def _notifications(result: AuditResult, run: RunInfo, n_results: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    execution = [
        {
            "level": "error",
            "message": {"text": e.describe()},
            "descriptor": {"id": "read-failed"},
            "properties": {k: v for k, v in (("kind", e.kind), ("scope", e.scope), ("permission", e.permission)) if v},
        }
        for e in result.inventory.errors
    ]
    execution += [
        {"level": "note", "message": {"text": str(n)}, "descriptor": {"id": "collection-note"}}
        for n in result.inventory.meta.get("notes", [])
    ]
    if n_results > GITHUB_MAX_RESULTS:
        execution.append(
            {
                "level": "warning",
                "message": {
                    "text": f"{n_results:,} results: GitHub code scanning rejects a run of more than {GITHUB_MAX_RESULTS:,}; "
                    "narrow the audit (--check, fewer subscriptions) for the upload"
                },
                "descriptor": {"id": "too-many-results"},
            }
        )
    configuration = [{"level": "warning", "message": {"text": note}, "descriptor": {"id": "run-note"}} for note in result.notes]
    return execution, configuration


def report_dict(result: AuditResult, run: RunInfo) -> dict[str, Any]:
    metas = {cid: chk.meta for cid, chk in catalog().items()}
    findings = [f for f in all_findings(result) if f.status in REPORTED]
    rules = [_rule(meta) for meta in sorted((c.meta for c in result.checks), key=lambda m: m.id)]
    ran = {r["id"] for r in rules}
    # A row of a check outside the run's selection (should not happen) still needs a rule to point at.
    for cid in sorted({f.check_id for f in findings if f.check_id and f.check_id not in ran}):
        rules.append(_rule(metas[cid]) if cid in metas else {"id": cid, "shortDescription": {"text": cid}})
    if any(not f.check_id for f in findings):
        rules.append(_read_error_rule())
    rule_index = {r["id"]: i for i, r in enumerate(rules)}
    results = [_result(f, rule_index, metas) for f in findings]
    execution, configuration = _notifications(result, run, len(results))
    invocation: dict[str, Any] = {
        # SARIF: successful unless something kept the tool from analysing everything; an incomplete audit did not.
        "executionSuccessful": run.exit_code != EXIT_INCOMPLETE,
        "exitCode": run.exit_code,
        "exitCodeDescription": EXIT_MEANINGS.get(run.exit_code, ""),
        "startTimeUtc": iso(run.started_at),
        "endTimeUtc": iso(run.finished_at),
    }
    if execution:
        invocation["toolExecutionNotifications"] = execution
    if configuration:
        invocation["toolConfigurationNotifications"] = configuration
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "aib-audit",
                        "fullName": "aib-audit: Azure VM Image Builder best-practice audit",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "invocations": [invocation],
                "results": results,
                "properties": {
                    "source": run.source,
                    "subscriptions": list(run.subscriptions),
                    "arm_endpoint": run.arm_endpoint,
                    "collected_at": run.collected_at,
                    "arm_calls": run.arm_calls,
                    "throttled": run.throttled,
                },
            }
        ],
    }


def render_sarif(result: AuditResult, run: RunInfo) -> str:
    return json.dumps(report_dict(result, run), indent=2, ensure_ascii=False) + "\n"
