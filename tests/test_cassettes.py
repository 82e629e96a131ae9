"""Cassettes (fixtures/cassettes, written by `make cassettes`): replay, hygiene, freshness, and the scrubber.

Replays run the real collector against https://management.azure.com with a static token and no server at all:
pytest-recording answers from the cassette (record mode none) and `--block-network` stops anything else.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import vcr as vcrpy
import yaml
from vcr.cassette import Cassette
from vcr.request import Request
from vcr.serializers import yamlserializer

from auditor import ids
from auditor.audit import run_audit, select_checks
from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.emulator import Emulator
from auditor.findings import Status
from auditor.inventory import build_inventory
from auditor.snapshot import GRAPH_KINDS, Snapshot
from fixtures import builders as b
from fixtures.record_cassettes import (
    ARM_ENDPOINT,
    CASSETTE_DIR,
    GRAPH_ENDPOINT,
    RECORDINGS,
    LeakError,
    Recording,
    Scrubber,
    ScrubbingPersister,
    find_leaks,
    graph_for,
    is_fake_guid,
    make_vcr,
    record_estate,
    request_hook,
    response_hook,
)
from fixtures.record_cassettes import (
    vcr_config as shared_vcr_config,
)

# vcrpy is not thread-safe: creating a stubbed connection briefly puts urllib3's real connection classes back,
# process-wide, so a parallel read could slip past the cassette. Replays read one at a time, as recording does.
WORKERS = 1
CASSETTES = sorted(CASSETTE_DIR.glob("*.yaml"))
BY_NAME = {r.name: r for r in RECORDINGS}
SUBSCRIPTION_RE = re.compile(r"(?i)subscriptions(?:/|%2F)([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
RERECORD = "the cassette is stale: run `make cassettes` and commit fixtures/cassettes/"


@pytest.fixture(scope="module")
def vcr_cassette_dir() -> str:
    return str(CASSETTE_DIR)


@pytest.fixture
def vcr_config() -> dict[str, Any]:
    return {**shared_vcr_config(), "record_mode": "none"}


def outcomes(snap: Snapshot) -> tuple[dict[tuple[str, str], Status], list[tuple[str, ...]]]:
    """Statuses per (template, check), and every finding as a comparable row."""
    result = run_audit(build_inventory(snap), select_checks())
    statuses = {(ids.norm(t.template.id), cid): s for t in result.templates for cid, s in t.statuses.items()}
    rows = sorted(
        (ids.norm(f.template_id), f.check_id, ids.norm(f.resource_id), str(f.status), f.principal_id, f.role_name, f.detail)
        for f in result.findings
    )
    return statuses, rows


def unseen_documents(snap: Snapshot, estate: dict[str, Any]) -> set[str]:
    """IDs of estate ARM documents the collection did not bring back (Graph reads only the principals it asks about).

    Built-in roles are read once per run (at `/`), while an estate may hold each under every subscription's ID,
    as a subscription's own listing shows it: a role definition counts as seen when its GUID was read."""
    seen = {ids.norm(str(d.get("id"))) for docs in snap.resources.values() for d in docs}
    roles_seen = {ids.name_of(str(d.get("id"))).lower() for d in snap.resources.get("roleDefinitions", [])}
    return {
        ids.norm(str(d.get("id")))
        for kind, docs in estate["resources"].items()
        if kind not in GRAPH_KINDS
        for d in docs
        if not (kind == "roleDefinitions" and ids.name_of(str(d.get("id"))).lower() in roles_seen)
    } - seen


def replay_params() -> list[Any]:
    return [pytest.param(r, id=r.name, marks=pytest.mark.default_cassette(r.name)) for r in RECORDINGS]


# --------------------------------------------------------------------------------------------- replay


def test_every_recording_has_a_cassette() -> None:
    assert {p.stem for p in CASSETTES} >= set(BY_NAME), RERECORD


