"""The JSON report, for pipelines and dashboards. Keys and order are stable; schema_version changes on breaking edits.

Schema (version "1"), in JSON-schema-like notation:

    {
      "schema_version": "1",
      "tool": {"name": "aib-audit", "version": string},
      "run": {
        "source": "live" | "demo" | "snapshot",
        "subscriptions": [string],              # subscription GUIDs audited, lower case
        "arm_endpoint": string,                 # where the data was read from
        "collected_at": string,                 # ISO-8601 UTC, when the data was read from ARM
        "started_at": string,                   # ISO-8601 UTC, this run
        "finished_at": string,                  # ISO-8601 UTC, this run
        "arm_calls": integer,                   # ARM requests the collection made (--snapshot: as recorded)
        "throttled": integer,                   # 429 responses met while collecting
        "checks": [string],                     # check IDs that ran, sorted
        "failed_reads": [{                      # reads that failed; they make findings ERROR (exit 3)
            "kind": string, "scope": string, "status": integer | null,
            "code": string, "message": string, "permission": string
        }],
        "collection_notes": [string],           # error answers taken as "none can exist", e.g. no PIM
                                                # without Entra ID P2 (AadPremiumLicenseRequired)
        "scope": null | {                       # only for --management-group / --all-subscriptions
            "discovery": "arm" | "resource-graph",   # how the subscriptions to read were chosen
            "management_groups": [string], "all_subscriptions": bool, "resource_graph": bool,
            "named": [string], "in_scope": integer, "audited": [string], "unreadable": [string],
            "skipped_empty": [string],          # Resource Graph found nothing to audit there
            "skipped": [{"subscription": string, "name": string, "reason": string}],
            "resource_graph_queries": integer, "notes": [string]
        },
        "exit_code": 0 | 1 | 3,                 # 0 nothing failed (at or above fail_on), 1 a FAIL, 3 incomplete
        "fail_on": "critical" | "high" | "medium" | "low" | "info",   # the lowest severity that sets exit 1
        "fail_on_new": boolean,                 # only new or regressed FAILs set exit 1
        "exceptions": string,                   # --exceptions FILE, or ""
        "baseline": string,                     # --baseline FILE, or ""
        "notes": [string]                       # stale exceptions, what a baseline could not compare
      },
      "summary": {"FAIL": int, "ERROR": int, "ACCEPTED": int, "PASS": int, "N/A": int,   # findings per status
                  "new": int, "regressed": int,  # FAIL rows new or regressed since the baseline (0 without one)
                  "fixed": int},                 # findings fixed since the baseline: len(fixed)
      "templates": [{                           # sorted by ID (case-insensitive)
        "id": string, "name": string, "subscription_id": string, "resource_group": string, "location": string,
        "scores": {"resilience": integer 0-100 | null, "least_privilege": integer 0-100 | null},  # null: nothing applied
        "failed_checks": [string], "error_checks": [string],
        "checks": {check_id: "PASS" | "FAIL" | "ERROR" | "ACCEPTED" | "N/A"}   # ACCEPTED: every FAIL accepted
      }],
      "findings": [{                            # one per finding, in Finding.sort_key order
        "check_id": string, "status": "PASS" | "FAIL" | "ERROR" | "ACCEPTED" | "N/A",
        "severity": "high" | "medium" | "low" | "info", "practice": string, "title": string,
        "resource_id": string, "template_id": string, "detail": string,
        "principal_id": string, "principal_type": string, "role_name": string, "role_scope": string,
        "evidence": object,                     # check-specific; keys sorted
        "remediation": string, "docs_url": string,
        "finding_id": string,                   # stable across runs: findings.finding_id
        "change": "" | "new" | "unchanged" | "regressed" | "fixed",   # with --baseline
        "principal_name": string, "principal_upn": string,            # from Microsoft Graph, where read
        "exception_reason": string, "exception_owner": string, "exception_expires": string  # ACCEPTED rows
      }],
      "fixed": [finding]                        # with --baseline: FAIL then, PASS or gone now (change "fixed");
                                                # a gone one has status PASS (its template was audited) or N/A
    }

`finding_id` is the first 16 hex digits of SHA-256 over `CHECK_ID|resource id lower case|principal id lower case`.

Empty strings, not nulls, stand for "not applicable" in the finding fields, as in the CSV.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from enum import Enum
from typing import Any, TextIO

from auditor import __version__
from auditor.audit import AuditResult, TemplateResult
from auditor.findings import Finding
from auditor.reports import RunInfo, all_findings, change_counts, iso, status_counts
from auditor.reports.csv_report import remediation_text
from checks.registry import CheckMeta, catalog_metas

SCHEMA_VERSION = "1"


def jsonable(value: Any) -> Any:
    """Evidence as plain JSON in a deterministic shape: dict keys sorted, sets sorted, enums as values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _template(tr: TemplateResult) -> dict[str, Any]:
    t = tr.template
    return {
        "id": t.id,
        "name": t.name,
        "subscription_id": t.subscription_id,
        "resource_group": t.resource_group,
        "location": t.location,
        "scores": {"resilience": tr.resilience, "least_privilege": tr.least_privilege},
        "failed_checks": tr.failed_checks,
        "error_checks": tr.error_checks,
        "checks": {cid: str(tr.statuses[cid]) for cid in sorted(tr.statuses)},
    }


