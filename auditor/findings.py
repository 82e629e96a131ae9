"""Findings, statuses and the per-template scores."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"  # could not be evaluated (a read failed): never counts as passed
    NA = "N/A"  # does not apply to this template
    ACCEPTED = "ACCEPTED"  # a FAIL that an unexpired exception covers; never set from ERROR or PASS; no exit 1


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


SEVERITY_WEIGHT = {Severity.HIGH: 5, Severity.MEDIUM: 3, Severity.LOW: 1, Severity.INFO: 0}
STATUS_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.ACCEPTED: 2, Status.PASS: 3, Status.NA: 4}


class _NoEvidence(dict[str, Any]):
    """The evidence of a row whose reports print none: one shared empty dict that refuses to be filled."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("this audit dropped the evidence (no report prints it); build a new dict instead")

    __setitem__ = __delitem__ = setdefault = update = pop = popitem = clear = __ior__ = _refuse  # type: ignore[assignment]


NO_EVIDENCE: dict[str, Any] = _NoEvidence()


@dataclass(slots=True)  # slots: a large audit holds hundreds of thousands of these (no per-instance dict)
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
    # Second-release fields (design.md): who the principal is (Microsoft Graph), the run-to-run change
    # against a baseline, and the exception that accepted a FAIL. Empty where they do not apply.
    principal_name: str = ""
    principal_upn: str = ""
    change: str = ""  # new | unchanged | regressed | fixed (with --baseline)
    exception_reason: str = ""
    exception_owner: str = ""
    exception_expires: str = ""  # YYYY-MM-DD
    # The finding ID, worked out by fix_id() once the row is final (replace() and a new row start without it).
    _id: str = field(default="", init=False, repr=False, compare=False)
    # Where the row's CSV record sits in the run's spool (auditor.reports.csv_spool), once rendered there; -1: not.
    _spooled: int = field(default=-1, init=False, repr=False, compare=False)

    @property
    def finding_id(self) -> str:
        return self._id or finding_id(self.check_id, self.resource_id, self.principal_id)

    def fix_id(self) -> None:
        """Work out the finding ID now: the check, resource and principal are final (the audit's early pass calls
        this once a check's rows are enriched; nothing changes them later), while the collector waits on ARM."""
        self._id = finding_id(self.check_id, self.resource_id, self.principal_id)

    def second_release_fields(self) -> dict[str, str]:
        """The columns design.md appends after `audited_at`, in order: the same in CSV and JSON."""
        return {
            "finding_id": self.finding_id,
            "change": self.change,
            "principal_name": self.principal_name,
            "principal_upn": self.principal_upn,
            "exception_reason": self.exception_reason,
            "exception_owner": self.exception_owner,
            "exception_expires": self.exception_expires,
        }

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


def finding_id(check_id: str, resource_id: str, principal_id: str = "") -> str:
    """A stable ID for a finding across runs, machines and report formats.

    The first 16 hex digits of SHA-256 over `CHECK_ID|resource id (lower case)|principal id (lower case)`, so
    a baseline or an exception keyed on it survives ARM's case drift in IDs.
    """
    key = f"{check_id.upper()}|{resource_id.strip().lower()}|{principal_id.strip().lower()}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def passed(detail: str, **kw: Any) -> Finding:
    return Finding(Status.PASS, detail, **kw)


def failed(detail: str, **kw: Any) -> Finding:
    return Finding(Status.FAIL, detail, **kw)


def error(detail: str, **kw: Any) -> Finding:
    return Finding(Status.ERROR, detail, **kw)


def not_applicable(detail: str, **kw: Any) -> Finding:
    return Finding(Status.NA, detail, **kw)


def check_status(findings: list[Finding]) -> Status:
    """A check's overall status for one template: any FAIL fails it, then any ERROR, then ACCEPTED (only FAILs an
    exception covers are left), then PASS, else N/A."""
    statuses = {f.status for f in findings}
    for s in (Status.FAIL, Status.ERROR, Status.ACCEPTED, Status.PASS):
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
