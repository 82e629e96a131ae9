"""What to audit: scope flags -> the subscriptions in scope, and what was left out and why.

Pure logic (no I/O): the collector (`auditor.discover`) reads the subscription list, the management-group
descendants and Resource Graph, and hands the raw ARM documents here.

The scope contract (design.md, "Second release"):

- `--subscription/-s ID` (repeatable): named subscriptions. One that does not exist or cannot be read ends
  the run (exit 2): the user typed it, so it is a usage error.
- `--management-group ID` (repeatable): every subscription below the group, transitively.
- `--all-subscriptions`: every subscription the credential can list whose `state` is Enabled.
- `--exclude-subscription ID` (repeatable): left out of any discovered scope.
- none of these: `AZURE_SUBSCRIPTION_ID` when set, else exit 2 naming the flags.

A discovered subscription that cannot be read is an ERROR row (exit 3), never exit 2: one unreadable
subscription among hundreds must not end a scheduled organisation-wide audit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from auditor import ids
from auditor.errors import UsageError

SCOPE_FLAGS = "--subscription ID, --management-group ID or --all-subscriptions"
ENV_SUBSCRIPTION = "AZURE_SUBSCRIPTION_ID"
MG_TYPE = "microsoft.management/managementgroups"
MG_SUBSCRIPTION_TYPE = "microsoft.management/managementgroups/subscriptions"
# Management group IDs: up to 90 letters, digits, '-', '_', '(', ')' and '.', not ending in '.' (ARM's rule).
_MG_ID = re.compile(r"^[A-Za-z0-9_().-]{1,90}$")

# Discovery modes, as the JSON report's run.scope.discovery says them.
EXPLICIT = "explicit"  # only --subscription (or AZURE_SUBSCRIPTION_ID): nothing discovered
ARM = "arm"  # discovered subscriptions all read through ARM
RESOURCE_GRAPH = "resource-graph"  # Resource Graph said which discovered subscriptions hold templates


@dataclass(frozen=True)
class ScopeSpec:
    """The scope flags, validated (IDs normalized, no network touched)."""

    subscriptions: tuple[str, ...] = ()
    management_groups: tuple[str, ...] = ()
    all_subscriptions: bool = False
    exclude: tuple[str, ...] = ()
    resource_graph: bool = True
    from_environment: bool = False  # the subscription came from AZURE_SUBSCRIPTION_ID

    @property
    def discovers(self) -> bool:
        return bool(self.management_groups) or self.all_subscriptions


def management_group_id(raw: str) -> str:
    """A management group's ID (its name) from `mg` or `/providers/Microsoft.Management/managementGroups/mg`."""
    value = (raw or "").strip().strip("/")
    low = value.lower()
    prefix = ids.MG_PREFIX.strip("/")
    if low.startswith(prefix + "/"):
        value = value[len(prefix) + 1 :]
    if not _MG_ID.match(value) or value.endswith("."):
        raise UsageError(f"'{raw}' is not a management group ID (letters, digits, '-', '_', '(', ')', '.'; up to 90)")
    return value


def scope_spec(
    subscriptions: Iterable[str] = (),
    management_groups: Iterable[str] = (),
    all_subscriptions: bool = False,
    exclude: Iterable[str] = (),
    resource_graph: bool = True,
    environ: Mapping[str, str] | None = None,
) -> ScopeSpec:
    """Validate the scope flags; raises UsageError (exit 2) before any credential or network is touched."""
    subs = tuple(ids.subscription_ids(list(subscriptions)))
    groups: list[str] = []
    for raw in management_groups:
        mg = management_group_id(raw)
        if mg.lower() not in (g.lower() for g in groups):
            groups.append(mg)
    excluded = tuple(ids.subscription_ids(list(exclude)))
    from_env = False
    if not subs and not groups and not all_subscriptions:
        env = (environ or {}).get(ENV_SUBSCRIPTION, "").strip()
        if not env:
            raise UsageError(f"say what to audit: {SCOPE_FLAGS} (or set {ENV_SUBSCRIPTION}), --demo or --snapshot FILE")
        try:
            subs = tuple(ids.subscription_ids([env]))
        except UsageError:
            raise UsageError(f"{ENV_SUBSCRIPTION}={env!r} is not a subscription ID (a GUID)") from None
        from_env = True
    if excluded and not (groups or all_subscriptions):
        raise UsageError("--exclude-subscription applies to a discovered scope: --management-group or --all-subscriptions")
    if clash := sorted(set(subs) & set(excluded)):
        raise UsageError(f"subscription {clash[0]} is both named with --subscription and excluded")
    return ScopeSpec(subs, tuple(groups), all_subscriptions, excluded, resource_graph, from_env)


# --------------------------------------------------------------------------------------------- discovery results


