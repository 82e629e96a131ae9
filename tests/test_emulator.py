"""The ARM emulator, driven by the real Azure SDK clients (and by raw HTTPS where the SDK cannot misbehave)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import DecodeError, HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.imagebuilder import ImageBuilderClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.locks import ManagementLockClient
from azure.mgmt.resource.resources import ResourceManagementClient

from auditor.emulator import Emulator, Faults, RequestRecord, serve
from auditor.emulator.faults import FaultInjector
from auditor.errors import UsageError
from auditor.snapshot import SnapshotError
from fixtures import builders as b
from tests.conftest import FakeClock, read_lines

SUB = "11111111-1111-1111-1111-111111111111"
SUB2 = "22222222-2222-2222-2222-222222222222"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIB = "b24988ac-6180-42a0-ab88-20f7382dd24c"
MG = "/providers/Microsoft.Management/managementGroups/mg-root"
CALLER_OID = "99999999-aaaa-bbbb-cccc-000000000001"
ROOT = Path(__file__).resolve().parents[1]


def _fake_jwt(oid: str) -> str:
    def enc(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{enc({'alg': 'none'})}.{enc({'oid': oid})}.sig"


class StaticCredential:
    """A token credential that never leaves the process."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(_fake_jwt(CALLER_OID), int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(_fake_jwt(CALLER_OID), int(time.time()) + 3600)


# --- the estate -----------------------------------------------------------------------------------------------

IDENT = b.identity(SUB, "rg-aib", "id-template")
TEMPLATES = [b.template(SUB, "rg-aib", f"tpl-{i}", identity_doc=IDENT) for i in range(7)]
TPL = TEMPLATES[0]
OTHER_TPL = b.template(SUB2, "rg-other", "tpl-x")
SUB_LOCK = b.lock(b.sub_id(SUB), "sub-lock")
RG_LOCK = b.lock(b.rg_id(SUB, "rg-aib"), "rg-lock", "ReadOnly")
TPL_LOCK = b.lock(TPL["id"], "tpl-lock")
TRIGGER_LOCK = b.lock(f"{TPL['id']}/triggers/source-trigger", "trigger-lock")
RA_ROOT = b.role_assignment("/", READER, "p-root", sub=SUB)
RA_MG = b.role_assignment(MG, CONTRIB, "p-mg", "Group", sub=SUB)
RA_SUB = b.role_assignment(b.sub_id(SUB), READER, "p-sub", sub=SUB)
RA_RG = b.role_assignment(b.rg_id(SUB, "rg-aib"), CONTRIB, "p-rg", sub=SUB)
RA_TPL = b.role_assignment(TPL["id"], CONTRIB, "p-rg", sub=SUB)
RA_SUB2 = b.role_assignment(b.sub_id(SUB2), READER, "p-sub2", sub=SUB2)
ESTATE = b.snapshot(
    [SUB, SUB2],
    {
        "imageTemplates": [*TEMPLATES, OTHER_TPL],
        "triggers": [b.trigger(TPL), b.trigger(TPL, "second", "Unhealthy")],
        "resourceGroups": [b.resource_group(SUB, "rg-aib"), b.resource_group(SUB2, "rg-other")],
        "locks": [SUB_LOCK, RG_LOCK, TPL_LOCK, TRIGGER_LOCK],
        "roleAssignments": [RA_ROOT, RA_MG, RA_SUB, RA_RG, RA_TPL, RA_SUB2],
        "roleDefinitions": [
            b.role_definition(READER, "Reader", ["*/read"], sub=SUB),
            b.role_definition(CONTRIB, "Contributor", ["*"], ["Microsoft.Authorization/*/Write"], sub=SUB),
            b.role_definition("0e5f05e5-9ab9-446b-b98d-1e2157c94125", "AIB custom", ["a/read"], sub=SUB, custom=True),
        ],
        "denyAssignments": [b.deny_assignment(b.rg_id(SUB, "rg-aib"), "protect", ["*/delete"], ["p-rg"])],
        "roleEligibilityScheduleInstances": [b.eligibility(b.sub_id(SUB), CONTRIB, "p-eligible", sub=SUB)],
        "userAssignedIdentities": [IDENT],
        "galleries": [b.gallery(SUB, "rg-aib", "gal1"), b.gallery(SUB, "rg-aib", "gal2", sharing="Community")],
        "galleryImages": [b.gallery_image(SUB, "rg-aib", "gal1", "img-a"), b.gallery_image(SUB, "rg-aib", "gal1", "img-b")],
    },
)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(ESTATE, page_size=3) as emulator:
        yield emulator


@pytest.fixture
def fresh(emu: Emulator) -> Emulator:
    emu.reset_counters()
    return emu


