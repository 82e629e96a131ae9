"""ARM `$filter` expressions for scoped listings, and the at/above/below scope rule.

Role assignments, deny assignments, PIM instances and locks listed at a scope return what sits at, above or
below that scope; `atScope()` narrows to at-or-above; `principalId eq '{id}'` keeps one principal (still at,
above or below). Clauses combine with ` and `. Management groups and `/` are above a subscription when the
estate's `subscriptionAncestors` lists them for it, or when it has no entry for that subscription (then they
are above every subscription).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from auditor.ids import Ancestors, is_ancestor_or_self

from .responses import bad_request

_AT_SCOPE = re.compile(r"^atscope\(\s*\)$", re.IGNORECASE)
_AS_TARGET = re.compile(r"^astarget\(\s*\)$", re.IGNORECASE)
_PRINCIPAL = re.compile(r"^principalid\s+eq\s+'([^']*)'$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^assignedto\(\s*'([^']*)'\s*\)$", re.IGNORECASE)
_DENY_NAME = re.compile(r"^denyassignmentname\s+eq\s+'([^']*)'$", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_ROLE_NAME = re.compile(r"roleName\s+eq\s+'([^']*)'", re.IGNORECASE)
_ROLE_TYPE = re.compile(r"\btype\s+eq\s+'([^']*)'", re.IGNORECASE)


@dataclass(frozen=True)
class ScopeFilter:
    at_scope: bool = False
    principal_id: str | None = None
    deny_name: str | None = None


def parse_scope_filter(expression: str | None, kind: str) -> ScopeFilter:
    """Parse the filters ARM accepts on scoped listings; anything else is a 400 so collector bugs show."""
    at_scope = False
    principal: str | None = None
    deny_name: str | None = None
    if not expression or not expression.strip():
        return ScopeFilter()
    for clause in _AND.split(expression.strip()):
        clause = clause.strip()
        if _AT_SCOPE.match(clause):
            at_scope = True
        elif _AS_TARGET.match(clause) and kind == "roleEligibilityScheduleInstances":
            continue  # "for the calling user": the emulator has no caller identity, so it narrows nothing
        elif (m := _PRINCIPAL.match(clause) or _ASSIGNED_TO.match(clause)) and kind != "locks":
            principal = m.group(1)  # assignedTo() is transitive over groups in ARM; no group data here
        elif (m := _DENY_NAME.match(clause)) and kind == "denyAssignments":
            deny_name = m.group(1)
        else:
            raise bad_request("InvalidFilterInQueryString", f"The filter '{expression}' is not supported for {kind}.")
    return ScopeFilter(at_scope, principal, deny_name)


def in_view(item_scope: str, request_scope: str, flt: ScopeFilter, ancestors: Ancestors | None = None) -> bool:
    """Is something at `item_scope` listed for a request at `request_scope`? (`ancestors`: EstateStore.ancestors)"""
    if is_ancestor_or_self(item_scope, request_scope, ancestors):
        return True  # at or above
    return not flt.at_scope and is_ancestor_or_self(request_scope, item_scope, ancestors)  # below


def principals_of(doc: dict[str, Any]) -> set[str]:
    """Principal IDs a document is about (assignments: principalId; deny assignments: principals[].id)."""
    props = doc.get("properties") or {}
    found = {str(props.get("principalId") or "").lower()}
    for principal in props.get("principals") or []:
        if isinstance(principal, dict):
            found.add(str(principal.get("id") or "").lower())
    found.discard("")
    return found


def matches(doc: dict[str, Any], flt: ScopeFilter) -> bool:
    """The non-scope parts of a filter: the principal and a deny assignment's name."""
    if flt.principal_id is not None and flt.principal_id.lower() not in principals_of(doc):
        return False
    name = str((doc.get("properties") or {}).get("denyAssignmentName") or "")
    return flt.deny_name is None or flt.deny_name.lower() == name.lower()


def _assignable_scopes(doc: dict[str, Any]) -> list[str]:
    scopes = (doc.get("properties") or {}).get("assignableScopes")
    return [str(s) for s in scopes] if isinstance(scopes, list) and scopes else ["/"]


def _assignable_at(assignable: str, scope: str, ancestors: Ancestors | None) -> bool:
    """Is a role assignable at `assignable` applicable at `scope`? `/` (every built-in) is applicable everywhere:
    the ancestry of a subscription limits management groups, not where built-in roles can be used."""
    return assignable.strip() == "/" or is_ancestor_or_self(assignable, scope, ancestors)


_ROLE_CLAUSES = (
    re.compile(r"^atscopeandbelow\(\s*\)$", re.IGNORECASE),
    re.compile(r"^rolename\s+eq\s+'[^']*'$", re.IGNORECASE),
    re.compile(r"^type\s+eq\s+'(customrole|builtinrole)'$", re.IGNORECASE),
)


def filter_role_definitions(
    docs: list[dict[str, Any]], scope: str, expression: str | None, ancestors: Ancestors | None = None
) -> list[dict[str, Any]]:
    """ARM's RoleDefinitions_List: the definitions "applicable at scope and above" (an assignable scope at or
    above the request scope: built-ins are assignable at `/`); `atScopeAndBelow()` adds those assignable only
    below it. A custom role assignable only at a resource group is therefore NOT listed at its subscription.
    Also `roleName eq '...'` and `type eq 'CustomRole'` / `type eq 'BuiltInRole'` (case-insensitive), joined with
    ` and `; any other filter is a 400, so a filter the collector starts sending cannot pass unevaluated. A role
    assignable at a management group applies at a subscription only when `ancestors` puts the group above it.
    One document per role GUID: an estate may hold a built-in under several subscriptions' IDs."""
    expression = (expression or "").strip()
    clauses = [c.strip() for c in _AND.split(expression)] if expression else []
    if any(not any(p.match(c) for p in _ROLE_CLAUSES) for c in clauses):
        raise bad_request("InvalidFilterInQueryString", f"The filter '{expression}' is not supported for roleDefinitions.")
    below = "atscopeandbelow()" in expression.lower().replace(" ", "")
    out = [
        d
        for d in docs
        if any(
            _assignable_at(a, scope, ancestors) or (below and is_ancestor_or_self(scope, a, ancestors))
            for a in _assignable_scopes(d)
        )
    ]
    name = _ROLE_NAME.search(expression)
    role_type = _ROLE_TYPE.search(expression)
    if name:
        out = [d for d in out if str((d.get("properties") or {}).get("roleName", "")).lower() == name.group(1).lower()]
    if role_type:
        wanted = role_type.group(1).lower()
        out = [d for d in out if str((d.get("properties") or {}).get("type", "")).lower() == wanted]
    seen: set[str] = set()
    unique = []
    for d in out:
        guid = str(d.get("name") or d.get("id") or "").rsplit("/", 1)[-1].lower()
        if guid not in seen:
            seen.add(guid)
            unique.append(d)
    return unique
