"""Accepted risks (`--exceptions FILE`, TOML or YAML): a FAIL the organisation has reviewed becomes ACCEPTED.

    [[exception]]                                  # YAML: a list under `exception:`
    check    = "AIB-LOCK-001"                      # a check ID from the catalog
    resource = "/subscriptions/.../imageTemplates/tpl-legacy"   # an ARM ID; `*` only in the last segment
    principal = "<object id>"                      # optional: only that principal's rows
    reason   = "Decommissioned in Q3; no lock while it is drained"
    owner    = "platform-team@contoso.com"
    expires  = 2026-09-30                          # a TOML date or "YYYY-MM-DD"; expired from that day (UTC)
    ticket   = "CHG-1234"                          # optional

Only FAIL rows are ever accepted: an ERROR (a read that failed) or a PASS is never touched, so an exception can
not hide an incomplete audit. An expired exception accepts nothing and the row says when it expired. An
exception that matches no FAIL or ERROR row where this run looked (its subscription and check were audited) is
stale: the risk is gone or the entry names the wrong resource; the run notes it once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from auditor import ids
from auditor.errors import UsageError
from auditor.findings import NO_EVIDENCE, Finding, Status
from auditor.policy import load_document

KEYS = {"check", "resource", "principal", "reason", "owner", "expires", "ticket"}
REQUIRED = ("check", "resource", "reason", "owner", "expires")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class ExceptionsError(UsageError):
    """The exceptions file is missing or invalid (exit 2)."""


@dataclass(frozen=True)
class RiskException:
    """One `[[exception]]` entry: which rows it accepts, why, who owns the risk, and until when."""

    index: int  # 1-based position in the file, for messages
    check_id: str
    resource: str  # as written; matched case-insensitively
    reason: str
    owner: str
    expires: date  # expired from this day on (UTC)
    principal: str = ""  # lower case; empty: every principal's row (and rows without a principal)
    ticket: str = ""
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @property
    def label(self) -> str:
        who = f" for principal {self.principal}" if self.principal else ""
        return f"exception #{self.index} ({self.check_id} on {self.resource}{who})"

    def matches(self, f: Finding) -> bool:
        if f.check_id != self.check_id:
            return False
        if self.principal and f.principal_id.lower() != self.principal:
            return False
        rid = ids.norm(f.resource_id)
        if self._pattern is not None:
            return self._pattern.fullmatch(rid) is not None
        return rid == ids.norm(self.resource)

    def expired(self, today: date) -> bool:
        return today >= self.expires

    def in_scope(self, subscriptions: Iterable[str], checks: Iterable[str]) -> bool:
        """Did this run look where the exception points? Only then can it be called stale."""
        if self.check_id not in set(checks):
            return False
        sub = ids.subscription_of(self.resource)
        return sub is None or "*" in sub or sub.lower() in {s.lower() for s in subscriptions}


@dataclass(frozen=True)
class ExceptionSet:
    source: str  # the file, for messages
    entries: tuple[RiskException, ...] = ()


def _fail(source: str, where: str, message: str) -> ExceptionsError:
    return ExceptionsError(f"{source}: {where}: {message}")


def _text(entry: dict[str, Any], key: str, source: str, where: str, required: bool) -> str:
    value = entry.get(key)
    if value is None:
        if required:
            raise _fail(source, where, f"'{key}' is required")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(source, where, f"'{key}' must be a non-empty string")
    return value.strip()


def _expires(value: Any, source: str, where: str) -> date:
    # A TOML date (or an unquoted YAML date) arrives as a date; a TOML datetime is a date too, and is refused.
    if type(value) is date:
        return value
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _fail(source, where, f"'expires' must be a date (YYYY-MM-DD), got {value!r}")


def _resource_pattern(resource: str, source: str, where: str) -> re.Pattern[str] | None:
    """`*` may stand for any characters within the last segment only (never across a `/`)."""
    segments = resource.rstrip("/").split("/")
    if not resource.startswith("/") or len(segments) < 2 or any(not s for s in segments[1:]):
        raise _fail(source, where, f"'resource' must be an ARM resource ID starting with '/', got {resource!r}")
    if any("*" in s for s in segments[:-1]):
        raise _fail(source, where, f"'*' is allowed only in the last segment of 'resource' ({resource!r})")
    last = segments[-1]
    if "*" not in last:
        return None
    prefix = ids.norm("/".join(segments[:-1])) + "/"
    body = "[^/]*".join(re.escape(part) for part in last.lower().split("*"))
    return re.compile(re.escape(prefix) + body)


def exceptions_from_dict(data: Any, source: str, known_checks: Iterable[str]) -> ExceptionSet:
    if data is None:  # an empty YAML file: no exceptions
        return ExceptionSet(source)
    if not isinstance(data, dict) or set(data) - {"exception"}:
        raise ExceptionsError(f"{source}: the file must hold only a list of entries under 'exception' ([[exception]] in TOML)")
    raw = data.get("exception") or []
    if not isinstance(raw, list):
        raise ExceptionsError(f"{source}: 'exception' must be a list of entries ([[exception]] in TOML)")
    known = {c.upper() for c in known_checks}
    entries = []
    for i, entry in enumerate(raw, start=1):
        where = f"exception #{i}"
        if not isinstance(entry, dict):
            raise _fail(source, where, "must be a table/mapping")
        if isinstance(entry.get("check"), str):
            where += f" ({entry['check']})"
        unknown = sorted(set(map(str, entry)) - KEYS)
        if unknown:
            raise _fail(source, where, f"unknown keys {unknown} (allowed: {', '.join(sorted(KEYS))})")
        check = _text(entry, "check", source, where, True).upper()
        if check not in known:
            raise _fail(source, where, f"unknown check ID {check!r} (see 'aib-audit checks')")
        resource = _text(entry, "resource", source, where, True)
        pattern = _resource_pattern(resource, source, where)
        principal = _text(entry, "principal", source, where, False)
        if principal and not ids.is_guid(principal):
            raise _fail(source, where, f"'principal' must be a principal object ID (a GUID), got {principal!r}")
        if "expires" not in entry:
            raise _fail(source, where, "'expires' is required")
        entries.append(
            RiskException(
                index=i,
                check_id=check,
                resource=resource,
                reason=_text(entry, "reason", source, where, True),
                owner=_text(entry, "owner", source, where, True),
                expires=_expires(entry["expires"], source, where),
                principal=principal.lower(),
                ticket=_text(entry, "ticket", source, where, False),
                _pattern=pattern,
            )
        )
    return ExceptionSet(source, tuple(entries))


def load_exceptions(path: str | Path, known_checks: Iterable[str]) -> ExceptionSet:
    return exceptions_from_dict(load_document(path, "exceptions", ExceptionsError), str(path), known_checks)


def _accept(f: Finding, exc: RiskException) -> None:
    f.status = Status.ACCEPTED
    f.exception_reason = exc.reason + (f" (ticket {exc.ticket})" if exc.ticket else "")
    f.exception_owner = exc.owner
    f.exception_expires = exc.expires.isoformat()
    if f.evidence is not NO_EVIDENCE:  # dropped: no report prints evidence, so none is built for it
        f.evidence = {**f.evidence, "exception": _evidence(exc)}


def _evidence(exc: RiskException) -> dict[str, Any]:
    return {
        "entry": exc.index,
        "check": exc.check_id,
        "resource": exc.resource,
        "principal": exc.principal,
        "reason": exc.reason,
        "owner": exc.owner,
        "expires": exc.expires.isoformat(),
        "ticket": exc.ticket,
    }


def apply_exceptions(
    findings: list[Finding], exceptions: ExceptionSet, today: date, subscriptions: Iterable[str], checks: Iterable[str]
) -> list[str]:
    """Turn the FAIL rows an unexpired exception covers into ACCEPTED, in place; return the run notes.

    The first unexpired matching entry (file order) accepts a row. A FAIL that only expired entries match stays
    FAIL and its detail says when the exception expired (the latest expiry, if several).
    """
    used: set[int] = set()
    for f in findings:
        if f.status not in (Status.FAIL, Status.ERROR):
            continue
        matching = [e for e in exceptions.entries if e.matches(f)]
        used.update(e.index for e in matching)  # an ERROR row keeps its exception from being called stale
        if f.status != Status.FAIL or not matching:
            continue
        active = [e for e in matching if not e.expired(today)]
        if active:
            _accept(f, active[0])
            continue
        lapsed = max(matching, key=lambda e: e.expires)
        expired = lapsed.expires.isoformat()
        f.detail += f" (the exception for this finding expired on {expired}: {lapsed.reason}; owner {lapsed.owner})"
        if f.evidence is not NO_EVIDENCE:
            f.evidence = {**f.evidence, "expired_exception": _evidence(lapsed)}
    subs, chks = list(subscriptions), list(checks)
    return [
        f"{exceptions.source}: {e.label} matched no FAIL row: it is stale (the risk is gone, or the entry names the wrong"
        " resource); remove or correct it"
        for e in exceptions.entries
        if e.index not in used and e.in_scope(subs, chks)
    ]
