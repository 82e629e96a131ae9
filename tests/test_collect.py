"""The collector against the ARM emulator: the real SDK clients, paging, retries, TLS and credentials.

Estates are built with fixtures/builders.py; every test talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import RetryPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from auditor.audit import run_audit, select_checks
from auditor.azure import ArmClients, StaticTokenCredential, credential_scope, default_credential, normalize_endpoint
from auditor.collect import collect
from auditor.emulator import Emulator, Faults
from auditor.errors import CredentialError, EndpointError, SubscriptionError, UsageError
from auditor.inventory import build_inventory
from auditor.pipeline import CallCounter, ThrottleWait, WriteRefused
from auditor.snapshot import KINDS, PERMISSIONS, Snapshot, SnapshotError
from fixtures import builders as b
from fixtures import roles
from tests.conftest import FakeClock, StartEmulator

SUB = b.guid("collector-sub")
OTHER = b.guid("collector-other-sub")  # not audited: holds a build-VM identity and a target gallery
MG = "/providers/Microsoft.Management/managementGroups/mg-platform"
CUSTOM_ROLE = b.guid("role:aib-image-creation")
# Fast connection retries for tests that hit a closed port or an untrusted certificate (defaults: ~5 s).
FAST_RETRY = {"retry_backoff_factor": 0.01}


# --------------------------------------------------------------------------------------------- estates


def full_estate() -> dict[str, Any]:
    """Every kind of document, including ones the collector reaches only by following references."""
    tmpl_identity = b.identity(SUB, "rg-identities", "aib-template")
    build_vm = b.identity(OTHER, "rg-shared-identities", "build-vm")
    local_gallery = b.gallery(SUB, "rg-galleries", "galProd")
    remote_gallery = b.gallery(OTHER, "rg-shared-galleries", "galShared")
    t1 = b.template(
        SUB,
        "rg-images",
        "ubuntu",
        identity_doc=tmpl_identity,
        distribute=[b.gallery_target(SUB, "rg-galleries", "galProd", "ubuntu", [("westeurope", 3, "Standard_ZRS")])],
    )
    t2 = b.template(
        SUB,
        "rg-images",
        "windows",
        identity_doc=tmpl_identity,
        build_vm_identities=[build_vm["id"]],
        distribute=[b.gallery_target(OTHER, "rg-shared-galleries", "galShared", "win", [("northeurope", 1, "Standard_LRS")])],
    )
    principal = b.principal_of(tmpl_identity)
    custom = b.role_definition(
        CUSTOM_ROLE, roles.AIB_IMAGE_CREATION_ROLE_NAME, ["Microsoft.Compute/galleries/read"], custom=True, defined_at=MG
    )
    resources = {
        "imageTemplates": [t1, t2],
        "triggers": [b.trigger(t1)],
        "locks": [
            b.lock(b.sub_id(SUB), "no-delete-sub"),
            b.lock(b.rg_id(SUB, "rg-images"), "no-delete-images"),
            b.lock(remote_gallery["id"], "no-delete-gallery"),
        ],
        "resourceGroups": [
            b.resource_group(SUB, name)
            for name in ("rg-images", "rg-identities", "rg-galleries", b.staging_rg_name(t1), b.staging_rg_name(t2))
        ],
        "roleAssignments": [
            b.role_assignment(b.sub_id(SUB), roles.OWNER, b.guid("p:admin"), "User", sub=SUB),
            b.role_assignment(MG, roles.CONTRIBUTOR, b.guid("p:platform"), "Group", sub=SUB),
            b.role_assignment(MG, CUSTOM_ROLE, principal, sub=SUB),
            b.role_assignment(b.rg_id(SUB, b.staging_rg_name(t1)), roles.CONTRIBUTOR, principal, sub=SUB),
        ],
        "roleDefinitions": [
            b.role_definition(roles.OWNER, "Owner", ["*"], sub=SUB),
            b.role_definition(roles.CONTRIBUTOR, "Contributor", ["*"], ["Microsoft.Authorization/*/Write"], sub=SUB),
            custom,
        ],
        "denyAssignments": [b.deny_assignment(b.sub_id(SUB), "system-deny", ["*/delete"], [b.guid("p:someone")])],
        "roleEligibilityScheduleInstances": [b.eligibility(b.sub_id(SUB), roles.OWNER, b.guid("p:oncall"), sub=SUB)],
        "userAssignedIdentities": [tmpl_identity, build_vm],
        "galleries": [local_gallery, remote_gallery],
        "galleryImages": [
            b.gallery_image(SUB, "rg-galleries", "galProd", "ubuntu"),
            b.gallery_image(OTHER, "rg-shared-galleries", "galShared", "win"),
        ],
    }
    return b.snapshot([SUB], resources)


def fleet_estate(n: int) -> dict[str, Any]:
    """n templates sharing one identity and gallery, each with a trigger, its staging RG and the identity's
    Contributor there (as AIB grants it): the shape whose call count must grow by one per template."""
    ident = b.identity(SUB, "rg-identities", "aib")
    gal = b.gallery(SUB, "rg-galleries", "galFleet")
    templates = [
        b.template(
            SUB,
            "rg-images",
            f"tpl-{i:03d}",
            identity_doc=ident,
            distribute=[b.gallery_target(SUB, "rg-galleries", "galFleet", "img", [("westeurope", 3, "Standard_ZRS")])],
        )
        for i in range(n)
    ]
    staging = [b.staging_rg_name(t) for t in templates]
    return b.snapshot(
        [SUB],
        {
            "imageTemplates": templates,
            "triggers": [b.trigger(t) for t in templates],
            "locks": [b.lock(b.rg_id(SUB, "rg-images"), "keep")],
            "resourceGroups": [b.resource_group(SUB, name) for name in ("rg-images", "rg-identities", "rg-galleries", *staging)],
            "roleAssignments": [
                b.role_assignment(b.rg_id(SUB, rg), roles.CONTRIBUTOR, b.principal_of(ident), sub=SUB) for rg in staging
            ],
            "roleDefinitions": [b.role_definition(roles.CONTRIBUTOR, "Contributor", ["*"], sub=SUB)],
            "userAssignedIdentities": [ident],
            "galleries": [gal],
            "galleryImages": [b.gallery_image(SUB, "rg-galleries", "galFleet", "img")],
        },
    )


def by_id(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(docs, key=lambda d: str(d["id"]).lower())


def assert_same_documents(snap: Snapshot, estate: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    for kind in KINDS:
        if kind not in skip:
            assert by_id(snap.resources[kind]) == by_id(estate["resources"][kind]), kind


def run_collect(emu: Emulator, subs: list[str] | None = None, **kwargs: Any) -> Snapshot:
    return collect(subs or [SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle, **kwargs)


# --------------------------------------------------------------------------------------------- completeness


def test_every_kind_is_collected_exactly_as_arm_returned_it(emulator: StartEmulator) -> None:
    estate = full_estate()
    emu = emulator(estate)
    snap = run_collect(emu)
    assert snap.errors == []
    assert snap.subscriptions == [SUB]
    assert_same_documents(snap, estate)
    # The snapshot is a valid, savable one.
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))).resources == snap.resources
    meta = snap.meta
    assert meta["arm_endpoint"] == emu.endpoint
    assert meta["arm_calls"] == emu.calls == len(emu.requests) and meta["throttled"] == 0
    assert meta["tool_version"] and meta["collected_at"].endswith("Z") and meta["finished_at"] >= meta["collected_at"]


def test_management_group_assignments_arrive_through_at_scope(emulator: StartEmulator) -> None:
    emu = emulator(full_estate())
    snap = run_collect(emu)
    at_scope = [
        r
        for r in emu.requests
        if r.path.lower() == f"/subscriptions/{SUB}/providers/microsoft.authorization/roleassignments"
        and r.param("$filter") == "atScope()"
    ]
    assert [r.status for r in at_scope] == [200]
    mg_scopes = {a["properties"]["scope"] for a in snap.resources["roleAssignments"] if a["id"].startswith(MG)}
    assert mg_scopes == {MG}
    # The custom role defined at the management group is there for the join.
    assert any(d["id"].startswith(MG) for d in snap.resources["roleDefinitions"])


def test_references_outside_the_subscription_are_fetched_by_id(emulator: StartEmulator) -> None:
    estate = full_estate()
    emu = emulator(estate)
    snap = run_collect(emu)
    other = [r for r in emu.requests if r.path.lower().startswith(f"/subscriptions/{OTHER}")]
    gallery = "/resourcegroups/rg-shared-galleries/providers/microsoft.compute/galleries/galshared"
    assert {(r.path.split(OTHER, 1)[1].lower(), r.param("$filter")) for r in other} == {
        ("/resourcegroups/rg-shared-identities/providers/microsoft.managedidentity/userassignedidentities/build-vm", None),
        (gallery, None),
        (gallery + "/images", None),
        (gallery + "/providers/microsoft.authorization/locks", "atScope()"),  # the gallery's locks, at or above it
    }
    assert len(other) == 4
    build_vm_id = b.identity_id(OTHER, "rg-shared-identities", "build-vm")
    gallery_lock = (
        b.gallery_id(OTHER, "rg-shared-galleries", "galShared") + "/providers/Microsoft.Authorization/locks/no-delete-gallery"
    )
    assert build_vm_id in {d["id"] for d in snap.resources["userAssignedIdentities"]}
    assert gallery_lock in {d["id"] for d in snap.resources["locks"]}


def test_an_audited_second_subscription_is_listed_not_fetched_one_by_one(emulator: StartEmulator) -> None:
    estate = full_estate()
    estate["subscriptions"] = [SUB, OTHER]
    emu = emulator(estate)
    snap = run_collect(emu, [SUB, OTHER])
    assert snap.errors == [] and snap.subscriptions == [SUB, OTHER]
    assert_same_documents(snap, estate)
    single_gets = [
        r.path
        for r in emu.requests
        if "/userassignedidentities/" in r.path.lower() or (r.param("$filter") and "roledefinitions" not in r.path.lower())
    ]
    # Only the two atScope() role-assignment lists remain: no per-identity GET, no per-gallery lock list.
    assert sorted(p.lower() for p in single_gets) == sorted(
        f"/subscriptions/{s}/providers/microsoft.authorization/roleassignments" for s in (SUB, OTHER)
    )


def test_lists_are_followed_over_every_page(emulator: StartEmulator) -> None:
    estate = fleet_estate(7)
    emu = emulator(estate, page_size=2)
    snap = run_collect(emu)
    assert snap.errors == []
    assert_same_documents(snap, estate)
    template_pages = [
        r
        for r in emu.requests
        if r.path.lower() == f"/subscriptions/{SUB}/providers/microsoft.virtualmachineimages/imagetemplates"
    ]
    assert [r.param("$skiptoken") for r in template_pages] == [None, "2", "4", "6"]
    assert len(snap.resources["imageTemplates"]) == 7 and len(snap.resources["resourceGroups"]) == 10


def test_calls_grow_by_one_per_template(emulator: StartEmulator) -> None:
    calls: dict[int, int] = {}
    trigger_calls: dict[int, int] = {}
    for n in (10, 100):
        estate = fleet_estate(n)
        emu = emulator(estate)
        snap = run_collect(emu)
        assert snap.errors == []
        assert len(snap.resources["imageTemplates"]) == len(snap.resources["triggers"]) == n
        calls[n] = snap.meta["arm_calls"]
        assert calls[n] == emu.calls
        trigger_calls[n] = sum(1 for r in emu.requests if r.path.lower().endswith("/triggers"))
    assert calls[10] <= 30
    assert calls[100] - calls[10] <= 95
    assert trigger_calls == {10: 10, 100: 100}
    # Everything but the triggers is a constant number of subscription-wide reads (plus a few more pages).
    assert (calls[100] - trigger_calls[100]) - (calls[10] - trigger_calls[10]) <= 5


# --------------------------------------------------------------------------------------------- read-only


def test_no_write_is_ever_sent(emulator: StartEmulator) -> None:
    emu = emulator(full_estate())
    run_collect(emu)
    assert emu.writes == []
    assert emu.requests and {r.method for r in emu.requests} == {"GET"}


def test_the_pipeline_refuses_a_write_before_it_leaves(emulator: StartEmulator) -> None:
    estate = full_estate()
    emu = emulator(estate)
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle) as arm:
        client = arm.imagebuilder(SUB)
        with pytest.raises(WriteRefused, match="read-only: refused POST"):
            client.virtual_machine_image_templates.begin_run("rg-images", "ubuntu")
        assert arm.counter.calls == 0
    assert emu.requests == [] and emu.writes == []


# --------------------------------------------------------------------------------------------- faults


def test_throttling_is_waited_out_and_the_snapshot_is_complete(emulator: StartEmulator, clock_until_throttled: FakeClock) -> None:
    estate = full_estate()
    # The buckets do not refill until the first 429, so the sixth read of a subscription is throttled however slow
    # the machine; from then on they refill in real time, as ARM's do while the collector waits out Retry-After.
    emu = emulator(estate, faults=Faults(throttle=True, burst=5, refill_per_s=20.0, clock=clock_until_throttled))
    snap = run_collect(emu)
    assert snap.errors == []
    assert_same_documents(snap, estate)
    assert snap.meta["throttled"] == emu.throttled > 0
    assert snap.meta["arm_calls"] == emu.calls


class _ThrottlingHandler(BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 0) to the first `server.throttle_first` requests, then 200."""

    server: _ThrottlingServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits += 1
        throttled = self.server.hits <= self.server.throttle_first
        body = b"" if throttled else b'{"value": []}'
        self.send_response(429 if throttled else 200)
        if throttled:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None


