"""The RBAC engine (auditor/rbac.py): pattern matching, inheritance, notActions, denies, PIM, ABAC, data
actions, unresolved roles, include_below and rights_of. Inventories are built from fixtures, as ARM returns them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auditor import actions, ids, rbac, rbac_terms
from auditor.documents import EVERYONE
from auditor.findings import Status
from auditor.inventory import Inventory, build_inventory
from auditor.recent import Recent
from auditor.snapshot import Snapshot
from checks import common
from fixtures import builders as b
from fixtures import roles

SUB = "6f1c2d3e-0000-4a4a-8b8b-111111111111"
MG = "/providers/Microsoft.Management/managementGroups/contoso-root"
RG = b.rg_id(SUB, "rg-images")
TPL = b.template_id(SUB, "rg-images", "tpl-linux")
STG = f"{RG}/providers/Microsoft.Storage/storageAccounts/stgartifacts"
WRITE = "Microsoft.VirtualMachineImages/imageTemplates/write"
DELETE = "Microsoft.VirtualMachineImages/imageTemplates/delete"
BLOB_READ = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
ROLE_WRITE = "Microsoft.Authorization/roleAssignments/write"
ALICE = b.guid("alice")
BOB = b.guid("bob")
CAROL = b.guid("carol")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "azure-reference"


def inventory(
    assignments: list[dict[str, Any]],
    *,
    extra_roles: list[dict[str, Any]] | None = None,
    eligible: list[dict[str, Any]] | None = None,
    denies: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> Inventory:
    doc = b.snapshot(
        [SUB],
        {
            "roleDefinitions": roles.builtin_roles(SUB) + (extra_roles or []),
            "roleAssignments": assignments,
            "roleEligibilityScheduleInstances": eligible or [],
            "denyAssignments": denies or [],
        },
        errors=errors,
    )
    return build_inventory(Snapshot.from_dict(doc))


def ra(scope: str, role: str, pid: str, ptype: str = "User", **kw: Any) -> dict[str, Any]:
    return b.role_assignment(scope, role, pid, ptype, sub=SUB, **kw)


def principals(ans: rbac_terms.Answer) -> set[str]:
    return {g.principal_id for g in ans}


# --------------------------------------------------------------------------------------------- patterns


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", WRITE, True),
        ("*/read", "Microsoft.Compute/galleries/read", True),
        ("*/read", WRITE, False),
        ("Microsoft.Authorization/*/Write", "microsoft.authorization/roleassignments/write", True),
        ("Microsoft.Authorization/*/Write", "Microsoft.Authorization/roleAssignments/delete", False),
        ("Microsoft.Compute/*", "Microsoft.Compute/galleries/images/versions/write", True),
        ("Microsoft.Compute/*", "Microsoft.ComputeSchedule/x/write", False),
        ("MICROSOFT.VIRTUALMACHINEIMAGES/imageTemplates/*", "Microsoft.VirtualMachineImages/imageTemplates/run/action", True),
        # Managed Identity Operator's pattern grants the real assign action: an interior /*/ may match one "/".
        (
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
            True,
        ),
        ("Microsoft.VirtualMachineImages/*/write", "Microsoft.VirtualMachineImages/imageTemplates/triggers/write", True),
        ("Microsoft.VirtualMachineImages/*/write", DELETE, False),
    ],
)
def test_action_patterns_match_with_wildcards_anywhere_case_insensitively(pattern: str, action: str, expected: bool) -> None:
    assert actions.matches(pattern, action) is expected


def test_pattern_algebra_intersects_and_covers() -> None:
    assert actions.intersects("*", "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action")
    assert not actions.intersects("*/read", "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action")
    assert actions.intersects("Microsoft.Compute/*/write", "*/galleries/*")
    assert actions.covers("Microsoft.Storage/*", "Microsoft.Storage/*/write")
    assert not actions.covers("Microsoft.Storage/*/write", "Microsoft.Storage/*")
    assert not actions.covers("*/read", "*")


# --------------------------------------------------------------------------------------------- inheritance


def test_wildcard_mid_string_in_a_custom_role_grants_only_what_it_matches() -> None:
    custom = roles.custom_role(SUB, b.guid("vmi-writer"), "VMI writer", ["Microsoft.VirtualMachineImages/*/write"])
    inv = inventory([ra(RG, b.guid("vmi-writer"), ALICE)], extra_roles=[custom])
    engine = rbac.Rbac(inv)
    [grant] = engine.who_can(WRITE, TPL).grants
    assert (grant.role_name, grant.granted_by, grant.matched_action) == (
        "VMI writer",
        "Microsoft.VirtualMachineImages/*/write",
        WRITE,
    )
    assert grant.inherited_from == "resource group rg-images"
    assert len(engine.who_can(DELETE, TPL)) == 0


def test_ids_match_case_insensitively_across_spellings() -> None:
    # ARM returns `resourcegroups` in lower case in places; the question uses `resourceGroups`.
    scope = f"/SUBSCRIPTIONS/{SUB.upper()}/resourcegroups/RG-IMAGES"
    inv = inventory([ra(scope, roles.CONTRIBUTOR, ALICE)])
    [grant] = rbac.Rbac(inv).who_can(WRITE.upper(), TPL).grants
    assert grant.principal_id == ALICE and grant.scope_level == "resourceGroup"


def test_not_actions_remove_only_from_their_own_role_and_another_role_grants_back() -> None:
    writer = roles.custom_role(SUB, b.guid("ra-writer"), "Assignment writer", [ROLE_WRITE])
    inv = inventory(
        [ra(RG, roles.CONTRIBUTOR, ALICE), ra(RG, roles.CONTRIBUTOR, BOB), ra(RG, b.guid("ra-writer"), BOB)],
        extra_roles=[writer],
    )
    ans = rbac.Rbac(inv).who_can(ROLE_WRITE, RG)
    # Contributor's notActions (Microsoft.Authorization/*/Write) remove it for Alice; Bob's second role grants it back.
    assert [(g.principal_id, g.role_name) for g in ans] == [(BOB, "Assignment writer")]


def test_management_group_and_root_assignments_are_inherited() -> None:
    inv = inventory([ra(MG, roles.OWNER, ALICE), ra("/", roles.USER_ACCESS_ADMINISTRATOR, BOB)])
    engine = rbac.Rbac(inv)
    by_pid = {g.principal_id: g for g in engine.who_can([WRITE, ROLE_WRITE], TPL)}
    assert by_pid[ALICE].inherited_from == "management group contoso-root"
    assert by_pid[ALICE].scope_level == "managementGroup" and by_pid[ALICE].matched_action == WRITE
    assert by_pid[BOB].inherited_from == "root" and by_pid[BOB].scope_level == "root"
    assert by_pid[BOB].matched_action == ROLE_WRITE and by_pid[BOB].granted_by == "Microsoft.Authorization/*"


def test_assignment_on_the_resource_itself_reads_this_resource() -> None:
    inv = inventory([ra(TPL, roles.OWNER, ALICE)])
    [grant] = rbac.Rbac(inv).who_can(WRITE, TPL).grants
    assert grant.inherited_from == "this resource" and grant.scope_level == "resource"


def test_sibling_scopes_do_not_leak() -> None:
    inv = inventory([ra(b.rg_id(SUB, "rg-images-old"), roles.OWNER, ALICE), ra(b.rg_id(SUB, "rg-other"), roles.OWNER, BOB)])
    assert len(rbac.Rbac(inv).who_can(WRITE, TPL)) == 0


# --------------------------------------------------------------------------------------------- deny, ABAC, PIM, data


def test_deny_for_everyone_with_exclusion_subtracts_except_for_the_excluded() -> None:
    deny = b.deny_assignment(
        RG, "protect-templates", ["Microsoft.VirtualMachineImages/imageTemplates/delete"], [EVERYONE], [ALICE]
    )
    inv = inventory([ra(RG, roles.OWNER, ALICE), ra(RG, roles.OWNER, BOB)], denies=[deny])
    engine = rbac.Rbac(inv)
    assert principals(engine.who_can(DELETE, TPL)) == {ALICE}
    assert principals(engine.who_can(WRITE, TPL)) == {ALICE, BOB}  # the deny covers delete only


def test_deny_that_does_not_apply_to_child_scopes_stops_at_its_scope() -> None:
    deny = b.deny_assignment(b.sub_id(SUB), "sub-only", ["*"], [BOB])
    deny["properties"]["doNotApplyToChildScopes"] = True
    inv = inventory([ra(b.sub_id(SUB), roles.OWNER, BOB)], denies=[deny])
    engine = rbac.Rbac(inv)
    assert len(engine.who_can(WRITE, b.sub_id(SUB))) == 0
    assert principals(engine.who_can(WRITE, TPL)) == {BOB}


GROUP = b.guid("group:image-admins")


def everyone_deny(
    scope: str, actions: list[str], exclude: list[str], types: dict[str, str], name: str = "seal"
) -> dict[str, Any]:
    """A deny for Everyone (type SystemDefined, as ARM reports it) with typed exclusions."""
    return b.deny_assignment(scope, name, actions, [EVERYONE], exclude, principal_types={EVERYONE: "SystemDefined", **types})


def test_deny_for_everyone_excluding_a_group_keeps_everyone_elses_grant_with_a_caveat() -> None:
    # Alice might be a member of the excluded group: Graph is not read, so the deny cannot be counted on.
    deny = everyone_deny(RG, ["*"], [GROUP], {GROUP: "Group"}, name="Seal templates")
    inv = inventory([ra(RG, roles.CONTRIBUTOR, ALICE), ra(RG, roles.CONTRIBUTOR, GROUP, "Group")], denies=[deny])
    by_pid = {g.principal_id: g for g in rbac.Rbac(inv).who_can(WRITE, TPL)}
    assert set(by_pid) == {ALICE, GROUP}
    assert by_pid[ALICE].deny_caveats == (
        f"deny assignment 'Seal templates' at resource group rg-images would remove this unless {ALICE} is a member of"
        f" excluded group {GROUP}",
    )
    assert by_pid[GROUP].deny_caveats == ()  # the group itself is excluded by name: nothing to caveat
    evidence = common.principal_fields([by_pid[ALICE]], False)["evidence"]
    assert evidence["deny_caveats"] == list(by_pid[ALICE].deny_caveats)
    assert evidence["grants"][0]["deny_caveats"] == list(by_pid[ALICE].deny_caveats)
    assert f"would remove this unless {ALICE} is a member of excluded group {GROUP}" in common.via([by_pid[ALICE]])


@pytest.mark.parametrize(
    ("excluded_type", "kept", "words"),
    [
        ("Group", True, f"excluded group {CAROL}"),
        ("ForeignGroup", True, f"excluded group {CAROL}"),
        ("Unknown", True, f"excluded principal {CAROL} (type Unknown: possibly a group)"),
        ("", True, f"excluded principal {CAROL} (type not reported: possibly a group)"),
        (None, True, f"excluded principal {CAROL} (type not reported: possibly a group)"),  # no `type` key at all
        ("User", False, ""),
        ("ServicePrincipal", False, ""),
    ],
)
def test_deny_exclusions_that_might_hold_others_never_subtract(excluded_type: str | None, kept: bool, words: str) -> None:
    deny = everyone_deny(RG, ["Microsoft.VirtualMachineImages/*"], [CAROL], {CAROL: excluded_type or ""})
    if excluded_type is None:
        del deny["properties"]["excludePrincipals"][0]["type"]
    inv = inventory([ra(b.sub_id(SUB), roles.OWNER, ALICE)], denies=[deny])
    ans = rbac.Rbac(inv).who_can(DELETE, TPL)
    if not kept:
        assert len(ans) == 0  # every excluded principal is a leaf: Alice is surely denied
        return
    [grant] = ans.grants
    assert grant.principal_id == ALICE
    assert grant.deny_caveats[0].endswith(f"unless {ALICE} is a member of {words}")


def test_deny_excluding_everyone_applies_to_no_one() -> None:
    deny = everyone_deny(RG, ["*"], [EVERYONE], {})
    inv = inventory([ra(RG, roles.CONTRIBUTOR, ALICE)], denies=[deny])
    [grant] = rbac.Rbac(inv).who_can(WRITE, TPL).grants
    assert grant.principal_id == ALICE and grant.deny_caveats == ()


def test_deny_listing_a_group_removes_only_the_groups_own_grants() -> None:
    # Alice may be a member of the group, but her own assignment is hers: membership is not expanded.
    deny = b.deny_assignment(RG, "no-admins", ["*"], [GROUP], principal_types={GROUP: "Group"})
    inv = inventory([ra(RG, roles.OWNER, GROUP, "Group"), ra(RG, roles.OWNER, ALICE)], denies=[deny])
    [grant] = rbac.Rbac(inv).who_can(WRITE, TPL).grants
    assert grant.principal_id == ALICE and grant.deny_caveats == ()


def test_a_sure_deny_wins_over_one_that_excludes_a_group() -> None:
    maybe = everyone_deny(RG, ["*"], [GROUP], {GROUP: "Group"}, name="maybe")
    sure = b.deny_assignment(b.sub_id(SUB), "sure", ["*/write"], [ALICE], principal_types={ALICE: "User"})
    inv = inventory([ra(RG, roles.CONTRIBUTOR, ALICE)], denies=[maybe, sure])
    engine = rbac.Rbac(inv)
    assert len(engine.who_can(WRITE, TPL)) == 0
    [grant] = engine.who_can(DELETE, TPL).grants  # "sure" covers writes only; "maybe" leaves a caveat
    assert [c.split("'")[1] for c in grant.deny_caveats] == ["maybe"]


def test_grant_can_keeps_a_right_that_only_a_deny_excluding_a_group_stands_against() -> None:
    deny = everyone_deny(b.sub_id(SUB), ["*"], [GROUP], {GROUP: "Group"})
    inv = inventory([ra(b.sub_id(SUB), roles.OWNER, ALICE)], denies=[deny])
    engine = rbac.Rbac(inv)
    [owner] = engine.rights_of(ALICE).grants
    assert engine.grant_can(owner, ROLE_WRITE) == "*"
    user_only = everyone_deny(b.sub_id(SUB), ["*"], [BOB], {BOB: "User"})
    engine = rbac.Rbac(inventory([ra(b.sub_id(SUB), roles.OWNER, ALICE)], denies=[user_only]))
    [owner] = engine.rights_of(ALICE).grants
    assert engine.grant_can(owner, ROLE_WRITE) is None


def test_include_below_judges_a_deny_not_applying_to_child_scopes_at_the_children() -> None:
    # Contributor at the subscription; the RG itself is sealed, its resources are not.
    deny = everyone_deny(RG, ["*"], [BOB], {BOB: "ServicePrincipal"})
    deny["properties"]["doNotApplyToChildScopes"] = True
    inv = inventory([ra(b.sub_id(SUB), roles.CONTRIBUTOR, ALICE), ra(STG, roles.CONTRIBUTOR, CAROL)], denies=[deny])
    engine = rbac.Rbac(inv)
    assert principals(engine.who_can(rbac_terms.NON_READ, RG)) == set()  # on the RG itself the deny applies
    below = engine.who_can(rbac_terms.NON_READ, RG, include_below=True)
    assert principals(below) == {ALICE, CAROL}
    assert all(g.deny_caveats == () for g in below)
    # Without doNotApplyToChildScopes the deny reaches every resource in the RG.
    deny["properties"]["doNotApplyToChildScopes"] = False
    inv = inventory([ra(b.sub_id(SUB), roles.CONTRIBUTOR, ALICE), ra(STG, roles.CONTRIBUTOR, CAROL)], denies=[deny])
    assert principals(rbac.Rbac(inv).who_can(rbac_terms.NON_READ, RG, include_below=True)) == set()


def test_conditional_and_eligible_assignments_grant_and_are_flagged() -> None:
    cond = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'scripts'"
    inv = inventory(
        [ra(RG, roles.CONTRIBUTOR, ALICE, condition=cond)],
        eligible=[b.eligibility(b.sub_id(SUB), roles.OWNER, BOB, sub=SUB)],
    )
    by_pid = {g.principal_id: g for g in rbac.Rbac(inv).who_can(WRITE, TPL)}
    assert by_pid[ALICE].conditional and not by_pid[ALICE].eligible
    assert by_pid[BOB].eligible and not by_pid[BOB].conditional
    assert by_pid[BOB].inherited_from == f"subscription {SUB}"
    assert "PIM-eligible" in common.grant_flags(by_pid[BOB]) and "ABAC condition" in common.grant_flags(by_pid[ALICE])


def test_data_actions_are_evaluated_apart_from_actions() -> None:
    inv = inventory([ra(STG, roles.STORAGE_BLOB_DATA_READER, ALICE), ra(RG, roles.OWNER, BOB)])
    engine = rbac.Rbac(inv)
    assert principals(engine.who_can(BLOB_READ, STG, data=True)) == {ALICE}  # Owner's "*" is no data action
    assert ALICE not in principals(engine.who_can(BLOB_READ, STG))  # and a data action is not an action


def test_non_read_question_ignores_readers_and_fully_removed_patterns() -> None:
    hollow = roles.custom_role(
        SUB, b.guid("hollow"), "Hollow writer", ["*/read", "Microsoft.Storage/*/write"], not_actions=["Microsoft.Storage/*"]
    )
    monitor_like = roles.custom_role(SUB, b.guid("monitor"), "Monitoring reader-like", ["*/read", "Microsoft.Support/*"])
    inv = inventory(
        [
            ra(RG, roles.READER, ALICE),
            ra(RG, b.guid("hollow"), BOB),
            ra(RG, b.guid("monitor"), BOB),
            ra(RG, roles.VIRTUAL_MACHINE_CONTRIBUTOR, CAROL),
        ],
        extra_roles=[hollow, monitor_like],
    )
    [grant] = rbac.Rbac(inv).who_can(rbac_terms.NON_READ, RG).grants
    assert grant.principal_id == CAROL and grant.role_name == "Virtual Machine Contributor"


def test_pattern_questions_about_identities() -> None:
    assign = "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action"
    fic = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
    ident = b.identity_id(SUB, "rg-images", "id-build")
    inv = inventory(
        [
            ra(ident, roles.MANAGED_IDENTITY_OPERATOR, ALICE),
            ra(RG, roles.MANAGED_IDENTITY_CONTRIBUTOR, BOB),
            ra(RG, roles.READER, CAROL),
        ]
    )
    ans = rbac.Rbac(inv).who_can([assign, fic], ident)
    assert {(g.principal_id, g.matched_action) for g in ans} == {(ALICE, assign), (BOB, fic)}


# --------------------------------------------------------------------------------------------- unresolved, errors


def test_unresolved_role_definition_is_surfaced_never_skipped() -> None:
    missing = b.guid("deleted-custom-role")
    inv = inventory([ra(RG, missing, ALICE), ra(RG, roles.OWNER, BOB)])
    ans = rbac.Rbac(inv).who_can(WRITE, TPL)
    assert principals(ans) == {BOB}
    assert ans.unresolved and not ans.errors
    [unresolved] = ans.unresolved
    assert unresolved.principal_id == ALICE
    [finding] = common.problem_findings(ans)
    assert finding.status == Status.ERROR and finding.principal_id == ALICE
    assert (
        f"role definition /subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{missing} could not be read"
        in (finding.detail)
    )
    assert "needs Microsoft.Authorization/roleDefinitions/read" in finding.detail


def test_role_definition_resolves_from_any_form_of_its_id() -> None:
    doc = ra(RG, roles.OWNER, ALICE)
    doc["properties"]["roleDefinitionId"] = f"/providers/Microsoft.Authorization/roleDefinitions/{roles.OWNER.upper()}"
    inv = inventory([doc])
    [grant] = rbac.Rbac(inv).who_can(WRITE, TPL).grants
    assert grant.role_name == "Owner"


def test_failed_rbac_reads_make_the_answer_incomplete() -> None:
    err = {"kind": "denyAssignments", "scope": b.sub_id(SUB), "status": 403, "code": "AuthorizationFailed", "message": "no"}
    inv = inventory([ra(RG, roles.OWNER, ALICE)], errors=[err])
    ans = rbac.Rbac(inv).who_can(WRITE, TPL)
    assert not ans.unresolved and [e.kind for e in ans.errors] == ["denyAssignments"]
    [finding] = common.problem_findings(ans)
    assert finding.status == Status.ERROR and "Microsoft.Authorization/denyAssignments/read" in finding.detail


# --------------------------------------------------------------------------------------------- include_below, rights_of


def test_include_below_counts_assignments_on_resources_inside_the_scope() -> None:
    inv = inventory([ra(STG, roles.STORAGE_ACCOUNT_CONTRIBUTOR, ALICE), ra(b.rg_id(SUB, "rg-images2"), roles.OWNER, BOB)])
    engine = rbac.Rbac(inv)
    assert len(engine.who_can(rbac_terms.NON_READ, RG)) == 0
    [grant] = engine.who_can(rbac_terms.NON_READ, RG, include_below=True).grants
    assert grant.principal_id == ALICE and grant.inherited_from == "resource stgartifacts"  # rg-images2 is no child


def test_rights_of_lists_every_assignment_broadest_first_with_unresolved_apart() -> None:
    missing = b.guid("gone")
    inv = inventory(
        [ra(TPL, roles.READER, ALICE), ra(MG, roles.READER, ALICE), ra(RG, missing, ALICE), ra(RG, roles.OWNER, BOB)],
        eligible=[b.eligibility(b.sub_id(SUB), roles.CONTRIBUTOR, ALICE, sub=SUB)],
    )
    engine = rbac.Rbac(inv)
    ans = engine.rights_of(ALICE.upper())
    assert [(g.role_name, g.scope_level, g.eligible) for g in ans] == [
        ("Reader", "managementGroup", False),
        ("Contributor", "subscription", True),
        ("Reader", "resource", False),
    ]
    assert [u.role_definition_id.rsplit("/", 1)[-1] for u in ans.unresolved] == [missing]
    contributor = ans.grants[1]
    assert engine.grant_can(contributor, WRITE) == "*"
    assert engine.grant_can(contributor, ROLE_WRITE) is None


def test_engine_is_shared_per_inventory() -> None:
    inv = inventory([])
    assert rbac.engine(inv) is rbac.engine(inv)
    assert rbac.engine(inventory([])) is not rbac.engine(inv)


# --------------------------------------------------------------------------------------------- real shapes


@pytest.mark.skipif(not (SHARED / "builtin-roles").is_dir(), reason="../shared/azure-reference not present")
@pytest.mark.parametrize("name", ["Owner", "Contributor", "UserAccessAdministrator", "RoleBasedAccessControlAdministrator"])
def test_fixture_roles_match_the_published_definitions(name: str) -> None:
    published = json.loads((SHARED / "builtin-roles" / f"{name}.json").read_text(encoding="utf-8"))
    ours = roles.builtin_role(SUB, published["name"])
    assert ours["properties"]["roleName"] == published["roleName"]
    assert ours["properties"]["permissions"][0]["actions"] == published["permissions"][0]["actions"]
    assert ours["properties"]["permissions"][0]["notActions"] == published["permissions"][0]["notActions"]


@pytest.mark.skipif(not (SHARED / "authorization-2022-04-01").is_dir(), reason="../shared/azure-reference not present")
def test_real_list_for_resource_group_body_inherits_the_subscription_assignment() -> None:
    body = json.loads((SHARED / "authorization-2022-04-01" / "RoleAssignments_ListForResourceGroup.json").read_text())
    docs = body["responses"]["200"]["body"]["value"]
    sub = body["parameters"]["subscriptionId"]
    guid = docs[0]["properties"]["roleDefinitionId"].rsplit("/", 1)[-1]
    role = roles.custom_role(sub, guid, "Template operator", ["Microsoft.VirtualMachineImages/imageTemplates/*"])
    snap = Snapshot.from_dict(b.snapshot([sub], {"roleAssignments": docs, "roleDefinitions": [role]}))
    engine = rbac.Rbac(build_inventory(snap))
    grants = engine.who_can(WRITE, b.template_id(sub, "testrg", "t1")).grants
    assert sorted(g.scope_level for g in grants) == ["resourceGroup", "subscription"]
    assert {g.principal_type for g in grants} == {"User"}


# --------------------------------------------------------------------------------------------- management-group hierarchy

SUB_B = "6f1c2d3e-0000-4a4a-8b8b-222222222222"
MG_A = "/providers/Microsoft.Management/managementGroups/mg-a"
MG_B = "/providers/Microsoft.Management/managementGroups/mg-b"
TPL_B = b.template_id(SUB_B, "rg-images", "tpl-b")


def two_subscription_inventory(
    assignments: list[dict[str, Any]],
    ancestors: dict[str, list[str]] | None,
    denies: list[dict[str, Any]] | None = None,
) -> Inventory:
    """SUB under mg-a, SUB_B under mg-b (when `ancestors` says so); both audited together."""
    doc = b.snapshot(
        [SUB, SUB_B],
        {
            "roleDefinitions": roles.builtin_roles(SUB),
            "roleAssignments": assignments,
            "denyAssignments": denies or [],
        },
        ancestors=ancestors,
    )
    return build_inventory(Snapshot.from_dict(doc))


def test_management_group_assignment_applies_only_to_subscriptions_under_it() -> None:
    inv = two_subscription_inventory(
        [ra(MG_A, roles.OWNER, ALICE), ra(MG_B, roles.CONTRIBUTOR, BOB), ra("/", roles.OWNER, CAROL)],
        {SUB: [MG_A, "/"], SUB_B.upper(): [MG_B.lower(), "/"]},  # spelled as ARM may spell them
    )
    engine = rbac.Rbac(inv)
    assert principals(engine.who_can(WRITE, TPL)) == {ALICE, CAROL}
    assert principals(engine.who_can(WRITE, TPL_B)) == {BOB, CAROL}  # Owner at mg-a is no writer under mg-b
    assert principals(engine.who_can(rbac_terms.NON_READ, b.rg_id(SUB_B, "rg-images"), include_below=True)) == {BOB, CAROL}
    # Locks, read errors and denies follow the same hierarchy (Inventory.applies_at).
    assert inv.applies_at(MG_A, TPL) and not inv.applies_at(MG_A, TPL_B) and inv.applies_at("/", TPL_B)


def test_a_subscription_without_ancestors_keeps_every_management_group_above_it() -> None:
    # Old snapshots and hand-made estates carry no subscriptionAncestors: management groups apply everywhere.
    inv = two_subscription_inventory([ra(MG_A, roles.OWNER, ALICE)], None)
    assert principals(rbac.Rbac(inv).who_can(WRITE, TPL_B)) == {ALICE}
    # Only SUB has an entry: SUB_B falls back, SUB does not get mg-b's assignment.
    inv = two_subscription_inventory([ra(MG_A, roles.OWNER, ALICE), ra(MG_B, roles.OWNER, BOB)], {SUB: [MG_A]})
    engine = rbac.Rbac(inv)
    assert principals(engine.who_can(WRITE, TPL)) == {ALICE}
    assert principals(engine.who_can(WRITE, TPL_B)) == {ALICE, BOB}


def test_root_assignment_applies_only_where_the_subscription_lists_root() -> None:
    inv = two_subscription_inventory([ra("/", roles.OWNER, CAROL)], {SUB: ["/"], SUB_B: [MG_B]})
    engine = rbac.Rbac(inv)
    assert principals(engine.who_can(WRITE, TPL)) == {CAROL}
    assert principals(engine.who_can(WRITE, TPL_B)) == set()


def test_management_group_deny_applies_only_under_its_management_group() -> None:
    deny = b.deny_assignment(MG_A, "mg-a-no-writes", ["*/write"], [EVERYONE])
    inv = two_subscription_inventory(
        [ra(b.sub_id(SUB), roles.OWNER, ALICE), ra(b.sub_id(SUB_B), roles.OWNER, BOB)],
        {SUB: [MG_A], SUB_B: [MG_B]},
        denies=[deny],
    )
    engine = rbac.Rbac(inv)
    assert principals(engine.who_can(WRITE, TPL)) == set()
    assert principals(engine.who_can(WRITE, TPL_B)) == {BOB}


def test_failed_read_of_a_role_defined_at_a_management_group_taints_only_its_assignments() -> None:
    # A custom role defined at a management group is a resource under it, not the management group itself.
    custom_id = f"{MG}/providers/Microsoft.Authorization/roleDefinitions/{b.guid('mg-custom')}"
    assert ids.scope_level(custom_id) == "resource" and ids.scope_level(MG) == "managementGroup"
    assert not ids.is_ancestor_or_self(custom_id, TPL) and ids.is_ancestor_or_self(MG, TPL)
    err = {"kind": "roleDefinitions", "scope": custom_id, "status": 404, "code": "RoleDefinitionDoesNotExist", "message": "gone"}
    doc = ra(RG, roles.OWNER, ALICE)
    orphan = ra(b.rg_id(SUB, "rg-other"), b.guid("mg-custom"), BOB)
    orphan["properties"]["roleDefinitionId"] = custom_id
    inv = inventory([doc, orphan], errors=[err])
    engine = rbac.Rbac(inv)
    assert inv.read_errors("roleDefinitions", TPL) == [] and engine.errors_for(TPL) == []
    ans = engine.who_can(WRITE, TPL)
    assert principals(ans) == {ALICE} and not ans.errors and not ans.unresolved
    # The assignment that needs the role is still reported, where it applies.
    other = engine.who_can(WRITE, b.rg_id(SUB, "rg-other"))
    assert [u.principal_id for u in other.unresolved] == [BOB]


# --------------------------------------------------------------------------------------------- every granting pattern


def test_deny_removing_one_granting_pattern_leaves_the_others() -> None:
    two = roles.custom_role(
        SUB, b.guid("two-writes"), "Compute and network writer", ["Microsoft.Compute/*/write", "Microsoft.Network/*/write"]
    )
    deny = b.deny_assignment(RG, "no-compute", ["Microsoft.Compute/*"], [ALICE])
    inv = inventory([ra(RG, b.guid("two-writes"), ALICE)], extra_roles=[two], denies=[deny])
    engine = rbac.Rbac(inv)
    [grant] = engine.who_can(rbac_terms.NON_READ, RG).grants
    assert grant.principal_id == ALICE and grant.granted_by == "Microsoft.Network/*/write"
    # The same for a pattern question, and nothing once a deny covers every pattern.
    [grant] = engine.who_can("Microsoft.*/write", RG).grants
    assert grant.granted_by == "Microsoft.Network/*/write"
    deny_all = b.deny_assignment(RG, "no-writes", ["Microsoft.Compute/*", "Microsoft.Network/*"], [ALICE])
    inv = inventory([ra(RG, b.guid("two-writes"), ALICE)], extra_roles=[two], denies=[deny_all])
    assert len(rbac.Rbac(inv).who_can(rbac_terms.NON_READ, RG)) == 0


def test_top_is_the_most_significant_grant() -> None:
    inv = inventory(
        [ra(TPL, roles.OWNER, ALICE), ra(MG, roles.CONTRIBUTOR, ALICE)],
        eligible=[b.eligibility(b.sub_id(SUB), roles.OWNER, ALICE, sub=SUB)],
    )
    grants = rbac.Rbac(inv).who_can(WRITE, TPL).grants
    assert rbac_terms.top(grants).scope_level == "managementGroup"
    assert [g.scope_level for g in rbac_terms.by_rank(grants)] == ["managementGroup", "subscription", "resource"]


# --------------------------------------------------------------------------------------------- principal types


def test_missing_principal_type_is_not_a_deleted_principal() -> None:
    silent = ra(RG, roles.OWNER, ALICE)
    del silent["properties"]["principalType"]
    inv = inventory([silent, ra(RG, roles.OWNER, BOB, "Unknown")])
    by_pid = {g.principal_id: g for g in rbac.Rbac(inv).who_can(WRITE, TPL)}
    assert by_pid[ALICE].principal_type == "" and not by_pid[ALICE].deleted
    assert common.principal_label(by_pid[ALICE]) == f"principal {ALICE}"
    assert by_pid[BOB].deleted and common.principal_label(by_pid[BOB]) == f"deleted principal {BOB}"


# --------------------------------------------------------------------------------------------- ids


def test_parent_at_cuts_an_id_at_its_last_segment_keeping_its_spelling() -> None:
    version = f"{b.gallery_id(SUB, 'rg', 'Gal')}/images/Img/Versions/1.0.0"
    assert ids.parent_at(version, "versions") == f"{b.gallery_id(SUB, 'rg', 'Gal')}/images/Img"
    assert ids.parent_at(f"{TPL}/triggers/t1/", "triggers") == TPL
    assert ids.parent_at(TPL, "subnets") is None and ids.parent_at(None, "triggers") is None


# ------------------------------------------------------------------------------------------- fail-open paths (adversarial)

CONDITION = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'never'"
FIC_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"
TRIGGER_WRITE = "Microsoft.VirtualMachineImages/imageTemplates/triggers/write"
ROLE_DEFINITION_WRITE = "Microsoft.Authorization/roleDefinitions/write"


@pytest.mark.parametrize("where", ["deny", "block"])
def test_deny_with_an_abac_condition_keeps_the_grant_with_a_caveat(where: str) -> None:
    cond = {"condition": CONDITION} if where == "deny" else {"block_condition": CONDITION}
    deny = b.deny_assignment(b.sub_id(SUB), "maybe-deny", ["*"], [ALICE], principal_types={ALICE: "User"}, **cond)
    inv = inventory([ra(b.sub_id(SUB), roles.OWNER, ALICE)], denies=[deny])
    [grant] = rbac.Rbac(inv).who_can(WRITE, TPL)
    assert grant.principal_id == ALICE
    assert grant.deny_caveats == (f"deny assignment 'maybe-deny' at subscription {SUB} applies only when its condition holds",)
    assert inv.deny_assignments[0].condition or inv.deny_assignments[0].permissions[0].condition == CONDITION


def test_an_unconditional_deny_block_still_removes_beside_a_conditional_one() -> None:
    deny = b.deny_assignment(b.sub_id(SUB), "mixed", ["*"], [ALICE], principal_types={ALICE: "User"}, block_condition=CONDITION)
    deny["properties"]["permissions"].append({"actions": ["*/write"], "notActions": [], "dataActions": [], "notDataActions": []})
    inv = inventory([ra(b.sub_id(SUB), roles.OWNER, ALICE)], denies=[deny])
    engine = rbac.Rbac(inv)
    assert len(engine.who_can(WRITE, TPL)) == 0
    [grant] = engine.who_can(DELETE, TPL)  # only the conditional block covers delete
    assert "applies only when its condition holds" in grant.deny_caveats[0]


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ("properties-null", "its properties are missing or null"),
        ("permissions-missing", "its permissions list is missing or null"),
        ("permissions-null", "its permissions list is missing or null"),
        ("actions-not-a-list", "its actions are not a list of action names"),
    ],
)
def test_role_definition_without_readable_permissions_is_unresolved_not_empty(shape: str, reason: str) -> None:
    opaque = b.guid("opaque-role")
    rd = roles.custom_role(SUB, opaque, "Opaque", ["*"])
    if shape == "properties-null":
        rd["properties"] = None
    elif shape == "permissions-missing":
        del rd["properties"]["permissions"]
    elif shape == "permissions-null":
        rd["properties"]["permissions"] = None
    else:
        rd["properties"]["permissions"][0]["actions"] = "*"
    inv = inventory([ra(b.sub_id(SUB), opaque, ALICE)], extra_roles=[rd])
    engine = rbac.Rbac(inv)
    for ans in (engine.who_can(WRITE, TPL), engine.rights_of(ALICE)):
        assert len(ans) == 0
        [u] = ans.unresolved
        assert u.principal_id == ALICE and u.reason == reason
        assert f"the permissions of role definition {u.role_definition_id} could not be read ({reason})" in u.message()
    [f] = common.problem_findings(engine.who_can(WRITE, TPL))
    assert f.status == Status.ERROR and "so what it grants is unknown" in f.detail


def test_role_definition_with_an_empty_actions_block_grants_nothing_and_resolves() -> None:
    empty = b.guid("empty-role")
    inv = inventory([ra(b.sub_id(SUB), empty, ALICE)], extra_roles=[roles.custom_role(SUB, empty, "Empty", [])])
    ans = rbac.Rbac(inv).who_can(WRITE, TPL)
    assert len(ans) == 0 and ans.unresolved == []


@pytest.mark.parametrize(
    ("action", "target", "child"),
    [
        (TRIGGER_WRITE, TPL, True),
        (WRITE, TPL, False),
        ("Microsoft.VirtualMachineImages/imageTemplates/run/action", TPL, False),
        (FIC_WRITE, b.identity_id(SUB, "rg-images", "id-aib"), True),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", b.identity_id(SUB, "rg-images", "id-aib"), False),
        (TRIGGER_WRITE, RG, False),  # a resource group has no resource type: judged as today
        ("Microsoft.VirtualMachineImages/imageTemplates/*", TPL, False),  # a pattern names no one type
    ],
)
def test_on_child_resource_compares_the_actions_type_with_the_targets(action: str, target: str, child: bool) -> None:
    assert actions.on_child_resource(action, ids.norm(target)) is child


def test_deny_not_applying_to_child_scopes_does_not_reach_actions_on_child_resources() -> None:
    ident = b.identity_id(SUB, "rg-images", "id-aib")
    writer = b.guid("child-writer")
    role = roles.custom_role(SUB, writer, "Child writer", [TRIGGER_WRITE, FIC_WRITE, WRITE])
    denies = [
        b.deny_assignment(
            scope, f"stack-{n}", ["*/write"], [EVERYONE], principal_types={EVERYONE: "SystemDefined"}, child_scopes=False
        )
        for n, scope in (("tpl", TPL), ("id", ident))
    ]
    inv = inventory([ra(RG, writer, ALICE)], extra_roles=[role], denies=denies)
    engine = rbac.Rbac(inv)
    assert len(engine.who_can(WRITE, TPL)) == 0  # on the template itself: denied
    [grant] = engine.who_can(TRIGGER_WRITE, TPL)  # on its triggers: the deny does not reach them
    assert grant.principal_id == ALICE and grant.matched_action == TRIGGER_WRITE
    [grant] = engine.who_can(FIC_WRITE, ident)
    assert grant.principal_id == ALICE and grant.matched_action == FIC_WRITE
    # The same denies applying to child scopes remove both.
    for d in denies:
        d["properties"]["doNotApplyToChildScopes"] = False
    engine = rbac.Rbac(inventory([ra(RG, writer, ALICE)], extra_roles=[role], denies=denies))
    assert len(engine.who_can(TRIGGER_WRITE, TPL)) == 0 and len(engine.who_can(FIC_WRITE, ident)) == 0


def test_grant_can_keeps_a_right_that_a_deny_removes_only_at_the_grants_own_scope() -> None:
    deny = b.deny_assignment(RG, "rg-only", [ROLE_WRITE], [ALICE], principal_types={ALICE: "User"}, child_scopes=False)
    inv = inventory([ra(RG, roles.USER_ACCESS_ADMINISTRATOR, ALICE)], denies=[deny])
    engine = rbac.Rbac(inv)
    [uaa] = engine.rights_of(ALICE)
    assert engine.grant_can(uaa, ROLE_WRITE) == "Microsoft.Authorization/*"  # still holds on every resource in the RG
    deny["properties"]["doNotApplyToChildScopes"] = False
    engine = rbac.Rbac(inventory([ra(RG, roles.USER_ACCESS_ADMINISTRATOR, ALICE)], denies=[deny]))
    [uaa] = engine.rights_of(ALICE)
    assert engine.grant_can(uaa, ROLE_WRITE) is None


@pytest.mark.parametrize(
    ("actions", "not_actions", "star", "pattern"),
    [
        (["*"], [], True, "*"),
        (["Microsoft.*"], ["Microsoft.Authorization/*/Write"], True, "Microsoft.*"),
        (["*/*"], [], True, "*/*"),
        (["*/read", "*/write", "*/delete", "*/action"], [], True, "*/write"),
        (["*/read"], [], False, ""),
        (["Microsoft.Compute/*", "Microsoft.Storage/*"], [], False, ""),
        (["Microsoft.*"], ["Microsoft.KeyVault/*"], False, ""),
    ],
)
def test_has_star_recognises_roles_equivalent_to_star(
    actions: list[str], not_actions: list[str], star: bool, pattern: str
) -> None:
    g = b.guid("star:" + ",".join(actions + not_actions))
    inv = inventory([], extra_roles=[roles.custom_role(SUB, g, "Clone", actions, not_actions)])
    engine = rbac.Rbac(inv)
    role = engine.role(g)
    assert role is not None and engine.has_star(role) is star
    if star:
        assert engine.star_pattern(role) == pattern
    for builtin, expected in ((roles.OWNER, True), (roles.CONTRIBUTOR, True), (roles.READER, False)):
        r = engine.role(builtin)
        assert r is not None and engine.has_star(r) is expected and (engine.star_pattern(r) == "*") is expected


@pytest.mark.parametrize("bad_scope", ["x", "*", 1, True, EVERYONE])
def test_assignment_with_a_scope_field_that_is_no_scope_takes_its_scope_from_its_id(bad_scope: Any) -> None:
    doc = ra(b.sub_id(SUB), roles.OWNER, ALICE)
    doc["properties"]["scope"] = bad_scope
    [grant] = rbac.Rbac(inventory([doc])).who_can(WRITE, TPL)
    assert grant.principal_id == ALICE and grant.assignment_scope == b.sub_id(SUB) and grant.scope_level == "subscription"


def test_management_group_ancestry_is_worked_out_per_subscription_not_per_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    """300 management groups with assignments and denies, 3 subscriptions, each under its own branch: the engine
    asks "does this group apply here?" once per subscription and group, not once per scope and group (the scan
    per scope was 8.9M calls at 300 management groups); the answers are unchanged."""
    groups = [f"/providers/Microsoft.Management/managementGroups/mg-{i:03d}" for i in range(300)]
    subs = [SUB, SUB_B, "6f1c2d3e-0000-4a4a-8b8b-333333333333"]
    branch = {sub: [groups[i * 100 + j] for j in range(100)] + ["/"] for i, sub in enumerate(subs)}
    assignments = [ra(mg, roles.OWNER, b.guid(f"mg-owner:{mg}")) for mg in groups]
    denies = [b.deny_assignment(mg, f"deny-{i}", ["*/delete"], [EVERYONE]) for i, mg in enumerate(groups)]
    doc = b.snapshot(
        subs,
        {"roleDefinitions": roles.builtin_roles(SUB), "roleAssignments": assignments, "denyAssignments": denies},
        ancestors=branch,
    )
    inv = build_inventory(Snapshot.from_dict(doc))
    calls = 0
    real = ids.is_ancestor_or_self

    def counting(ancestor: str | None, scope: str | None, ancestors: ids.Ancestors | None = None) -> bool:
        nonlocal calls
        calls += 1
        return real(ancestor, scope, ancestors)

    monkeypatch.setattr(ids, "is_ancestor_or_self", counting)
    engine = rbac.Rbac(inv)
    scopes = [b.template_id(sub, f"rg-{r}", f"tpl-{t}") for sub in subs for r in range(10) for t in range(10)]
    for scope in scopes:
        got = principals(engine.who_can(WRITE, scope))
        sub = ids.subscription_of(scope)
        assert got == {b.guid(f"mg-owner:{mg}") for mg in branch[str(sub)] if mg != "/"}
    # Assignments and denies: 2 x 300 groups per subscription, whatever the number of scopes (300 here).
    assert calls <= 2 * len(groups) * len(subs), calls


# --------------------------------------------------------------------------------------------- bounded caches


def test_the_answer_cache_keeps_the_most_recently_used() -> None:
    cache: Recent[str, int] = Recent(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent: "b" goes first
    cache.put("c", 3)
    assert (cache.get("b"), cache.get("a"), cache.get("c"), len(cache)) == (None, 1, 3, 2)


def test_a_small_answer_cache_gives_the_same_rows_and_stays_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-scope answers are kept for the CACHED_SCOPES most recent scopes, not the whole audit: at 10,000
    templates they were about 150 MiB of the peak. A miss recomputes; no row may change."""
    from dataclasses import asdict

    from auditor.audit import run_audit, select_checks
    from fixtures.generate import generate

    estate = json.dumps(generate(30, seed=5))

    def rows() -> list[dict[str, Any]]:
        inv = build_inventory(Snapshot.from_dict(json.loads(estate)))
        return [asdict(f) for f in run_audit(inv, select_checks()).findings]

    whole = rows()
    monkeypatch.setattr(rbac, "CACHED_SCOPES", 3)
    assert rows() == whole
    inv = build_inventory(Snapshot.from_dict(json.loads(estate)))
    engine = rbac.engine(inv)
    for t in inv.templates:
        engine.who_can(rbac_terms.NON_READ, t.id)
    assert 0 < len(engine._scope_cache) <= 3 and len(engine._chain_cache) <= 3 and len(engine._error_cache) <= 3