def _finding(f: Finding, meta: CheckMeta | None) -> dict[str, Any]:
    return {
        "check_id": f.check_id,
        "status": str(f.status),
        "severity": str(meta.severity) if meta else "",
        "practice": meta.practice if meta else "",
        "title": meta.title if meta else "",
        "resource_id": f.resource_id,
        "template_id": f.template_id,
        "detail": f.detail,
        "principal_id": f.principal_id,
        "principal_type": f.principal_type,
        "role_name": f.role_name,
        "role_scope": f.role_scope,
        "evidence": jsonable(f.evidence),
        "remediation": remediation_text(meta),
        "docs_url": meta.docs_url if meta else "",
        **f.second_release_fields(),
    }


def _head(result: AuditResult, run: RunInfo, findings: list[Finding]) -> dict[str, Any]:
    """Every top-level key but the two finding lists, in the schema's order."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "aib-audit", "version": __version__},
        "run": {
            "source": run.source,
            "subscriptions": list(run.subscriptions),
            "arm_endpoint": run.arm_endpoint,
            "collected_at": run.collected_at,
            "started_at": iso(run.started_at),
            "finished_at": iso(run.finished_at),
            "arm_calls": run.arm_calls,
            "throttled": run.throttled,
            "checks": sorted(c.meta.id for c in result.checks),
            "failed_reads": [jsonable(e) for e in result.inventory.errors],
            "collection_notes": [str(n) for n in result.inventory.meta.get("notes", [])],
            # --management-group / --all-subscriptions: which discovery was used, what was skipped and why
            "scope": result.inventory.meta.get("scope"),
            "exit_code": run.exit_code,
            "fail_on": run.fail_on,
            "fail_on_new": run.fail_on_new,
            "exceptions": run.exceptions,
            "baseline": run.baseline,
            "notes": list(result.notes),
        },
        "summary": {**status_counts(findings), **change_counts(result)},
        "templates": [_template(tr) for tr in sorted(result.templates, key=lambda tr: tr.template.key)],
    }


def report_dict(result: AuditResult, run: RunInfo) -> dict[str, Any]:
    """The whole report as one dict (small results, tests); `write_json` writes the same document row by row."""
    metas = catalog_metas()
    findings = all_findings(result)
    return {
        **_head(result, run, findings),
        "findings": [_finding(f, metas.get(f.check_id)) for f in findings],
        "fixed": [_finding(f, metas.get(f.check_id)) for f in result.fixed],
    }


def _dumps(value: Any, level: int) -> str:
    """`value` as `json.dumps(..., indent=2)` would print it `level` deep inside the document (strings hold no raw
    newline: JSON escapes them, so re-indenting every line is exact)."""
    return json.dumps(value, indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * level)


def _write_array(out: TextIO, items: Iterable[dict[str, Any]]) -> None:
    """A top-level key's array, one element at a time, laid out exactly as json.dumps(indent=2) lays it out."""
    first = True
    for item in items:
        out.write("[\n    " if first else ",\n    ")
        out.write(_dumps(item, 2))
        first = False
    out.write("[]" if first else "\n  ]")


def write_json(result: AuditResult, run: RunInfo, out: TextIO) -> None:
    """The report, byte for byte `json.dumps(report_dict(...), indent=2)`, written one finding at a time: the
    findings (with their evidence) are by far the largest part and never exist as one string or one list of dicts."""
    metas = catalog_metas()
    findings = all_findings(result)
    out.write("{\n")
    for key, value in _head(result, run, findings).items():
        out.write(f"  {json.dumps(key)}: {_dumps(value, 1)},\n")
    out.write('  "findings": ')
    _write_array(out, (_finding(f, metas.get(f.check_id)) for f in findings))
    out.write(',\n  "fixed": ')
    _write_array(out, (_finding(f, metas.get(f.check_id)) for f in result.fixed))
    out.write("\n}\n")