class _ThrottlingServer(ThreadingHTTPServer):
    hits = 0
    throttle_first = 0


@pytest.fixture
def throttling_server() -> Iterator[_ThrottlingServer]:
    server = _ThrottlingServer(("127.0.0.1", 0), _ThrottlingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_sustained_throttling_outlasts_the_sdk_status_retries(throttling_server: _ThrottlingServer) -> None:
    # The SDK's RetryPolicy alone gives up after 3 status retries (4 attempts); ThrottleWait sends again.
    throttling_server.throttle_first = 6
    counter = CallCounter()
    policies = [ThrottleWait(), RetryPolicy(retry_backoff_factor=0), counter]
    url = f"http://127.0.0.1:{throttling_server.server_address[1]}/subscriptions/x/resourcegroups"
    with Pipeline(RequestsTransport(), policies=policies) as pipeline:  # type: ignore[arg-type]
        response = pipeline.run(HttpRequest("GET", url)).http_response
    assert response.status_code == 200
    assert (counter.calls, counter.throttled, throttling_server.hits) == (7, 6, 7)


def test_transient_server_errors_are_retried(emulator: StartEmulator) -> None:
    estate = full_estate()
    # One worker keeps the seeded fault sequence repeatable: this seed injects both a 500 and a 503.
    emu = emulator(estate, faults=Faults(error_rate=0.08, seed=9))
    snap = run_collect(emu, max_workers=1, retry_options=FAST_RETRY)
    assert snap.errors == []
    assert_same_documents(snap, estate)
    assert {500, 503} <= {r.status for r in emu.requests}


def test_a_forbidden_list_is_an_error_entry_and_the_rest_is_collected(emulator: StartEmulator) -> None:
    estate = full_estate()
    forbidden = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments"
    emu = emulator(estate, faults=Faults(forbidden_scopes=(forbidden,)))
    snap = run_collect(emu)
    assert [(e.kind, e.scope, e.status, e.code, e.permission) for e in snap.errors] == [
        ("roleAssignments", f"/subscriptions/{SUB}", 403, "AuthorizationFailed", PERMISSIONS["roleAssignments"])
    ]
    assert "Microsoft.Authorization/roleAssignments/read" in snap.errors[0].message
    assert snap.resources["roleAssignments"] == []
    assert_same_documents(snap, estate, skip=("roleAssignments",))


@pytest.mark.parametrize("mode", ["truncated", "text"])
def test_a_broken_body_taints_only_its_template(emulator: StartEmulator, mode: str) -> None:
    estate = full_estate()
    t1, t2 = estate["resources"]["imageTemplates"]
    other_trigger = b.trigger(t2, "other-trigger")
    estate["resources"]["triggers"].append(other_trigger)
    emu = emulator(estate, faults=Faults(broken_paths=(f"{mode}:{t1['id']}/triggers",)))
    snap = run_collect(emu)
    assert [(e.kind, e.scope, e.status, e.code) for e in snap.errors] == [("triggers", t1["id"], 200, "InvalidResponseBody")]
    assert snap.resources["triggers"] == [other_trigger]
    assert_same_documents(snap, estate, skip=("triggers",))


def test_a_deleted_staging_resource_group_is_a_404_read_error(emulator: StartEmulator) -> None:
    estate = full_estate()
    t1 = estate["resources"]["imageTemplates"][0]
    staging = b.staging_rg_name(t1)
    estate["resources"]["resourceGroups"] = [g for g in estate["resources"]["resourceGroups"] if g["name"] != staging]
    # Nothing else may sit in the deleted RG, or the emulator (like ARM) would still know it.
    estate["resources"]["roleAssignments"] = [a for a in estate["resources"]["roleAssignments"] if staging not in a["id"]]
    emu = emulator(estate)
    snap = run_collect(emu)
    rg_id = "/" + t1["properties"]["exactStagingResourceGroup"].lstrip("/")
    assert [(e.kind, e.scope, e.status, e.code, e.permission) for e in snap.errors] == [
        ("resourceGroups", rg_id, 404, "ResourceGroupNotFound", PERMISSIONS["resourceGroups"])
    ]
    assert_same_documents(snap, estate)


def test_a_role_definition_missing_from_the_list_is_fetched_and_its_absence_recorded(emulator: StartEmulator) -> None:
    estate = full_estate()
    gone = b.guid("role:deleted-custom")
    orphan = b.role_assignment(b.rg_id(SUB, "rg-images"), gone, b.guid("p:orphan"), sub=SUB)
    estate["resources"]["roleAssignments"].append(orphan)
    emu = emulator(estate)
    snap = run_collect(emu)
    rd_id = orphan["properties"]["roleDefinitionId"]
    assert [(e.kind, e.scope, e.status) for e in snap.errors] == [("roleDefinitions", rd_id, 404)]
    assert [r.status for r in emu.requests if r.path.lower() == rd_id.lower()] == [404]


def test_a_custom_role_assignable_only_below_the_subscription_is_fetched_by_id(emulator: StartEmulator) -> None:
    """ARM lists the role definitions applicable at the subscription and above; Image Builder's documented custom
    roles are assignable at one resource group, so the list leaves them out and the collector must GET them."""
    estate = full_estate()
    rg = b.rg_id(SUB, "rg-galleries")
    creation = roles.aib_image_creation_role(SUB, b.guid("rg-creation-role"), rg="rg-galleries")
    estate["resources"]["roleDefinitions"].append(creation)
    estate["resources"]["roleAssignments"].append(b.role_assignment(rg, creation["name"], b.guid("p:builder"), sub=SUB))
    emu = emulator(estate)
    snap = run_collect(emu)
    assert snap.errors == []
    assert creation in snap.resources["roleDefinitions"]
    fetched = [r for r in emu.requests if r.path.lower() == creation["id"].lower()]
    assert [(r.method, r.status) for r in fetched] == [("GET", 200)]


class _ArmErrorResponse:
    """Just enough of an HTTP response for HttpResponseError to parse an ARM error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status_code, self.reason, self.headers, self.request = status, "Conflict", {}, None
        self._body = json.dumps({"error": {"code": code, "message": message}})

    def text(self, encoding: str | None = None) -> str:
        return self._body

    def body(self) -> bytes:
        return self._body.encode()


def test_an_unregistered_provider_means_none_of_its_resources(emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.core.exceptions import ARMErrorFormat
    from azure.mgmt.imagebuilder.operations import VirtualMachineImageTemplatesOperations

    def unregistered(self: Any, **kwargs: Any) -> Any:
        message = "The subscription is not registered to use namespace 'Microsoft.VirtualMachineImages'."
        raise HttpResponseError(
            response=_ArmErrorResponse(409, "MissingSubscriptionRegistration", message), error_format=ARMErrorFormat
        )

    monkeypatch.setattr(VirtualMachineImageTemplatesOperations, "list", unregistered)
    estate = fleet_estate(3)
    emu = emulator(estate)
    snap = run_collect(emu)
    # ARM refuses to unregister a provider that still has resources: no templates is the truth, not an error.
    assert snap.errors == [] and snap.resources["imageTemplates"] == snap.resources["triggers"] == []
    # Subscription-wide reads are unaffected; gallery images are only read for templates' target galleries.
    assert_same_documents(snap, estate, skip=("imageTemplates", "triggers", "galleryImages"))


def test_a_tenant_without_entra_p2_has_no_eligible_assignments_not_a_failed_read(
    emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ARM answers the PIM list with 400 AadPremiumLicenseRequired when the tenant has no Entra ID P2: PIM cannot
    exist there, so that is an empty list (noted in the snapshot), and the least-privilege checks still run."""
    from azure.core.exceptions import HttpResponseError
    from azure.mgmt.authorization.v2020_10_01.operations import RoleEligibilityScheduleInstancesOperations
    from azure.mgmt.core.exceptions import ARMErrorFormat

    from auditor.audit import run_audit, select_checks
    from auditor.findings import Status
    from auditor.inventory import build_inventory

    def unlicensed(self: Any, *args: Any, **kwargs: Any) -> Any:
        response = _ArmErrorResponse(400, "AadPremiumLicenseRequired", "The tenant needs an AAD Premium 2 license.")
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)

    estate = full_estate()
    estate["resources"]["roleEligibilityScheduleInstances"] = []  # the truth in a tenant without P2
    lp_checks = select_checks([f"AIB-LP-00{i}" for i in range(1, 8)])
    baseline = run_audit(build_inventory(run_collect(emulator(estate))), lp_checks)

    monkeypatch.setattr(RoleEligibilityScheduleInstancesOperations, "list_for_scope", unlicensed)
    snap = run_collect(emulator(estate))
    assert snap.errors == [] and snap.resources["roleEligibilityScheduleInstances"] == []
    assert any("AadPremiumLicenseRequired" in n for n in snap.meta["notes"])
    result = run_audit(build_inventory(snap), lp_checks)
    assert [(f.check_id, f.status, f.principal_id) for f in result.findings] == [
        (f.check_id, f.status, f.principal_id) for f in baseline.findings
    ]
    assert not any(f.status == Status.ERROR and "roleEligibility" in f.detail for f in result.findings)