@pytest.mark.vcr
@pytest.mark.parametrize("rec", replay_params())
def test_replayed_collection_audits_like_the_estate(rec: Recording, vcr: Cassette) -> None:
    estate = rec.load_estate()
    graph = graph_for(estate, GRAPH_ENDPOINT)
    snap = collect(
        list(estate["subscriptions"]), StaticTokenCredential(), arm_endpoint=ARM_ENDPOINT, max_workers=WORKERS, graph=graph
    )
    assert snap.errors == [], RERECORD
    assert vcr.play_count == len(vcr.data) and vcr.all_played, RERECORD  # the collector read all it read then
    graph_calls = snap.meta.get("graph", {}).get("calls", 0)
    assert snap.meta["arm_endpoint"] == ARM_ENDPOINT and snap.meta["arm_calls"] + graph_calls == len(vcr.data)
    assert not snap.meta.get("graph", {}).get("notes"), RERECORD  # Graph, where recorded, answered everything

    replayed_statuses, replayed_rows = outcomes(snap)
    direct_statuses, direct_rows = outcomes(Snapshot.from_dict(estate))
    assert replayed_statuses == direct_statuses
    unseen = unseen_documents(snap, estate)
    if not unseen:  # the collector saw the whole estate: every finding, detail and principal is the same
        assert replayed_rows == direct_rows
    else:  # only what lives in subscriptions that were not audited may stay unseen (nobody lists those)
        audited = {s.lower() for s in estate["subscriptions"]}
        assert all(ids.subscription_of(doc_id) not in audited for doc_id in unseen), unseen
    assert len(replayed_statuses) == len(estate["resources"]["imageTemplates"]) * len(select_checks())


@pytest.mark.vcr
@pytest.mark.default_cassette("demo")
def test_replayed_demo_shows_what_the_demo_is_about(vcr: Cassette) -> None:
    """A few outcomes the demo estate exists for, read from the replayed collection (not from the estate)."""
    from fixtures import demo

    graph = graph_for(BY_NAME["demo"].load_estate(), GRAPH_ENDPOINT)
    snap = collect([demo.SUB, demo.SUB2], StaticTokenCredential(), arm_endpoint=ARM_ENDPOINT, max_workers=WORKERS, graph=graph)
    statuses, rows = outcomes(snap)
    tid = ids.norm(b.template_id(demo.SUB, demo.RG_DEV, "ubuntu2404-public-weu"))
    assert statuses[(tid, "AIB-GAL-004")] == Status.FAIL
    reference = ids.norm(b.template_id(demo.SUB, demo.RG_PROD_WEU, "ubuntu2404-prod-weu"))
    assert statuses[(reference, "AIB-LOCK-001")] == Status.PASS
    dev = ids.norm(b.template_id(demo.SUB, demo.RG_DEV, "win2022-dev-weu"))
    deleted = [r for r in rows if r[0] == dev and r[1] == "AIB-LP-001" and r[4] == demo.DELETED]
    assert deleted and all(r[3] == "FAIL" for r in deleted)
    # Microsoft Graph, replayed from graph.microsoft.com: Erik is gone from the directory although ARM says User.
    erik = [r for r in rows if r[0] == dev and r[1] == "AIB-LP-001" and r[4] == demo.ERIK]
    assert [r[3] for r in erik] == ["FAIL"] and "Microsoft Graph does not know it" in erik[0][6]
    assert any("Bob Berg <bob@contoso.com>" in r[6] for r in rows if r[4] == demo.BOB)
    graph_requests = [r for r in vcr.requests if r.host == "graph.microsoft.com"]
    assert [r.method for r in graph_requests][:1] == ["POST"] and len(graph_requests) == 4  # getByIds, 3 groups
    groups = {demo.PLATFORM_OWNERS, demo.IMAGE_ENGINEERS, demo.IMAGE_CONTRACTORS}
    assert {r["id"] for r in snap.resources["groupMembers"]} == groups


