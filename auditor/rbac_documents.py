"""Role definitions, role assignments (active and PIM-eligible) and deny assignments, as typed dataclasses.

The RBAC engine (auditor.rbac) works on these; the parsers keep what could not be read as a `problem`, so a
role whose permissions are unreadable fails closed instead of granting nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditor import ids
from auditor.documents import _dict, _list, _props

# --------------------------------------------------------------------------------------------- RBAC


@dataclass(frozen=True)
class Permission:
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()
    # An ABAC condition on this block (deny assignments, API 2022-04-01): the block applies only when it holds.
    condition: str | None = None


@dataclass
class RoleDefinition:
    id: str
    guid: str  # the last segment, lower case: how assignments are joined to definitions
    role_name: str
    role_type: str  # BuiltInRole | CustomRole
    permissions: tuple[Permission, ...]
    assignable_scopes: tuple[str, ...]
    # Why the permissions could not be read ("" when they could): such a role's rights are unknown, so an
    # assignment of it is UNRESOLVED (rbac.py), never a role that grants nothing.
    unreadable: str = ""


PERMISSION_KEYS: tuple[str, ...] = ("actions", "notActions", "dataActions", "notDataActions")


def _condition(value: Any) -> str | None:
    return (str(value).strip() or None) if value else None


def _perm(p: dict[str, Any]) -> Permission:
    def strs(key: str) -> tuple[str, ...]:
        return tuple(str(x) for x in _list(p.get(key)) if x)

    return Permission(
        strs("actions"), strs("notActions"), strs("dataActions"), strs("notDataActions"), condition=_condition(p.get("condition"))
    )


def _permissions_problem(props: dict[str, Any]) -> str:
    """Why a role definition's permissions cannot be trusted ("" when they can).

    `permissions: [{"actions": []}]` is a real role that grants nothing; a missing or null list, a block that is
    not an object, or a pattern list that is not a list of strings is an unreadable body, not an empty role.
    """
    perms = props.get("permissions")
    if not isinstance(perms, list):
        return "its permissions list is missing or null" if perms is None else "its permissions are not a list"
    for block in perms:
        if not isinstance(block, dict):
            return "a permission block is not an object"
        for key in PERMISSION_KEYS:
            value = block.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
                return f"its {key} are not a list of action names"
    return ""


def parse_role_definition(doc: dict[str, Any]) -> RoleDefinition:
    p = _props(doc)
    rid = str(doc.get("id") or "")
    return RoleDefinition(
        id=rid,
        guid=(str(doc.get("name") or ids.name_of(rid))).lower(),
        role_name=str(p.get("roleName") or doc.get("name") or ""),
        role_type=str(p.get("type") or p.get("roleType") or ""),
        permissions=tuple(_perm(_dict(x)) for x in _list(p.get("permissions"))),
        assignable_scopes=tuple(str(s) for s in _list(p.get("assignableScopes"))),
        unreadable=_permissions_problem(p) if isinstance(doc.get("properties"), dict) else "its properties are missing or null",
    )


@dataclass
class RoleAssignment:
    id: str
    scope: str  # as ARM wrote it
    role_definition_id: str
    role_guid: str
    principal_id: str
    principal_type: str  # User | Group | ServicePrincipal | ForeignGroup | Device | Unknown (deleted) | "" (not reported)
    condition: str | None
    eligible: bool = False  # a PIM eligibility (roleEligibilityScheduleInstances), not an active assignment
    # Microsoft Graph was asked about the principal and does not know it (directory.py): deleted, whatever
    # principalType ARM kept. Set by build_inventory; never set when Graph was not read.
    principal_deleted: bool = False

    @property
    def scope_key(self) -> str:
        return ids.norm(self.scope)


def assignment_scope(doc: dict[str, Any]) -> str:
    """The scope of a role, deny or eligibility document. The ID always carries it; a `scope` field that is not an
    ARM scope ("x", "*", a number) is ignored."""
    scope = _props(doc).get("scope")
    if not (isinstance(scope, str) and scope.startswith("/")):
        scope = ids.owner_scope_of_extension(str(doc.get("id") or ""), "/providers/Microsoft.Authorization/")
    return str(scope)


def role_definition_of(doc: dict[str, Any]) -> str:
    """The role definition ID a role assignment or eligibility document names ("" when none)."""
    return str(_props(doc).get("roleDefinitionId") or "")


def parse_role_assignment(doc: dict[str, Any], eligible: bool = False) -> RoleAssignment:
    p = _props(doc)
    rdid = role_definition_of(doc)
    aid = str(doc.get("id") or "")
    return RoleAssignment(
        id=aid,
        scope=assignment_scope(doc),
        role_definition_id=rdid,
        role_guid=ids.name_of(rdid).lower(),
        principal_id=str(p.get("principalId") or "").lower(),
        # Only ARM's explicit "Unknown" marks a deleted principal; a body without the field says nothing about it.
        principal_type=str(p.get("principalType") or ""),
        condition=p.get("condition") or None,
        eligible=eligible,
    )


@dataclass
class DenyAssignment:
    id: str
    name: str
    scope: str
    permissions: tuple[Permission, ...]
    principal_ids: tuple[str, ...]  # EVERYONE means all principals
    exclude_principal_ids: tuple[str, ...]
    does_not_apply_to_child_scopes: bool
    # principals[].type / excludePrincipals[].type, parallel to the ID tuples (User, Group, ServicePrincipal,
    # SystemDefined for Everyone; "" when ARM did not say): an excluded group may hold any principal (rbac.py).
    principal_types: tuple[str, ...] = ()
    exclude_principal_types: tuple[str, ...] = ()
    # An ABAC condition on the whole deny (API 2022-04-01): it removes rights only when the condition holds.
    condition: str | None = None


def parse_deny_assignment(doc: dict[str, Any]) -> DenyAssignment:
    p = _props(doc)
    did = str(doc.get("id") or "")
    return DenyAssignment(
        id=did,
        name=str(p.get("denyAssignmentName") or doc.get("name") or ""),
        scope=str(p.get("scope") or ids.owner_scope_of_extension(did, "/providers/Microsoft.Authorization/")),
        permissions=tuple(_perm(_dict(x)) for x in _list(p.get("permissions"))),
        principal_ids=tuple(str(_dict(x).get("id") or "").lower() for x in _list(p.get("principals"))),
        exclude_principal_ids=tuple(str(_dict(x).get("id") or "").lower() for x in _list(p.get("excludePrincipals"))),
        does_not_apply_to_child_scopes=bool(p.get("doNotApplyToChildScopes")),
        principal_types=tuple(str(_dict(x).get("type") or "") for x in _list(p.get("principals"))),
        exclude_principal_types=tuple(str(_dict(x).get("type") or "") for x in _list(p.get("excludePrincipals"))),
        condition=_condition(p.get("condition")),
    )