def test_a_refused_pim_list_is_still_a_failed_read(emulator: StartEmulator) -> None:
    """Only the licence answer means "none": a 403 on the PIM list leaves eligible admins unknown, so it is an error."""
    pim = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleEligibilityScheduleInstances"
    snap = run_collect(emulator(full_estate(), faults=Faults(forbidden_scopes=(pim,))))
    assert [(e.kind, e.status) for e in snap.errors] == [("roleEligibilityScheduleInstances", 403)]


# --------------------------------------------------------------------------------------------- run-ending errors


def test_an_unknown_subscription_ends_the_run(emulator: StartEmulator) -> None:
    emu = emulator(full_estate())
    unknown = b.guid("nobody's subscription")
    with pytest.raises(SubscriptionError, match=f"subscription {unknown} was not found or is not visible"):
        run_collect(emu, [unknown])
    assert [r.path for r in emu.requests] == [f"/subscriptions/{unknown}"]


def test_a_subscription_id_must_be_a_guid() -> None:
    with pytest.raises(SubscriptionError, match="not a subscription ID"):
        collect(["prod"], StaticTokenCredential(), arm_endpoint="https://127.0.0.1:1")


def test_a_closed_port_is_an_endpoint_error(refused_port: int) -> None:
    port = refused_port
    with pytest.raises(EndpointError, match=rf"cannot reach ARM endpoint https://127.0.0.1:{port}: .*Connection refused"):
        collect([SUB], StaticTokenCredential(), arm_endpoint=f"https://127.0.0.1:{port}", retry_options=FAST_RETRY)


