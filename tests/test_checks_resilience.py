"""Unit tests of the resilience checks: locks, disaster recovery, triggers, boot, subnets, gallery, artifacts, operations.

Each test builds a small estate with fixtures/builders.py, runs the check through the real runner
(auditor.audit.run_audit) and asserts what a reviewer sees: the status, the detail and the resource.
Real ARM bodies recorded by the Azure CLI team are read from ../shared when it exists.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from auditor import ids
from auditor.audit import run_audit
from auditor.findings import Finding, Status
from auditor.inventory import Inventory, build_inventory
from auditor.snapshot import PERMISSIONS, Snapshot
from checks import artifacts, boot, disaster_recovery, gallery, locks, operations, subnets, triggers
from checks.registry import Check, CheckFn, catalog, load_metadata
from fixtures import builders as b

SUB = "11111111-1111-4111-8111-111111111111"
SUB2 = "22222222-2222-4222-8222-222222222222"
OTHER = "33333333-3333-4333-8333-333333333333"  # never audited
RG = "rg-images"
SHARED = Path(__file__).resolve().parents[2] / "shared"
BODIES = SHARED / "azure-recordings" / "bodies"
HTTPS_SCRIPT = "https://contoso.blob.core.windows.net/scripts/setup.sh"
CHECKSUM = "2c6ff6902a4a52deee69e8db26d0036a53388651008aaf31795bb20dabd21fd8"


# --------------------------------------------------------------------------------------------- helpers

# The functions under test, bound to their metadata without loading the whole catalog, so that these tests
# do not depend on the least-privilege modules; test_catalog_* checks the registry wiring itself.
FUNCTIONS: dict[str, CheckFn] = {
    "AIB-LOCK-001": locks.cannot_delete_lock,
    "AIB-LOCK-002": locks.no_read_only_lock,
    "AIB-DR-001": disaster_recovery.standby_template,
    "AIB-DR-002": disaster_recovery.multi_region,
    "AIB-TRIG-001": triggers.source_image_trigger,
    "AIB-BOOT-001": boot.vm_boot_optimization,
    "AIB-NET-001": subnets.build_subnet,
    "AIB-NET-002": subnets.aci_subnet,
    "AIB-GAL-001": gallery.gallery_locked,
    "AIB-GAL-002": gallery.gallery_zrs,
    "AIB-GAL-003": gallery.gallery_replicas,
    "AIB-GAL-004": gallery.gallery_not_community,
    "AIB-SC-001": artifacts.checksums,
    "AIB-SC-002": artifacts.https_only,
    "AIB-OPS-001": operations.healthy_template,
}


def bound(*check_ids: str) -> list[Check]:
    metas = load_metadata()
    return [Check(metas[cid], FUNCTIONS[cid]) for cid in check_ids]


def inventory(
    resources: dict[str, list[dict[str, Any]]], errors: list[dict[str, Any]] | None = None, subs: list[str] | None = None
) -> Inventory:
    return build_inventory(Snapshot.from_dict(b.snapshot(subs or [SUB], resources, errors)))


def read_error(kind: str, scope: str, status: int = 403, code: str = "AuthorizationFailed") -> dict[str, Any]:
    return {
        "kind": kind,
        "scope": scope,
        "status": status,
        "code": code,
        "message": "The client does not have authorization to perform action",
        "permission": PERMISSIONS[kind],
    }


def findings(check_id: str, inv: Inventory, template_name: str = "tpl") -> list[Finding]:
    """Run one check through the runner and return the findings for one template."""
    result = run_audit(inv, bound(check_id))
    out = [f for f in result.findings if ids.name_of(f.template_id) == template_name]
    assert out, f"no findings for {template_name}"
    assert all(f.check_id == check_id for f in out)
    assert not any(f.detail.startswith("internal error") for f in out), out
    return out


def one(check_id: str, inv: Inventory, template_name: str = "tpl") -> Finding:
    out = findings(check_id, inv, template_name)
    assert len(out) == 1, [f.detail for f in out]
    return out[0]


def gallery_dist(
    gallery: str = "gal",
    image: str = "img",
    regions: list[tuple[str, int, str]] | None = None,
    sub: str = SUB,
    rg: str = RG,
    run_output: str = "gallery",
) -> dict[str, Any]:
    return b.gallery_target(sub, rg, gallery, image, regions or [("westeurope", 3, "Standard_ZRS")], run_output)


def tpl(name: str = "tpl", **kw: Any) -> dict[str, Any]:
    return b.template(kw.pop("sub", SUB), kw.pop("rg", RG), name, **kw)


def body(name: str) -> dict[str, Any]:
    path = BODIES / name
    if not path.exists():
        pytest.skip(f"{path} not available (../shared is not present)")
    return json.loads(path.read_text(encoding="utf-8"))


REAL_SUB = "00000000-0000-0000-0000-000000000000"


# --------------------------------------------------------------------------------------------- catalog


RESILIENCE_CATALOG = {
    "AIB-LOCK-001": ("Resource locks", "medium"),
    "AIB-LOCK-002": ("Resource locks", "low"),
    "AIB-DR-001": ("Disaster recovery", "medium"),
    "AIB-DR-002": ("Disaster recovery", "medium"),
    "AIB-TRIG-001": ("Triggers", "medium"),
    "AIB-BOOT-001": ("Boot optimization", "low"),
    "AIB-NET-001": ("Subnets", "medium"),
    "AIB-NET-002": ("Subnets", "low"),
    "AIB-GAL-001": ("Gallery", "medium"),
    "AIB-GAL-002": ("Gallery", "medium"),
    "AIB-GAL-003": ("Gallery", "low"),
    "AIB-GAL-004": ("Gallery", "high"),
    "AIB-SC-001": ("Artifact integrity", "high"),
    "AIB-SC-002": ("Artifact integrity", "medium"),
    "AIB-OPS-001": ("Keep images updated", "info"),
}


def test_catalog_has_every_non_lp_check_with_docs_and_remediation() -> None:
    cat = catalog()
    for check_id, (practice, severity) in RESILIENCE_CATALOG.items():
        assert check_id in cat, check_id
        assert cat[check_id].fn is FUNCTIONS[check_id], check_id
        meta = cat[check_id].meta
        assert (meta.practice, meta.severity.value, meta.score) == (practice, severity, "resilience"), check_id
        assert meta.docs_url.startswith("https://learn.microsoft.com/"), check_id
        assert meta.remediation_cli.startswith("az ") or meta.remediation_bicep, check_id
        assert meta.description and meta.rationale and meta.remediation


def test_catalog_matches_design_md() -> None:
    design = SHARED / "design.md"
    if not design.exists():
        pytest.skip("../shared/design.md not available")
    rows = re.findall(r"^\| (AIB-[A-Z]+-\d{3}) \| ([^|]+) \| (\w+) \|", design.read_text(encoding="utf-8"), re.M)
    documented = {cid: (practice.strip(), sev) for cid, practice, sev in rows if not cid.startswith("AIB-LP-")}
    assert documented == RESILIENCE_CATALOG


# --------------------------------------------------------------------------------------------- locks


def test_lock_001_passes_on_template_lock() -> None:
    t = tpl()
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(t["id"], "keep")]})
    f = one("AIB-LOCK-001", inv)
    assert f.status == Status.PASS and "'keep' on the template" in f.detail


def test_lock_001_inherits_from_mixed_case_resource_group() -> None:
    t = tpl()
    rg_scope = f"/subscriptions/{SUB}/resourcegroups/{RG.upper()}"  # ARM's mixed spelling
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(rg_scope, "rg-lock")]})
    f = one("AIB-LOCK-001", inv)
    assert f.status == Status.PASS and "on its resource group" in f.detail


def test_lock_001_inherits_from_subscription() -> None:
    t = tpl()
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(b.sub_id(SUB), "sub-lock")]})
    f = one("AIB-LOCK-001", inv)
    assert f.status == Status.PASS and "on its subscription" in f.detail


def test_lock_001_fails_without_lock_and_ignores_sibling_rg_with_prefix_name() -> None:
    t = tpl()
    sibling = b.rg_id(SUB, RG + "-2")  # "rg-images-2" must not cover "rg-images"
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(sibling, "other"), b.lock(t["id"], "ro", level="ReadOnly")]})
    f = one("AIB-LOCK-001", inv)
    assert f.status == Status.FAIL and "no CanNotDelete lock" in f.detail


def test_lock_001_errors_when_locks_could_not_be_read() -> None:
    t = tpl()
    inv = inventory({"imageTemplates": [t]}, [read_error("locks", b.sub_id(SUB))])
    f = one("AIB-LOCK-001", inv)
    assert f.status == Status.ERROR and "could not read locks" in f.detail and "Microsoft.Authorization/locks/read" in f.detail


def test_lock_002_fails_on_inherited_read_only_lock() -> None:
    t = tpl()
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(b.rg_id(SUB, RG), "freeze", level="ReadOnly")]})
    f = one("AIB-LOCK-002", inv)
    assert f.status == Status.FAIL and "'freeze' on its resource group blocks 'run'" in f.detail


def test_lock_002_passes_with_only_cannot_delete_and_errors_on_failed_read() -> None:
    t = tpl()
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(t["id"], "keep")]})
    assert one("AIB-LOCK-002", inv).status == Status.PASS
    inv = inventory({"imageTemplates": [t]}, [read_error("locks", b.sub_id(SUB))])
    assert one("AIB-LOCK-002", inv).status == Status.ERROR


# --------------------------------------------------------------------------------------------- disaster recovery


def test_dr_001_passes_with_standby_in_other_region_and_subscription() -> None:
    primary = tpl(distribute=[gallery_dist()])
    standby_dist = gallery_dist(run_output="standby")
    # The standby spells the definition in ARM's mixed case and pins a version: still the same definition.
    standby_dist["galleryImageId"] = (
        standby_dist["galleryImageId"].replace("resourceGroups", "resourcegroups").upper() + "/versions/1.0.0"
    )
    standby = b.template(SUB2, "rg-dr", "tpl-standby", location="northeurope", distribute=[standby_dist])
    inv = inventory({"imageTemplates": [primary, standby]}, subs=[SUB, SUB2])
    f = one("AIB-DR-001", inv)
    assert f.status == Status.PASS
    assert "tpl-standby (northeurope)" in f.detail and "img" in f.detail
    assert f.evidence["standby_templates"][0]["id"] == standby["id"]


def test_dr_001_fails_when_sibling_is_in_same_region_spelled_differently() -> None:
    primary = tpl(distribute=[gallery_dist()])
    sibling = tpl("tpl-twin", location="West Europe", distribute=[gallery_dist(run_output="twin")])
    inv = inventory({"imageTemplates": [primary, sibling]})
    f = one("AIB-DR-001", inv)
    assert f.status == Status.FAIL
    assert "no template in a region other than westeurope" in f.detail and "tpl-twin builds it too" in f.detail


def test_dr_001_fails_for_managed_image_only_template() -> None:
    t = tpl(distribute=[b.managed_image_target(SUB, RG, "img1")])
    f = one("AIB-DR-001", inventory({"imageTemplates": [t]}))
    assert f.status == Status.FAIL
    assert f.detail == "distributes only to managed images/VHDs: no gallery image definition a standby could share"


def test_dr_001_errors_when_a_subscription_could_not_be_listed() -> None:
    t = tpl(distribute=[gallery_dist()])
    inv = inventory({"imageTemplates": [t]}, [read_error("imageTemplates", b.sub_id(SUB2))], subs=[SUB, SUB2])
    f = one("AIB-DR-001", inv)
    assert f.status == Status.ERROR
    assert f"could not read imageTemplates at /subscriptions/{SUB2}" in f.detail


def test_dr_001_one_finding_per_image_definition() -> None:
    t = tpl(distribute=[gallery_dist(image="a", run_output="a"), gallery_dist(image="b", run_output="b")])
    standby = tpl("tpl-b", location="eastus", distribute=[gallery_dist(image="b", run_output="b")])
    out = findings("AIB-DR-001", inventory({"imageTemplates": [t, standby]}))
    by_image = {f.evidence["gallery_image_id"].rsplit("/", 1)[-1]: f.status for f in out}
    assert by_image == {"a": Status.FAIL, "b": Status.PASS}


def test_dr_002_passes_with_two_target_regions() -> None:
    t = tpl(distribute=[gallery_dist(regions=[("westeurope", 3, "Standard_ZRS"), ("northeurope", 3, "Standard_ZRS")])])
    f = one("AIB-DR-002", inventory({"imageTemplates": [t]}))
    assert f.status == Status.PASS and "2 regions: westeurope, northeurope" in f.detail


def test_dr_002_passes_on_legacy_replication_regions_and_says_so() -> None:
    dist = gallery_dist()
    del dist["targetRegions"]
    dist["replicationRegions"] = ["westus", "eastus"]
    f = one("AIB-DR-002", inventory({"imageTemplates": [tpl(distribute=[dist])]}))
    assert f.status == Status.PASS and "deprecated replicationRegions" in f.detail


def test_dr_002_fails_single_region_and_managed_image_only() -> None:
    t = tpl(distribute=[gallery_dist(regions=[("westeurope", 3, "Standard_ZRS"), ("WestEurope", 1, "Standard_ZRS")])])
    f = one("AIB-DR-002", inventory({"imageTemplates": [t]}))
    assert f.status == Status.FAIL and "'gallery' to westeurope only" in f.detail
    m = tpl(distribute=[b.managed_image_target(SUB, RG, "img1"), b.managed_image_target(SUB, RG, "img2", "northeurope")])
    f = one("AIB-DR-002", inventory({"imageTemplates": [m]}))
    assert f.status == Status.FAIL and f.detail.startswith("distributes only to managed images/VHDs")


def test_dr_002_on_real_cli_recording_with_replication_regions() -> None:
    doc = body("test_image_builder_basic_sig.json")
    inv = inventory({"imageTemplates": [doc]}, subs=[REAL_SUB])
    f = one("AIB-DR-002", inv, "template01")
    assert f.status == Status.PASS and "westus, eastus" in f.detail and "deprecated replicationRegions" in f.detail


# --------------------------------------------------------------------------------------------- triggers


def test_trig_001_passes_with_healthy_trigger() -> None:
    t = tpl(distribute=[gallery_dist()])
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t], "triggers": [b.trigger(t)]}))
    assert f.status == Status.PASS and "'source-trigger' is Healthy" in f.detail


def test_trig_001_matches_trigger_with_mixed_case_parent_id() -> None:
    t = tpl(distribute=[gallery_dist()])
    trig = b.trigger(t)
    trig["id"] = (
        trig["id"]
        .replace("resourceGroups", "resourcegroups")
        .replace("Microsoft.VirtualMachineImages", "microsoft.virtualmachineimages")
    )
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t], "triggers": [trig]}))
    assert f.status == Status.PASS


def test_trig_001_fails_on_unhealthy_trigger_with_code_and_message() -> None:
    t = tpl(distribute=[gallery_dist()])
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t], "triggers": [b.trigger(t, code="Unhealthy")]}))
    assert f.status == Status.FAIL
    assert "'source-trigger' is not healthy (status Unhealthy: Trigger is not active)" in f.detail


def test_trig_001_lists_every_reason_a_template_cannot_have_a_trigger() -> None:
    source = {
        "type": "PlatformImage",
        "publisher": "Canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "24.04.202401161",
    }
    t = tpl(source=source, distribute=[b.managed_image_target(SUB, RG, "img1")], autoRun={"state": "Enabled"})
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t]}))
    assert f.status == Status.FAIL
    assert "cannot have one" in f.detail
    assert "pinned to version '24.04.202401161'" in f.detail
    assert "distributes to no gallery image definition" in f.detail
    assert "autoRun is Enabled" in f.detail and "does not count" in f.detail


def test_trig_001_gallery_source_fixed_version_explicit_target_and_same_definition() -> None:
    definition = f"{b.gallery_id(SUB, RG, 'gal')}/images/img"
    dist = gallery_dist()
    dist["galleryImageId"] = definition + "/versions/2.0.0"
    t = tpl(source={"type": "SharedImageVersion", "imageVersionId": definition.lower() + "/versions/1.0.0"}, distribute=[dist])
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t]}))
    assert f.status == Status.FAIL
    assert "names a fixed version, not /versions/latest" in f.detail
    assert "names explicit version 2.0.0" in f.detail
    assert "same image definition img" in f.detail


def test_trig_001_managed_image_source_and_failed_provisioning() -> None:
    src = {"type": "ManagedImage", "imageId": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/images/base"}
    t = tpl(source=src, distribute=[gallery_dist()], provisioning_state="Failed")
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t]}))
    assert f.status == Status.FAIL
    assert "ManagedImage source never gets new versions" in f.detail and "provisioningState is Failed" in f.detail


def test_trig_001_fails_with_create_advice_when_template_is_eligible() -> None:
    latest = f"{b.gallery_id(SUB, RG, 'base')}/images/ubuntu/versions/latest"
    t = tpl(source={"type": "SharedImageVersion", "imageVersionId": latest}, distribute=[gallery_dist()])
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t]}))
    assert f.status == Status.FAIL
    assert f.detail.startswith("no SourceImage trigger: the template meets the requirements, so create one")


def test_trig_001_errors_when_triggers_could_not_be_read() -> None:
    t = tpl(distribute=[gallery_dist()])
    f = one("AIB-TRIG-001", inventory({"imageTemplates": [t]}, [read_error("triggers", t["id"])]))
    assert f.status == Status.ERROR and "could not read triggers" in f.detail
    assert "imageTemplates/triggers/read" in f.detail


def test_trig_001_on_real_cli_recording() -> None:
    template, trigger = body("test_image_build_trigger_template.json"), body("test_image_build_trigger.json")
    inv = inventory({"imageTemplates": [template], "triggers": [trigger]}, subs=[REAL_SUB])
    f = one("AIB-TRIG-001", inv, "template01")
    assert f.status == Status.PASS and "'trigger' is Healthy" in f.detail


# --------------------------------------------------------------------------------------------- boot


def test_boot_001_passes_when_enabled_case_insensitive() -> None:
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [tpl(vm_boot="enabled")]}))
    assert f.status == Status.PASS


def test_boot_001_fails_when_absent_or_disabled() -> None:
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [tpl()]}))
    assert f.status == Status.FAIL and "optimize.vmBoot is not set" in f.detail
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [tpl(vm_boot="Disabled")]}))
    assert f.status == Status.FAIL and "optimize.vmBoot.state is Disabled" in f.detail


def test_boot_001_not_applicable_when_every_target_is_specialized() -> None:
    t = tpl(distribute=[gallery_dist()])
    image = b.gallery_image(SUB, RG, "gal", "img", os_state="Specialized")
    image["id"] = image["id"].replace("resourceGroups", "resourcegroups")
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [t], "galleryImages": [image]}))
    assert f.status == Status.NA and "Specialized" in f.detail


def test_boot_001_applies_when_a_target_is_generalized_or_a_managed_image() -> None:
    t = tpl(distribute=[gallery_dist(), b.managed_image_target(SUB, RG, "img1")])
    image = b.gallery_image(SUB, RG, "gal", "img", os_state="Specialized")
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [t], "galleryImages": [image]}))
    assert f.status == Status.FAIL
    t = tpl(distribute=[gallery_dist()])
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [t], "galleryImages": [b.gallery_image(SUB, RG, "gal", "img")]}))
    assert f.status == Status.FAIL


def test_boot_001_errors_when_gallery_images_could_not_be_read() -> None:
    t = tpl(vm_boot="Enabled", distribute=[gallery_dist()])
    inv = inventory({"imageTemplates": [t]}, [read_error("galleryImages", b.gallery_id(SUB, RG, "gal"))])
    f = one("AIB-BOOT-001", inv)
    assert f.status == Status.ERROR and "could not read galleryImages" in f.detail


def test_boot_001_errors_for_gallery_in_unaudited_subscription() -> None:
    t = tpl(distribute=[gallery_dist(sub=OTHER)])
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [t]}))
    assert f.status == Status.ERROR and f"subscription {OTHER} were not read" in f.detail


def test_boot_001_on_real_cli_recording() -> None:
    doc = body("test_image_builder_template_optimizer.json")
    f = one("AIB-BOOT-001", inventory({"imageTemplates": [doc]}, subs=[REAL_SUB]), "template")
    assert f.status == Status.PASS


# --------------------------------------------------------------------------------------------- subnets


VNET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network/virtualNetworks/vnet"


def test_net_001_pass_and_fail() -> None:
    f = one("AIB-NET-001", inventory({"imageTemplates": [tpl(subnet_id=f"{VNET}/subnets/build")]}))
    assert f.status == Status.PASS and f"{VNET}/subnets/build" in f.detail
    f = one("AIB-NET-001", inventory({"imageTemplates": [tpl()]}))
    assert f.status == Status.FAIL and "vmProfile.vnetConfig.subnetId is not set" in f.detail and "public IP" in f.detail


def test_net_002_passes_with_aci_subnet_in_same_vnet() -> None:
    t = tpl(subnet_id=f"{VNET}/subnets/build", aci_subnet_id=f"{VNET.lower()}/subnets/aci")
    f = one("AIB-NET-002", inventory({"imageTemplates": [t]}))
    assert f.status == Status.PASS and "subnets/aci" in f.detail


def test_net_002_fails_with_build_subnet_only_and_says_aci_is_public() -> None:
    f = one("AIB-NET-002", inventory({"imageTemplates": [tpl(subnet_id=f"{VNET}/subnets/build")]}))
    assert f.status == Status.FAIL
    assert "subnetId is set but containerInstanceSubnetId is not" in f.detail and "public Azure Container Instance" in f.detail
    f = one("AIB-NET-002", inventory({"imageTemplates": [tpl()]}))
    assert f.status == Status.FAIL and "containerInstanceSubnetId is not set" in f.detail


def test_net_002_fails_when_aci_subnet_is_the_build_subnet_or_another_vnet() -> None:
    same = tpl(subnet_id=f"{VNET}/subnets/build", aci_subnet_id=f"{VNET}/subnets/build")
    f = one("AIB-NET-002", inventory({"imageTemplates": [same]}))
    assert f.status == Status.FAIL and "same subnet as subnetId" in f.detail
    other = tpl(subnet_id=f"{VNET}/subnets/build", aci_subnet_id=f"{VNET}2/subnets/aci")
    f = one("AIB-NET-002", inventory({"imageTemplates": [other]}))
    assert f.status == Status.FAIL and "not in the build VM subnet's VNet" in f.detail


def test_net_on_real_cli_recording() -> None:
    doc = body("test_image_builder_vm_profile.json")
    inv = inventory({"imageTemplates": [doc]}, subs=[REAL_SUB])
    assert one("AIB-NET-001", inv, "ib_000005").status == Status.PASS
    f = one("AIB-NET-002", inv, "ib_000005")
    assert f.status == Status.FAIL and "public Azure Container Instance" in f.detail


# --------------------------------------------------------------------------------------------- gallery


def test_gal_001_passes_with_lock_on_mixed_case_gallery_rg() -> None:
    t = tpl(distribute=[gallery_dist(sub=SUB2, rg="rg-gallery")])
    lock_scope = f"/subscriptions/{SUB2}/resourcegroups/RG-GALLERY"
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(lock_scope, "keep-gallery")]}, subs=[SUB, SUB2])
    f = one("AIB-GAL-001", inv)
    assert f.status == Status.PASS and "'keep-gallery' on its resource group" in f.detail
    assert f.resource_id == b.gallery_id(SUB2, "rg-gallery", "gal")


def test_gal_001_one_finding_per_gallery_and_fail_without_lock() -> None:
    t = tpl(
        distribute=[
            gallery_dist("gal1", run_output="a"),
            gallery_dist("gal2", run_output="b"),
            gallery_dist("gal1", "other", run_output="c"),
        ]
    )
    inv = inventory({"imageTemplates": [t], "locks": [b.lock(b.gallery_id(SUB, RG, "gal1"), "keep")]})
    out = {ids.name_of(f.resource_id): f for f in findings("AIB-GAL-001", inv)}
    assert set(out) == {"gal1", "gal2"}
    assert out["gal1"].status == Status.PASS and "on the gallery" in out["gal1"].detail
    assert out["gal2"].status == Status.FAIL and "no CanNotDelete lock on gallery gal2" in out["gal2"].detail


def test_gal_001_fails_on_read_only_lock() -> None:
    t = tpl(distribute=[gallery_dist()])
    locks = [b.lock(b.gallery_id(SUB, RG, "gal"), "keep"), b.lock(b.rg_id(SUB, RG), "freeze", level="ReadOnly")]
    f = one("AIB-GAL-001", inventory({"imageTemplates": [t], "locks": locks}))
    assert f.status == Status.FAIL and "ReadOnly lock 'freeze'" in f.detail and "image versions" in f.detail


def test_gal_001_errors_when_locks_at_gallery_scope_could_not_be_read() -> None:
    t = tpl(distribute=[gallery_dist(sub=SUB2)])
    inv = inventory(
        {"imageTemplates": [t], "locks": [b.lock(b.rg_id(SUB2, RG), "keep")]},
        [read_error("locks", b.sub_id(SUB2))],
        subs=[SUB, SUB2],
    )
    f = one("AIB-GAL-001", inv)
    assert f.status == Status.ERROR and f"could not read locks at /subscriptions/{SUB2}" in f.detail


def test_gal_001_errors_for_gallery_in_unaudited_subscription_and_na_without_gallery() -> None:
    t = tpl(distribute=[gallery_dist(sub=OTHER)])
    f = one("AIB-GAL-001", inventory({"imageTemplates": [t]}))
    assert f.status == Status.ERROR and f"subscription {OTHER} is not in the audit" in f.detail
    m = tpl(distribute=[b.managed_image_target(SUB, RG, "img1")])
    assert one("AIB-GAL-001", inventory({"imageTemplates": [m]})).status == Status.NA


def test_gal_002_pass_fail_and_na() -> None:
    zrs = tpl(distribute=[gallery_dist(regions=[("westeurope", 3, "Standard_ZRS"), ("northeurope", 3, "Premium_ZRS")])])
    f = one("AIB-GAL-002", inventory({"imageTemplates": [zrs]}))
    assert f.status == Status.PASS
    lrs = tpl(
        distribute=[
            gallery_dist(
                regions=[("westeurope", 3, "Standard_ZRS"), ("northeurope", 3, "Standard_LRS"), ("eastus", 1, "Premium_LRS")]
            ),
            gallery_dist("gal2", run_output="second"),
        ]
    )
    out = findings("AIB-GAL-002", inventory({"imageTemplates": [lrs]}))
    assert [f.status for f in out] == [Status.FAIL, Status.PASS]
    assert "northeurope (Standard_LRS), eastus (Premium_LRS)" in out[0].detail and "westeurope" not in out[0].detail
    m = tpl(distribute=[b.managed_image_target(SUB, RG, "img1")])
    assert one("AIB-GAL-002", inventory({"imageTemplates": [m]})).status == Status.NA


def test_gal_002_legacy_replication_regions_default_to_lrs() -> None:
    dist = gallery_dist()
    del dist["targetRegions"]
    dist["replicationRegions"] = ["westus", "eastus"]
    f = one("AIB-GAL-002", inventory({"imageTemplates": [tpl(distribute=[dist])]}))
    assert f.status == Status.FAIL and "westus (Standard_LRS), eastus (Standard_LRS)" in f.detail
    assert "deprecated replicationRegions" in f.detail


def test_gal_003_pass_fail_legacy_and_na() -> None:
    ok = tpl(distribute=[gallery_dist(regions=[("westeurope", 3, "Standard_ZRS"), ("northeurope", 5, "Standard_ZRS")])])
    assert one("AIB-GAL-003", inventory({"imageTemplates": [ok]})).status == Status.PASS
    few = tpl(distribute=[gallery_dist(regions=[("westeurope", 3, "Standard_ZRS"), ("northeurope", 1, "Standard_ZRS")])])
    f = one("AIB-GAL-003", inventory({"imageTemplates": [few]}))
    assert f.status == Status.FAIL and "fewer than 3 replicas in northeurope (1)" in f.detail
    legacy = gallery_dist()
    del legacy["targetRegions"]
    legacy["replicationRegions"] = ["westus"]
    f = one("AIB-GAL-003", inventory({"imageTemplates": [tpl(distribute=[legacy])]}))
    assert f.status == Status.FAIL and "replicationRegions cannot set replicaCount" in f.detail
    m = tpl(distribute=[b.managed_image_target(SUB, RG, "img1")])
    assert one("AIB-GAL-003", inventory({"imageTemplates": [m]})).status == Status.NA


def test_gal_004_pass_and_fail_per_gallery() -> None:
    t = tpl(distribute=[gallery_dist("priv", run_output="a"), gallery_dist("pub", run_output="b")])
    galleries = [b.gallery(SUB, RG, "priv", sharing="Groups"), b.gallery(SUB, RG, "pub", sharing="community")]
    galleries[1]["id"] = galleries[1]["id"].replace("resourceGroups", "resourcegroups")
    out = {
        ids.name_of(f.resource_id): f for f in findings("AIB-GAL-004", inventory({"imageTemplates": [t], "galleries": galleries}))
    }
    assert out["priv"].status == Status.PASS and "sharing: Groups" in out["priv"].detail
    assert out["pub"].status == Status.FAIL and "gallery pub is shared to the community" in out["pub"].detail


def test_gal_004_errors_say_whether_read_failed_or_gallery_missing() -> None:
    t = tpl(distribute=[gallery_dist()])
    f = one("AIB-GAL-004", inventory({"imageTemplates": [t]}, [read_error("galleries", b.sub_id(SUB))]))
    assert f.status == Status.ERROR and "could not read galleries" in f.detail
    f = one("AIB-GAL-004", inventory({"imageTemplates": [t]}))
    assert f.status == Status.ERROR and "not among the galleries listed" in f.detail
    f = one("AIB-GAL-004", inventory({"imageTemplates": [tpl(distribute=[gallery_dist(sub=OTHER)])]}))
    assert f.status == Status.ERROR and "not in the audit" in f.detail


def test_gal_004_not_applicable_without_gallery() -> None:
    m = tpl(distribute=[b.managed_image_target(SUB, RG, "img1")])
    f = one("AIB-GAL-004", inventory({"imageTemplates": [m]}))
    assert f.status == Status.NA and "no Azure Compute Gallery" in f.detail


# --------------------------------------------------------------------------------------------- artifacts


def _scripted_template(**kw: Any) -> dict[str, Any]:
    customize = [
        {"type": "Shell", "name": "setup", "scriptUri": HTTPS_SCRIPT, "sha256Checksum": CHECKSUM},
        {"type": "File", "name": "config", "sourceUri": "http://contoso.example/app.conf", "destination": "/etc/app.conf"},
        {"type": "Shell", "name": "inline", "inline": ["echo hi"]},
    ]
    validate = {"inVMValidations": [{"type": "Shell", "name": "check", "scriptUri": HTTPS_SCRIPT}]}
    optimize = {"workload": {"state": "Enabled", "scriptUri": "ftp://contoso.example/workload.sh", "sha256Checksum": CHECKSUM}}
    return tpl(customize=customize, validate=validate, optimize=optimize, **kw)


def test_sc_001_one_failure_per_missing_checksum_naming_stage_name_and_uri() -> None:
    out = findings("AIB-SC-001", inventory({"imageTemplates": [_scripted_template()]}))
    details = sorted(f.detail for f in out)
    assert all(f.status == Status.FAIL for f in out)
    assert details == [
        "customize 'config' (File) fetches http://contoso.example/app.conf without sha256Checksum",
        f"validate 'check' (Shell) fetches {HTTPS_SCRIPT} without sha256Checksum",
    ]


def test_sc_001_pass_and_na() -> None:
    ok = tpl(customize=[{"type": "PowerShell", "name": "ps", "scriptUri": HTTPS_SCRIPT, "sha256Checksum": CHECKSUM}])
    f = one("AIB-SC-001", inventory({"imageTemplates": [ok]}))
    assert f.status == Status.PASS and "all 1 files" in f.detail
    inline = tpl(customize=[{"type": "Shell", "name": "inline", "inline": ["echo hi"]}])
    f = one("AIB-SC-001", inventory({"imageTemplates": [inline]}))
    assert f.status == Status.NA and "inline" in f.detail


def test_sc_001_on_real_cli_recording() -> None:
    doc = body("test_image_builder_customizers.json")
    f = one("AIB-SC-001", inventory({"imageTemplates": [doc]}, subs=[REAL_SUB]), "template01")
    assert f.status == Status.PASS and "all 3 files" in f.detail


def test_sc_002_one_failure_per_non_https_uri() -> None:
    out = findings("AIB-SC-002", inventory({"imageTemplates": [_scripted_template()]}))
    details = sorted(f.detail for f in out)
    assert all(f.status == Status.FAIL for f in out)
    assert details == [
        "customize 'config' (File) fetches http://contoso.example/app.conf over http://, not https",
        "optimize 'optimize.workload' (workload) fetches ftp://contoso.example/workload.sh over ftp://, not https",
    ]


def test_sc_002_pass_and_na() -> None:
    ok = tpl(customize=[{"type": "Shell", "name": "s", "scriptUri": "HTTPS://contoso.blob.core.windows.net/scripts/s.sh"}])
    assert one("AIB-SC-002", inventory({"imageTemplates": [ok]})).status == Status.PASS
    assert one("AIB-SC-002", inventory({"imageTemplates": [tpl()]})).status == Status.NA


# --------------------------------------------------------------------------------------------- operations


def test_ops_001_pass_and_never_run() -> None:
    f = one("AIB-OPS-001", inventory({"imageTemplates": [tpl()]}))
    assert f.status == Status.PASS and "last run is Succeeded" in f.detail
    f = one("AIB-OPS-001", inventory({"imageTemplates": [tpl(last_run_state=None)]}))
    assert f.status == Status.PASS and "never run" in f.detail


def test_ops_001_fails_on_failed_run_with_message() -> None:
    f = one("AIB-OPS-001", inventory({"imageTemplates": [tpl(last_run_state="Failed")]}))
    assert f.status == Status.FAIL and "the last run failed" in f.detail and "customizer failed: exit code 1" in f.detail


def test_ops_001_fails_on_failed_provisioning_real_recording() -> None:
    doc = body("test_image_builder_vm_profile.json")
    f = one("AIB-OPS-001", inventory({"imageTemplates": [doc]}, subs=[REAL_SUB]), "ib_000005")
    assert f.status == Status.FAIL
    assert f.detail.startswith("provisioningState is Failed, not Succeeded: Not authorized to access the resource")


# --------------------------------------------------------------------------------------------- the whole practice


def test_compliant_template_passes_every_resilience_check_and_scores_100() -> None:
    """A template that follows every practice: all 15 checks pass (staging RG as ARM spells it, no leading slash)."""
    regions = [("westeurope", 3, "Standard_ZRS"), ("northeurope", 3, "Standard_ZRS")]
    latest = f"{b.gallery_id(SUB, RG, 'base')}/images/ubuntu/versions/latest"
    t = tpl(
        source={"type": "SharedImageVersion", "imageVersionId": latest},
        distribute=[gallery_dist(regions=regions)],
        customize=[{"type": "Shell", "name": "setup", "scriptUri": HTTPS_SCRIPT, "sha256Checksum": CHECKSUM}],
        subnet_id=f"{VNET}/subnets/build",
        aci_subnet_id=f"{VNET}/subnets/aci",
        vm_boot="Enabled",
    )
    assert not t["properties"]["exactStagingResourceGroup"].startswith("/")
    standby = tpl("tpl-standby", location="northeurope", distribute=[gallery_dist(regions=regions, run_output="standby")])
    inv = inventory(
        {
            "imageTemplates": [t, standby],
            "triggers": [b.trigger(t)],
            "locks": [b.lock(b.rg_id(SUB, RG), "keep")],
            "galleries": [b.gallery(SUB, RG, "gal")],
            "galleryImages": [b.gallery_image(SUB, RG, "gal", "img")],
        }
    )
    assert inv.templates[0].staging_rg_id and inv.templates[0].staging_rg_id.startswith("/subscriptions/")
    result = run_audit(inv, bound(*RESILIENCE_CATALOG))
    mine = next(r for r in result.templates if r.template.name == "tpl")
    assert mine.statuses == dict.fromkeys(RESILIENCE_CATALOG, Status.PASS)
    assert mine.resilience == 100
    assert not result.incomplete


# --------------------------------------------------------------------------------------------- typed fields, shared helpers


def test_ops_001_reads_the_last_run_from_the_typed_template_not_raw_json() -> None:
    inv = inventory({"imageTemplates": [tpl(last_run_state="Failed")]})
    [t] = inv.templates
    assert (t.last_run_sub_state, t.last_run_end) == ("Distributing", "2026-11-01T02:40:00Z")
    t.raw = {}  # checks see typed fields only; raw is kept for evidence
    f = one("AIB-OPS-001", inv)
    assert f.status == Status.FAIL and "the last run failed (ended 2026-11-01T02:40:00Z)" in f.detail
    assert f.evidence["last_run_sub_state"] == "Distributing" and f.evidence["last_run_end"] == "2026-11-01T02:40:00Z"


def test_inventory_names_the_subscriptions_the_audit_did_not_read() -> None:
    inv = inventory({}, subs=[SUB, SUB2.upper()])
    assert inv.unaudited_subscription(b.gallery_id(OTHER, RG, "gal")) == OTHER
    assert inv.unaudited_subscription(b.gallery_id(SUB2, RG, "gal").upper()) is None
    assert inv.unaudited_subscription("/providers/Microsoft.Management/managementGroups/mg") is None


def test_gal_002_003_evidence_per_distribution() -> None:
    legacy = {"type": "SharedImage", "galleryImageId": f"{b.gallery_id(SUB, RG, 'gal')}/images/img", "runOutputName": "old"}
    legacy["replicationRegions"] = ["westeurope"]
    inv = inventory({"imageTemplates": [tpl(distribute=[gallery_dist(), legacy])]})
    zrs = {f.evidence["run_output_name"]: f for f in findings("AIB-GAL-002", inv)}
    replicas = {f.evidence["run_output_name"]: f for f in findings("AIB-GAL-003", inv)}
    assert {k: f.status for k, f in zrs.items()} == {"gallery": Status.PASS, "old": Status.FAIL}
    assert {k: f.status for k, f in replicas.items()} == {"gallery": Status.PASS, "old": Status.FAIL}
    assert zrs["old"].evidence == {
        "run_output_name": "old",
        "gallery_image_id": f"{b.gallery_id(SUB, RG, 'gal')}/images/img",
        "storage_account_types": {"westeurope": "Standard_LRS"},
        "legacy_replication_regions": True,
    }
    assert replicas["gallery"].evidence["replica_counts"] == {"westeurope": 3}
    assert "cannot set replicaCount" in replicas["old"].detail


# --------------------------------------------------------------------------------------------- indexed lookups


def _scan_locks(inv: Inventory, resource_id: str) -> list[Any]:
    """The reference: every lock tested against the resource (what locks_applying_to did before its index)."""
    return [lk for lk in inv.locks if inv.applies_at(lk.scope, resource_id)]


def _scan_producers(inv: Inventory, definition_key: str, exclude: Any) -> list[Any]:
    """The reference: every template compared with every other (what AIB-DR-001 did before its index)."""
    return [
        other
        for other in inv.templates
        if other.key != exclude.key and definition_key in {ids.norm(d.gallery_image_id) for d in other.gallery_distributions}
    ]


def _rows(inv: Inventory) -> list[tuple[Any, ...]]:
    result = run_audit(inv, bound(*FUNCTIONS))
    return [
        (f.check_id, f.template_id, f.resource_id, f.status, f.detail, json.dumps(f.evidence, sort_keys=True))
        for f in result.findings
    ]


def test_indexed_lookups_give_the_findings_of_a_full_scan_on_a_generated_estate(monkeypatch: pytest.MonkeyPatch) -> None:
    from fixtures.generate import generate

    doc = generate(300)
    indexed = _rows(build_inventory(Snapshot.from_dict(doc)))
    monkeypatch.setattr(Inventory, "locks_applying_to", _scan_locks)
    monkeypatch.setattr(disaster_recovery, "_producers", _scan_producers)
    scanned = _rows(build_inventory(Snapshot.from_dict(doc)))
    assert indexed == scanned
    # The estate exercises both outcomes of every check the indexes serve.
    for cid in ("AIB-LOCK-001", "AIB-LOCK-002", "AIB-DR-001", "AIB-GAL-001"):
        assert {Status.PASS, Status.FAIL} <= {row[3] for row in indexed if row[0] == cid}, cid


def test_locks_applying_to_matches_a_scan_at_every_level_and_management_group() -> None:
    mg_a, mg_b = "/providers/Microsoft.Management/managementGroups/mg-a", "/providers/Microsoft.Management/managementGroups/mg-b"
    t = tpl()
    rg_scope = b.rg_id(SUB, RG).replace("resourceGroups", "resourcegroups").upper()
    scopes = [t["id"], rg_scope, b.sub_id(SUB), b.rg_id(SUB, RG + "-old"), b.sub_id(SUB2), mg_a, mg_b, "/", t["id"] + "/extra"]
    docs = [b.lock(s, f"lock-{i}", level="ReadOnly" if i % 2 else "CanNotDelete") for i, s in enumerate(scopes)]
    for ancestors in (None, {SUB: [mg_a, "/"], SUB2: [mg_b]}):
        inv = build_inventory(
            Snapshot.from_dict(b.snapshot([SUB, SUB2], {"imageTemplates": [t], "locks": docs}, ancestors=ancestors))
        )
        targets = [t["id"], t["id"].upper(), rg_scope, b.sub_id(SUB), b.sub_id(SUB2), b.template_id(SUB2, RG, "x"), mg_a, "/", ""]
        for target in targets:
            assert inv.locks_applying_to(target) == _scan_locks(inv, target), (ancestors, target)
    # Under mg-a only (ancestors recorded): the template gets its own, its RG's, its subscription's, mg-a's and root's.
    assert [lk.name for lk in inv.locks_applying_to(t["id"])] == ["lock-0", "lock-1", "lock-2", "lock-5", "lock-7"]


def test_lookup_indexes_follow_additions_to_the_inventory() -> None:
    primary = tpl(distribute=[gallery_dist()])
    inv = inventory({"imageTemplates": [primary]})
    assert inv.locks_applying_to(primary["id"]) == [] and one("AIB-DR-001", inv).status == Status.FAIL
    inv.locks.append(build_inventory(Snapshot.from_dict(b.snapshot([SUB], {"locks": [b.lock(b.sub_id(SUB), "late")]}))).locks[0])
    standby = tpl("tpl-standby", location="northeurope", distribute=[gallery_dist(run_output="standby")])
    inv.templates.append(build_inventory(Snapshot.from_dict(b.snapshot([SUB], {"imageTemplates": [standby]}))).templates[0])
    assert [lk.name for lk in inv.locks_applying_to(primary["id"])] == ["late"]
    assert one("AIB-DR-001", inv).status == Status.PASS
