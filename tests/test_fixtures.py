"""The fixture estates: the demo covers every check both ways, the edge estates show their edge, the committed
JSON is what the code builds, and the benchmark generator is realistic, deterministic and fast."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from auditor import ids
from auditor.audit import AuditResult, run_audit, select_checks
from auditor.documents import EVERYONE
from auditor.findings import Finding, Status
from auditor.inventory import build_inventory
from auditor.snapshot import KINDS, Snapshot
from checks.registry import catalog
from fixtures import demo, edge, roles
from fixtures.generate import generate

ROOT = Path(__file__).resolve().parents[1]


def audit(doc: dict[str, Any]) -> AuditResult:
    return run_audit(build_inventory(Snapshot.from_dict(doc)), select_checks())


def status(result: AuditResult, template: str, check_id: str) -> Status:
    (tr,) = [tr for tr in result.templates if tr.template.name == template]
    return tr.statuses[check_id]


def findings(result: AuditResult, template: str, check_id: str) -> list[Finding]:
    return [f for f in result.findings if f.check_id == check_id and ids.name_of(f.template_id) == template]


@pytest.fixture(scope="module")
def demo_result() -> AuditResult:
    return audit(demo.build())


# ------------------------------------------------------------------------------------------ the demo estate


def test_every_check_passes_somewhere_and_fails_somewhere_in_the_demo(demo_result: AuditResult) -> None:
    seen: dict[str, Counter[Status]] = {cid: Counter() for cid in catalog()}
    for tr in demo_result.templates:
        for cid, st in tr.statuses.items():
            seen[cid][st] += 1
    missing = {cid: dict(c) for cid, c in seen.items() if not (c[Status.PASS] and c[Status.FAIL])}
    assert not missing, f"checks without both a PASS and a FAIL in the demo: {missing}"


def test_the_demo_is_complete_and_fails(demo_result: AuditResult) -> None:
    """`aib-audit --demo` exits 1: the audit is complete (no ERROR, no failed read) and finds FAILs."""
    assert not demo_result.inventory.errors
    assert demo_result.count(Status.ERROR) == 0, [f.detail for f in demo_result.findings if f.status == Status.ERROR]
    assert not demo_result.incomplete
    assert demo_result.count(Status.FAIL) > 0
    assert 6 <= len(demo_result.templates) <= 10  # the table must stay readable


def test_committed_demo_json_is_what_fixtures_demo_builds() -> None:
    """Nobody edits demo.json by hand: `python -m fixtures.demo` regenerates it byte for byte."""
    assert demo.PATH.read_text(encoding="utf-8") == demo.render(demo.build()), "run: python -m fixtures.demo"
    assert demo.render(demo.build()) == demo.render(demo.build())


def test_the_reference_template_passes_everything(demo_result: AuditResult) -> None:
    (ref,) = [tr for tr in demo_result.templates if tr.template.name == "ubuntu2404-prod-weu"]
    assert {cid for cid, st in ref.statuses.items() if st != Status.PASS} == set()
    assert ref.resilience == 100 and ref.least_privilege == 100


def test_demo_spans_two_subscriptions_regions_and_resource_groups(demo_result: AuditResult) -> None:
    inv = demo_result.inventory
    assert inv.subscriptions == [demo.SUB.lower(), demo.SUB2.lower()]
    assert {t.location for t in inv.templates} == {"westeurope", "northeurope"}
    assert {t.resource_group for t in inv.templates} == {demo.RG_PROD_WEU, demo.RG_PROD_NEU, demo.RG_DEV}
    # Every staging RG exists, tagged as AIB tags it.
    for t in inv.templates:
        rg = inv.staging_rg(t)
        assert rg is not None, t.name
        assert rg.tags["imageTemplateName"] == t.name and rg.tags["imageTemplateResourceGroupName"] == t.resource_group
        assert ("usedBy" if t.staging_rg_user_supplied else "createdBy") in rg.tags


def test_demo_has_the_least_privilege_cases(demo_result: AuditResult) -> None:
    inv = demo_result.inventory
    ras = inv.role_assignments
    by_scope_level = Counter(ids.scope_level(ra.scope) for ra in ras)
    assert by_scope_level["managementGroup"] and by_scope_level["subscription"] and by_scope_level["resource"]
    assert any(ra.role_guid == roles.OWNER and ids.is_management_group(ra.scope) for ra in ras)
    assert any(ra.role_guid == roles.CONTRIBUTOR and ids.scope_level(ra.scope) == "subscription" for ra in ras)
    assert {"User", "Group", "ServicePrincipal", "Unknown"} <= {ra.principal_type for ra in ras}
    assert any(ra.condition for ra in ras) and any(ra.eligible for ra in ras)
    assert inv.deny_assignments and all(EVERYONE in d.principal_ids for d in inv.deny_assignments)
    custom = {rd.role_name: rd for rd in inv.role_definitions.values() if rd.role_type == "CustomRole"}
    assert "Microsoft.VirtualMachineImages/imageTemplates/*" in custom["Image Template Publisher"].permissions[0].actions
    assert "Microsoft.VirtualMachineImages/imageTemplates/write" in custom["Image Builder Operator"].permissions[0].not_actions


def test_demo_least_privilege_findings_tell_the_story(demo_result: AuditResult) -> None:
    r = demo_result
    # Owner inherited from the management group is named as such.
    lp1 = findings(r, "ubuntu2404-gpu-neu", "AIB-LP-001")
    assert any(f.status == Status.FAIL and "management group contoso-root" in f.detail and f.role_name == "Owner" for f in lp1)
    # A deleted principal and a PIM-eligible Owner are called out.
    assert any(f.principal_type == "Unknown" and "deleted" in f.detail for f in findings(r, "win2022-dev-weu", "AIB-LP-001"))
    assert any("PIM-eligible" in f.detail for f in lp1)
    # Bob's notActions remove imageTemplates/write, his second role grants it back: he can still change the template.
    bob = [f for f in findings(r, "win2022-dev-weu", "AIB-LP-001") if f.principal_id == demo.BOB]
    assert bob and bob[0].status == Status.FAIL and "Image Template Publisher" in bob[0].detail
    # The template identity with Contributor on the subscription fails; Contributor on a staging RG is fine.
    assert status(r, "ubuntu2404-prod-neu", "AIB-LP-004") == Status.FAIL
    assert any("subscription" in f.detail for f in findings(r, "ubuntu2404-prod-neu", "AIB-LP-004") if f.status == Status.FAIL)
    assert status(r, "ubuntu2404-gpu-neu", "AIB-LP-004") == Status.PASS
    # Template identity reused on the build VM.
    assert status(r, "win2022-dev-weu", "AIB-LP-006") == Status.FAIL
    # On the shared build-VM identity: the template identity's Managed Identity Operator is expected, Alice's
    # Managed Identity Contributor is not.
    lp7 = findings(r, "ubuntu2204-cis-dev", "AIB-LP-007")
    alice = [f for f in lp7 if f.principal_id == demo.ALICE]
    assert alice and alice[0].status == Status.FAIL and alice[0].role_name == "Managed Identity Contributor"
    mio = [f for f in lp7 if f.role_name == "Managed Identity Operator"]
    assert mio and all(f.status == Status.PASS for f in mio)
    # The deny assignments leave the reference template's RG to the pipeline and its staging RG to its identity.
    assert [f.principal_id for f in findings(r, "ubuntu2404-prod-weu", "AIB-LP-001")] == [demo.RELEASE_PIPELINE]
    # An ABAC-conditional blob reader on a staging RG still counts (conditions are not evaluated) and says so.
    collector = [f for f in findings(r, "win2022-dev-weu", "AIB-LP-003") if f.principal_id == demo.LOG_COLLECTOR]
    assert collector and collector[0].status == Status.FAIL and collector[0].evidence["conditional"] is True
    assert "ABAC condition" in collector[0].detail


def test_demo_resilience_findings_tell_the_story(demo_result: AuditResult) -> None:
    r = demo_result
    assert status(r, "win2022-dev-weu", "AIB-LOCK-002") == Status.FAIL  # ReadOnly lock
    assert status(r, "ubuntu2404-prod-neu", "AIB-LOCK-001") == Status.PASS  # inherited from its RG
    assert status(r, "ubuntu2404-public-weu", "AIB-GAL-004") == Status.FAIL  # community gallery
    assert status(r, "ubuntu2404-prod-neu", "AIB-TRIG-001") == Status.FAIL  # unhealthy trigger
    assert status(r, "rhel9-managed-weu", "AIB-DR-002") == Status.FAIL  # managed image + VHD only
    assert status(r, "rhel9-managed-weu", "AIB-GAL-002") == Status.NA
    assert status(r, "win2022-dev-weu", "AIB-OPS-001") == Status.FAIL  # failed last run
    sc2 = findings(r, "win2022-dev-weu", "AIB-SC-002")
    assert any(f.status == Status.FAIL and "http://packages.contoso.com" in f.detail for f in sc2)


# ------------------------------------------------------------------------------------------ edge estates


@pytest.mark.parametrize("name", sorted(edge.ESTATES))
def test_edge_estate_is_committed_and_parses(name: str) -> None:
    doc = edge.ESTATES[name]()
    assert edge.path_of(name).read_text(encoding="utf-8") == demo.render(doc), "run: python -m fixtures.edge"
    assert edge.ESTATES[name].__doc__, "every edge estate says what it is about"
    inv = build_inventory(Snapshot.load(edge.path_of(name)))
    assert len(inv.templates) == len(doc["resources"]["imageTemplates"]) >= 1
    assert all(t.id and t.name and t.location for t in inv.templates)


def test_edge_mixed_case_ids_join() -> None:
    doc = edge.mixed_case()
    (t,) = [d for d in doc["resources"]["imageTemplates"] if d["name"] == "mixed-case"]
    assert "/resourcegroups/" in t["id"] and "MICROSOFT.VIRTUALMACHINEIMAGES" in t["id"]
    assert not t["properties"]["stagingResourceGroup"].startswith("/")
    r = audit(doc)
    for check_id in ("AIB-LOCK-001", "AIB-GAL-001", "AIB-GAL-004", "AIB-DR-001", "AIB-LP-002", "AIB-LP-004"):
        assert status(r, "mixed-case", check_id) == Status.PASS, check_id
    assert status(r, "mixed-case-standby", "AIB-DR-001") == Status.PASS
    assert any("rg-staging-mixed" in f.detail for f in findings(r, "mixed-case", "AIB-LP-002"))


def test_edge_deleted_staging_rg_never_passes() -> None:
    r = audit(edge.deleted_staging_rg())
    for check_id in ("AIB-LP-002", "AIB-LP-003"):
        (f,) = findings(r, "orphaned", check_id)
        assert f.status in (Status.ERROR, Status.FAIL), check_id
        assert "IT_rg-images_orphaned_" in f.detail and "not found" in f.detail
    assert status(r, "orphaned", "AIB-LP-004") == Status.PASS  # the rest is still evaluated


def test_edge_template_without_identity() -> None:
    r = audit(edge.no_identity())
    assert r.inventory.templates[0].identity_type == "None"
    assert status(r, "no-identity", "AIB-LP-004") == Status.NA
    assert status(r, "no-identity", "AIB-LP-007") == Status.NA
    assert r.count(Status.ERROR) == 0


def test_edge_legacy_replication_regions() -> None:
    r = audit(edge.legacy_regions())
    assert status(r, "legacy-two-regions", "AIB-DR-002") == Status.PASS
    assert status(r, "legacy-two-regions", "AIB-GAL-002") == Status.PASS  # top-level storageAccountType
    assert status(r, "legacy-two-regions", "AIB-GAL-003") == Status.FAIL  # no replicaCount in the legacy shape
    assert any("replicationRegions" in f.detail for f in findings(r, "legacy-two-regions", "AIB-GAL-003"))
    assert status(r, "legacy-one-region", "AIB-DR-002") == Status.FAIL
    assert status(r, "legacy-one-region", "AIB-GAL-002") == Status.FAIL  # default Standard_LRS


def test_edge_cross_subscription_build_vm_identity() -> None:
    r = audit(edge.cross_subscription_identity())
    assert status(r, "shared-identity", "AIB-LP-005") == Status.PASS
    assert status(r, "shared-identity", "AIB-LP-007") == Status.PASS
    for check_id in ("AIB-LP-005", "AIB-LP-007"):
        assert status(r, "unaudited-identity", check_id) == Status.ERROR, check_id
        assert any(edge.UNAUDITED_SUB in f.detail for f in findings(r, "unaudited-identity", check_id))


def test_edge_paging_has_enough_of_everything_for_three_pages_of_two() -> None:
    inv = build_inventory(Snapshot.from_dict(edge.paging()))
    for n in (len(inv.templates), len(inv.locks), len(inv.role_assignments), sum(map(len, inv.triggers.values()))):
        assert n >= 7
    assert len(inv.templates) == edge.PAGING_TEMPLATES
    assert audit(edge.paging()).count(Status.ERROR) == 0


# ------------------------------------------------------------------------------------------ the generator


def test_generator_is_deterministic_per_seed() -> None:
    a, b_ = generate(30, seed=7), generate(30, seed=7)
    assert json.dumps(a) == json.dumps(b_)
    assert json.dumps(a) != json.dumps(generate(30, seed=8))


def test_generated_estate_is_realistic() -> None:
    doc = generate(100, seed=3, assignments_per_template=10)
    r = doc["resources"]
    assert set(r) == set(KINDS)
    inv = build_inventory(Snapshot.from_dict(doc))
    assert len(inv.templates) == 100 and len(inv.subscriptions) == 1
    assert len({t.resource_group for t in inv.templates}) == 10
    assert all(t.identity_ids and t.gallery_distributions for t in inv.templates)
    assert all(inv.staging_rg(t) is not None for t in inv.templates)
    assert all(0 <= len(t.scripts) <= 2 for t in inv.templates)
    assert 0 < len(inv.triggers) < 100
    template_locks = [lk for lk in inv.locks if "/imagetemplates/" in lk.scope]
    assert 30 <= len(template_locks) <= 70  # about half
    assert 900 <= len(inv.role_assignments) <= 1100  # about 10 per template
    levels = Counter(ids.scope_level(ra.scope) for ra in inv.role_assignments)
    assert levels["resource"] and levels["resourceGroup"] and levels["subscription"] and levels["managementGroup"]
    assert {"User", "Group", "ServicePrincipal"} <= {ra.principal_type for ra in inv.role_assignments}
    known = set(inv.role_definitions)
    assert all(ra.role_guid in known for ra in inv.role_assignments)  # nothing unresolved
    assert audit(doc).count(Status.ERROR) == 0


def test_generator_scales_assignments() -> None:
    few = build_inventory(Snapshot.from_dict(generate(50, assignments_per_template=4)))
    many = build_inventory(Snapshot.from_dict(generate(50, assignments_per_template=20)))
    assert len(many.role_assignments) > 3 * len(few.role_assignments)


def test_generator_builds_a_thousand_templates_quickly() -> None:
    start = time.thread_time()  # this thread's CPU time: other processes loading the machine do not count
    doc = generate(1000)
    elapsed = time.thread_time() - start
    assert len(doc["resources"]["imageTemplates"]) == 1000
    assert elapsed < 10, f"generate(1000) took {elapsed:.1f}s of CPU"  # ~0.4 s idle, ~2 s on a loaded VM


def test_generator_command_line_writes_a_loadable_snapshot(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "fixtures.generate", "25", str(out), "--seed", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "25 imageTemplates" in proc.stdout
    assert Snapshot.load(out).to_dict()["resources"] == generate(25, seed=2)["resources"]
    bad = subprocess.run([sys.executable, "-m", "fixtures.generate", "0", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "at least 1" in bad.stderr