def test_an_untrusted_certificate_is_an_endpoint_error(emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    emu = emulator(full_estate())
    with pytest.raises(EndpointError, match="CERTIFICATE_VERIFY_FAILED"):
        collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, retry_options=FAST_RETRY)


def test_requests_ca_bundle_is_honoured(emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    estate = full_estate()
    emu = emulator(estate)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emu.ca_bundle)
    snap = collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint)  # connection_verify=True
    assert snap.errors == []
    assert_same_documents(snap, estate)


def test_a_token_arm_rejects_is_a_credential_error(emulator: StartEmulator) -> None:
    emu = emulator(full_estate())
    with pytest.raises(CredentialError, match="rejected the credential's token .*401"):
        collect([SUB], StaticTokenCredential(" "), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)


# --------------------------------------------------------------------------------------------- credentials


class RecordingCredential(StaticTokenCredential):
    def __init__(self) -> None:
        super().__init__("recorded")
        self.scopes: set[tuple[str, ...]] = set()

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.add(scopes)
        return super().get_token(*scopes, **kwargs)


def test_the_token_is_asked_for_the_arm_audience(emulator: StartEmulator) -> None:
    emu = emulator(full_estate())
    cred = RecordingCredential()
    collect([SUB], cred, arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
    assert cred.scopes == {("https://management.azure.com/.default",)}


@pytest.mark.parametrize(
    ("endpoint", "scope"),
    [
        ("https://management.azure.com", "https://management.azure.com/.default"),
        ("https://management.usgovcloudapi.net/", "https://management.usgovcloudapi.net/.default"),
        ("https://MANAGEMENT.chinacloudapi.cn", "https://management.chinacloudapi.cn/.default"),
        ("https://127.0.0.1:8443", "https://management.azure.com/.default"),
    ],
)
def test_each_cloud_gets_its_own_audience(endpoint: str, scope: str) -> None:
    assert credential_scope(normalize_endpoint(endpoint)) == scope


@pytest.mark.parametrize("bad", ["http://management.azure.com", "management.azure.com", "https://h/api", "https://h?x=1", ""])
def test_a_bad_arm_endpoint_is_a_usage_error(bad: str) -> None:
    with pytest.raises(UsageError, match="--arm-endpoint"):
        normalize_endpoint(bad)


def stand_in_az(tmp_path: Path, body: str) -> Path:
    """An `az` on PATH that logs its arguments and runs `body` (what AzureCliCredential invokes)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "az"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path / "az.log"}"\n{body}', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


def use_cli_credential_only(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    # AZURE_TOKEN_CREDENTIALS narrows DefaultAzureCredential to the CLI: no managed-identity probe (169.254.169.254).
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def test_default_credential_uses_az_login(emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = {
        "accessToken": "x",
        "expiresOn": "2099-01-01 00:00:00.000000",
        "expires_on": 4070908800,
        "subscription": SUB,
        "tenant": b.guid("tenant"),
        "tokenType": "Bearer",
    }
    use_cli_credential_only(monkeypatch, stand_in_az(tmp_path, f"echo '{json.dumps(token)}'\n"))
    estate = full_estate()
    emu = emulator(estate)
    credential = default_credential()
    try:
        snap = collect([SUB], credential, arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
    finally:
        credential.close()
    assert snap.errors == []
    assert_same_documents(snap, estate)
    calls = (tmp_path / "az.log").read_text(encoding="utf-8").splitlines()
    assert calls and all(c.startswith("account get-access-token") for c in calls)
    assert "--resource https://management.azure.com" in calls[0]


def test_no_az_login_is_one_clear_credential_error(
    emulator: StartEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = stand_in_az(tmp_path, "echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n")
    use_cli_credential_only(monkeypatch, bin_dir)
    emu = emulator(full_estate())
    with pytest.raises(CredentialError) as info:
        collect([SUB], default_credential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
    message = str(info.value)
    assert message.startswith("no usable Azure credential: run 'az login'") and "\n" not in message
    assert emu.requests == []  # no token, no request


# --------------------------------------------------------------------------------------------- progress


def test_progress_reports_short_steps(emulator: StartEmulator) -> None:
    emu = emulator(fleet_estate(12))
    steps: list[str] = []
    run_collect(emu, progress=steps.append)
    assert f"listing role assignments in {SUB}" in steps
    assert "triggers 12/12" in steps
    assert all("\n" not in s and len(s) < 120 for s in steps)


# --------------------------------------------------------------------------------------------- management-group ancestry

MG_A = "/providers/Microsoft.Management/managementGroups/mg-a"
MG_B = "/providers/Microsoft.Management/managementGroups/mg-b"


def two_management_groups_estate() -> dict[str, Any]:
    """SUB under mg-a, OTHER under mg-b, root above both: each subscription's RBAC lists show only its own."""
    here = b.template(SUB, "rg-images", "here")
    there = b.template(OTHER, "rg-images", "there")
    resources = {
        "imageTemplates": [here, there],
        "resourceGroups": [
            b.resource_group(SUB, "rg-images"),
            b.resource_group(SUB, b.staging_rg_name(here)),
            b.resource_group(OTHER, "rg-images"),
            b.resource_group(OTHER, b.staging_rg_name(there)),
        ],
        "roleDefinitions": roles.builtin_roles(SUB),
        "roleAssignments": [
            b.role_assignment(MG_A, roles.OWNER, b.guid("p:mg-a-owner"), "User", sub=SUB),
            b.role_assignment("/", roles.READER, b.guid("p:root-reader"), "User", sub=SUB),
        ],
        "denyAssignments": [b.deny_assignment(MG_B, "mg-b-deny", ["*/delete"], [b.guid("p:someone")])],
        "roleEligibilityScheduleInstances": [b.eligibility(MG_B, roles.CONTRIBUTOR, b.guid("p:mg-b-oncall"), sub=OTHER)],
    }
    return b.snapshot([SUB, OTHER], resources, ancestors={SUB: [MG_A, "/"], OTHER: [MG_B, "/"]})


def ancestry(snap: Snapshot) -> dict[str, set[str]]:
    return {sub: {s.lower() for s in scopes} for sub, scopes in snap.subscription_ancestors.items()}


def lp001_principals(snap: Snapshot) -> dict[str, set[str]]:
    result = run_audit(build_inventory(snap), select_checks(["AIB-LP-001"]))
    out: dict[str, set[str]] = {}
    for f in result.findings:
        out.setdefault(f.template_id.rsplit("/", 1)[-1], set()).update({f.principal_id} if f.principal_id else set())
    return out


def test_the_management_groups_above_each_subscription_are_recorded(emulator: StartEmulator, tmp_path: Path) -> None:
    estate = two_management_groups_estate()
    emu = emulator(estate)
    snap = run_collect(emu, [SUB, OTHER])
    assert snap.errors == []
    # Role assignments (mg-a, root), deny assignments and PIM eligibilities (mg-b) each reveal an ancestor.
    assert ancestry(snap) == {SUB: {MG_A.lower(), "/"}, OTHER: {MG_B.lower(), "/"}}
    assert snap.to_dict()["subscriptionAncestors"] == snap.subscription_ancestors
    # The Owner at mg-a is a writer of the template under mg-a only (the eligible Contributor at mg-b: the other).
    assert lp001_principals(snap) == {"here": {b.guid("p:mg-a-owner")}, "there": {b.guid("p:mg-b-oncall")}}

    # collect -> save -> emulate -> collect round-trips.
    path = tmp_path / "snap.json"
    snap.save(path)
    saved = Snapshot.load(path)
    assert saved.subscription_ancestors == snap.subscription_ancestors
    again = run_collect(emulator(saved), [SUB, OTHER])
    assert ancestry(again) == ancestry(snap) and again.errors == []
    assert_same_documents(again, estate)


def test_an_estate_without_ancestors_puts_every_management_group_above_every_subscription(emulator: StartEmulator) -> None:
    estate = two_management_groups_estate()
    del estate["subscriptionAncestors"]
    snap = run_collect(emulator(estate), [SUB, OTHER])
    both = {MG_A.lower(), MG_B.lower(), "/"}
    assert ancestry(snap) == {SUB: both, OTHER: both}
    writers = {b.guid("p:mg-a-owner"), b.guid("p:mg-b-oncall")}
    assert lp001_principals(snap) == {"here": writers, "there": writers}


def test_a_subscription_whose_rbac_list_failed_gets_no_ancestors(emulator: StartEmulator) -> None:
    forbidden = f"/subscriptions/{OTHER}/providers/Microsoft.Authorization/denyAssignments"
    emu = emulator(two_management_groups_estate(), faults=Faults(forbidden_scopes=(forbidden,)))
    snap = run_collect(emu, [SUB, OTHER])
    assert [(e.kind, e.scope) for e in snap.errors] == [("denyAssignments", f"/subscriptions/{OTHER}")]
    # What OTHER's deny list would have shown is unknown: no entry, so every management group applies to it.
    assert ancestry(snap) == {SUB: {MG_A.lower(), "/"}}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["/"], "must map subscription IDs"),
        ({"prod": ["/"]}, "'prod' is not a subscription ID"),
        ({SUB: "/"}, f"entry '{SUB}'"),
        ({SUB: [f"/subscriptions/{SUB}"]}, f"lists '/subscriptions/{SUB}'"),
        ({SUB: [f"{MG_A}/providers/Microsoft.Authorization/roleDefinitions/x"]}, "lists"),
    ],
)
def test_snapshot_validates_subscription_ancestors(value: Any, message: str) -> None:
    doc = b.snapshot([SUB], {})
    doc["subscriptionAncestors"] = value
    with pytest.raises(SnapshotError, match=re.escape(message)):
        Snapshot.from_dict(doc)
    # Absent means "not recorded": old snapshots load, and save without the field.
    plain = Snapshot.from_dict(b.snapshot([SUB], {}))
    assert plain.subscription_ancestors == {} and "subscriptionAncestors" not in plain.to_dict()