@dataclass(frozen=True)
class Skipped:
    subscription: str
    reason: str  # excluded | Disabled | Warned | PastDue | no image templates (Resource Graph) | ...
    name: str = ""


@dataclass
class ScopeResult:
    """What was in scope, what is audited, and what was left out and why (the JSON report's run.scope)."""

    spec: ScopeSpec
    named: list[str] = field(default_factory=list)  # -s: checked, must exist
    discovered: list[str] = field(default_factory=list)  # found by discovery, Enabled, not excluded: audited or skipped
    audited: list[str] = field(default_factory=list)  # read subscription-wide (named + discovered minus skipped/unreadable)
    skipped: list[Skipped] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # discovered, but the subscription GET failed: ERROR rows
    discovery: str = EXPLICIT
    notes: list[str] = field(default_factory=list)
    resource_graph_queries: int = 0
    found: int = 0  # every subscription the scope flags reach: named, discovered, skipped (excluded, not Enabled)
    names: dict[str, str] = field(default_factory=dict)  # subscription -> display name, where discovery saw one

    def skip(self, sub: str, reason: str) -> None:
        if all(s.subscription != sub for s in self.skipped):
            self.skipped.append(Skipped(sub, reason, self.names.get(sub, "")))

    def to_meta(self) -> dict[str, Any]:
        """A JSON-ready summary for the snapshot's meta and the report's run section."""
        empty = [s.subscription for s in self.skipped if s.reason == NO_TEMPLATES]
        return {
            "discovery": self.discovery,
            "management_groups": list(self.spec.management_groups),
            "all_subscriptions": self.spec.all_subscriptions,
            "resource_graph": self.spec.resource_graph,
            "named": list(self.named),
            "in_scope": self.found,
            "audited": list(self.audited),
            "unreadable": list(self.unreadable),
            "skipped_empty": empty,
            "skipped": [{"subscription": s.subscription, "name": s.name, "reason": s.reason} for s in self.skipped],
            "resource_graph_queries": self.resource_graph_queries,
            "notes": list(self.notes),
        }


NO_TEMPLATES = "no image templates, target galleries or identities of templates here (Resource Graph)"


def subscriptions_from_list(docs: Iterable[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """`GET /subscriptions` items -> (subscription ID, state, display name), in ARM's order."""
    out: list[tuple[str, str, str]] = []
    for doc in docs:
        sub = str(doc.get("subscriptionId") or ids.subscription_of(str(doc.get("id") or "")) or "").lower()
        if ids.is_guid(sub):
            out.append((sub, str(doc.get("state") or ""), str(doc.get("displayName") or "")))
    return out


def subscriptions_from_descendants(docs: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    """Management-group descendants -> (subscription ID, display name). The API lists every level below the
    group (child groups and the subscriptions under them), so the subscriptions are already transitive."""
    out: list[tuple[str, str]] = []
    for doc in docs:
        kind = str(doc.get("type") or "").lower().strip("/")
        if kind not in (MG_SUBSCRIPTION_TYPE, "subscriptions"):
            continue
        sub = str(doc.get("name") or ids.name_of(str(doc.get("id") or ""))).lower()
        if ids.is_guid(sub):
            out.append((sub, str((doc.get("properties") or {}).get("displayName") or "")))
    return out


def plan_discovered(
    spec: ScopeSpec,
    listed: list[tuple[str, str, str]],
    descendants: list[tuple[str, str]],
) -> ScopeResult:
    """Combine what discovery read into the subscriptions in scope.

    `listed` is `GET /subscriptions` (only read for --all-subscriptions), `descendants` the subscriptions under
    the named management groups. Subscriptions named with -s are audited as named; exclusions and subscriptions
    that are not Enabled (Disabled, Warned, PastDue, Deleted: read-only or going away) are skipped with the reason.
    """
    result = ScopeResult(spec=spec, named=list(spec.subscriptions))
    excluded = set(spec.exclude)
    named = set(spec.subscriptions)
    states = {sub: state for sub, state, _ in listed}
    for sub, _state, name in listed:
        result.names.setdefault(sub, name)
    for sub, name in descendants:
        result.names.setdefault(sub, name)
    candidates: list[str] = []
    for sub in [s for s, _, _ in listed] + [s for s, _ in descendants]:
        if sub in named or sub in candidates or any(s.subscription == sub for s in result.skipped):
            continue
        if sub in excluded:
            result.skip(sub, "excluded (--exclude-subscription)")
            continue
        state = states.get(sub, "Enabled")  # descendants carry no state: the subscription GET says it later
        if state.lower() != "enabled":
            result.skip(sub, f"state {state or 'unknown'}: only Enabled subscriptions are audited")
            continue
        candidates.append(sub)
    result.discovered = candidates
    result.found = len(named) + len(candidates) + len(result.skipped)
    result.discovery = ARM if spec.discovers else EXPLICIT
    return result
