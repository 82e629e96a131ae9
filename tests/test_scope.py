"""Scope: --management-group, --all-subscriptions, --exclude-subscription, AZURE_SUBSCRIPTION_ID, Resource Graph
discovery, built-in roles read once, and the read-only guard's one allowed POST.

End to end through the emulator serving a tenant (fixtures/tenant.py): a management-group tree, subscriptions
with and without templates, a Disabled one, and faults for an unreadable subscription and a refused Resource Graph.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from auditor import resourcegraph, scope
from auditor.audit import run_audit, select_checks
from auditor.azure import ArmClients, StaticTokenCredential
from auditor.collect import collect
from auditor.command import AuditOptions, validate
from auditor.emulator import Emulator, Faults
from auditor.errors import SubscriptionError, UsageError
from auditor.findings import Status
from auditor.inventory import build_inventory
from auditor.pipeline import WriteRefused, is_resource_graph_query
from auditor.reports import exit_code_for
from auditor.snapshot import Snapshot
from fixtures import builders as b
from fixtures.tenant import TenantEstate, tenant_estate
from tests.conftest import StartEmulator


def run(emu: Emulator, spec: scope.ScopeSpec | list[str]) -> Snapshot:
    return collect(spec, StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)


@pytest.fixture
def tenant() -> TenantEstate:
    return tenant_estate(n_subscriptions=12, holders=3, templates_per_holder=2)


# --------------------------------------------------------------------------------------------- flags


def test_no_scope_flag_and_no_environment_is_one_usage_error_naming_the_flags() -> None:
    with pytest.raises(UsageError, match="--management-group ID or --all-subscriptions.*AZURE_SUBSCRIPTION_ID"):
        validate(AuditOptions(), environ={})


def test_azure_subscription_id_is_the_scope_when_no_flag_is_given() -> None:
    sub = b.guid("env-sub")
    opts = AuditOptions()
    validate(opts, environ={"AZURE_SUBSCRIPTION_ID": sub.upper()})
    assert opts.source == "live" and opts.scope is not None
    assert opts.scope.subscriptions == (sub,) and opts.scope.from_environment


def test_a_bad_azure_subscription_id_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="AZURE_SUBSCRIPTION_ID"):
        validate(AuditOptions(), environ={"AZURE_SUBSCRIPTION_ID": "not-a-guid"})


@pytest.mark.parametrize(
    "opts, message",
    [
        (AuditOptions(subscriptions=[b.guid("x")], exclude_subscriptions=[b.guid("y")]), "applies to a discovered scope"),
        (AuditOptions(demo=True, management_groups=["mg"]), "give only one of"),
        (AuditOptions(demo=True, resource_graph=False), "only applies"),
        (AuditOptions(management_groups=["bad/mg!"]), "is not a management group ID"),
        (
            AuditOptions(subscriptions=[b.guid("x")], all_subscriptions=True, exclude_subscriptions=[b.guid("x")]),
            "both named",
        ),
    ],
)
def test_scope_flags_that_cannot_work_are_usage_errors(opts: AuditOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate(opts, environ={})


def test_management_group_ids_are_taken_bare_or_as_arm_ids() -> None:
    spec = scope.scope_spec(management_groups=["/providers/Microsoft.Management/managementGroups/Contoso", "contoso", "corp"])
    assert spec.management_groups == ("Contoso", "corp") and spec.discovers


def test_exclusions_and_states_are_skipped_with_their_reason() -> None:
    a, bb, c, d = (b.guid(f"plan:{i}") for i in range(4))
    spec = scope.scope_spec(all_subscriptions=True, exclude=[c], subscriptions=[d])
    listed = [(a, "Enabled", "A"), (bb, "Warned", "B"), (c, "Enabled", "C"), (d, "Enabled", "D")]
    result = scope.plan_discovered(spec, listed, [])
    assert result.discovered == [a] and result.named == [d]
    assert {s.subscription: s.reason for s in result.skipped} == {
        bb: "state Warned: only Enabled subscriptions are audited",
        c: "excluded (--exclude-subscription)",
    }


# --------------------------------------------------------------------------------------------- Resource Graph logic


def test_holders_follow_skip_tokens_and_template_references() -> None:
    a, g, i, other = (b.guid(f"rg:{n}") for n in range(4))
    pages = {
        None: {"data": [{"id": b.template_id(a, "rg", "t1")}], "$skipToken": "p2", "resultTruncated": "true"},
        "p2": {
            "data": [
                {
                    "id": b.template_id(a, "rg", "t2"),
                    "subscriptionId": a,
                    "distribute": [{"galleryImageId": f"{b.gallery_id(g, 'rg', 'gal')}/images/img"}],
                    "buildVmIdentities": [b.identity_id(i, "rg", "vm")],
                }
            ],
            "resultTruncated": "false",
        },
    }
    sent: list[tuple[list[str], str | None]] = []

    def send(subs: list[str], token: str | None) -> dict[str, Any]:
        sent.append((subs, token))
        return pages[token]

    holders = resourcegraph.find_holders([a, g, i, other], send)
    assert holders.subscriptions == {a, g, i} and holders.templates == 2 and holders.queries == 2
    assert [t for _, t in sent] == [None, "p2"]


def test_a_truncated_result_without_a_skip_token_is_unavailable_not_partial() -> None:
    def send(subs: list[str], token: str | None) -> dict[str, Any]:
        return {"data": [], "resultTruncated": "true"}

    with pytest.raises(resourcegraph.GraphUnavailable, match="truncated"):
        resourcegraph.find_holders([b.guid("t")], send)


# --------------------------------------------------------------------------------------------- end to end


def test_a_management_group_audits_only_the_subscriptions_resource_graph_finds(
    emulator: StartEmulator, tenant: TenantEstate
) -> None:
    emu = emulator(tenant.estate)
    snap = run(emu, scope.scope_spec(management_groups=["contoso"]))
    assert sorted(snap.subscriptions) == sorted([*tenant.holders, tenant.gallery_only])
    meta = snap.meta["scope"]
    assert meta["discovery"] == "resource-graph" and meta["in_scope"] == 12
    assert sorted(meta["skipped_empty"]) == sorted([*tenant.others, tenant.disabled])
    assert len(snap.resources["imageTemplates"]) == 6 and snap.errors == []
    posts = [r for r in emu.requests if r.method == "POST"]
    assert len(posts) == 1 and posts[0].path.lower() == "/providers/microsoft.resourcegraph/resources"
    touched = {r.path.split("/")[2].lower() for r in emu.requests if r.path.lower().startswith("/subscriptions/")}
    assert touched.isdisjoint(tenant.others), "a subscription Resource Graph called empty was read through ARM"


def test_a_child_management_group_covers_its_descendants_only(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate)
    snap = run(emu, scope.scope_spec(management_groups=["landing-zones"], resource_graph=False))
    below = sorted(s for s, p in tenant.parents.items() if p in ("corp", "online") and s != tenant.disabled)
    assert sorted(snap.subscriptions) == below
    assert snap.meta["scope"]["skipped"] == [
        {"subscription": tenant.disabled, "name": "sub-0004", "reason": "state Disabled: only Enabled subscriptions are audited"}
    ]


def test_all_subscriptions_skips_disabled_and_excluded_through_arm_alone(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate)
    excluded = tenant.others[0]
    snap = run(emu, scope.scope_spec(all_subscriptions=True, exclude=[excluded], resource_graph=False))
    assert sorted(snap.subscriptions) == sorted(s for s in tenant.all_subscriptions if s not in (tenant.disabled, excluded))
    reasons = {s["subscription"]: s["reason"] for s in snap.meta["scope"]["skipped"]}
    assert reasons == {
        excluded: "excluded (--exclude-subscription)",
        tenant.disabled: "state Disabled: only Enabled subscriptions are audited",
    }
    assert snap.meta["scope"]["discovery"] == "arm"
    assert not [r for r in emu.requests if r.method == "POST"]


def test_an_unreadable_discovered_subscription_is_one_error_row_and_exit_3(emulator: StartEmulator, tenant: TenantEstate) -> None:
    hidden = tenant.others[1]
    emu = emulator(tenant.estate, faults=Faults(forbidden_scopes=(f"/subscriptions/{hidden}",)))
    snap = run(emu, scope.scope_spec(management_groups=["contoso"], resource_graph=False))
    assert hidden not in snap.subscriptions and set(tenant.holders) <= set(snap.subscriptions)
    assert [(e.kind, e.scope, e.status) for e in snap.errors] == [("subscriptions", f"/subscriptions/{hidden}", 403)]
    result = run_audit(build_inventory(Snapshot.from_dict(json.loads(json.dumps(snap.to_dict())))), select_checks())
    rows = [f for f in result.extra_errors if f.status == Status.ERROR]
    assert len(rows) == 1 and hidden in rows[0].detail and "Microsoft.Resources/subscriptions/read" in rows[0].detail
    assert exit_code_for(result) == 3
    assert len({t.subscription_id for t in result.inventory.templates}) == 3  # the others were audited


def test_a_named_subscription_that_does_not_exist_stays_exit_2(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate)
    with pytest.raises(SubscriptionError, match="not found"):
        run(emu, scope.scope_spec(subscriptions=[b.guid("nowhere")], management_groups=["contoso"]))


def test_an_unknown_management_group_is_exit_2_naming_the_permission(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate)
    with pytest.raises(SubscriptionError, match="management group nope.*descendants/read"):
        run(emu, scope.scope_spec(management_groups=["nope"]))


def test_a_refused_resource_graph_falls_back_to_arm_for_every_subscription(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate, faults=Faults(forbidden_scopes=("/providers/Microsoft.ResourceGraph",)))
    snap = run(emu, scope.scope_spec(management_groups=["contoso"]))
    meta = snap.meta["scope"]
    assert meta["discovery"] == "arm" and meta["skipped_empty"] == []
    assert any("Resource Graph unavailable (HTTP 403" in n for n in meta["notes"])
    assert sorted(snap.subscriptions) == sorted(s for s in tenant.all_subscriptions if s != tenant.disabled)


def test_a_truncated_resource_graph_answer_falls_back_to_arm_not_to_a_partial_scope(
    emulator: StartEmulator, tenant: TenantEstate
) -> None:
    """`resultTruncated` with no $skipToken: the rows Resource Graph left out could be the subscriptions that hold
    templates. Fail closed: every subscription in scope is read through ARM, and the JSON says why."""
    emu = emulator(tenant.estate, faults=Faults(graph_truncated=True))
    snap = run(emu, scope.scope_spec(management_groups=["contoso"]))
    meta = snap.meta["scope"]
    assert meta["discovery"] == "arm" and meta["skipped_empty"] == []
    assert any("Resource Graph unavailable" in n and "truncated" in n for n in meta["notes"])
    assert sorted(snap.subscriptions) == sorted(s for s in tenant.all_subscriptions if s != tenant.disabled)
    assert len(snap.resources["imageTemplates"]) == 6 and snap.errors == []


def test_resource_graph_quota_429_is_waited_out(emulator: StartEmulator, tenant: TenantEstate) -> None:
    from auditor.discover import _graph_send

    emu = emulator(tenant.estate, faults=Faults(throttle=True, graph_burst=1, graph_refill_per_s=1.0))
    run_deadline = time.monotonic() + 60
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle) as arm:
        first = _graph_send(arm, run_deadline, tenant.holders, None)
        second = _graph_send(arm, run_deadline, tenant.holders, None)  # the quota is spent: 429 with Retry-After 1, then answered
    assert first["totalRecords"] == second["totalRecords"] == 6
    assert [r.status for r in emu.requests if r.method == "POST"][:3] == [200, 429, 200]


# --------------------------------------------------------------------------------------------- role definitions once


def test_built_in_roles_are_read_once_and_custom_roles_per_subscription(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate)
    snap = run(emu, scope.scope_spec(management_groups=["platform"], resource_graph=False))
    lists = [(r.path.lower(), r.param("$filter")) for r in emu.requests if r.path.lower().endswith("/roledefinitions")]
    assert lists.count(("/providers/microsoft.authorization/roledefinitions", "type eq 'BuiltInRole'")) == 1
    per_sub = sorted(p for p, f in lists if p.startswith("/subscriptions/"))
    assert per_sub == sorted(f"/subscriptions/{s}/providers/microsoft.authorization/roledefinitions" for s in snap.subscriptions)
    assert {f for p, f in lists if p.startswith("/subscriptions/")} == {"type eq 'CustomRole'"}
    inv = build_inventory(snap)
    assert inv.role_assignments and all(inv.role_definition(a.role_definition_id) for a in inv.role_assignments)


def test_a_failed_built_in_role_list_makes_every_least_privilege_finding_error(
    emulator: StartEmulator, tenant: TenantEstate
) -> None:
    emu = emulator(tenant.estate, faults=Faults(forbidden_scopes=("/providers/Microsoft.Authorization/roleDefinitions",)))
    snap = run(emu, tenant.holders)
    assert [(e.kind, e.scope, e.status) for e in snap.errors] == [("roleDefinitions", "/", 403)]
    assert not [r for r in emu.requests if "/roledefinitions/" in r.path.lower()], "no GET around the failed list"
    result = run_audit(build_inventory(snap), select_checks(["AIB-LP-001", "AIB-LP-004"]))
    assert {f.status for f in result.findings} == {Status.ERROR} and exit_code_for(result) == 3


def test_the_emulator_refuses_a_role_definition_filter_it_does_not_know(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate)
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle) as arm:
        auth = arm.authorization(tenant.holders[0])
        with pytest.raises(Exception, match="InvalidFilterInQueryString"):
            list(auth.role_definitions.list("/", filter="type ne 'CustomRole'"))


# --------------------------------------------------------------------------------------------- read-only guard


@pytest.mark.parametrize(
    "method, url, allowed",
    [
        ("POST", "https://127.0.0.1:9/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01", True),
        ("post", "https://127.0.0.1:9/PROVIDERS/microsoft.resourcegraph/Resources?api-version=2021-03-01", True),
        ("POST", "https://evil.example/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01", False),
        ("POST", "https://127.0.0.1:9/providers/Microsoft.ResourceGraph/resources/x?api-version=2021-03-01", False),
        ("POST", "https://127.0.0.1:9/providers/Microsoft.ResourceGraph/resources?api-version=1&x=y", False),
        ("POST", "https://127.0.0.1:9/subscriptions/s/providers/Microsoft.ResourceGraph/resources?api-version=1", False),
        ("PUT", "https://127.0.0.1:9/providers/Microsoft.ResourceGraph/resources?api-version=2021-03-01", False),
    ],
)
def test_only_the_resource_graph_query_post_is_allowed(method: str, url: str, allowed: bool) -> None:
    assert is_resource_graph_query(method, url, "https://127.0.0.1:9") is allowed


def test_any_other_post_is_refused_before_it_is_sent(emulator: StartEmulator, tenant: TenantEstate) -> None:
    emu = emulator(tenant.estate)
    sub = tenant.holders[0]
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle) as arm:
        with pytest.raises(WriteRefused, match="refused POST"):
            arm.imagebuilder(sub).virtual_machine_image_templates.begin_run("rg-images", "tpl-000").result()
        with pytest.raises(WriteRefused):
            arm.resources(sub).resource_groups.create_or_update("rg-new", {"location": "westeurope"})
    assert emu.writes == [] and emu.requests == []


def test_the_emulator_refuses_a_query_it_does_not_understand(emulator: StartEmulator, tenant: TenantEstate) -> None:
    from azure.mgmt.resourcegraph.models import QueryRequest

    emu = emulator(tenant.estate)
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle) as arm:
        client = arm.resource_graph()
        with pytest.raises(Exception, match="InvalidQuery"):
            client.resources(QueryRequest(subscriptions=tenant.holders, query="resources | summarize count() by type"))
        ok = client.resources(QueryRequest(subscriptions=tenant.holders, query=resourcegraph.QUERY))
        assert ok.total_records == 6


# --------------------------------------------------------------------------------------------- the command line


@pytest.mark.e2e
def test_the_cli_audits_a_management_group_and_says_how_in_json(tmp_path: Path, tenant: TenantEstate) -> None:
    """The installed script over `--management-group`: an unreadable subscription is one ERROR row and exit 3."""
    from tests.test_cli import _script, _script_env, _stand_in_az

    token = '{"accessToken": "stand-in-token", "expires_on": 9999999999, "tokenType": "Bearer"}'
    env = _script_env(_stand_in_az(tmp_path, f"echo '{token}'\n"))
    hidden = tenant.others[1]
    with Emulator(tenant.estate, faults=Faults(forbidden_scopes=(f"/subscriptions/{hidden}",))) as emu:
        env["REQUESTS_CA_BUNDLE"] = emu.ca_bundle
        args = ["--management-group", "landing-zones", "--no-resource-graph", "--arm-endpoint", emu.endpoint, "-f", "json"]
        proc = _script(args, env)
        writes = emu.writes
    assert (proc.returncode, proc.stderr, writes) == (3, "", [])
    run_meta = json.loads(proc.stdout)["run"]
    assert run_meta["scope"]["discovery"] == "arm" and run_meta["scope"]["unreadable"] == [hidden]
    assert hidden not in run_meta["subscriptions"] and run_meta["subscriptions"]
    errors = [f for f in json.loads(proc.stdout)["findings"] if f["status"] == "ERROR"]
    assert len(errors) == 1 and hidden in errors[0]["detail"]


@pytest.mark.e2e
def test_the_cli_takes_azure_subscription_id_when_no_scope_flag_is_given(tmp_path: Path, tenant: TenantEstate) -> None:
    from tests.test_cli import _script, _script_env, _stand_in_az

    token = '{"accessToken": "stand-in-token", "expires_on": 9999999999, "tokenType": "Bearer"}'
    env = _script_env(_stand_in_az(tmp_path, f"echo '{token}'\n"))
    with Emulator(tenant.estate) as emu:
        env["REQUESTS_CA_BUNDLE"] = emu.ca_bundle
        env["AZURE_SUBSCRIPTION_ID"] = tenant.holders[0]
        proc = _script(["--arm-endpoint", emu.endpoint, "-f", "json"], env)
        del env["AZURE_SUBSCRIPTION_ID"]
        missing = _script(["--arm-endpoint", emu.endpoint], env)
    assert proc.stderr == "" and json.loads(proc.stdout)["run"]["subscriptions"] == [tenant.holders[0]]
    assert missing.returncode == 2 and "AZURE_SUBSCRIPTION_ID" in missing.stderr and len(missing.stderr.splitlines()) == 1


def test_a_scope_whose_every_subscription_was_unreadable_loads_and_exits_3() -> None:
    sub = b.guid("unreadable")
    error = {"kind": "subscriptions", "scope": f"/subscriptions/{sub}", "status": 403, "code": "AuthorizationFailed"}
    snap = Snapshot.from_dict(b.snapshot([], {}, errors=[{**error, "message": "no", "permission": ""}]))
    result = run_audit(build_inventory(snap), select_checks())
    assert exit_code_for(result) == 3 and [f.status for f in result.extra_errors] == [Status.ERROR]
    with pytest.raises(UsageError, match="audits nothing"):
        Snapshot.from_dict(b.snapshot([], {}))