def test_every_list_the_collector_makes_is_paged_raw() -> None:
    """Each subscription-wide list (and the trigger list) is driven through the SDK's own page fetcher, so no page
    is deserialized into models: a pager the collector cannot page raw would silently cost most of its CPU."""
    from auditor.azure import ArmClients, StaticTokenCredential
    from auditor.collect import _Collector
    from auditor.reads import raw_pager
    from auditor.snapshot import Snapshot

    sub = "00000000-0000-0000-0000-0000000000aa"
    with ArmClients(StaticTokenCredential(), "https://127.0.0.1:9") as arm:
        collector = _Collector(arm, Snapshot(subscriptions=[sub]), None, lambda _m: None)  # type: ignore[arg-type]
        reads = collector._subscription_reads(sub)
        trigger = arm.imagebuilder(sub).triggers.list_by_image_template
        pagers = [r.op(*r.args, **r.kwargs) for r in reads] + [trigger("rg", "tpl")]  # building a pager sends nothing
        assert all(callable(raw_pager(p)) for p in pagers)


# --------------------------------------------------------------------------------------------- the early audit


def test_early_sees_everything_but_the_triggers_and_the_triggers_come_after(emulator: StartEmulator) -> None:
    """collect(early=...) hands the audit a snapshot with every list and every followed reference in (gallery
    images, the other subscription's identity), with Graph's names, and no trigger yet; the trigger reads go on
    meanwhile and land in the same snapshot afterwards."""
    estate = full_estate()
    emu = emulator(estate)
    seen: list[dict[str, int]] = []

    def early(partial: Snapshot, over: Callable[[], bool]) -> None:
        seen.append({kind: len(docs) for kind, docs in partial.resources.items() if docs})
        while not over():  # the trigger reads end (or time runs out) while the early audit works
            time.sleep(0.01)

    snap = run_collect(emu, early=early, max_workers=2)
    assert len(seen) == 1
    assert "triggers" not in seen[0]
    complete = {kind: len(docs) for kind, docs in snap.resources.items() if docs}
    assert {k: v for k, v in complete.items() if k != "triggers"} == seen[0]
    assert complete["triggers"] == len(estate["resources"]["triggers"]) > 0
    trigger_reads = [r for r in emu.requests if r.path.lower().endswith("/triggers")]
    assert len(trigger_reads) == len(estate["resources"]["imageTemplates"])
    assert snap.errors == []


