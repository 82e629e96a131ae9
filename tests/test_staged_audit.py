"""The audit in two passes (auditor.audit.StagedAudit): the checks that need no trigger run while the collector
reads the trigger lists, the rest once they are in. The report must be the one a single pass gives."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from auditor.audit import AuditResult, StagedAudit, run_audit, select_checks
from auditor.findings import Finding, Status, error, finding_id, passed
from auditor.inventory import Inventory, Pending, build_early_inventory, build_inventory, complete_inventory
from auditor.policy import Policy
from auditor.snapshot import Snapshot
from checks.registry import Check
from fixtures import builders as b
from fixtures.generate import generate

ESTATES = Path(__file__).resolve().parent.parent / "fixtures" / "estates"


def with_trigger_errors(estate: dict[str, Any], every: int = 3) -> dict[str, Any]:
    """`estate` where the trigger read of every `every`-th template failed (as a throttled read that ran out of
    time would), and a locks list failed: errors the early pass sees and errors only the second pass does."""
    out = copy.deepcopy(estate)
    templates = out["resources"].get("imageTemplates", [])
    failed = {t["id"].lower() for t in templates[::every]}
    out["resources"]["triggers"] = [
        d for d in out["resources"].get("triggers", []) if d["id"].lower().split("/triggers/")[0] not in failed
    ]
    sub = out["subscriptions"][0]
    out["errors"] = [
        *[e for e in out.get("errors", []) if e.get("kind") != "triggers"],
        {"kind": "locks", "scope": f"/subscriptions/{sub}", "status": 403, "code": "AuthorizationFailed", "message": "no"},
        *[
            {"kind": "triggers", "scope": t["id"], "status": None, "code": "ReadTimeout", "message": "gave up"}
            for t in templates[::every]
        ],
    ]
    return out


def before_triggers(estate: dict[str, Any]) -> Snapshot:
    """What the collector hands `early`: everything but the trigger lists and their failed reads."""
    partial = copy.deepcopy(estate)
    partial["resources"].pop("triggers", None)
    partial["errors"] = [e for e in partial.get("errors", []) if e.get("kind") != "triggers"]
    return Snapshot.from_dict(partial)


def staged(estate: dict[str, Any], checks: list[Check], policy: Policy | None = None) -> tuple[AuditResult, int]:
    """The two-pass audit of `estate`, and how many (template, check) results the early pass left to the second."""
    audit = StagedAudit(checks, policy)
    inv = build_early_inventory(before_triggers(estate))
    audit.early(inv)
    left = sum(status is None for progress in audit._done for status in progress.statuses)
    complete_inventory(inv, Snapshot.from_dict(estate))
    return audit.finish(inv), left


def row(f: Finding) -> dict[str, Any]:
    """A row's fields; `_id` is only the early pass's copy of the finding ID (compared on its own)."""
    return {k: v for k, v in asdict(f).items() if k != "_id"}


def report(result: AuditResult) -> list[Any]:
    return [
        [row(f) for f in result.findings],
        [(t.template.id, t.statuses, t.resilience, t.least_privilege) for t in result.templates],
        [asdict(f) for f in result.extra_errors],
    ]


def estates() -> list[tuple[str, dict[str, Any]]]:
    named = [(p.stem, json.loads(p.read_text(encoding="utf-8"))) for p in sorted(ESTATES.glob("*.json"))]
    return [*named, ("generated-40", generate(40, seed=11))]


@pytest.mark.parametrize(("name", "estate"), estates(), ids=[n for n, _ in estates()])
def test_two_passes_give_the_rows_of_one(name: str, estate: dict[str, Any]) -> None:
    estate = with_trigger_errors(estate)
    checks = select_checks()
    single = run_audit(build_inventory(Snapshot.from_dict(estate)), checks)
    result, left = staged(estate, checks)
    assert report(result) == report(single)
    templates = len(estate["resources"].get("imageTemplates", []))
    assert left == templates  # only the trigger check waited: the other 22 ran while the triggers were read
    assert any(f.status == Status.ERROR and f.check_id == "AIB-TRIG-001" for f in result.findings) == (templates > 0)


@pytest.mark.parametrize(("name", "estate"), estates(), ids=[n for n, _ in estates()])
def test_each_row_carries_the_id_of_its_final_key(name: str, estate: dict[str, Any]) -> None:
    """The finding ID is worked out as each check's rows come in (Finding.fix_id), not by each report: it must be
    the one the row's final check, resource and principal give, which baselines and exceptions key on."""
    result, _ = staged(with_trigger_errors(estate), select_checks())
    assert result.findings
    early = [f for f in result.findings if f.check_id != "AIB-TRIG-001"]  # the rows the early pass gave
    assert all(f._id for f in early)
    for f in result.findings:
        assert f.finding_id == finding_id(f.check_id, f.resource_id, f.principal_id)
        assert f._id in ("", f.finding_id)
    single = run_audit(build_inventory(Snapshot.from_dict(estate)), select_checks())
    assert not any(f._id for f in single.findings)  # no wait to fill: no string per row spent on it