def test_the_audit_lets_the_engine_go_when_every_check_has_run() -> None:
    from auditor.audit import run_audit, select_checks
    from fixtures.generate import generate

    inv = build_inventory(Snapshot.from_dict(generate(3, seed=5)))
    first = rbac.engine(inv)
    run_audit(inv, select_checks())
    assert rbac.engine(inv) is not first  # the audit's engine (with its caches) was dropped; a new one is built


def test_a_cached_read_error_is_still_marked_as_asked_about() -> None:
    """Each check evaluation starts with an empty Inventory.consulted; a failed read it asks about through the
    engine's cache must be marked too, or its ERROR rows would not count it as shown (and an evaluation aborted
    by Pending, whose marks are forgotten, would leave it unshown for every later one)."""
    doc = b.snapshot([SUB], {"imageTemplates": [b.template(SUB, "rg-images", "tpl-linux")]}, [
        {"kind": "roleAssignments", "scope": b.sub_id(SUB), "status": 403, "code": "AuthorizationFailed", "message": "no"}
    ])
    inv = build_inventory(Snapshot.from_dict(doc))
    engine = rbac.engine(inv)
    for _ in range(2):
        inv.consulted = set()
        assert [e.kind for e in engine.errors_for(TPL)] == ["roleAssignments"]
        assert inv.consulted == {0}