REPLICA = [("westeurope", 1, "Standard_ZRS")]


def test_references_are_read_ahead_of_queued_trigger_reads(emulator: StartEmulator) -> None:
    """With one worker, the followed references (here the target galleries' image lists) go to the head of the
    queue: none waits behind the trigger reads queued while the template list paged."""
    estate = b.snapshot(
        [SUB],
        {
            "imageTemplates": [
                b.template(SUB, "rg", f"t{i}", distribute=[b.gallery_target(SUB, "rg-g", "gal", f"img{i}", REPLICA)])
                for i in range(12)
            ],
            "galleries": [b.gallery(SUB, "rg-g", "gal")],
        },
    )
    emu = emulator(estate, page_size=5)
    run_collect(emu, max_workers=1, early=lambda _snap, _over: None)
    paths = [r.path.lower() for r in emu.requests]
    images = paths.index(f"/subscriptions/{SUB}/resourcegroups/rg-g/providers/microsoft.compute/galleries/gal/images")
    triggers = [i for i, p in enumerate(paths) if p.endswith("/triggers")]
    assert len(triggers) == 12 and images < max(triggers)
    assert sum(i > images for i in triggers) >= 5  # triggers queued before the references were read after them


def test_the_compute_sdk_is_imported_only_when_a_gallery_read_is_built() -> None:
    """azure-mgmt-compute takes longer to import than every other SDK together: the first reads go out first."""
    import subprocess
    import sys

    code = "import sys, auditor.collect, auditor.command; print('azure.mgmt.compute' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
