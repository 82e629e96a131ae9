"""Findings, statuses and the per-template scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"  # could not be evaluated (a read failed): never counts as passed
    NA = "N/A"  # does not apply to this template


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


SEVERITY_WEIGHT = {Severity.HIGH: 5, Severity.MEDIUM: 3, Severity.LOW: 1, Severity.INFO: 0}
STATUS_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.PASS: 2, Status.NA: 3}


@dataclass
class Finding:
    """One row of the report: one thing a reviewer can act on.

    Checks fill `status`, `detail`, the principal fields for principal findings, and `evidence`;
    the runner fills `check_id` and `resource_id` (the template, unless the check names another resource).
    """

    status: Status
    detail: str
    check_id: str = ""
    resource_id: str = ""
    principal_id: str = ""
    principal_type: str = ""
    role_name: str = ""
    role_scope: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    template_id: str = ""  # the template this finding scores; equals resource_id for template findings

    def sort_key(self) -> tuple[str, str, str, int, str, str, str]:
        return (
            self.template_id.lower(),
            self.check_id,
            self.resource_id.lower(),
            STATUS_ORDER[self.status],
            self.principal_id,
            self.role_scope.lower(),
            self.detail,
        )


def passed(detail: str, **kw: Any) -> Finding:
    return Finding(Status.PASS, detail, **kw)


def failed(detail: str, **kw: Any) -> Finding:
    return Finding(Status.FAIL, detail, **kw)


def error(detail: str, **kw: Any) -> Finding:
    return Finding(Status.ERROR, detail, **kw)


def not_applicable(detail: str, **kw: Any) -> Finding:
    return Finding(Status.NA, detail, **kw)


def check_status(findings: list[Finding]) -> Status:
    """A check's overall status for one template: any FAIL fails it, then any ERROR, then PASS, else N/A."""
    statuses = {f.status for f in findings}
    for s in (Status.FAIL, Status.ERROR, Status.PASS):
        if s in statuses:
            return s
    return Status.NA


def score(per_check: list[tuple[Severity, Status]]) -> int | None:
    """Share of applicable checks passed, weighted by severity (high 5, medium 3, low 1), 0-100.

    ERROR counts as not passed. Returns None when nothing applied. `info` checks weigh nothing.
    """
    total = passed_w = 0
    for sev, status in per_check:
        if status == Status.NA:
            continue
        w = SEVERITY_WEIGHT[sev]
        total += w
        if status == Status.PASS:
            passed_w += w
    if total == 0:
        return None
    return round(100 * passed_w / total)