def sdk(client_type: type, emulator: Emulator, *args: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("retry_backoff_factor", 0.01)
    return client_type(StaticCredential(), *args, base_url=emulator.endpoint, connection_verify=emulator.ca_bundle, **kwargs)


def raw(
    emulator: Emulator, method: str, path: str, *, token: str | None = "t", query: str = "api-version=2022-04-01"
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    url = f"{emulator.endpoint}{path}" + (f"?{query}" if query else "")
    return requests.request(
        method, url, headers=headers, verify=emulator.ca_bundle, timeout=10, json={} if method != "GET" else None
    )


def names(items: Any) -> list[str]:
    return sorted(i.name for i in items)


def principals(items: Any) -> list[str]:
    return sorted(i.principal_id for i in items)


# --- serving the estate through the SDKs ----------------------------------------------------------------------


def test_templates_page_across_three_pages_with_absolute_next_links(fresh: Emulator) -> None:
    client = sdk(ImageBuilderClient, fresh, SUB)
    listed = list(client.virtual_machine_image_templates.list())
    assert sorted(t.name for t in listed) == sorted(t["name"] for t in TEMPLATES)  # SUB2's template stays out
    reqs = [r for r in fresh.requests if r.path.endswith("/imageTemplates")]
    assert [r.param("$skiptoken") for r in reqs] == [None, "3", "6"]
    assert all(r.param("api-version") == "2025-10-01" and r.status == 200 for r in reqs)
    first = raw(
        fresh,
        "GET",
        f"/subscriptions/{SUB}/providers/Microsoft.VirtualMachineImages/imageTemplates",
        query="api-version=2025-10-01",
    )
    body = first.json()
    assert len(body["value"]) == 3 and body["value"][0] == TEMPLATES[0]  # documents come back unchanged
    assert body["nextLink"].startswith(f"{fresh.endpoint}/subscriptions/{SUB}/providers/")
    assert "api-version=2025-10-01" in body["nextLink"] and "$skiptoken=3" in body["nextLink"]


def test_the_benchmarks_whole_lists_come_in_one_page_and_the_others_stay_paged() -> None:
    """ARM_WHOLE_LISTS (role assignments below the root, which ARM's reference says come whole) in one page; the
    lists no source gives a page size for stay at the emulator's."""
    from auditor.emulator import ARM_WHOLE_LISTS

    rgs = [b.resource_group(SUB, f"rg-{i}") for i in range(7)]
    estate = {**ESTATE, "resources": {**ESTATE["resources"], "resourceGroups": rgs}}
    ra_list = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments"
    with Emulator(estate, page_size=3, whole_lists=ARM_WHOLE_LISTS) as whole, Emulator(estate, page_size=3) as paged:
        page = raw(whole, "GET", ra_list).json()
        assert len(page["value"]) == 5 and "nextLink" not in page  # at and above the subscription, and below it
        assert len(raw(paged, "GET", ra_list).json()["value"]) == 3
        templates = f"/subscriptions/{SUB}/providers/Microsoft.VirtualMachineImages/imageTemplates"
        for path in (f"/subscriptions/{SUB}/resourcegroups", templates):
            assert "nextLink" in raw(whole, "GET", path).json(), path


def test_next_link_keeps_the_filter(fresh: Emulator) -> None:
    q = "api-version=2022-04-01&$filter=principalId%20eq%20%27p-rg%27"
    page = raw(fresh, "GET", "/providers/Microsoft.Authorization/roleAssignments", query=q).json()
    assert page.get("nextLink") is None and len(page["value"]) == 2
    with Emulator(ESTATE, page_size=1) as small:
        first = raw(small, "GET", "/providers/Microsoft.Authorization/roleAssignments", query=q).json()
        nxt = requests.get(first["nextLink"], headers={"Authorization": "Bearer t"}, verify=small.ca_bundle, timeout=10).json()
    assert "nextLink" not in nxt
    assert [d["id"] for d in first["value"] + nxt["value"]] == [RA_RG["id"], RA_TPL["id"]]


def test_resource_group_listing_and_template_triggers(fresh: Emulator) -> None:
    client = sdk(ImageBuilderClient, fresh, SUB)
    assert names(client.virtual_machine_image_templates.list_by_resource_group("rg-aib")) == sorted(t["name"] for t in TEMPLATES)
    triggers = list(client.triggers.list_by_image_template("rg-aib", "tpl-0"))
    assert sorted((t.name, t.properties.status.code) for t in triggers) == [
        ("second", "Unhealthy"),
        ("source-trigger", "Healthy"),
    ]
    assert list(client.triggers.list_by_image_template("rg-aib", "tpl-1")) == []
    assert client.triggers.get("rg-aib", "tpl-0", "second").properties.status.code == "Unhealthy"
    with pytest.raises(ResourceNotFoundError) as err:
        list(client.triggers.list_by_image_template("rg-aib", "no-such-template"))
    assert err.value.error.code == "ResourceNotFound" and "no-such-template" in err.value.message


def test_ids_match_case_insensitively(fresh: Emulator) -> None:
    client = sdk(ImageBuilderClient, fresh, SUB.upper())
    got = client.virtual_machine_image_templates.get("RG-AIB", "TPL-3")
    assert got.id == TEMPLATES[3]["id"] and got.name == "tpl-3"
    r = raw(fresh, "GET", TPL["id"].upper().replace("/PROVIDERS/", "/providers/").replace("IMAGETEMPLATES", "imagetemplates"))
    assert r.status_code == 200 and r.json()["id"] == TPL["id"]
    identity = sdk(ManagedServiceIdentityClient, fresh, SUB).user_assigned_identities.get("Rg-Aib", "ID-TEMPLATE")
    assert identity.principal_id == IDENT["properties"]["principalId"]


def test_percent_encoded_scope_paths_are_decoded(fresh: Emulator) -> None:
    encoded = "/" + b.rg_id(SUB, "rg-aib").replace("/", "%2F") + "/providers/Microsoft.Authorization/locks"
    r = raw(fresh, "GET", encoded, query="api-version=2020-05-01&$filter=atScope()")
    assert r.status_code == 200
    assert sorted(d["name"] for d in r.json()["value"]) == ["rg-lock", "sub-lock"]
    assert fresh.requests[-1].path == f"/subscriptions/{SUB}/resourceGroups/rg-aib/providers/Microsoft.Authorization/locks"


def test_locks_at_scope_versus_unfiltered(fresh: Emulator) -> None:
    locks = sdk(ManagementLockClient, fresh, SUB).management_locks
    # The SDK percent-encodes the scope into the path here.
    assert names(locks.list_by_scope(TPL["id"], filter="atScope()")) == ["rg-lock", "sub-lock", "tpl-lock"]
    assert names(locks.list_by_scope(TPL["id"])) == ["rg-lock", "sub-lock", "tpl-lock", "trigger-lock"]
    assert names(locks.list_by_scope(TEMPLATES[1]["id"], filter="atScope()")) == ["rg-lock", "sub-lock"]
    assert names(locks.list_at_resource_group_level("rg-aib", filter="atScope()")) == ["rg-lock", "sub-lock"]
    assert names(locks.list_at_subscription_level()) == ["rg-lock", "sub-lock", "tpl-lock", "trigger-lock"]
    assert "%2F" not in fresh.requests[0].path and fresh.requests[0].param("$filter") == "atScope()"
    with pytest.raises(HttpResponseError) as err:
        list(locks.list_by_scope(TPL["id"], filter="principalId eq 'x'"))
    assert err.value.status_code == 400


def test_role_assignment_filters_and_inheritance(fresh: Emulator) -> None:
    ras = sdk(AuthorizationManagementClient, fresh, SUB).role_assignments
    rg = b.rg_id(SUB, "rg-aib")
    assert principals(ras.list_for_scope(rg, filter="atScope()")) == ["p-mg", "p-rg", "p-root", "p-sub"]
    assert principals(ras.list_for_scope(rg)) == ["p-mg", "p-rg", "p-rg", "p-root", "p-sub"]  # + the template's, below
    by_principal = list(ras.list_for_scope(b.sub_id(SUB), filter="principalId eq 'p-rg'"))
    assert sorted(a.scope for a in by_principal) == sorted([rg, TPL["id"]])  # below the scope, one principal
    assert list(ras.list_for_scope(b.sub_id(SUB), filter="atScope() and principalId eq 'p-rg'")) == []
    at_template = ras.list_for_scope(TPL["id"], filter="atScope() and principalId eq 'p-rg'")
    assert sorted(a.scope for a in at_template) == sorted([rg, TPL["id"]])
    # Management-group and root assignments sit above every subscription of the estate, and no further.
    assert principals(ras.list_for_subscription(filter="atScope()")) == ["p-mg", "p-root", "p-sub"]
    assert "p-sub2" not in principals(ras.list_for_subscription())
    assert principals(sdk(AuthorizationManagementClient, fresh, SUB2).role_assignments.list_for_subscription()) == [
        "p-mg",
        "p-root",
        "p-sub2",
    ]
    assert principals(ras.list_for_scope(MG, filter="atScope()")) == ["p-mg", "p-root"]
    assert principals(ras.list_for_scope("/", filter="atScope()")) == ["p-root"]
    assert len(list(ras.list_for_scope("/"))) == 6
    got = ras.get_by_id(RA_MG["id"].upper())
    assert got.principal_id == "p-mg" and got.scope == MG
    with pytest.raises(HttpResponseError) as err:
        ras.get_by_id(f"{rg}/providers/Microsoft.Authorization/roleAssignments/{b.guid('nope')}")
    assert err.value.status_code == 404 and err.value.error.code == "RoleAssignmentNotFound"


def test_role_definitions_by_guid_whatever_the_prefix(fresh: Emulator) -> None:
    defs = sdk(AuthorizationManagementClient, fresh, SUB).role_definitions
    assert (
        defs.get_by_id(f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}").role_name == "Reader"
    )
    assert defs.get_by_id(f"/providers/Microsoft.Authorization/roleDefinitions/{CONTRIB.upper()}").role_name == "Contributor"
    assert defs.get(b.rg_id(SUB, "rg-aib"), READER).role_name == "Reader"
    assert sorted(d.role_name for d in defs.list(b.sub_id(SUB))) == ["AIB custom", "Contributor", "Reader"]
    assert [d.role_name for d in defs.list(b.sub_id(SUB), filter="roleName eq 'reader'")] == ["Reader"]
    assert [d.role_name for d in defs.list("/", filter="type eq 'CustomRole'")] == ["AIB custom"]
    with pytest.raises(HttpResponseError) as err:
        defs.get_by_id(f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{b.guid('missing')}")
    assert err.value.status_code == 404 and err.value.error.code == "RoleDefinitionDoesNotExist"


def test_role_definition_list_is_what_is_applicable_at_scope_and_above() -> None:
    """RoleDefinitions_List returns definitions "applicable at scope and above": a custom role assignable only at a
    resource group is missing from the subscription's list (so the collector must fetch it by ID) unless the
    request asks for atScopeAndBelow()."""
    rg = b.rg_id(SUB, "rg-aib")
    rg_only = b.role_definition(b.guid("rg-only"), "RG only", ["*/read"], sub=SUB, custom=True, assignable_scopes=[rg])
    mg_wide = b.role_definition(b.guid("mg-wide"), "MG wide", ["*/read"], custom=True, assignable_scopes=[MG], defined_at=MG)
    reader = b.role_definition(READER, "Reader", ["*/read"], sub=SUB)
    estate = b.snapshot([SUB], {"roleDefinitions": [reader, rg_only, mg_wide]})
    with Emulator(estate) as emu:
        defs = sdk(AuthorizationManagementClient, emu, SUB).role_definitions
        assert sorted(d.role_name for d in defs.list(b.sub_id(SUB))) == ["MG wide", "Reader"]
        assert sorted(d.role_name for d in defs.list(rg)) == ["MG wide", "RG only", "Reader"]
        below = defs.list(b.sub_id(SUB), filter="atScopeAndBelow()")
        assert sorted(d.role_name for d in below) == ["MG wide", "RG only", "Reader"]
        assert [d.role_name for d in defs.list("/")] == ["Reader"]
        assert defs.get_by_id(rg_only["id"]).role_name == "RG only"


def test_deny_assignments_and_eligibility_instances(fresh: Emulator) -> None:
    client = sdk(AuthorizationManagementClient, fresh, SUB)
    assert [d.deny_assignment_name for d in client.deny_assignments.list_for_scope(TPL["id"], filter="atScope()")] == ["protect"]
    assert list(client.deny_assignments.list_for_scope(b.sub_id(SUB), filter="atScope()")) == []
    assert [d.deny_assignment_name for d in client.deny_assignments.list()] == ["protect"]
    pim = client.role_eligibility_schedule_instances
    assert [i.principal_id for i in pim.list_for_scope(b.rg_id(SUB, "rg-aib"), filter="atScope()")] == ["p-eligible"]
    assert [i.principal_id for i in pim.list_for_scope(b.sub_id(SUB), filter="asTarget()")] == ["p-eligible"]
    assert list(pim.list_for_scope(b.sub_id(SUB2))) == []


def test_identities_galleries_resource_groups_and_subscriptions(fresh: Emulator) -> None:
    msi = sdk(ManagedServiceIdentityClient, fresh, SUB).user_assigned_identities
    assert [i.name for i in msi.list_by_subscription()] == ["id-template"]
    assert [i.name for i in msi.list_by_resource_group("rg-aib")] == ["id-template"]
    compute = sdk(ComputeManagementClient, fresh, SUB)
    assert names(compute.galleries.list()) == ["gal1", "gal2"]
    assert compute.galleries.get("rg-aib", "gal2").sharing_profile.permissions == "Community"
    assert names(compute.gallery_images.list_by_gallery("rg-aib", "gal1")) == ["img-a", "img-b"]
    assert compute.gallery_images.get("rg-aib", "gal1", "img-b").name == "img-b"
    assert list(compute.gallery_images.list_by_gallery("rg-aib", "gal2")) == []
    resources = sdk(ResourceManagementClient, fresh, SUB)
    assert [g.name for g in resources.resource_groups.list()] == ["rg-aib"]
    assert resources.resource_groups.get("RG-AIB").name == "rg-aib"
    assert resources.resource_groups.check_existence("rg-aib") is True
    assert resources.resource_groups.check_existence("rg-nope") is False
    sub = raw(fresh, "GET", f"/subscriptions/{SUB2}").json()
    assert sub["subscriptionId"] == SUB2 and sub["state"] == "Enabled" and sub["tenantId"] == IDENT["properties"]["tenantId"]
    assert sorted(s["subscriptionId"] for s in raw(fresh, "GET", "/subscriptions").json()["value"]) == [SUB, SUB2]


# --- what ARM enforces ----------------------------------------------------------------------------------------


def error_of(r: requests.Response) -> tuple[int, str]:
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["message"]
    return r.status_code, body["error"]["code"]


def test_api_version_is_required(fresh: Emulator) -> None:
    r = raw(fresh, "GET", f"/subscriptions/{SUB}/resourcegroups", query="")
    assert error_of(r) == (400, "MissingApiVersionParameter")


def test_bearer_token_is_required(fresh: Emulator) -> None:
    path = f"/subscriptions/{SUB}/resourcegroups"
    assert error_of(raw(fresh, "GET", path, token=None)) == (401, "AuthenticationFailed")
    assert error_of(raw(fresh, "GET", path, token="")) == (401, "AuthenticationFailed")
    basic = requests.get(
        f"{fresh.endpoint}{path}?api-version=1", headers={"Authorization": "Basic eDp5"}, verify=fresh.ca_bundle, timeout=10
    )
    assert error_of(basic) == (401, "AuthenticationFailed")
    assert [r.status for r in fresh.requests] == [401, 401, 401]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{b.rg_id(SUB, 'rg-aib')}/providers/Microsoft.VirtualMachineImages/imageTemplates/missing", (404, "ResourceNotFound")),
        (f"{b.rg_id(SUB, 'rg-nope')}/providers/Microsoft.VirtualMachineImages/imageTemplates/t", (404, "ResourceGroupNotFound")),
        (f"{b.rg_id(SUB, 'rg-nope')}/providers/Microsoft.Compute/galleries", (404, "ResourceGroupNotFound")),
        (b.rg_id(SUB, "rg-nope"), (404, "ResourceGroupNotFound")),
        ("/subscriptions/00000000-0000-0000-0000-00000000dead", (404, "SubscriptionNotFound")),
        (
            "/subscriptions/00000000-0000-0000-0000-00000000dead/providers/Microsoft.Authorization/roleAssignments",
            (404, "SubscriptionNotFound"),
        ),
        (f"{b.rg_id(SUB, 'rg-aib')}/providers/Microsoft.Compute/galleries/gal1/images/none", (404, "ResourceNotFound")),
        (f"{b.rg_id(SUB, 'rg-aib')}/providers/Microsoft.Authorization/locks/none", (404, "LockNotFound")),
        (f"{b.sub_id(SUB)}/providers/Microsoft.Network/virtualNetworks", (400, "InvalidResourceType")),
    ],
)
def test_unknown_ids_get_arm_error_bodies(fresh: Emulator, path: str, expected: tuple[int, str]) -> None:
    assert error_of(raw(fresh, "GET", path)) == expected


def test_sdk_sees_not_found_as_resource_not_found(fresh: Emulator) -> None:
    with pytest.raises(ResourceNotFoundError) as err:
        sdk(ImageBuilderClient, fresh, SUB).virtual_machine_image_templates.get("rg-aib", "missing")
    assert err.value.status_code == 404 and err.value.error.code == "ResourceNotFound"


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST"])
def test_every_write_method_is_refused_and_recorded(fresh: Emulator, method: str) -> None:
    path = TPL["id"] if method != "POST" else f"{TPL['id']}/run"
    r = raw(fresh, method, path, query="api-version=2025-10-01")
    assert error_of(r) == (405, "ReadOnlyEmulator")
    assert fresh.writes == [RequestRecord(method, path, "api-version=2025-10-01", 405)]
    assert raw(fresh, "GET", TPL["id"], query="api-version=2025-10-01").json() == TPL  # nothing changed
    assert fresh.calls == 2 and len(fresh.writes) == 1


def test_writes_are_refused_even_without_a_token_and_list_keys_counts_as_a_write(fresh: Emulator) -> None:
    keys = f"{b.rg_id(SUB, 'rg-aib')}/providers/Microsoft.Storage/storageAccounts/sa/listKeys"
    assert error_of(raw(fresh, "POST", keys, token=None)) == (405, "ReadOnlyEmulator")
    graph = raw(fresh, "POST", "/providers/Microsoft.ResourceGraph/resources", query="api-version=2021-03-01")
    assert graph.status_code == 400  # a read-only POST: not served, and not a write attempt
    assert [w.path for w in fresh.writes] == [keys]


def test_sdk_delete_is_refused_and_the_template_survives(fresh: Emulator) -> None:
    client = sdk(ImageBuilderClient, fresh, SUB)
    with pytest.raises(HttpResponseError) as err:
        client.virtual_machine_image_templates.begin_delete("rg-aib", "tpl-0").result()
    assert err.value.status_code == 405 and err.value.error.code == "ReadOnlyEmulator"
    assert [(w.method, w.path) for w in fresh.writes] == [("DELETE", TPL["id"])]
    assert client.virtual_machine_image_templates.get("rg-aib", "tpl-0").name == "tpl-0"


# --- faults ---------------------------------------------------------------------------------------------------


def test_empty_bucket_gives_429_with_retry_after_per_subscription() -> None:
    clock = FakeClock()  # stands still: the bucket refills only when the test moves time on
    with Emulator(ESTATE, faults=Faults(throttle=True, burst=2, refill_per_s=0.5, clock=clock)) as emu:
        path = f"/subscriptions/{SUB}/resourcegroups"
        ok1, ok2, throttled = (raw(emu, "GET", path) for _ in range(3))
        assert (ok1.status_code, ok2.status_code) == (200, 200)
        assert ok1.headers["x-ms-ratelimit-remaining-subscription-reads"] == "1"
        assert ok2.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
        assert error_of(throttled) == (429, "SubscriptionRequestsThrottled")
        assert throttled.headers["Retry-After"] == "2"  # one token at 0.5/s
        assert throttled.headers["x-ms-ratelimit-remaining-subscription-reads"] == "0"
        assert raw(emu, "GET", f"/subscriptions/{SUB2}/resourcegroups").status_code == 200  # its own bucket
        assert emu.throttled == 1 and emu.calls == 4
        clock.advance(2.0)  # waiting out Retry-After is enough
        assert raw(emu, "GET", path).status_code == 200
        assert emu.throttled == 1 and emu.calls == 5


class SleepRecordingTransport(RequestsTransport):
    """The SDK's retry policy sleeps through its transport: really sleep, note how long, and let the emulator's fake
    clock see that time pass, so its bucket refills while the client waits and at no other time."""

    def __init__(self, clock: FakeClock, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.slept: list[float] = []

    def sleep(self, duration: float) -> None:
        self.slept.append(duration)
        time.sleep(duration)
        self.clock.advance(duration)


def test_sdk_retry_waits_out_the_throttle() -> None:
    clock = FakeClock()
    with Emulator(ESTATE, page_size=1, faults=Faults(throttle=True, burst=5, refill_per_s=10.0, clock=clock)) as emu:
        transport = SleepRecordingTransport(clock, connection_verify=emu.ca_bundle)
        client = ImageBuilderClient(
            StaticCredential(), SUB, base_url=emu.endpoint, transport=transport, retry_backoff_factor=0.01
        )
        started = time.monotonic()
        listed = list(client.virtual_machine_image_templates.list())
        elapsed = time.monotonic() - started
        assert len(listed) == len(TEMPLATES)
        # Five pages empty the bucket; the sixth is refused with Retry-After: 1 (one token at 10/s, in whole
        # seconds). The SDK waits that second, not its 0.01 s backoff, and the retry and the last page pass.
        assert [r.status for r in emu.requests] == [200] * 5 + [429] + [200] * 2
        assert emu.throttled == 1
        assert transport.slept == [1.0] and elapsed >= 1.0


def test_forbidden_scope_surfaces_as_403_in_the_sdk() -> None:
    forbidden = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleAssignments"
    with Emulator(ESTATE, faults=Faults(forbidden_scopes=(forbidden.upper(), TPL["id"]))) as emu:
        auth = sdk(AuthorizationManagementClient, emu, SUB)
        with pytest.raises(HttpResponseError) as err:
            list(auth.role_assignments.list_for_subscription())
        assert err.value.status_code == 403 and err.value.error.code == "AuthorizationFailed"
        assert f"The client '{CALLER_OID}' with object id '{CALLER_OID}' does not have authorization" in err.value.message
        assert "'Microsoft.Authorization/roleAssignments/read'" in err.value.message
        with pytest.raises(HttpResponseError) as trig:
            list(sdk(ImageBuilderClient, emu, SUB).triggers.list_by_image_template("rg-aib", "tpl-0"))
        assert trig.value.status_code == 403 and "imageTemplates/triggers/read" in trig.value.message
        # Other scopes, and IDs that merely share a prefix, still read.
        assert len(list(auth.role_assignments.list_for_scope(b.rg_id(SUB, "rg-aib"), filter="atScope()"))) == 4
        assert sdk(ImageBuilderClient, emu, SUB).virtual_machine_image_templates.get("rg-aib", "tpl-1").name == "tpl-1"


def test_broken_bodies_make_the_sdk_raise_decode_errors() -> None:
    faults = Faults(
        broken_paths=("truncated:/imageTemplates", "text:Microsoft.Compute/galleries", "microsoft.authorization/locks")
    )
    with Emulator(ESTATE, faults=faults) as emu:
        with pytest.raises(DecodeError):
            list(sdk(ImageBuilderClient, emu, SUB).virtual_machine_image_templates.list())
        with pytest.raises(DecodeError):
            list(sdk(ComputeManagementClient, emu, SUB).galleries.list())
        locks = sdk(ManagementLockClient, emu, SUB).management_locks
        for _ in range(2):  # an entry without a mode alternates truncated JSON and non-JSON text
            with pytest.raises(DecodeError):
                list(locks.list_at_subscription_level())
        bodies = [raw(emu, "GET", f"{b.sub_id(SUB)}/providers/Microsoft.Authorization/locks").content for _ in range(2)]
        assert bodies[0].startswith(b'{"value":') and bodies[1].startswith(b"<html>")
        assert all(r.status == 200 for r in emu.requests)
        assert len(list(sdk(ResourceManagementClient, emu, SUB).resource_groups.list())) == 1  # other paths intact


def test_server_errors_are_seeded_and_retried_by_the_sdk() -> None:
    # Seed 21 happens to give 500s only (503 carries Retry-After: 1, which would cost the test seconds).
    faults = Faults(error_rate=0.35, seed=21)
    with Emulator(ESTATE, page_size=2, faults=faults) as emu:
        listed = list(sdk(ImageBuilderClient, emu, SUB).virtual_machine_image_templates.list())
        statuses = [r.status for r in emu.requests]
    assert len(listed) == len(TEMPLATES)
    assert statuses.count(200) == 4 and statuses.count(500) >= 1
    with Emulator(ESTATE, page_size=2, faults=faults) as again:
        list(sdk(ImageBuilderClient, again, SUB).virtual_machine_image_templates.list())
        assert [r.status for r in again.requests] == statuses  # same seed, same faults
    with Emulator(ESTATE, faults=Faults(error_rate=1.0, seed=1)) as always:
        replies = [raw(always, "GET", b.sub_id(SUB)) for _ in range(12)]
    assert {error_of(r) for r in replies} == {(500, "InternalServerError"), (503, "ServiceUnavailable")}
    assert all(r.headers["Retry-After"] == "1" for r in replies if r.status_code == 503)


def test_latency_is_added_and_requests_run_concurrently(monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrency is proven inside the server, not by the wall clock: every handler holds at the injected delay
    until all six requests are in flight at once, which a server answering one at a time never reaches."""
    clients = 6
    faults = Faults(latency_ms=200)
    together = threading.Barrier(clients, timeout=8)  # under raw()'s 10 s read timeout; a serial server breaks it
    counts = {"in_flight": 0, "most": 0}
    counts_lock = threading.Lock()
    original_delay = FaultInjector.delay

    def delay(self: FaultInjector) -> None:
        if self.faults is not faults:
            return original_delay(self)
        with counts_lock:
            counts["in_flight"] += 1
            counts["most"] = max(counts["most"], counts["in_flight"])
        with contextlib.suppress(threading.BrokenBarrierError):  # the assertion on counts["most"] says what went wrong
            together.wait()
        try:
            original_delay(self)
        finally:
            with counts_lock:
                counts["in_flight"] -= 1

    monkeypatch.setattr(FaultInjector, "delay", delay)
    with Emulator(ESTATE, faults=faults) as emu:
        results: list[tuple[int, float]] = []

        def get() -> None:
            started = time.monotonic()
            status = raw(emu, "GET", b.sub_id(SUB)).status_code
            results.append((status, time.monotonic() - started))

        threads = [threading.Thread(target=get) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [status for status, _ in results] == [200] * clients
    assert counts["most"] == clients, f"at most {counts['most']} of {clients} requests were in the server at once"
    assert all(elapsed >= 0.2 for _, elapsed in results)  # the 200 ms latency is added (a lower bound: load only adds)


def test_faults_are_validated() -> None:
    for bad in ({"burst": 0}, {"refill_per_s": 0}, {"error_rate": 1.5}, {"latency_ms": -1}):
        with pytest.raises(ValueError):
            Faults(**bad)


# --- counters, log, lifecycle ---------------------------------------------------------------------------------


def test_counters_log_and_reset(fresh: Emulator) -> None:
    raw(fresh, "GET", b.sub_id(SUB))
    raw(fresh, "GET", b.sub_id(SUB), query="")
    raw(fresh, "DELETE", TPL["id"])
    assert fresh.calls == 3 and fresh.throttled == 0
    assert [(r.method, r.status) for r in fresh.requests] == [("GET", 200), ("GET", 400), ("DELETE", 405)]
    assert fresh.requests[0] == RequestRecord("GET", b.sub_id(SUB), "api-version=2022-04-01", 200)
    fresh.reset_counters()
    assert (fresh.calls, fresh.requests, fresh.writes, fresh.throttled) == (0, [], [], 0)


def test_lifecycle_binds_loopback_and_cleans_up() -> None:
    before = {t.ident for t in threading.enumerate()}
    emu = Emulator(ESTATE)
    with pytest.raises(RuntimeError):
        _ = emu.endpoint
    emu.start()
    assert emu.endpoint.startswith("https://127.0.0.1:")
    bundle = Path(emu.ca_bundle)
    assert bundle.read_text().startswith("-----BEGIN CERTIFICATE-----")
    session = requests.Session()  # leaves a keep-alive connection open on purpose
    assert session.get(
        f"{emu.endpoint}{b.sub_id(SUB)}?api-version=1", headers={"Authorization": "Bearer t"}, verify=str(bundle)
    ).ok
    started = time.monotonic()
    emu.stop()
    session.close()
    assert time.monotonic() - started < 30  # far below the handlers' 60 s idle timeout it must not wait for
    emu.stop()  # idempotent
    assert not bundle.exists()
    # stop() joins every handler thread (they are not daemons): none may be left the moment it returns.
    assert [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()] == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emu.endpoint}/subscriptions", verify=False, timeout=2)


def test_invalid_estate_is_rejected() -> None:
    with pytest.raises(SnapshotError):
        Emulator({"format": "something-else"})
    with pytest.raises(ValueError):
        Emulator(ESTATE, page_size=0)


def test_serve_refuses_non_loopback_hosts(tmp_path: Path) -> None:
    estate = tmp_path / "estate.json"
    estate.write_text(json.dumps(ESTATE))
    with pytest.raises(UsageError):
        serve(str(estate), host="0.0.0.0")


def test_serve_prints_endpoint_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    estate = tmp_path / "estate.json"
    estate.write_text(json.dumps(ESTATE))
    code = "import sys; from auditor.emulator import serve; serve(sys.argv[1])"
    proc = subprocess.Popen([sys.executable, "-c", code, str(estate)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = read_lines(proc.stdout, 3)
        endpoint = lines[1].split()[-1]
        bundle = lines[2].split()[-1]
        r = requests.get(
            f"{endpoint}{b.sub_id(SUB)}?api-version=1", headers={"Authorization": "Bearer t"}, verify=bundle, timeout=10
        )
        assert r.json()["subscriptionId"] == SUB
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert not Path(bundle).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_default_azure_credential_with_a_stand_in_az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity import DefaultAzureCredential

    az = tmp_path / "az"
    az.write_text('#!/bin/sh\necho \'{"accessToken": "cli-token", "expires_on": 9999999999, "tokenType": "Bearer"}\'\n')
    az.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "AzureCliCredential")  # never the managed-identity probe
    with Emulator(ESTATE) as emu:
        credential = DefaultAzureCredential()
        client = ImageBuilderClient(credential, SUB, base_url=emu.endpoint, connection_verify=emu.ca_bundle)
        assert client.virtual_machine_image_templates.get("rg-aib", "tpl-2").name == "tpl-2"
        credential.close()


# --- management-group ancestry --------------------------------------------------------------------------------

MG_A = "/providers/Microsoft.Management/managementGroups/mg-a"
MG_B = "/providers/Microsoft.Management/managementGroups/mg-b"


def test_management_group_documents_are_served_only_above_their_subscriptions() -> None:
    """With `subscriptionAncestors`, an assignment at mg-a is above SUB (under mg-a) and not above SUB2 (under mg-b);
    so are deny assignments, PIM eligibilities and the role definitions assignable at a management group."""
    mg_role = b.role_definition(
        b.guid("mg-a-role"), "MG-A role", ["*/read"], custom=True, assignable_scopes=[MG_A], defined_at=MG_A
    )
    estate = b.snapshot(
        [SUB, SUB2],
        {
            "roleAssignments": [
                b.role_assignment(MG_A, READER, "p-mg-a", sub=SUB),
                b.role_assignment(MG_B, READER, "p-mg-b", sub=SUB2),
                b.role_assignment("/", READER, "p-root", sub=SUB),
                b.role_assignment(b.sub_id(SUB2), READER, "p-sub2", sub=SUB2),
            ],
            "roleDefinitions": [b.role_definition(READER, "Reader", ["*/read"], sub=SUB), mg_role],
            "denyAssignments": [b.deny_assignment(MG_A, "mg-a-deny", ["*/delete"], ["p-x"])],
            "roleEligibilityScheduleInstances": [b.eligibility(MG_B, CONTRIB, "p-mg-b-eligible", sub=SUB2)],
        },
        ancestors={SUB: [MG_A, "/"], SUB2: [MG_B.upper()]},
    )
    with Emulator(estate) as emu:
        one = sdk(AuthorizationManagementClient, emu, SUB)
        two = sdk(AuthorizationManagementClient, emu, SUB2)
        assert principals(one.role_assignments.list_for_subscription(filter="atScope()")) == ["p-mg-a", "p-root"]
        assert principals(two.role_assignments.list_for_subscription()) == ["p-mg-b", "p-sub2"]  # no root: not listed
        assert principals(two.role_assignments.list_for_scope(b.rg_id(SUB2, "rg"), filter="atScope()")) == ["p-mg-b", "p-sub2"]
        assert [d.deny_assignment_name for d in one.deny_assignments.list()] == ["mg-a-deny"]
        assert list(two.deny_assignments.list()) == []
        assert [i.principal_id for i in two.role_eligibility_schedule_instances.list_for_scope(b.sub_id(SUB2))] == [
            "p-mg-b-eligible"
        ]
        assert list(one.role_eligibility_schedule_instances.list_for_scope(b.sub_id(SUB))) == []
        assert sorted(d.role_name for d in one.role_definitions.list(b.sub_id(SUB))) == ["MG-A role", "Reader"]
        assert [d.role_name for d in two.role_definitions.list(b.sub_id(SUB2))] == ["Reader"]
        # At a management group: root above it, and below it only the subscriptions under it.
        assert principals(one.role_assignments.list_for_scope(MG_B)) == ["p-mg-b", "p-root", "p-sub2"]