@pytest.mark.vcr
@pytest.mark.default_cassette("edge-paging")
def test_paged_cassette_follows_next_links_to_management_azure_com(vcr: Cassette) -> None:
    rec = BY_NAME["edge-paging"]
    snap = collect(
        list(rec.load_estate()["subscriptions"]), StaticTokenCredential(), arm_endpoint=ARM_ENDPOINT, max_workers=WORKERS
    )
    paged = [r for r in vcr.requests if any(k == "$skiptoken" for k, _ in r.query)]
    assert len(paged) >= 10  # every list spread over several pages at page size 2
    assert all(r.host == "management.azure.com" and r.port == 443 and r.scheme == "https" for r in vcr.requests)
    assert len(snap.resources["imageTemplates"]) == len(rec.load_estate()["resources"]["imageTemplates"])


# --------------------------------------------------------------------------------------------- hygiene


def _allowed_subscriptions(cassette: Path) -> set[str]:
    rec = BY_NAME.get(cassette.stem)
    if rec is None:  # a live recording: only scrubbed (fake) subscription IDs may appear
        return set()
    return {m.group(1).lower() for m in SUBSCRIPTION_RE.finditer(json.dumps(rec.load_estate()))}


@pytest.mark.parametrize("cassette", CASSETTES, ids=[p.stem for p in CASSETTES])
def test_cassettes_hold_no_secret_and_no_real_subscription(cassette: Path) -> None:
    text = cassette.read_text(encoding="utf-8")
    assert "eyJ" not in text
    assert find_leaks(text) == []
    data = yaml.safe_load(text)
    for interaction in data["interactions"]:
        request = interaction["request"]
        assert not {h.lower() for h in request["headers"]} & {"authorization", "cookie"}
        uri = request["uri"]
        assert uri.startswith(("https://management.azure.com/", "https://graph.microsoft.com/v1.0/")), uri
        # Read-only: GET, and Graph's getByIds (a read by POST).
        assert request["method"] == "GET" or (request["method"], uri) == (
            "POST",
            "https://graph.microsoft.com/v1.0/directoryObjects/getByIds",
        )
    assert "127.0.0.1" not in text and "localhost" not in text
    allowed = _allowed_subscriptions(cassette)
    subs = {m.group(1).lower() for m in SUBSCRIPTION_RE.finditer(text)}
    assert subs, "a cassette without any subscription is not a recording of the collector"
    assert {s for s in subs if s not in allowed and not is_fake_guid(s)} == set()


# --------------------------------------------------------------------------------------------- freshness


@pytest.mark.parametrize("rec", RECORDINGS, ids=[r.name for r in RECORDINGS])
def test_recording_again_gives_the_committed_cassette(rec: Recording, tmp_path: Path) -> None:
    """`make cassettes` is deterministic, and the committed cassettes are what it records today."""
    done = record_estate(rec, tmp_path)
    assert done.path == tmp_path / f"{rec.name}.yaml"
    assert done.path.read_text(encoding="utf-8") == rec.cassette.read_text(encoding="utf-8"), RERECORD


# --------------------------------------------------------------------------------------------- the scrubber

REAL_SUB = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
REAL_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
REAL_PRINCIPAL = "9a1b2c3d-1111-4a2b-8c3d-4e5f6a7b8c9d"
REAL_CLIENT = "0c1d2e3f-2222-4b3c-9d4e-5f6a7b8c9d0e"
CALLER_OID = "11112222-3333-4444-9555-666677778888"
DENY_PRINCIPAL = "abcdefab-cdef-4abc-8def-abcdefabcdef"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"  # a built-in role: public, must stay
JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJvaWQiOiIxMTEx.c2lnbmF0dXJl"
EVERYONE = "00000000-0000-0000-0000-000000000000"
ROLE_DEFINITIONS = "providers/Microsoft.Authorization/roleDefinitions"


def _response(status: int, body: dict[str, Any], headers: dict[str, list[str]] | None = None) -> dict[str, Any]:
    raw = json.dumps(body).encode("utf-8")
    return {
        "status": {"code": status, "message": "x"},
        "headers": {"Content-Type": ["application/json"], "Content-Length": [str(len(raw))], **(headers or {})},
        "body": {"string": raw},
    }