def swallowing_check() -> Check:
    """A check written carelessly: it turns any exception into a PASS. Pending must get through it anyway."""
    meta = select_checks(["AIB-TRIG-001"])[0].meta

    def fn(t: Any, inv: Inventory, policy: Policy) -> list[Finding]:
        try:
            found = inv.triggers_of(t)
        except Exception:  # noqa: BLE001 - the carelessness under test
            return [passed("could not tell, assumed fine")]
        return [passed(f"{len(found)} triggers")] if found else [error("no trigger")]

    return Check(meta, fn)


def test_a_check_that_catches_every_exception_still_waits_for_the_triggers() -> None:
    estate = generate(6, seed=5)
    result, left = staged(estate, [swallowing_check()])
    assert left == 6
    single = run_audit(build_inventory(Snapshot.from_dict(estate)), [swallowing_check()])
    assert report(result) == report(single)
    assert "assumed fine" not in {f.detail for f in result.findings}


def consulting_check() -> Check:
    """Asks about the locks list (failed) before the triggers: the early attempt's questions are forgotten, so the
    failed locks read counts as shown by this check's ERROR row exactly as in one pass."""
    meta = select_checks(["AIB-TRIG-001"])[0].meta

    def fn(t: Any, inv: Inventory, policy: Policy) -> list[Finding]:
        failed = inv.read_errors("locks", t.id) + inv.read_errors("triggers", t.id)
        return [error("; ".join(e.describe() for e in failed))] if failed else [passed("read")]

    return Check(meta, fn)


def test_what_an_early_attempt_asked_about_is_not_counted_twice() -> None:
    sub = b.guid("staged-sub")
    tpl = b.template(sub, "rg", "tpl", identity_doc=b.identity(sub, "rg", "id"))
    locks = {"kind": "locks", "scope": b.sub_id(sub), "status": 403, "code": "AuthorizationFailed", "message": "no"}
    estate = b.snapshot([sub], {"imageTemplates": [tpl]}, [locks])
    single = run_audit(build_inventory(Snapshot.from_dict(estate)), [consulting_check()])
    result, left = staged(estate, [consulting_check()])
    assert left == 1
    assert report(result) == report(single)
    assert [f.status for f in result.findings] == [Status.ERROR] and result.extra_errors == []


def test_pending_kinds_refuse_to_answer_and_the_runner_refuses_to_finish_early() -> None:
    estate = generate(3, seed=2)
    inv = build_early_inventory(before_triggers(estate))
    with pytest.raises(Pending):
        inv.triggers_of(inv.templates[0])
    with pytest.raises(Pending):
        inv.read_errors("triggers", inv.templates[0].id)
    assert inv.read_errors("locks", inv.templates[0].id) == []  # what is in stays readable
    audit = StagedAudit(select_checks())
    audit.early(inv)
    with pytest.raises(ValueError, match="still waiting for triggers"):
        audit.finish(inv)
    with pytest.raises(ValueError, match="before any trigger"):
        build_early_inventory(Snapshot.from_dict(estate))  # the generated estate has triggers


