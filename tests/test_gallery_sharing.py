"""AIB-GAL-005: a target gallery shared directly with subscriptions or tenants (sharingProfile.groups).

From the ARM body to the row: the emulator hides the groups unless asked with `$expand=sharingProfile/Groups`
(as ARM does), the collector asks for them for every listed Groups gallery a template targets, the inventory
parses them, and the check gives one row per subscription or tenant: FAIL unless the policy allows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from auditor.audit import run_audit, select_checks
from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.documents import SharingGroup, parse_gallery
from auditor.emulator import Faults
from auditor.findings import Finding, Status
from auditor.inventory import build_inventory
from auditor.policy import Policy, PolicyError, load_policy
from auditor.snapshot import Snapshot
from checks.registry import catalog
from fixtures import builders as b
from tests.conftest import StartEmulator

SUB = b.guid("gallery-sharing-sub")
OWN_SUB = b.guid("subscription:contoso-other")
PARTNER = b.guid("tenant:partner")
RG, GAL = "rg-galleries", "galShared"
GID = b.gallery_id(SUB, RG, GAL)


def estate(gallery: dict[str, Any], errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    tpl = b.template(
        SUB, "rg-images", "tpl", distribute=[b.gallery_target(SUB, RG, GAL, "img", [("westeurope", 3, "Standard_ZRS")])]
    )
    resources = {
        "imageTemplates": [tpl],
        "resourceGroups": [b.resource_group(SUB, "rg-images"), b.resource_group(SUB, RG)],
        "galleries": [gallery],
        "galleryImages": [b.gallery_image(SUB, RG, GAL, "img")],
    }
    return b.snapshot([SUB], resources, errors=errors)


def audit(doc: dict[str, Any], policy: Policy | None = None) -> list[Finding]:
    inv = build_inventory(Snapshot.from_dict(doc))
    return run_audit(inv, select_checks(["AIB-GAL-005"]), policy).findings


SHARED = b.gallery(SUB, RG, GAL, groups={"Subscriptions": [OWN_SUB], "AADTenants": [PARTNER]})


def test_each_subscription_and_tenant_gets_a_fail_row() -> None:
    rows = {f.principal_id: f for f in audit(estate(SHARED))}
    assert set(rows) == {OWN_SUB, PARTNER}
    sub_row, tenant_row = rows[OWN_SUB], rows[PARTNER]
    assert sub_row.status == tenant_row.status == Status.FAIL
    assert sub_row.principal_type == "Subscription" and tenant_row.principal_type == "AADTenant"
    assert f"shared directly with tenant {PARTNER}" in tenant_row.detail and tenant_row.resource_id == GID
    assert tenant_row.evidence["shared_with"] == [
        {"type": "Subscriptions", "ids": [OWN_SUB]},
        {"type": "AADTenants", "ids": [PARTNER]},
    ]
    assert sub_row.finding_id != tenant_row.finding_id  # baselines and exceptions can key on each target


def test_an_allowed_target_passes_and_the_other_still_fails() -> None:
    policy = Policy(allowed_gallery_share_targets=frozenset({OWN_SUB}))
    rows = {f.principal_id: f for f in audit(estate(SHARED), policy)}
    assert rows[OWN_SUB].status == Status.PASS and rows[OWN_SUB].evidence["allowed"] is True
    assert "accepted by the audit policy" in rows[OWN_SUB].detail
    assert rows[PARTNER].status == Status.FAIL


@pytest.mark.parametrize("sharing", [None, "Private", "Community"])
def test_a_gallery_not_shared_directly_passes(sharing: str | None) -> None:
    [row] = audit(estate(b.gallery(SUB, RG, GAL, sharing=sharing)))
    assert row.status == Status.PASS and "not shared directly" in row.detail and row.resource_id == GID


def test_groups_sharing_with_nobody_passes() -> None:
    [row] = audit(estate(b.gallery(SUB, RG, GAL, groups={})))
    assert row.status == Status.PASS and "shared with no subscription or tenant" in row.detail


def test_groups_sharing_whose_groups_were_not_read_is_an_error() -> None:
    [row] = audit(estate(b.gallery(SUB, RG, GAL, sharing="Groups")))
    assert row.status == Status.ERROR and "$expand=sharingProfile/Groups" in row.detail


def test_a_failed_expanded_read_is_an_error_saying_why() -> None:
    err = {"kind": "galleries", "scope": GID, "status": 403, "code": "AuthorizationFailed", "message": "denied"}
    [row] = audit(estate(b.gallery(SUB, RG, GAL, sharing="Groups"), errors=[err]))
    assert row.status == Status.ERROR and "HTTP 403 AuthorizationFailed" in row.detail


def test_a_gallery_that_could_not_be_listed_is_an_error() -> None:
    doc = estate(
        SHARED,
        errors=[
            {
                "kind": "galleries",
                "scope": f"/subscriptions/{SUB}",
                "status": 403,
                "code": "AuthorizationFailed",
                "message": "denied",
            }
        ],
    )
    doc["resources"]["galleries"] = []
    [row] = audit(doc)
    assert row.status == Status.ERROR and "cannot tell how gallery galShared is shared" in row.detail


def test_the_arm_body_parses_with_and_without_groups() -> None:
    assert parse_gallery(SHARED).sharing_groups == (
        SharingGroup("Subscriptions", (OWN_SUB,)),
        SharingGroup("AADTenants", (PARTNER,)),
    )
    assert parse_gallery(b.gallery(SUB, RG, GAL, sharing="Groups")).sharing_groups is None


# --------------------------------------------------------------------------------------------- the policy key


def test_the_policy_lists_allowed_share_targets(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(f'allowed_gallery_share_targets = ["{PARTNER.upper()}"]\n')
    policy = load_policy(path, known_checks=catalog())
    assert policy.allows_gallery_share(PARTNER) and not policy.allows_gallery_share(OWN_SUB)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('allowed_gallery_share_targets = "x"\n', "must be a list"),
        ('allowed_gallery_share_targets = ["contoso.onmicrosoft.com"]\n', "is not a subscription or tenant ID"),
        ('allowed_gallery_share_target = ["x"]\n', "unknown policy keys"),
    ],
)
def test_a_bad_share_target_list_is_refused(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(body)
    with pytest.raises(PolicyError, match=message):
        load_policy(path, known_checks=catalog())


# --------------------------------------------------------------------------------------------- through ARM


def _collect(emu: Any) -> Snapshot:
    return collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)


def test_the_collector_expands_the_groups_of_a_listed_groups_gallery(emulator: StartEmulator) -> None:
    emu = emulator(estate(SHARED))
    snap = _collect(emu)
    expanded = [r for r in emu.requests if r.param("$expand")]
    assert [(r.method, r.path.lower(), (r.param("$expand") or "").lower()) for r in expanded] == [
        ("GET", GID.lower(), "sharingprofile/groups")
    ]
    [doc] = snap.resources["galleries"]
    assert doc["properties"]["sharingProfile"]["groups"] == SHARED["properties"]["sharingProfile"]["groups"]
    rows = run_audit(build_inventory(snap), select_checks(["AIB-GAL-005"])).findings
    assert sorted(f.status for f in rows) == [Status.FAIL, Status.FAIL]


def test_the_emulator_hides_groups_without_the_expand(emulator: StartEmulator) -> None:
    emu = emulator(estate(SHARED))
    plain = _get(emu, "")
    assert plain["properties"]["sharingProfile"] == {"permissions": "Groups"}
    expanded = _get(emu, "&$expand=sharingProfile/Groups")
    assert expanded["properties"]["sharingProfile"] == SHARED["properties"]["sharingProfile"]


def _get(emu: Any, extra: str) -> dict[str, Any]:
    token = StaticTokenCredential().get_token("https://management.azure.com/.default").token
    resp = requests.get(
        f"{emu.endpoint}{GID}?api-version=2025-03-03{extra}",
        headers={"Authorization": f"Bearer {token}"},
        verify=emu.ca_bundle,
        timeout=10,
    )
    resp.raise_for_status()
    body: dict[str, Any] = resp.json()
    return body


def test_a_private_gallery_is_not_fetched_again(emulator: StartEmulator) -> None:
    emu = emulator(estate(b.gallery(SUB, RG, GAL)))
    _collect(emu)
    assert not [r for r in emu.requests if r.param("$expand")]


def test_a_forbidden_expanded_read_makes_the_row_an_error(emulator: StartEmulator) -> None:
    emu = emulator(estate(SHARED), faults=Faults(forbidden_scopes=(GID,)))
    snap = _collect(emu)
    assert [(e.kind, e.scope, e.status) for e in snap.errors if e.kind == "galleries"] == [("galleries", GID, 403)]
    rows = run_audit(build_inventory(snap), select_checks(["AIB-GAL-004", "AIB-GAL-005"])).findings
    by_check = {f.check_id: f for f in rows}
    assert by_check["AIB-GAL-004"].status == Status.PASS  # the listed body still says how it is shared
    assert by_check["AIB-GAL-005"].status == Status.ERROR and "403" in by_check["AIB-GAL-005"].detail