def synthetic_live_interactions() -> tuple[list[Request], list[dict[str, Any]]]:
    """What a live recording looks like: real-looking IDs in URLs, bodies, headers and messages, and a token."""
    auth = {"Authorization": f"Bearer {JWT}", "x-ms-client-request-id": "abc", "Accept": "application/json"}
    sub_url = f"https://management.azure.com/subscriptions/{REAL_SUB.upper()}?api-version=2022-12-01"
    ra_url = f"https://management.azure.com/%2Fsubscriptions%2F{REAL_SUB}/providers/Microsoft.Authorization/roleAssignments"
    uai_id = f"/subscriptions/{REAL_SUB}/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1"
    requests = [
        Request("GET", sub_url, None, dict(auth)),
        Request("GET", ra_url + "?api-version=2022-04-01&$filter=atScope%28%29", None, dict(auth)),
        Request("GET", f"https://management.azure.com{uai_id}?api-version=2024-11-30", None, dict(auth)),
        Request(
            "GET", f"https://management.azure.com/subscriptions/{REAL_SUB}/providers/Microsoft.Authorization/locks", None, {}
        ),
    ]
    responses = [
        _response(
            200,
            {
                "id": f"/subscriptions/{REAL_SUB}",
                "subscriptionId": REAL_SUB,
                "tenantId": REAL_TENANT,
                "tags": {"owner": "carol@contoso.com"},
            },
        ),
        _response(
            200,
            {
                "value": [
                    {
                        "id": f"/subscriptions/{REAL_SUB}/providers/Microsoft.Authorization/roleAssignments/r1",
                        "properties": {
                            "roleDefinitionId": f"/subscriptions/{REAL_SUB}/{ROLE_DEFINITIONS}/{CONTRIBUTOR}",
                            "principalId": REAL_PRINCIPAL,
                            "principalType": "User",
                            "createdBy": "alice@contoso.com",
                        },
                    },
                    {
                        "id": f"/subscriptions/{REAL_SUB}/providers/Microsoft.Authorization/roleEligibilityScheduleInstances/e1",
                        "properties": {
                            "principalId": REAL_PRINCIPAL,
                            "expandedProperties": {
                                "principal": {
                                    "id": REAL_PRINCIPAL,
                                    "displayName": "Alice Example",
                                    "email": "alice.x@contoso.com",
                                },
                                "roleDefinition": {"id": CONTRIBUTOR, "displayName": "Contributor"},
                            },
                        },
                    },
                    {
                        "id": "/providers/Microsoft.Authorization/denyAssignments/d1",
                        "properties": {"principals": [{"id": EVERYONE}], "excludePrincipals": [{"id": DENY_PRINCIPAL}]},
                    },
                ],
                "nextLink": f"https://management.azure.com/subscriptions/{REAL_SUB}/roleAssignments?$skiptoken={JWT}",
            },
        ),
        _response(
            200,
            {
                "id": uai_id,
                "properties": {"principalId": REAL_PRINCIPAL.upper(), "clientId": REAL_CLIENT, "tenantId": REAL_TENANT},
            },
            {"Set-Cookie": ["session=secret"], "x-ms-request-id": ["123"]},
        ),
        _response(
            403,
            {
                "error": {
                    "code": "AuthorizationFailed",
                    "message": f"The client 'bob@contoso.com' with object id '{CALLER_OID}' does not have authorization "
                    f"to perform action 'Microsoft.Authorization/locks/read' over scope '/subscriptions/{REAL_SUB}'.",
                }
            },
            {"WWW-Authenticate": [f'Bearer authorization_uri="https://login.microsoftonline.com/{REAL_TENANT}"']},
        ),
    ]
    return requests, responses


