"""The audit policy (`--policy FILE`, TOML or YAML): limits and accepted principals per check.

max_template_writers = 3                 # AIB-LP-001: how many principals may change a template

[allowed_principals]                     # per check: principal object IDs that are accepted
"AIB-LP-001" = ["<object id>", ...]      # an allowed principal is not a violation, but stays in
"AIB-LP-002" = ["<object id>"]           # the JSON evidence as "allowed"

allowed_gallery_share_targets = ["<subscription or tenant id>"]   # AIB-GAL-005: whom a gallery may be shared with
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from auditor.errors import UsageError
from auditor.ids import is_guid
from auditor.inputs import check_depth, read_text


class PolicyError(UsageError):
    """The policy file is missing or invalid (exit 2)."""


@dataclass(frozen=True)
class Policy:
    max_template_writers: int = 3
    allowed_principals: dict[str, frozenset[str]] = field(default_factory=dict)
    # AIB-GAL-005: subscriptions and tenants (GUIDs, lower case) a gallery may be shared with directly.
    allowed_gallery_share_targets: frozenset[str] = frozenset()

    def allows(self, check_id: str, principal_id: str) -> bool:
        return principal_id.lower() in self.allowed_principals.get(check_id, frozenset())

    def allows_gallery_share(self, target_id: str) -> bool:
        return target_id.strip().lower() in self.allowed_gallery_share_targets


def policy_from_dict(data: Any, source: str = "policy", known_checks: Iterable[str] | None = None) -> Policy:
    """Validate a parsed policy. With `known_checks`, a check ID that is not in the catalog is an error: a typo
    must not silently accept nobody (or, worse, look as if it accepted someone)."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: the policy must be a table/mapping")
    unknown = set(data) - {"max_template_writers", "allowed_principals", "allowed_gallery_share_targets"}
    if unknown:
        raise PolicyError(f"{source}: unknown policy keys {sorted(unknown)}")
    limit = data.get("max_template_writers", 3)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise PolicyError(f"{source}: max_template_writers must be a whole number >= 0")
    allowed_raw = data.get("allowed_principals", {}) or {}
    if not isinstance(allowed_raw, dict):
        raise PolicyError(f"{source}: allowed_principals must map check IDs to lists of principal IDs")
    allowed: dict[str, frozenset[str]] = {}
    known = {c.upper() for c in known_checks} if known_checks is not None else None
    for check_id, principals in allowed_raw.items():
        if known is not None and str(check_id).upper() not in known:
            raise PolicyError(f"{source}: allowed_principals names unknown check ID {check_id!r} (see 'aib-audit checks')")
        if not isinstance(principals, list) or not all(isinstance(p, str) for p in principals):
            raise PolicyError(f"{source}: allowed_principals.{check_id} must be a list of principal IDs")
        bad = [p for p in principals if not is_guid(p)]
        if bad:
            raise PolicyError(f"{source}: allowed_principals.{check_id}: {bad[0]!r} is not a principal object ID (a GUID)")
        allowed[str(check_id).upper()] = frozenset(p.lower() for p in principals)
    targets = data.get("allowed_gallery_share_targets", []) or []
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise PolicyError(f"{source}: allowed_gallery_share_targets must be a list of subscription or tenant IDs")
    if bad_targets := [t for t in targets if not is_guid(t)]:
        raise PolicyError(
            f"{source}: allowed_gallery_share_targets: {bad_targets[0]!r} is not a subscription or tenant ID (a GUID)"
        )
    return Policy(
        max_template_writers=limit,
        allowed_principals=allowed,
        allowed_gallery_share_targets=frozenset(t.strip().lower() for t in targets),
    )


def load_document(path: str | Path, what: str, error: type[UsageError] = UsageError) -> Any:
    """Read and parse a TOML (by extension) or YAML file, or raise `error` with one line naming the file.

    Shared by every configuration file the CLI reads (the policy, the exceptions), so they fail alike.
    """
    p = Path(path)
    text = read_text(p, what, error)
    try:
        data = tomllib.loads(text) if p.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise error(f"{what} file {p} does not parse: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise error(f"{what} file {p} nests too deep to be a {what} file") from None
    except ValueError as exc:  # YAML's date and int constructors: `2027-02-30`, an integer past 4,300 digits
        raise error(f"{what} file {p} does not parse: {' '.join(str(exc).split())}") from None
    return check_depth(data, f"{what} file", p, error)


def load_policy(path: str | Path, known_checks: Iterable[str] | None = None) -> Policy:
    return policy_from_dict(load_document(path, "policy", PolicyError), str(path), known_checks)
