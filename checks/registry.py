"""The check registry: metadata as data (checks/metadata/*.toml), validated on load, bound to functions.

A check is a pure function `(template, inventory, policy) -> list[Finding]` decorated with
`@check("AIB-XXX-NNN")`. Its ID, title, practice, severity, score, remediation and doc link live in the
practice's TOML file beside the code, like Prowler's per-check metadata. Loading fails loudly when a
function has no metadata, metadata has no function, or a field is missing or invalid.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from auditor.findings import Finding, Severity

if TYPE_CHECKING:
    from auditor.documents import Template
    from auditor.inventory import Inventory
    from auditor.policy import Policy

CheckFn = Callable[["Template", "Inventory", "Policy"], list[Finding]]

METADATA_DIR = Path(__file__).parent / "metadata"
ID_RE = re.compile(r"^AIB-[A-Z]{2,5}-\d{3}$")
SCORES = ("resilience", "least_privilege")
REQUIRED = ("title", "practice", "severity", "score", "description", "rationale", "remediation", "docs_url")
OPTIONAL = ("remediation_cli", "remediation_bicep", "permissions")

# One module per practice. Importing them registers their checks.
MODULES = (
    "checks.locks",
    "checks.disaster_recovery",
    "checks.triggers",
    "checks.boot",
    "checks.subnets",
    "checks.gallery",
    "checks.artifacts",
    "checks.operations",
    "checks.template_access",
    "checks.staging_rg",
    "checks.identities",
)


class CatalogError(Exception):
    """The check catalog is inconsistent: a bug in aib-audit itself, caught by the tests."""


@dataclass(frozen=True)
class CheckMeta:
    id: str
    title: str
    practice: str
    severity: Severity
    score: str  # which template score it counts towards: resilience | least_privilege
    description: str  # what it checks
    rationale: str  # why it matters
    remediation: str  # how to fix, in words
    docs_url: str
    remediation_cli: str = ""
    remediation_bicep: str = ""
    permissions: str = ""  # reads the check needs beyond Reader, if any


@dataclass(frozen=True)
class Check:
    meta: CheckMeta
    fn: CheckFn


_FUNCTIONS: dict[str, CheckFn] = {}


def check(check_id: str) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        if check_id in _FUNCTIONS and _FUNCTIONS[check_id] is not fn:
            raise CatalogError(f"check {check_id} is registered twice")
        _FUNCTIONS[check_id] = fn
        return fn

    return register


def _validate(check_id: str, entry: dict[str, object], source: str) -> CheckMeta:
    if not ID_RE.match(check_id):
        raise CatalogError(f"{source}: bad check ID {check_id!r}")
    missing = [k for k in REQUIRED if not isinstance(entry.get(k), str) or not str(entry.get(k)).strip()]
    if missing:
        raise CatalogError(f"{source}: {check_id} lacks {', '.join(missing)}")
    unknown = set(entry) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise CatalogError(f"{source}: {check_id} has unknown fields {sorted(unknown)}")
    try:
        severity = Severity(str(entry["severity"]))
    except ValueError:
        raise CatalogError(f"{source}: {check_id} severity {entry['severity']!r} is not one of high/medium/low/info") from None
    if entry["score"] not in SCORES:
        raise CatalogError(f"{source}: {check_id} score must be one of {SCORES}")
    if not str(entry["docs_url"]).startswith("https://learn.microsoft.com/"):
        raise CatalogError(f"{source}: {check_id} docs_url must link Microsoft Learn")
    return CheckMeta(id=check_id, severity=severity, **{k: str(v) for k, v in entry.items() if k != "severity"})


def load_metadata(directory: Path = METADATA_DIR) -> dict[str, CheckMeta]:
    metas: dict[str, CheckMeta] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{path.name}: {exc}") from None
        for check_id, entry in data.items():
            if check_id in metas:
                raise CatalogError(f"{path.name}: {check_id} is defined twice")
            if not isinstance(entry, dict):
                raise CatalogError(f"{path.name}: {check_id} must be a table")
            metas[check_id] = _validate(check_id, entry, path.name)
    return metas


_CATALOG: dict[str, Check] | None = None


def catalog() -> dict[str, Check]:
    """All checks, in ID order, metadata validated and bound to functions."""
    global _CATALOG
    if _CATALOG is None:
        for mod in MODULES:
            importlib.import_module(mod)
        metas = load_metadata()
        no_meta = sorted(set(_FUNCTIONS) - set(metas))
        no_fn = sorted(set(metas) - set(_FUNCTIONS))
        if no_meta or no_fn:
            raise CatalogError(f"checks without metadata: {no_meta}; metadata without a check: {no_fn}")
        _CATALOG = {cid: Check(metas[cid], _FUNCTIONS[cid]) for cid in sorted(metas)}
    return _CATALOG


def catalog_metas() -> dict[str, CheckMeta]:
    """Every check's metadata by ID (what the reports look rows up in)."""
    return {cid: chk.meta for cid, chk in catalog().items()}