def test_the_scrubber_replaces_every_identifying_value_with_a_stable_fake(tmp_path: Path) -> None:
    requests, responses = synthetic_live_interactions()
    path = tmp_path / "live.yaml"
    ScrubbingPersister(Scrubber(scrub_ids=True)).save_cassette(
        path, {"requests": requests, "responses": responses}, yamlserializer
    )
    text = path.read_text(encoding="utf-8")

    people = ("alice@contoso.com", "bob@", "Alice Example", "alice.x@", "carol@")
    for secret in (REAL_SUB, REAL_TENANT, REAL_PRINCIPAL, REAL_CLIENT, CALLER_OID, DENY_PRINCIPAL, *people):
        assert secret.lower() not in text.lower(), secret
    assert "eyJ" not in text and "session=secret" not in text and find_leaks(text) == []
    assert CONTRIBUTOR in text and EVERYONE in text  # public GUIDs stay

    interactions = yaml.safe_load(text)["interactions"]
    fake_sub = "00000001-0000-4000-8000-000000000001"
    # The same real ID gets the same fake everywhere: URLs (plain, upper case, percent-encoded) and bodies.
    assert interactions[0]["request"]["uri"] == f"https://management.azure.com/subscriptions/{fake_sub}?api-version=2022-12-01"
    assert f"%2Fsubscriptions%2F{fake_sub}/" in interactions[1]["request"]["uri"]
    first = json.loads(interactions[0]["response"]["body"]["string"])
    assert first["subscriptionId"] == fake_sub and is_fake_guid(first["tenantId"])
    listed = json.loads(interactions[1]["response"]["body"]["string"])["value"]
    uai = json.loads(interactions[2]["response"]["body"]["string"])
    assert listed[0]["properties"]["principalId"] == uai["properties"]["principalId"]  # one principal, one fake
    assert is_fake_guid(uai["properties"]["principalId"]) and is_fake_guid(uai["properties"]["clientId"])
    assert uai["properties"]["tenantId"] == first["tenantId"]
    assert listed[0]["properties"]["createdBy"].endswith("@example.invalid")
    expanded = listed[1]["properties"]["expandedProperties"]
    assert expanded["principal"]["id"] == uai["properties"]["principalId"]
    assert expanded["roleDefinition"] == {"id": CONTRIBUTOR, "displayName": "Contributor"}  # role names stay
    assert is_fake_guid(listed[2]["properties"]["excludePrincipals"][0]["id"])
    assert listed[2]["properties"]["principals"][0]["id"] == EVERYONE
    assert first["tags"]["owner"].endswith("@example.invalid")
    message = json.loads(interactions[3]["response"]["body"]["string"])["error"]["message"]
    assert "scrubbed-user-" in message and "object id '00000003-" in message
    assert first["tenantId"] in interactions[3]["response"]["headers"]["WWW-Authenticate"][0]
    # Headers: the token and per-run noise are gone; Content-Length follows the rewritten body.
    for interaction in interactions:
        assert {h.lower() for h in interaction["request"]["headers"]} <= {"accept"}
        headers = interaction["response"]["headers"]
        assert not {h.lower() for h in headers} & {"set-cookie", "x-ms-request-id"}
        assert headers["Content-Length"] == [str(len(interaction["response"]["body"]["string"].encode("utf-8")))]


def test_scrubbing_is_stable_and_idempotent(tmp_path: Path) -> None:
    """Scrubbing twice (or a cassette scrubbed before) gives the same file; a fresh scrubber gives the same fakes."""
    outputs = []
    for n in range(2):
        requests, responses = synthetic_live_interactions()
        path = tmp_path / f"run{n}.yaml"
        ScrubbingPersister(Scrubber()).save_cassette(path, {"requests": requests, "responses": responses}, yamlserializer)
        outputs.append(path.read_text(encoding="utf-8"))
    assert outputs[0] == outputs[1]
    scrubber = Scrubber()
    assert scrubber.scrub_text(outputs[0]) == outputs[0]  # fakes are never re-mapped


def test_emulator_recordings_keep_fixture_ids_but_lose_tokens() -> None:
    scrubber = Scrubber(scrub_ids=False)
    requests, responses = synthetic_live_interactions()
    scrubber.scrub_interactions(requests, responses)
    assert REAL_SUB in requests[1].uri and "Authorization" not in requests[0].headers
    assert JWT not in responses[1]["body"]["string"].decode() and "<redacted>" in responses[1]["body"]["string"].decode()