def test_the_early_pass_stops_when_told_and_the_second_pass_does_the_rest() -> None:
    """The collector says when the trigger reads are over: the early pass stops at the next template (the snapshot
    is then saved without waiting for the audit), and finish runs what it left, rows unchanged."""
    estate = with_trigger_errors(generate(20, seed=9))
    checks = select_checks()
    asked = 0

    def over() -> bool:
        nonlocal asked
        asked += 1
        return asked > 7

    audit = StagedAudit(checks)
    inv = build_early_inventory(before_triggers(estate))
    audit.early(inv, over)
    run_early = sum(status is not None for progress in audit._done for status in progress.statuses)
    assert run_early == 7 * (len(checks) - 1)  # seven templates, all checks but the trigger check
    complete_inventory(inv, Snapshot.from_dict(estate))
    assert report(audit.finish(inv)) == report(run_audit(build_inventory(Snapshot.from_dict(estate)), checks))


# --------------------------------------------------------------------------------------------- the early pass in a run


def demo_run(tmp_path: Path, name: str, *extra: str) -> tuple[int, list[tuple[str, ...]], Path]:
    """`aib-audit --demo` in this process (the emulator and a static token): exit code, rows without audited_at,
    and where --snapshot-out would go (given when `extra` says so)."""
    import csv

    from auditor import cli

    out, saved = tmp_path / f"{name}.csv", tmp_path / f"{name}.json"
    code = cli.run(["--demo", "--format", "csv", "--output", str(out), *[a.replace("{saved}", str(saved)) for a in extra]])
    with out.open(encoding="utf-8", newline="") as fh:
        rows = sorted(tuple(v for k, v in r.items() if k != "audited_at") for r in csv.DictReader(fh))
    return code, rows, saved


def test_a_bug_in_the_early_pass_costs_neither_the_collection_nor_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early pass runs inside the collection; a bug there (not in a check: those become ERROR rows) must not
    end the collection before --snapshot-out is saved. Its half-done results are dropped and the single pass after
    the collection runs every check: the rows are the clean run's."""
    import auditor.audit as audit_module
    import auditor.inventory as inventory_module

    clean_code, clean_rows, _ = demo_run(tmp_path, "clean")
    real_early = audit_module.StagedAudit.early

    def early_then_crash(self: StagedAudit, inv: Inventory, stop: Any = lambda: False) -> None:
        real_early(self, inv)  # every template (the demo's trigger reads may be done already: `stop` would say so)
        raise RuntimeError("a bug after the early pass did its work")

    monkeypatch.setattr(audit_module.StagedAudit, "early", early_then_crash)
    code, rows, saved = demo_run(tmp_path, "late-crash", "--snapshot-out", "{saved}")
    assert (code, rows) == (clean_code, clean_rows) and saved.exists()
    monkeypatch.undo()

    def no_inventory(*args: Any, **kwargs: Any) -> Inventory:
        raise RuntimeError("a bug in the early inventory")

    monkeypatch.setattr(inventory_module, "build_early_inventory", no_inventory)
    code, rows, saved = demo_run(tmp_path, "no-early-inventory", "--snapshot-out", "{saved}")
    assert (code, rows) == (clean_code, clean_rows) and saved.exists()


