"""The least-privilege checks AIB-LP-001..007, run through the real runner on fixture estates.

Each test builds an estate with fixtures.builders + fixtures.roles, audits it with one check, and asserts the
rows a reviewer would see: status, detail, principal/role/scope fields and evidence.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from auditor import ids
from auditor.audit import run_audit, select_checks
from auditor.documents import EVERYONE
from auditor.findings import Finding, Status
from auditor.inventory import Inventory, build_inventory
from auditor.policy import Policy
from auditor.snapshot import Snapshot
from fixtures import builders as b
from fixtures import roles
from tests.perf_rbac import measure

SUB = "3c1d9a7e-5b2f-4e61-9a0d-2f7c8e4b6a10"
OTHER_SUB = "9e8d7c6b-5a49-4838-a727-161514131211"
MG = "/providers/Microsoft.Management/managementGroups/contoso"
IMAGES = "rg-images"
ALICE = b.guid("alice")
BOB = b.guid("bob")
CAROL = b.guid("carol")
DAVE = b.guid("dave")
GROUP = b.guid("group:image-admins")
GHOST = b.guid("deleted-user")
CREATION_ROLE = b.guid("aib-image-creation")


class Estate:
    """A one-subscription estate under construction; `inventory()` freezes it."""

    def __init__(self) -> None:
        self.res: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.errors: list[dict[str, Any]] = []
        self.subscriptions = [SUB]
        self.ancestors: dict[str, list[str]] | None = None  # subscriptionAncestors; None: not recorded
        self.res["roleDefinitions"] += roles.builtin_roles(SUB) + [roles.aib_image_creation_role(SUB, CREATION_ROLE, IMAGES)]
        self.res["resourceGroups"].append(b.resource_group(SUB, IMAGES))

    def identity(self, name: str, rg: str = "rg-identities", sub: str = SUB, listed: bool = True) -> dict[str, Any]:
        doc = b.identity(sub, rg, name)
        if listed:
            self.res["userAssignedIdentities"].append(doc)
        return doc

    def template(self, name: str = "tpl-linux", staging_exists: bool = True, **kw: Any) -> dict[str, Any]:
        doc = b.template(SUB, IMAGES, name, **kw)
        self.res["imageTemplates"].append(doc)
        if staging_exists:
            self.res["resourceGroups"].append(b.resource_group(SUB, b.staging_rg_name(doc)))
        return doc

    def assign(self, scope: str, role: str, pid: str, ptype: str = "User", **kw: Any) -> None:
        self.res["roleAssignments"].append(b.role_assignment(scope, role, pid, ptype, sub=SUB, **kw))

    def eligible(self, scope: str, role: str, pid: str, ptype: str = "User") -> None:
        self.res["roleEligibilityScheduleInstances"].append(b.eligibility(scope, role, pid, ptype, sub=SUB))

    def fail_read(self, kind: str, scope: str, status: int = 403, code: str = "AuthorizationFailed") -> None:
        self.errors.append({"kind": kind, "scope": scope, "status": status, "code": code, "message": "denied"})

    def inventory(self) -> Inventory:
        doc = b.snapshot(self.subscriptions, dict(self.res), errors=self.errors, ancestors=self.ancestors)
        return build_inventory(Snapshot.from_dict(doc))


def run(estate: Estate, check_id: str, policy: Policy | None = None) -> list[Finding]:
    return run_audit(estate.inventory(), select_checks([check_id]), policy).findings


def only(findings: list[Finding], pid: str) -> Finding:
    [f] = [f for f in findings if f.principal_id == pid]
    return f


def staging_id(doc: dict[str, Any]) -> str:
    return b.rg_id(SUB, b.staging_rg_name(doc))


def statuses(findings: list[Finding]) -> list[Status]:
    return [f.status for f in findings]


# --------------------------------------------------------------------------------------------- AIB-LP-001


def test_lp001_resource_group_role_passes_with_principal_fields() -> None:
    e = Estate()
    tpl = e.template()
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, ALICE)
    e.assign(b.rg_id(SUB, IMAGES), roles.READER, BOB)  # reading is no change
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.PASS and f.check_id == "AIB-LP-001" and f.resource_id == tpl["id"]
    assert (f.principal_id, f.principal_type, f.role_name, f.role_scope) == (ALICE, "User", "Contributor", b.rg_id(SUB, IMAGES))
    assert f.evidence["inherited_from"] == f"resource group {IMAGES}"
    assert f.evidence["matched_action"] == "Microsoft.VirtualMachineImages/imageTemplates/write"
    assert f.evidence["granted_by"] == "*" and f.evidence["allowed"] is False
    assert f"User {ALICE} can change the template through Contributor at resource group {IMAGES}" in f.detail


def test_lp001_owner_inherited_from_management_group_fails() -> None:
    e = Estate()
    e.template()
    e.assign(MG, roles.OWNER, ALICE)
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.FAIL and f.role_name == "Owner" and f.role_scope == MG
    assert "the right comes from management group contoso" in f.detail
    assert f.evidence["inherited_from"] == "management group contoso"


def test_lp001_contributor_at_subscription_fails_and_one_row_aggregates_a_principals_grants() -> None:
    e = Estate()
    e.template()
    e.assign(b.sub_id(SUB), roles.CONTRIBUTOR, ALICE, "ServicePrincipal")
    e.assign(b.rg_id(SUB, IMAGES), roles.OWNER, ALICE, "ServicePrincipal")
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.FAIL
    assert (f.role_name, f.role_scope) == ("Contributor", b.sub_id(SUB))  # the broadest grant fills the row
    assert [g["role_name"] for g in f.evidence["grants"]] == ["Contributor", "Owner"]
    assert f"the right comes from subscription {SUB}" in f.detail


def test_lp001_custom_role_on_image_templates_wildcard_counts() -> None:
    e = Estate()
    tpl = e.template()
    e.res["roleDefinitions"].append(
        roles.custom_role(SUB, b.guid("tpl-op"), "Template operator", ["Microsoft.VirtualMachineImages/imageTemplates/*"])
    )
    e.assign(tpl["id"], b.guid("tpl-op"), BOB)
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.PASS and f.role_name == "Template operator" and f.role_scope == tpl["id"]
    assert f.evidence["inherited_from"] == "this resource"
    assert f.evidence["granted_by"] == "Microsoft.VirtualMachineImages/imageTemplates/*"


def test_lp001_deleted_principal_fails_and_group_is_its_own_principal() -> None:
    e = Estate()
    e.template()
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, GHOST, "Unknown")
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, GROUP, "Group")
    findings = run(e, "AIB-LP-001")
    ghost, group = only(findings, GHOST), only(findings, GROUP)
    assert ghost.status == Status.FAIL and ghost.principal_type == "Unknown"
    assert "deleted principal" in ghost.detail and "principalType Unknown" in ghost.detail
    assert group.status == Status.PASS and group.principal_type == "Group"


def test_lp001_more_writers_than_the_policy_allows_fails_every_counted_row() -> None:
    e = Estate()
    e.template()
    for pid in (ALICE, BOB, CAROL, DAVE):
        e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, pid)
    findings = run(e, "AIB-LP-001")
    assert statuses(findings) == [Status.FAIL] * 4
    assert all("4 principals can change the template; policy allows 3" in f.detail for f in findings)
    assert statuses(run(e, "AIB-LP-001", Policy(max_template_writers=4))) == [Status.PASS] * 4


def test_lp001_allowed_principal_passes_and_is_not_counted() -> None:
    e = Estate()
    e.template()
    for pid in (ALICE, BOB, CAROL):
        e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, pid)
    e.assign(b.sub_id(SUB), roles.OWNER, DAVE, "Group")
    policy = Policy(allowed_principals={"AIB-LP-001": frozenset({DAVE})})
    findings = run(e, "AIB-LP-001", policy)
    dave = only(findings, DAVE)
    assert dave.status == Status.PASS and dave.evidence["allowed"] is True and "accepted by the audit policy" in dave.detail
    assert statuses([f for f in findings if f.principal_id != DAVE]) == [Status.PASS] * 3  # 3 counted, limit 3


def test_lp001_eligible_and_conditional_assignments_count_and_say_so() -> None:
    e = Estate()
    e.template()
    e.eligible(b.sub_id(SUB), roles.OWNER, ALICE)
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, BOB, condition="@Principal[x] StringEquals 'y'")
    findings = run(e, "AIB-LP-001")
    alice, bob = only(findings, ALICE), only(findings, BOB)
    assert alice.status == Status.FAIL and alice.evidence["eligible"] is True and "PIM-eligible" in alice.detail
    assert bob.status == Status.PASS and bob.evidence["conditional"] is True and "ABAC condition" in bob.detail


def test_lp001_no_writer_passes_and_unresolved_role_is_an_error() -> None:
    e = Estate()
    e.template()
    e.assign(b.sub_id(SUB), roles.READER, ALICE)
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.PASS and f.detail.startswith("no principal can run, change or delete the template")

    e.assign(b.rg_id(SUB, IMAGES), b.guid("missing-role"), BOB)
    e.assign(b.sub_id(SUB), roles.OWNER, CAROL)
    findings = run(e, "AIB-LP-001")
    err = only(findings, BOB)
    assert err.status == Status.ERROR and "could not be read; needs Microsoft.Authorization/roleDefinitions/read" in err.detail
    assert statuses(findings) == [Status.FAIL, Status.ERROR]  # the known violation stays, no PASS is vouched for


def test_lp001_failed_role_assignment_read_is_an_error() -> None:
    e = Estate()
    e.template()
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, ALICE)
    e.fail_read("roleAssignments", b.sub_id(SUB))
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.ERROR and "Microsoft.Authorization/roleAssignments/read" in f.detail


def test_lp001_failed_pim_read_is_an_error() -> None:
    e = Estate()
    e.template()
    e.fail_read("roleEligibilityScheduleInstances", b.sub_id(SUB), 400, "AadPremiumLicenseRequired")
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.ERROR and "roleEligibilityScheduleInstances" in f.detail


# --------------------------------------------------------------------------------------------- AIB-LP-002 / 003


def _with_template_identity(e: Estate) -> tuple[dict[str, Any], dict[str, Any]]:
    ident = e.identity("id-aib")
    tpl = e.template(identity_doc=ident)
    e.assign(staging_id(tpl), roles.CONTRIBUTOR, b.principal_of(ident), "ServicePrincipal")
    return ident, tpl


def test_lp002_template_identity_contributor_on_staging_is_expected() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    e.assign(b.sub_id(SUB), roles.READER, ALICE)
    findings = run(e, "AIB-LP-002")
    assert statuses(findings) == [Status.PASS, Status.PASS]
    mine = only(findings, b.principal_of(ident))
    assert mine.evidence["template_identity"] is True and "expected, AIB needs Contributor there" in mine.detail
    assert mine.resource_id == staging_id(tpl) and mine.template_id == tpl["id"]
    [nobody] = [f for f in findings if not f.principal_id]
    assert nobody.detail.startswith("no principal but the template identity can change resources in staging resource group IT_")


def test_lp002_other_principals_fail_including_below_and_data_writes() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    stg = f"{staging_id(tpl)}/providers/Microsoft.Storage/storageAccounts/stgartifacts"
    e.assign(b.sub_id(SUB), roles.CONTRIBUTOR, ALICE)
    e.assign(stg, roles.STORAGE_BLOB_DATA_CONTRIBUTOR, BOB)
    e.assign(stg, roles.STORAGE_BLOB_DATA_READER, CAROL)  # reads only: not a change
    findings = run(e, "AIB-LP-002")
    alice, bob = only(findings, ALICE), only(findings, BOB)
    assert alice.status == Status.FAIL and alice.role_scope == b.sub_id(SUB)
    assert f"can change resources in staging resource group {b.staging_rg_name(tpl)}" in alice.detail
    assert bob.status == Status.FAIL and bob.role_name == "Storage Blob Data Contributor" and bob.role_scope == stg
    assert bob.evidence["inherited_from"] == "resource stgartifacts"
    assert not [f for f in findings if f.principal_id == CAROL]


def test_lp002_allowed_principal_passes() -> None:
    e = Estate()
    _with_template_identity(e)
    e.assign(b.sub_id(SUB), roles.OWNER, GROUP, "Group")
    policy = Policy(allowed_principals={"AIB-LP-002": frozenset({GROUP})})
    group = only(run(e, "AIB-LP-002", policy), GROUP)
    assert group.status == Status.PASS and group.evidence["allowed"] is True


def test_lp002_deleted_staging_rg_is_an_error() -> None:
    e = Estate()
    tpl = e.template(staging_exists=False)
    e.fail_read("resourceGroups", staging_id(tpl), 404, "ResourceGroupNotFound")
    [f] = run(e, "AIB-LP-002")
    assert f.status == Status.ERROR
    assert f"staging resource group {b.staging_rg_name(tpl)} of template tpl-linux was not found (deleted?)" in f.detail
    assert "ResourceGroupNotFound" in f.detail


def test_lp002_template_without_staging_information_is_an_error() -> None:
    e = Estate()
    tpl = e.template()
    tpl["properties"]["exactStagingResourceGroup"] = ""
    [f] = run(e, "AIB-LP-002")
    assert f.status == Status.ERROR and "does not report its staging resource group" in f.detail


def test_lp003_key_listers_and_blob_readers_fail_template_identity_passes() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    stg = f"{staging_id(tpl)}/providers/Microsoft.Storage/storageAccounts/stgartifacts"
    e.assign(staging_id(tpl), roles.STORAGE_ACCOUNT_CONTRIBUTOR, ALICE)
    e.assign(f"{stg}/blobServices/default/containers/packerlogs", roles.STORAGE_BLOB_DATA_READER, BOB)
    e.assign(b.sub_id(SUB), roles.READER, CAROL)
    findings = run(e, "AIB-LP-003")
    alice, bob = only(findings, ALICE), only(findings, BOB)
    assert alice.status == Status.FAIL and alice.evidence["matched_action"] == "Microsoft.Storage/storageAccounts/listKeys/action"
    assert alice.evidence["granted_by"] == "Microsoft.Storage/storageAccounts/*"
    assert bob.status == Status.FAIL and bob.evidence["matched_action"].endswith("containers/blobs/read")
    assert only(findings, b.principal_of(ident)).status == Status.PASS
    assert not [f for f in findings if f.principal_id == CAROL]


def test_lp003_only_template_identity_passes() -> None:
    e = Estate()
    _with_template_identity(e)
    findings = run(e, "AIB-LP-003")
    assert statuses(findings) == [Status.PASS, Status.PASS]
    assert any(f.detail.startswith("no principal but the template identity can read the artifact copies") for f in findings)


# --------------------------------------------------------------------------------------------- AIB-LP-004


def test_lp004_not_applicable_without_template_identity() -> None:
    e = Estate()
    e.template()
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.NA and f.detail == "template has no user-assigned identity"


def test_lp004_documented_minimum_passes() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    pid = b.principal_of(ident)
    e.assign(b.rg_id(SUB, IMAGES), CREATION_ROLE, pid, "ServicePrincipal")
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.PASS and f.principal_id == pid and f.resource_id == ident["id"]
    assert {r["role_name"] for r in f.evidence["roles"]} == {"Contributor", roles.AIB_IMAGE_CREATION_ROLE_NAME}


def test_lp004_contributor_on_subscription_fails_but_not_on_staging() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    pid = b.principal_of(ident)
    e.assign(b.sub_id(SUB), roles.CONTRIBUTOR, pid, "ServicePrincipal")
    [f] = run(e, "AIB-LP-004")  # the staging-RG Contributor row does not appear: it is fine
    assert f.status == Status.FAIL and (f.role_name, f.role_scope) == ("Contributor", b.sub_id(SUB))
    assert "subscription scope or above" in f.detail and "outside the template's staging resource group" in f.detail
    assert any("Image Creation Role" in m for m in f.evidence["documented_minimum"])


@pytest.mark.parametrize(
    ("role", "scope_rg", "reason"),
    [
        (roles.OWNER, None, "can write role assignments"),  # Owner, even on the staging RG
        (roles.USER_ACCESS_ADMINISTRATOR, IMAGES, "can write role assignments"),
        (roles.RBAC_ADMINISTRATOR, IMAGES, "can write role assignments"),
        (roles.CONTRIBUTOR, IMAGES, "Contributor outside the template's staging resource group"),
    ],
)
def test_lp004_violating_roles_fail(role: str, scope_rg: str | None, reason: str) -> None:
    e = Estate()
    ident = e.identity("id-aib")
    tpl = e.template(identity_doc=ident)
    scope = b.rg_id(SUB, scope_rg) if scope_rg else staging_id(tpl)
    e.assign(scope, role, b.principal_of(ident), "ServicePrincipal")
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.FAIL and f.role_scope == scope and reason in f.detail


def test_lp004_custom_role_with_star_fails_and_eligible_subscription_role_fails() -> None:
    e = Estate()
    ident = e.identity("id-aib")
    e.template(identity_doc=ident)
    pid = b.principal_of(ident)
    e.res["roleDefinitions"].append(
        roles.custom_role(SUB, b.guid("star"), "Everything but auth", ["*"], ["Microsoft.Authorization/*"])
    )
    e.assign(b.rg_id(SUB, IMAGES), b.guid("star"), pid, "ServicePrincipal")
    e.eligible(b.sub_id(SUB), roles.READER, pid, "ServicePrincipal")
    findings = run(e, "AIB-LP-004")
    by_role = {f.role_name: f for f in findings}
    assert statuses(findings) == [Status.FAIL, Status.FAIL]
    assert "has '*' in its actions" in by_role["Everything but auth"].detail
    assert by_role["Reader"].evidence["eligible"] is True and "PIM-eligible" in by_role["Reader"].detail


def test_lp004_unknown_principal_failed_read_and_unresolved_role_are_errors() -> None:
    e = Estate()
    ident = e.identity("id-aib", listed=False)
    tpl = e.template(identity_doc=ident)
    tpl["identity"]["userAssignedIdentities"][ident["id"]]["principalId"] = ""
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.ERROR and "principal ID of template identity id-aib is unknown" in f.detail

    e = Estate()
    ident, _ = _with_template_identity(e)
    e.fail_read("roleAssignments", b.sub_id(SUB))
    assert statuses(run(e, "AIB-LP-004")) == [Status.ERROR]

    e = Estate()
    ident, _ = _with_template_identity(e)
    e.assign(b.rg_id(SUB, IMAGES), b.guid("vanished"), b.principal_of(ident), "ServicePrincipal")
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.ERROR and "could not be read" in f.detail


# --------------------------------------------------------------------------------------------- AIB-LP-005


def test_lp005_build_vm_identities_each_judged() -> None:
    e = Estate()
    narrow, broad = e.identity("id-build-a"), e.identity("id-build-b")
    e.template(build_vm_identities=[narrow["id"], broad["id"]])
    container = (
        f"{b.rg_id(SUB, 'rg-scripts')}/providers/Microsoft.Storage/storageAccounts/stscripts/blobServices/default/containers/s"
    )
    e.assign(container, roles.STORAGE_BLOB_DATA_READER, b.principal_of(narrow), "ServicePrincipal")
    e.assign(b.sub_id(SUB), roles.CONTRIBUTOR, b.principal_of(broad), "ServicePrincipal")
    findings = run(e, "AIB-LP-005")
    by_identity = {f.resource_id: f for f in findings}
    assert by_identity[narrow["id"]].status == Status.PASS
    assert (
        by_identity[broad["id"]].status == Status.FAIL
        and "build-VM identity id-build-b holds Contributor" in by_identity[broad["id"]].detail
    )


def test_lp005_not_applicable_missing_identity_and_other_subscription() -> None:
    e = Estate()
    e.template()
    assert statuses(run(e, "AIB-LP-005")) == [Status.NA]

    e = Estate()
    gone = e.identity("id-gone", listed=False)
    e.template(build_vm_identities=[gone["id"]])
    e.fail_read("userAssignedIdentities", gone["id"], 404, "ResourceNotFound")
    [f] = run(e, "AIB-LP-005")
    assert f.status == Status.ERROR and "build-VM identity id-gone could not be read" in f.detail

    e = Estate()
    far = e.identity("id-far", sub=OTHER_SUB)
    e.template(build_vm_identities=[far["id"]])
    [f] = run(e, "AIB-LP-005")
    assert f.status == Status.ERROR and f"lives in subscription {OTHER_SUB}, which was not audited" in f.detail


# --------------------------------------------------------------------------------------------- AIB-LP-006


def test_lp006_same_identity_for_build_vm_fails_separate_passes() -> None:
    e = Estate()
    ident = e.identity("id-aib")
    e.template(identity_doc=ident, build_vm_identities=[ident["id"].lower()])
    [f] = run(e, "AIB-LP-006")
    assert f.status == Status.FAIL and "is also the template identity" in f.detail and f.principal_id == b.principal_of(ident)

    e = Estate()
    ident, other = e.identity("id-aib"), e.identity("id-build")
    e.template(identity_doc=ident, build_vm_identities=[other["id"]])
    assert statuses(run(e, "AIB-LP-006")) == [Status.PASS]

    e = Estate()
    e.template(identity_doc=e.identity("id-aib"))
    assert statuses(run(e, "AIB-LP-006")) == [Status.NA]


# --------------------------------------------------------------------------------------------- AIB-LP-007


def test_lp007_template_identity_operator_on_build_identity_is_expected() -> None:
    e = Estate()
    ident, build = e.identity("id-aib"), e.identity("id-build")
    e.template(identity_doc=ident, build_vm_identities=[build["id"]])
    e.assign(build["id"], roles.MANAGED_IDENTITY_OPERATOR, b.principal_of(ident), "ServicePrincipal")
    findings = run(e, "AIB-LP-007")
    assert statuses(findings) == [Status.PASS] * 3
    expected = only(findings, b.principal_of(ident))
    assert expected.evidence["expected"] is True and expected.role_name == "Managed Identity Operator"
    assert {f.detail for f in findings if not f.principal_id} == {
        "no other principal can assign template identity id-aib or add federated credentials to it",
        "only the template identity can assign build-VM identity id-build or add federated credentials to it",
    }


def test_lp007_others_who_can_use_identities_fail() -> None:
    e = Estate()
    ident, build = e.identity("id-aib"), e.identity("id-build")
    e.template(identity_doc=ident, build_vm_identities=[build["id"]])
    e.assign(b.rg_id(SUB, "rg-identities"), roles.MANAGED_IDENTITY_OPERATOR, ALICE)
    e.assign(build["id"], roles.MANAGED_IDENTITY_CONTRIBUTOR, BOB)
    e.assign(b.sub_id(SUB), roles.CONTRIBUTOR, CAROL, "Group")
    e.assign(b.sub_id(SUB), roles.READER, DAVE)
    policy = Policy(allowed_principals={"AIB-LP-007": frozenset({CAROL})})
    findings = run(e, "AIB-LP-007", policy)
    rows = {(f.resource_id, f.principal_id): f for f in findings if f.principal_id}
    assert (
        rows[(ident["id"], ALICE)].status == Status.FAIL
        and "can assign template identity id-aib" in rows[(ident["id"], ALICE)].detail
    )
    assert (
        rows[(build["id"], BOB)].status == Status.FAIL
        and "can add federated credentials to build-VM identity" in rows[(build["id"], BOB)].detail
    )
    assert (ident["id"], BOB) not in rows  # Bob's role sits on the build identity only
    assert rows[(build["id"], CAROL)].status == Status.PASS and rows[(build["id"], CAROL)].evidence["allowed"] is True
    assert not [k for k in rows if k[1] == DAVE]


def test_lp007_identity_able_to_assign_itself_is_no_finding_against_it() -> None:
    e = Estate()
    ident = e.identity("id-aib")
    e.template(identity_doc=ident)
    e.assign(b.rg_id(SUB, "rg-identities"), roles.CONTRIBUTOR, b.principal_of(ident), "ServicePrincipal")
    findings = run(e, "AIB-LP-007")
    assert statuses(findings) == [Status.PASS, Status.PASS]
    own = only(findings, b.principal_of(ident))
    assert (
        own.evidence["expected"] is True and "can assign itself through Contributor at resource group rg-identities" in own.detail
    )


def test_lp007_not_applicable_and_failed_read() -> None:
    e = Estate()
    e.template()
    assert statuses(run(e, "AIB-LP-007")) == [Status.NA]

    e = Estate()
    e.template(identity_doc=e.identity("id-aib"))
    e.fail_read("denyAssignments", b.sub_id(SUB))
    [f] = run(e, "AIB-LP-007")
    assert f.status == Status.ERROR and "denyAssignments" in f.detail


# --------------------------------------------------------------------------------------------- together


def test_all_lp_checks_score_a_well_built_template_fully() -> None:
    e = Estate()
    ident, build = e.identity("id-aib"), e.identity("id-build")
    tpl = e.template(identity_doc=ident, build_vm_identities=[build["id"]])
    pid = b.principal_of(ident)
    e.assign(staging_id(tpl), roles.CONTRIBUTOR, pid, "ServicePrincipal")
    e.assign(b.rg_id(SUB, IMAGES), CREATION_ROLE, pid, "ServicePrincipal")
    e.assign(build["id"], roles.MANAGED_IDENTITY_OPERATOR, pid, "ServicePrincipal")
    e.assign(tpl["id"], roles.CONTRIBUTOR, GROUP, "Group")
    lp = [c for c in select_checks() if c.meta.id.startswith("AIB-LP-")]
    result = run_audit(e.inventory(), lp)
    [t] = result.templates
    assert t.statuses == {c.meta.id: Status.PASS for c in lp}
    assert t.least_privilege == 100 and not result.incomplete
    assert all(ids.norm(f.template_id) == ids.norm(tpl["id"]) for f in result.findings)


def test_benchmark_estate_is_what_it_says_and_audits_cleanly() -> None:
    numbers = measure(templates=20, assignments=300)
    assert (numbers["templates"], numbers["role_assignments"], numbers["checks"]) == (20, 300, 7)
    assert numbers["errors"] == 0 and numbers["failed"] > 0  # subscription-wide writers exist in the synthetic estate


# --------------------------------------------------------------------------------------------- review fixes


MG_A = "/providers/Microsoft.Management/managementGroups/mg-a"
MG_B = "/providers/Microsoft.Management/managementGroups/mg-b"
ASSIGN = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"


def test_lp001_owner_at_one_management_group_is_no_writer_under_another() -> None:
    e = Estate()
    e.subscriptions = [SUB, OTHER_SUB]
    e.ancestors = {SUB: [MG_A], OTHER_SUB: [MG_B]}
    e.template()
    e.res["imageTemplates"].append(b.template(OTHER_SUB, IMAGES, "tpl-other"))
    e.assign(MG_A, roles.OWNER, ALICE)
    findings = run(e, "AIB-LP-001")
    here = [f for f in findings if ids.subscription_of(f.template_id) == SUB]
    there = [f for f in findings if ids.subscription_of(f.template_id) == OTHER_SUB]
    [alice] = here
    assert alice.status == Status.FAIL and alice.principal_id == ALICE and "management group mg-a" in alice.detail
    [nobody] = there
    assert nobody.status == Status.PASS and nobody.detail.startswith("no principal can run, change or delete the template")


def test_lp001_missing_principal_type_is_not_reported_as_deleted() -> None:
    e = Estate()
    e.template()
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, ALICE)
    del e.res["roleAssignments"][-1]["properties"]["principalType"]
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.PASS and f.principal_type == ""
    assert "deleted" not in f.detail and f"principal {ALICE} can change the template" in f.detail


def test_lp002_deny_on_one_write_pattern_leaves_the_other_writes() -> None:
    e = Estate()
    _ident, tpl = _with_template_identity(e)
    e.res["roleDefinitions"].append(
        roles.custom_role(
            SUB, b.guid("cn-writer"), "Compute and network writer", ["Microsoft.Compute/*/write", "Microsoft.Network/*/write"]
        )
    )
    e.assign(staging_id(tpl), b.guid("cn-writer"), ALICE)
    e.res["denyAssignments"].append(b.deny_assignment(staging_id(tpl), "no-compute", ["Microsoft.Compute/*"], [ALICE]))
    alice = only(run(e, "AIB-LP-002"), ALICE)
    assert alice.status == Status.FAIL and alice.evidence["granted_by"] == "Microsoft.Network/*/write"


def test_lp007_asks_about_the_concrete_assign_action() -> None:
    e = Estate()
    ident = e.identity("id-aib")
    e.template(identity_doc=ident)
    identities_rg = b.rg_id(SUB, "rg-identities")
    # A role that manages identities but explicitly excludes assigning them and adding federated credentials.
    e.res["roleDefinitions"].append(
        roles.custom_role(
            SUB,
            b.guid("id-admin"),
            "Identity admin without assign",
            ["Microsoft.ManagedIdentity/*"],
            [ASSIGN, "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"],
        )
    )
    e.assign(identities_rg, b.guid("id-admin"), ALICE)
    e.assign(identities_rg, roles.MANAGED_IDENTITY_OPERATOR, BOB)
    e.assign(identities_rg, roles.MANAGED_IDENTITY_OPERATOR, CAROL)
    e.res["denyAssignments"].append(b.deny_assignment(identities_rg, "no-assign", [ASSIGN], [CAROL]))
    findings = run(e, "AIB-LP-007")
    assert not [f for f in findings if f.principal_id in (ALICE, CAROL)]
    bob = only(findings, BOB)
    assert bob.status == Status.FAIL and bob.evidence["matched_action"] == ASSIGN
    assert bob.evidence["granted_by"] == "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action"
    assert "can assign template identity id-aib" in bob.detail


def test_unknown_template_identity_principal_is_one_error_in_every_check_that_needs_it() -> None:
    e = Estate()
    ident = e.identity("id-aib", listed=False)
    tpl = e.template(identity_doc=ident)
    tpl["identity"]["userAssignedIdentities"][ident["id"]]["principalId"] = ""
    # Each ERROR row is keyed on the resource its PASS/FAIL rows name: LP-002 the staging RG, LP-004/007 the identity.
    for check_id, resource_id in (("AIB-LP-002", staging_id(tpl)), ("AIB-LP-004", ident["id"]), ("AIB-LP-007", ident["id"])):
        [f] = [f for f in run(e, check_id) if f.status == Status.ERROR]
        assert f.resource_id == resource_id, check_id
        assert f.detail == "the principal ID of template identity id-aib is unknown (the identity was not found: deleted?)"


# --------------------------------------------------------------------------------------------- deny assignments and groups


def _everyone_deny(scope: str, name: str, exclude: dict[str, str], child_scopes: bool = True) -> dict[str, Any]:
    """A deny of every action for Everyone, minus `exclude` (principal ID -> type)."""
    deny = b.deny_assignment(
        scope, name, ["*"], [EVERYONE], list(exclude), principal_types={EVERYONE: "SystemDefined", **exclude}
    )
    deny["properties"]["doNotApplyToChildScopes"] = not child_scopes
    return deny


def test_lp001_deny_for_everyone_excluding_a_group_does_not_vouch_for_other_principals() -> None:
    # The reviewer's case: Alice may be in the excluded group, so the deny may not stop her.
    e = Estate()
    e.template()
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, ALICE)
    e.assign(b.sub_id(SUB), roles.CONTRIBUTOR, BOB)
    e.res["denyAssignments"].append(_everyone_deny(b.rg_id(SUB, IMAGES), "Seal images", {GROUP: "Group"}))
    findings = run(e, "AIB-LP-001")
    assert not [f for f in findings if f.detail.startswith("no principal can run")]
    caveat = (
        f"deny assignment 'Seal images' at resource group {IMAGES} would remove this unless {{}} is a member of"
        f" excluded group {GROUP}"
    )
    alice, bob = only(findings, ALICE), only(findings, BOB)
    assert alice.status == Status.PASS and f"User {ALICE} can change the template through Contributor" in alice.detail
    assert caveat.format(ALICE) in alice.detail and alice.evidence["deny_caveats"] == [caveat.format(ALICE)]
    assert bob.status == Status.FAIL and f"the right comes from subscription {SUB}" in bob.detail
    assert bob.evidence["grants"][0]["deny_caveats"] == [caveat.format(BOB)]


def test_lp001_deny_for_everyone_excluding_only_named_principals_still_subtracts() -> None:
    e = Estate()
    e.template()
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, ALICE)
    e.assign(b.rg_id(SUB, IMAGES), roles.CONTRIBUTOR, CAROL, "ServicePrincipal")
    e.res["denyAssignments"].append(_everyone_deny(b.rg_id(SUB, IMAGES), "Seal images", {CAROL: "ServicePrincipal"}))
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.PASS and f.principal_id == CAROL and "deny_caveats" not in f.evidence


def test_lp002_deny_not_applying_to_child_scopes_leaves_subscription_contributors_in_the_staging_rg() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    e.assign(b.sub_id(SUB), roles.CONTRIBUTOR, ALICE)
    tid = b.principal_of(ident)
    e.res["denyAssignments"].append(_everyone_deny(staging_id(tpl), "Seal the RG", {tid: "ServicePrincipal"}, child_scopes=False))
    findings = run(e, "AIB-LP-002")
    alice = only(findings, ALICE)
    assert alice.status == Status.FAIL and alice.role_scope == b.sub_id(SUB)
    assert f"can change resources in staging resource group {b.staging_rg_name(tpl)}" in alice.detail
    # The same deny applying to child scopes seals the resources too: only the template identity is left.
    e.res["denyAssignments"][-1]["properties"]["doNotApplyToChildScopes"] = False
    findings = run(e, "AIB-LP-002")
    assert statuses(findings) == [Status.PASS, Status.PASS] and not [f for f in findings if f.principal_id == ALICE]


def test_lp002_deny_listing_a_group_leaves_its_possible_members_own_grants() -> None:
    e = Estate()
    _ident, tpl = _with_template_identity(e)
    e.assign(staging_id(tpl), roles.CONTRIBUTOR, GROUP, "Group")
    e.assign(staging_id(tpl), roles.CONTRIBUTOR, ALICE)  # Alice may be in the group: her own grant still stands
    e.res["denyAssignments"].append(
        b.deny_assignment(staging_id(tpl), "no-admins", ["*"], [GROUP], principal_types={GROUP: "Group"})
    )
    findings = run(e, "AIB-LP-002")
    assert not [f for f in findings if f.principal_id == GROUP]
    alice = only(findings, ALICE)
    assert alice.status == Status.FAIL and "deny_caveats" not in alice.evidence


def test_lp003_failed_role_assignment_read_for_the_staging_rg_subscription_is_an_error() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    e.assign(staging_id(tpl), roles.STORAGE_ACCOUNT_CONTRIBUTOR, ALICE)
    e.fail_read("roleAssignments", b.sub_id(OTHER_SUB))  # another subscription's failure says nothing here
    assert statuses(run(e, "AIB-LP-003")) == [Status.FAIL, Status.PASS]
    e.fail_read("roleAssignments", b.sub_id(SUB))
    findings = run(e, "AIB-LP-003")
    # The known key lister stays a FAIL; the template identity's PASS and "no one else" are not vouched for.
    assert statuses(findings) == [Status.FAIL, Status.ERROR]
    alice, err = findings
    assert f"could not read roleAssignments at /subscriptions/{SUB}" in err.detail
    assert "needs Microsoft.Authorization/roleAssignments/read" in err.detail
    assert err.resource_id == alice.resource_id == staging_id(tpl) and alice.principal_id == ALICE
    assert not [f for f in findings if f.principal_id == b.principal_of(ident)]


# ------------------------------------------------------------------------------------------- fail-open paths (adversarial)

CONDITION = "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'never'"
FIC_WRITE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write"


def _custom(e: Estate, name: str, actions: list[str], not_actions: list[str] | None = None) -> str:
    g = b.guid(f"custom:{name}")
    e.res["roleDefinitions"].append(roles.custom_role(SUB, g, name, actions, not_actions))
    return g


@pytest.mark.parametrize("where", ["deny", "block"])
def test_lp001_conditional_deny_does_not_hide_a_subscription_owner(where: str) -> None:
    e = Estate()
    e.template()
    e.assign(b.sub_id(SUB), roles.OWNER, ALICE)
    cond = {"condition": CONDITION} if where == "deny" else {"block_condition": CONDITION}
    e.res["denyAssignments"].append(
        b.deny_assignment(b.sub_id(SUB), "maybe-deny", ["*"], [ALICE], principal_types={ALICE: "User"}, **cond)
    )
    [f] = run(e, "AIB-LP-001")
    caveat = f"deny assignment 'maybe-deny' at subscription {SUB} applies only when its condition holds"
    assert f.status == Status.FAIL and f.principal_id == ALICE and f"the right comes from subscription {SUB}" in f.detail
    assert caveat in f.detail and f.evidence["deny_caveats"] == [caveat]


def test_lp004_role_definition_without_permissions_is_an_error_not_a_pass() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    opaque = _custom(e, "Opaque", ["*"])
    e.res["roleDefinitions"][-1]["properties"]["permissions"] = None
    e.assign(b.sub_id(SUB), opaque, b.principal_of(ident), "ServicePrincipal")
    findings = run(e, "AIB-LP-004")
    assert statuses(findings) == [Status.ERROR]
    assert "could not be read (its permissions list is missing or null), so what it grants is unknown" in findings[0].detail


def test_lp004_lp005_failed_role_read_in_another_audited_subscription_is_an_error() -> None:
    e = Estate()
    e.subscriptions = [SUB, OTHER_SUB]
    ident, build = e.identity("id-aib"), e.identity("id-build")
    e.template(identity_doc=ident, build_vm_identities=[build["id"]])
    e.assign(b.sub_id(SUB), roles.OWNER, b.principal_of(ident), "ServicePrincipal")  # provable: stays a FAIL
    e.fail_read("roleAssignments", b.sub_id(OTHER_SUB))  # the identities may hold Owner there
    findings = run(e, "AIB-LP-004")
    assert statuses(findings) == [Status.FAIL, Status.ERROR]
    assert f"could not read roleAssignments at /subscriptions/{OTHER_SUB}" in findings[1].detail
    [f] = run(e, "AIB-LP-005")
    assert f.status == Status.ERROR and OTHER_SUB in f.detail


def test_lp001_deny_on_the_template_not_applying_to_child_scopes_leaves_trigger_writers() -> None:
    e = Estate()
    tpl = e.template()
    e.assign(b.sub_id(SUB), _custom(e, "Trigger writer", ["Microsoft.VirtualMachineImages/imageTemplates/triggers/write"]), ALICE)
    e.res["denyAssignments"].append(
        b.deny_assignment(
            tpl["id"], "stack", ["*/write"], [EVERYONE], principal_types={EVERYONE: "SystemDefined"}, child_scopes=False
        )
    )
    [f] = run(e, "AIB-LP-001")
    assert f.status == Status.FAIL and f.principal_id == ALICE and "can add triggers to the template" in f.detail


def test_lp007_deny_on_the_identity_not_applying_to_child_scopes_leaves_federated_credential_writers() -> None:
    e = Estate()
    ident = e.identity("id-aib")
    e.template(identity_doc=ident)
    e.assign(b.rg_id(SUB, "rg-identities"), _custom(e, "FIC writer", [FIC_WRITE]), ALICE)
    e.res["denyAssignments"].append(
        b.deny_assignment(
            ident["id"], "stack", ["*/write"], [EVERYONE], principal_types={EVERYONE: "SystemDefined"}, child_scopes=False
        )
    )
    [f] = run(e, "AIB-LP-007")
    assert f.status == Status.FAIL and f.principal_id == ALICE
    assert "can add federated credentials to template identity id-aib through FIC writer" in f.detail


def test_lp004_deny_only_at_the_grants_own_scope_does_not_cancel_role_assignment_writes() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    pid = b.principal_of(ident)
    e.assign(
        b.rg_id(SUB, "rg-app"),
        _custom(e, "Assignment writer", ["Microsoft.Authorization/roleAssignments/write"]),
        pid,
        "ServicePrincipal",
    )
    e.res["denyAssignments"].append(
        b.deny_assignment(
            b.rg_id(SUB, "rg-app"), "rg-only", ["Microsoft.Authorization/roleAssignments/write"], [pid], child_scopes=False
        )
    )
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.FAIL and f.role_scope == b.rg_id(SUB, "rg-app")
    assert "Assignment writer can write role assignments" in f.detail


def test_lp007_assignment_on_an_existing_federated_credential_fails() -> None:
    e = Estate()
    ident, build = e.identity("id-aib"), e.identity("id-build")
    e.template(identity_doc=ident, build_vm_identities=[build["id"]])
    e.assign(f"{build['id']}/federatedIdentityCredentials/github", _custom(e, "FIC writer", [FIC_WRITE]), ALICE)
    findings = run(e, "AIB-LP-007")
    alice = only(findings, ALICE)
    assert alice.status == Status.FAIL and "can add federated credentials to build-VM identity id-build" in alice.detail
    assert alice.role_scope.endswith("/federatedIdentityCredentials/github")


@pytest.mark.parametrize(
    ("actions", "pattern"),
    [(["Microsoft.*"], "Microsoft.*"), (["*/*"], "*/*"), (["*/read", "*/write", "*/delete", "*/action"], "*/write")],
)
def test_lp004_contributor_clones_without_a_literal_star_fail(actions: list[str], pattern: str) -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    clone = _custom(e, "Contributor clone", actions, ["Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete"])
    e.assign(b.rg_id(SUB, "rg-app"), clone, b.principal_of(ident), "ServicePrincipal")
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.FAIL and f.role_name == "Contributor clone"
    assert f"has actions equivalent to '*' (writes on every resource provider through '{pattern}')" in f.detail


@pytest.mark.parametrize(
    "action",
    [
        "Microsoft.Storage/storageAccounts/ListAccountSas/action",
        "Microsoft.Storage/storageAccounts/ListServiceSas/action",
        "Microsoft.Storage/storageAccounts/regeneratekey/action",
    ],
)
def test_lp003_sas_and_key_regeneration_read_the_artifacts(action: str) -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    e.assign(staging_id(tpl), _custom(e, "Key path", [action]), ALICE)
    alice = only(run(e, "AIB-LP-003"), ALICE)
    assert alice.status == Status.FAIL and alice.evidence["matched_action"] == action
    assert "can read the customizer artifact copies (storage account keys, SAS tokens or blob data)" in alice.detail


def test_lp004_role_definition_writer_fails() -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    editor = _custom(
        e, "Role editor", ["Microsoft.Authorization/roleDefinitions/write", "Microsoft.Authorization/roleDefinitions/read"]
    )
    e.assign(b.rg_id(SUB, "rg-app"), editor, b.principal_of(ident), "ServicePrincipal")
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.FAIL and f.role_name == "Role editor"
    assert "Role editor can write role definitions (through 'Microsoft.Authorization/roleDefinitions/write')" in f.detail


@pytest.mark.parametrize("shape", ["absent", "null", "type-only", "identities-null"])
def test_lp004_lp007_unreadable_template_identity_is_an_error(shape: str) -> None:
    e = Estate()
    ident, tpl = _with_template_identity(e)
    if shape == "absent":
        del tpl["identity"]
    elif shape == "null":
        tpl["identity"] = None
    elif shape == "type-only":
        tpl["identity"] = {"type": "UserAssigned"}
    else:
        tpl["identity"]["userAssignedIdentities"] = None
    [f] = run(e, "AIB-LP-004")
    assert f.status == Status.ERROR and f.detail.startswith("the template's identity could not be read")
    [f] = run(e, "AIB-LP-007")
    assert f.status == Status.ERROR and f.detail.startswith("the template's identity could not be read")
    tpl["identity"] = {"type": "None"}  # says there is none: not applicable, as before
    assert statuses(run(e, "AIB-LP-004")) == [Status.NA]
