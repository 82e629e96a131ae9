"""Merged multi-subscription estates (fixtures.generate.generate_estate) must not inflate what the benchmarks measure:
each subscription under its own management group, the built-in roles once, and S subscriptions give exactly S times
one subscription's findings, on a snapshot and through the emulator and the real collector."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from auditor import ids
from auditor.audit import run_audit, select_checks
from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.findings import Finding
from auditor.inventory import build_inventory
from auditor.snapshot import Snapshot
from fixtures import roles
from fixtures.generate import generate, generate_estate, mg_scope
from tests.conftest import StartEmulator

ROOT = Path(__file__).resolve().parents[1]


def findings(doc: dict[str, Any] | Snapshot) -> list[Finding]:
    snap = doc if isinstance(doc, Snapshot) else Snapshot.from_dict(doc)
    return run_audit(build_inventory(snap), select_checks()).findings


def shape(found: list[Finding]) -> Counter[tuple[str, str]]:
    return Counter((f.check_id, f.status.value) for f in found)


def test_each_subscription_has_its_own_management_group_branch_and_built_ins_are_held_once() -> None:
    doc = generate_estate(3, 12, seed=5)
    subs = doc["subscriptions"]
    assert len(set(subs)) == 3
    res = doc["resources"]
    mg_assignments = [ra for ra in res["roleAssignments"] if ids.scope_level(ra["properties"]["scope"]) == "managementGroup"]
    by_group = Counter(ra["properties"]["scope"] for ra in mg_assignments)
    assert len(by_group) == 3 and len(set(by_group.values())) == 1  # one group per subscription, same assignments
    ancestors = doc["subscriptionAncestors"]
    for k, sub in enumerate(subs):
        own = mg_scope(f"contoso-lz-{k:03d}")
        assert ancestors[sub] == [own, mg_scope("contoso")]
        assert own in by_group
    assert {g["name"]: g["parent"] for g in doc["tenant"]["managementGroups"]} == {
        "contoso": None,
        **{f"contoso-lz-{k:03d}": "contoso" for k in range(3)},
    }
    builtin = [d for d in res["roleDefinitions"] if d["properties"]["type"] == "BuiltInRole"]
    assert Counter(d["name"] for d in builtin) == Counter(list(roles.BUILTIN_NAMES))  # each built-in exactly once
    assert all(d["id"].startswith("/providers/Microsoft.Authorization/roleDefinitions/") for d in builtin)
    custom = [d for d in res["roleDefinitions"] if d["properties"]["type"] == "CustomRole"]
    assert len(custom) == 2 * 3  # the two AIB custom roles, per subscription
    inv = build_inventory(Snapshot.from_dict(doc))
    assert all(ra.role_guid in inv.role_definitions for ra in inv.role_assignments)  # nothing unresolved
    assert Counter(t.subscription_id.lower() for t in inv.templates) == dict.fromkeys([s.lower() for s in subs], 12)


def test_the_first_subscription_is_the_single_generated_one() -> None:
    single = generate(20, seed=3)["resources"]
    merged = generate_estate(2, 20, seed=3)["resources"]
    sub = generate(20, seed=3)["subscriptions"][0]
    for kind in ("imageTemplates", "triggers", "userAssignedIdentities", "galleries", "resourceGroups", "locks"):
        assert [d for d in merged[kind] if ids.subscription_of(d["id"]) == sub.lower()] == single[kind], kind


def test_three_merged_subscriptions_give_exactly_three_times_the_findings() -> None:
    one = findings(generate(30, seed=7))
    three = findings(generate_estate(3, 30, seed=7))
    assert len(three) == 3 * len(one)
    assert shape(three) == Counter({k: 3 * v for k, v in shape(one).items()})


def test_through_the_emulator_the_merged_estate_is_read_and_audited_as_three_subscriptions(
    emulator: StartEmulator, static_credential: StaticTokenCredential
) -> None:
    single_doc, merged_doc = generate_estate(1, 8, seed=2), generate_estate(3, 8, seed=2)
    results = {}
    for name, doc in (("single", single_doc), ("merged", merged_doc)):
        emu = emulator(doc)
        snap = collect(list(doc["subscriptions"]), static_credential, arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
        assert snap.errors == [] and emu.writes == []
        builtin_reads = [r for r in emu.requests if r.path.lower().endswith("roledefinitions") and "BuiltInRole" in r.query]
        assert len(builtin_reads) == 1  # once per run, whatever the number of subscriptions
        results[name] = (findings(snap), emu.calls)
    (one, one_calls), (three, three_calls) = results["single"], results["merged"]
    assert len(three) == 3 * len(one) and shape(three) == Counter({k: 3 * v for k, v in shape(one).items()})
    assert three_calls - 1 == 3 * (one_calls - 1)  # every read but the tenant-wide built-in list is per subscription


def test_command_line_writes_a_merged_estate(tmp_path: Path) -> None:
    out = tmp_path / "merged.json"
    cmd = [sys.executable, "-m", "fixtures.generate", "5", str(out), "--seed", "1", "--subscriptions", "2"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "10 imageTemplates" in proc.stdout
    assert Snapshot.load(out).subscriptions == generate_estate(2, 5, seed=1)["subscriptions"]