def test_a_bug_that_the_single_pass_meets_again_still_leaves_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the runner itself (here: naming principals) fails the run with exit 4 either way, but only after
    the collection was saved, so it can be audited again offline once fixed."""
    import auditor.audit as audit_module

    def broken_enrich(*args: Any, **kwargs: Any) -> list[Finding]:
        raise RuntimeError("principal names are broken")

    monkeypatch.setattr(audit_module, "enrich", broken_enrich)
    from auditor import cli

    saved = tmp_path / "saved.json"
    assert cli.run(["--demo", "--format", "csv", "--output", str(tmp_path / "r.csv"), "--snapshot-out", str(saved)]) == 4
    assert Snapshot.load(saved).resources["imageTemplates"]


def test_without_snapshot_out_the_raw_documents_go_once_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The early pass makes the findings while the trigger lists are read: with nobody to save them, the raw ARM
    documents are let go once the early inventory holds them (a live run of 10,000 templates kept both at once,
    100 MiB over the single pass). With --snapshot-out they are all saved."""
    import auditor.audit as audit_module
    import auditor.inventory as inventory_module

    seen: list[Snapshot] = []
    held: list[set[str]] = []  # the kinds whose raw documents the snapshot still held when the early pass began
    real_inventory, real_early = inventory_module.build_early_inventory, audit_module.StagedAudit.early

    def spy_inventory(snapshot: Snapshot, expand_groups: bool = False) -> Inventory:
        seen.append(snapshot)
        return real_inventory(snapshot, expand_groups)

    def spy_early(self: StagedAudit, inv: Inventory, stop: Any = lambda: False) -> None:
        held.append({k for k, docs in seen[-1].resources.items() if docs})
        real_early(self, inv, stop)

    monkeypatch.setattr(inventory_module, "build_early_inventory", spy_inventory)
    monkeypatch.setattr(audit_module.StagedAudit, "early", spy_early)
    clean_code, clean_rows, _ = demo_run(tmp_path, "released")
    assert held[0] <= {"triggers"}
    code, rows, saved = demo_run(tmp_path, "kept", "--snapshot-out", "{saved}")
    assert (code, rows) == (clean_code, clean_rows) and {"roleAssignments", "imageTemplates"} <= held[1]
    kept = Snapshot.load(saved).resources
    assert kept["roleAssignments"] and kept["userAssignedIdentities"] and kept["triggers"]


def test_a_live_run_whose_trigger_reads_are_paced_audits_early_and_gives_the_rows_of_its_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against ARM's bucket (small here, so the trigger reads queue up), the early pass really runs checks while
    they are read; the report is still the one `--snapshot` gives from what was collected."""
    import csv

    import auditor.audit as audit_module
    import auditor.azure as azure_module
    from auditor import cli
    from auditor.azure import StaticTokenCredential
    from auditor.emulator import ARM_WHOLE_LISTS, Emulator, Faults

    estate = generate(40, seed=13)
    emu = Emulator(estate, faults=Faults(throttle=True, burst=15, refill_per_s=20.0), whole_lists=ARM_WHOLE_LISTS)
    emu.start()
    monkeypatch.setattr(azure_module, "default_credential", StaticTokenCredential)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)
    done_early: list[int] = []
    real_early = audit_module.StagedAudit.early

    def counting(self: StagedAudit, inv: Inventory, stop: Any = lambda: False) -> None:
        real_early(self, inv, stop)
        done_early.append(sum(s is not None for p in self._done for s in p.statuses))

    monkeypatch.setattr(audit_module.StagedAudit, "early", counting)
    live, offline, saved = tmp_path / "live.csv", tmp_path / "offline.csv", tmp_path / "saved.json"
    try:
        sub = estate["subscriptions"][0]
        args = ["-s", sub, "--arm-endpoint", emu.endpoint, "--max-workers", "2", "--format", "csv", "--output", str(live)]
        assert cli.run([*args, "--snapshot-out", str(saved)]) == 1  # two workers: few trigger reads wait in a seat
    finally:
        emu.stop()
    assert done_early and done_early[0] > 0  # checks ran before the last trigger list was in
    assert cli.run(["--snapshot", str(saved), "--format", "csv", "--output", str(offline)]) == 1

    def rows(path: Path) -> list[tuple[str, ...]]:
        with path.open(encoding="utf-8", newline="") as fh:
            return sorted(tuple(v for k, v in r.items() if k != "audited_at") for r in csv.DictReader(fh))

    assert rows(live) == rows(offline) and len(rows(live)) > 40 * 20