def test_a_cassette_that_would_leak_is_refused(tmp_path: Path) -> None:
    assert find_leaks("    Authorization:\n    - Bearer x\n") == ["an Authorization header"]
    assert find_leaks("token: eyJhbGciOi") == ["a JWT-like value (eyJ...)"]

    class Leaky(Scrubber):
        def scrub_text(self, text: str) -> str:  # a scrubber that forgot its job
            return text

    requests, responses = synthetic_live_interactions()
    requests[0].headers = {"Accept": "x"}
    path = tmp_path / "leak.yaml"
    with pytest.raises(LeakError, match="JWT"):
        ScrubbingPersister(Leaky()).save_cassette(path, {"requests": requests, "responses": responses}, yamlserializer)
    assert not path.exists()


def test_hooks_point_the_emulator_at_arm_and_never_record_token_requests() -> None:
    origin = "https://127.0.0.1:40123"
    hook = request_hook(origin)
    kept = hook(Request("GET", f"{origin}/subscriptions/x?api-version=1", None, {}))
    assert kept is not None and kept.uri == "https://management.azure.com/subscriptions/x?api-version=1"
    assert request_hook(None)(Request("POST", "https://login.microsoftonline.com/t/oauth2/v2.0/token", b"secret", {})) is None
    assert request_hook(None)(Request("GET", "http://169.254.169.254/metadata/identity/oauth2/token", None, {})) is None
    body = json.dumps({"value": [], "nextLink": f"{origin}/subscriptions/x?$skiptoken=2"}).encode()
    response = response_hook(origin)(
        {"status": {"code": 200}, "headers": {"Content-Length": [str(len(body))]}, "body": {"string": body}}
    )
    new = response["body"]["string"]
    assert json.loads(new)["nextLink"] == "https://management.azure.com/subscriptions/x?$skiptoken=2"
    assert response["headers"]["Content-Length"] == [str(len(new))]


def test_a_scrubbed_recording_still_replays_and_audits_the_same(tmp_path: Path) -> None:
    """The live path's scrubbing, end to end on the demo: every subscription, tenant and principal ID is replaced,
    and the scrubbed cassette still replays into the same audit (under the fake IDs)."""
    estate = BY_NAME["demo"].load_estate()
    scrubber = Scrubber(scrub_ids=True)
    path = tmp_path / "scrubbed.yaml"
    with Emulator(estate) as emu, make_vcr(emu.endpoint, scrubber).use_cassette(str(path)):
        collect(
            estate["subscriptions"],
            StaticTokenCredential(),
            arm_endpoint=emu.endpoint,
            connection_verify=emu.ca_bundle,
            max_workers=1,
            graph=graph_for(estate, emu.endpoint),
        )
    text = path.read_text(encoding="utf-8")
    principals = {a["properties"]["principalId"] for a in estate["resources"]["roleAssignments"]}
    people = [v for o in estate["resources"]["directoryObjects"] if o["@odata.type"].endswith("user") for v in (
        o["id"], o["displayName"], o["userPrincipalName"])]
    assert "graph.microsoft.com/v1.0/directoryObjects/getByIds" in text and people
    for real in [*estate["subscriptions"], *principals, *people]:
        assert real.lower() not in text.lower(), real
    subs = {m.group(1) for m in SUBSCRIPTION_RE.finditer(text)}
    assert subs and all(is_fake_guid(s) for s in subs)

    fake_subs = [scrubber.mapping[s.lower()] for s in estate["subscriptions"]]
    with vcrpy.VCR(record_mode="none", **shared_vcr_config()).use_cassette(str(path)) as cassette:
        graph = graph_for(estate, GRAPH_ENDPOINT)
        snap = collect(fake_subs, StaticTokenCredential(), arm_endpoint=ARM_ENDPOINT, max_workers=WORKERS, graph=graph)
    assert snap.errors == [] and cassette.all_played
    replayed_statuses, replayed_rows = outcomes(snap)
    direct_statuses, direct_rows = outcomes(Snapshot.from_dict(estate))
    assert replayed_statuses == {(scrubber.scrub_text(t), c): st for (t, c), st in direct_statuses.items()}
    assert replayed_rows == sorted(tuple(scrubber.scrub_text(v) for v in row) for row in direct_rows)
