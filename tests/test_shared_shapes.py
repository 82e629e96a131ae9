"""Real Azure shapes parse into the inventory.

Reads ../shared/azure-recordings (Azure CLI vcrpy cassettes, an Azure PowerShell recording, an azure-sdk-assets
recording, extracted bodies) and ../shared/azure-reference (REST spec examples) in place: nothing from there is
copied into the project. Every ARM document of a kind the snapshot holds is put into a snapshot and must come out
of build_inventory with its key fields filled, so that a change to the parser that drops a real shape fails here.

Cassettes record the same resource several times (PUT response while Creating, GET after Succeeded, during a
run...). A snapshot keeps one document per ID, so each source's distinct versions are spread over "layers": layer
n holds the n-th distinct version of every ID (or its last one, if it has fewer), and each layer is one snapshot.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from auditor import ids
from auditor.inventory import Inventory, build_inventory
from auditor.snapshot import KINDS, Snapshot
from fixtures import roles

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RECORDINGS = SHARED / "azure-recordings"
REFERENCE = SHARED / "azure-reference"
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# ARM resource type (lower case) -> snapshot kind
KIND_OF_TYPE: dict[str, str] = {
    "microsoft.virtualmachineimages/imagetemplates": "imageTemplates",
    "microsoft.virtualmachineimages/imagetemplates/triggers": "triggers",
    "microsoft.authorization/locks": "locks",
    "microsoft.resources/resourcegroups": "resourceGroups",
    "microsoft.resources/subscriptions/resourcegroups": "resourceGroups",
    "microsoft.authorization/roleassignments": "roleAssignments",
    "microsoft.authorization/roledefinitions": "roleDefinitions",
    "microsoft.authorization/denyassignments": "denyAssignments",
    "microsoft.authorization/roleeligibilityscheduleinstances": "roleEligibilityScheduleInstances",
    "microsoft.managedidentity/userassignedidentities": "userAssignedIdentities",
    "microsoft.compute/galleries": "galleries",
    "microsoft.compute/galleries/images": "galleryImages",
}
PRINCIPAL_TYPES = {"User", "Group", "ServicePrincipal", "ForeignGroup", "Device", "Unknown"}


def arm_type_of_id(resource_id: str) -> str:
    """`.../providers/Microsoft.Compute/galleries/g/Images/i` -> `microsoft.compute/galleries/images`."""
    parts = [p for p in resource_id.strip("/").split("/") if p]
    low = [p.lower() for p in parts]
    if "providers" not in low:
        if len(parts) == 4 and low[0] == "subscriptions" and low[2] == "resourcegroups":
            return "microsoft.resources/resourcegroups"
        return ""
    i = len(low) - 1 - low[::-1].index("providers")
    rest = low[i + 1 :]
    if not rest:
        return ""
    return "/".join([rest[0], *rest[1::2]])


def kind_of(doc: dict[str, Any]) -> str | None:
    """The snapshot kind of an ARM document: by its `type`, else by the shape of its ID (some examples lack `type`)."""
    rid = doc.get("id")
    if not isinstance(rid, str) or not rid:
        return None
    t = doc.get("type")
    t = t.lower() if isinstance(t, str) and "/" in t else arm_type_of_id(rid)
    return KIND_OF_TYPE.get(t)


def arm_docs(body: Any) -> Iterator[dict[str, Any]]:
    """ARM documents in a response body: a single resource or a `{"value": [...]}` page."""
    if isinstance(body, dict):
        if isinstance(body.get("value"), list):
            for item in body["value"]:
                yield from arm_docs(item)
        elif kind_of(body):
            yield body


def json_or_none(text: Any) -> Any:
    if isinstance(text, dict | list):
        return text
    if not isinstance(text, str | bytes) or not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ sources


def cassette_bodies(path: Path) -> Iterator[Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=LOADER) or {}
    for it in data.get("interactions", []) or []:
        resp = it.get("response") or {}
        if 200 <= int((resp.get("status") or {}).get("code") or 0) < 300:
            yield json_or_none((resp.get("body") or {}).get("string"))


def powershell_bodies(path: Path) -> Iterator[Any]:
    for entry in json.loads(path.read_text(encoding="utf-8")).values():
        resp = entry.get("Response") or {}
        if 200 <= int(resp.get("StatusCode") or 0) < 300:
            yield json_or_none(resp.get("Content"))


def sdk_assets_bodies(path: Path) -> Iterator[Any]:
    for entry in json.loads(path.read_text(encoding="utf-8")).get("Entries", []):
        if 200 <= int(entry.get("StatusCode") or 0) < 300:
            yield json_or_none(entry.get("ResponseBody"))


def reference_bodies(path: Path) -> Iterator[Any]:
    """REST spec examples: `responses.<2xx>.body`. Files without `responses` (docs' role JSON) are not ARM bodies."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for code, resp in (data.get("responses") or {}).items():
        if str(code).startswith("2") and isinstance(resp, dict):
            yield resp.get("body")


def sources() -> Iterator[tuple[str, Iterator[Any]]]:
    for p in sorted(RECORDINGS.glob("azure-cli/**/*.yaml")):
        yield str(p.relative_to(SHARED)), cassette_bodies(p)
    for p in sorted(RECORDINGS.glob("azure-powershell/*.json")):
        yield str(p.relative_to(SHARED)), powershell_bodies(p)
    for p in sorted(RECORDINGS.glob("azure-sdk-assets/*.json")):
        yield str(p.relative_to(SHARED)), sdk_assets_bodies(p)
    for p in sorted(RECORDINGS.glob("bodies/*.json")):
        yield str(p.relative_to(SHARED)), iter([json.loads(p.read_text(encoding="utf-8"))])
    for p in sorted(REFERENCE.glob("*/*.json")):
        yield str(p.relative_to(SHARED)), reference_bodies(p)


# ------------------------------------------------------------------------------------------ layers


@dataclass
class Layer:
    source: str
    docs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    inventory: Inventory | None = None


def layers_of(source: str, bodies: Iterator[Any]) -> list[Layer]:
    distinct: dict[str, dict[str, Any]] = {}  # canonical JSON -> doc, first appearance first
    for body in bodies:
        for doc in arm_docs(body):
            distinct.setdefault(json.dumps(doc, sort_keys=True), doc)
    versions: dict[str, list[dict[str, Any]]] = defaultdict(list)  # norm(id) -> its distinct versions, in order
    for doc in distinct.values():
        versions[ids.norm(doc["id"])].append(doc)
    depth = max((len(v) for v in versions.values()), default=0)
    layers = [Layer(source) for _ in range(depth)]
    for docs in versions.values():
        for n, layer in enumerate(layers):
            # A resource with fewer versions keeps its last one, so each layer is a whole estate (joins work).
            doc = docs[min(n, len(docs) - 1)]
            layer.docs[kind_of(doc) or ""].append(doc)
    for layer in layers:
        # REST examples use placeholders ("{subscription-id}"); a snapshot names real subscription GUIDs only.
        found = {s for d in (x for docs in layer.docs.values() for x in docs) if (s := ids.subscription_of(d["id"]))}
        subs = sorted(s for s in found if ids.is_guid(s)) or ["00000000-0000-0000-0000-000000000000"]
        snap = Snapshot(subscriptions=subs)
        for kind in KINDS:
            snap.add(kind, layer.docs[kind])
        layer.inventory = build_inventory(Snapshot.from_dict(snap.to_dict(), source=source))
    return layers


@pytest.fixture(scope="module")
def layers() -> list[Layer]:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the real Azure shapes are not available here")
    out: list[Layer] = []
    for source, bodies in sources():
        out.extend(layers_of(source, bodies))
    return out


def docs_of(layers: list[Layer], kind: str) -> list[tuple[Layer, dict[str, Any]]]:
    return [(layer, d) for layer in layers for d in layer.docs[kind]]


def inv(layer: Layer) -> Inventory:
    assert layer.inventory is not None
    return layer.inventory


# ------------------------------------------------------------------------------------------ every document parses


def test_the_real_shapes_cover_every_kind_we_audit(layers: list[Layer]) -> None:
    counts = Counter({k: len(docs_of(layers, k)) for k in KINDS})
    # Deny assignments and PIM eligibilities are not in any public recording; everything else must be.
    for kind in KINDS:
        if kind not in ("denyAssignments", "roleEligibilityScheduleInstances"):
            assert counts[kind] > 0, f"no real {kind} found under {SHARED}"
    assert counts["imageTemplates"] >= 50 and counts["locks"] >= 100 and counts["roleAssignments"] >= 100


def test_templates_parse_with_their_key_fields(layers: list[Layer]) -> None:
    for layer in layers:
        raw = {ids.norm(d["id"]): d for d in layer.docs["imageTemplates"]}
        parsed = inv(layer).templates
        assert len(parsed) == len(raw), layer.source
        for t in parsed:
            doc = raw[t.key]
            assert t.id and t.name and t.location and t.subscription_id and t.resource_group, (layer.source, t.id)
            assert t.name == doc["name"]
            ident = doc.get("identity") or {}
            assert t.identity_type == ident.get("type")
            if ident.get("type") == "UserAssigned":
                assert len(t.identity_ids) == 1, (layer.source, t.id)
                if t.provisioning_state == "Succeeded":  # a PUT response (Creating) may carry `{}` for the identity
                    assert all(p for p in t.identity_principals.values()), (layer.source, t.id)
            assert len(t.distributions) == len(doc["properties"].get("distribute") or [])
            for d in t.distributions:
                assert d.type in ("ManagedImage", "SharedImage", "VHD") and d.run_output_name, (layer.source, t.id)
                if d.type == "SharedImage":
                    assert d.gallery_image_id and d.gallery_id and d.target_regions, (layer.source, t.id)
            customize = [c for c in doc["properties"].get("customize") or [] if c.get("scriptUri") or c.get("sourceUri")]
            assert len([s for s in t.scripts if s.stage == "customize"]) == len(customize)
            exact = doc["properties"].get("exactStagingResourceGroup") or doc["properties"].get("stagingResourceGroup")
            if exact:
                assert t.staging_rg_id == "/" + exact.lstrip("/"), (layer.source, t.id)
            else:
                assert t.staging_rg_id is None


def test_triggers_parse_and_join_their_template(layers: list[Layer]) -> None:
    found = 0
    for layer in layers:
        triggers = [tr for trs in inv(layer).triggers.values() for tr in trs]
        assert len(triggers) == len(layer.docs["triggers"]), layer.source
        for parent, trs in inv(layer).triggers.items():
            assert ids.scope_level(parent) == "resource" and parent.split("/")[-2] == "imagetemplates"
            for tr in trs:
                found += 1
                assert tr.kind == "SourceImage" and tr.provisioning_state and tr.name, layer.source
                if tr.provisioning_state == "Succeeded":  # while Creating, ARM returns no status yet
                    assert tr.status_code and tr.status_message is not None, layer.source
    assert found >= 3


def test_locks_parse_with_level_and_scope(layers: list[Layer]) -> None:
    levels: Counter[str] = Counter()
    scope_levels: Counter[str] = Counter()
    for layer in layers:
        locks = inv(layer).locks
        assert len(locks) == len(layer.docs["locks"]), layer.source
        for lk in locks:
            assert lk.level in ("CanNotDelete", "ReadOnly"), (layer.source, lk.id)
            assert lk.name and lk.scope and ids.norm(lk.id).startswith(lk.scope + "/providers/microsoft.authorization/locks/")
            levels[lk.level] += 1
            scope_levels[ids.scope_level(lk.scope)] += 1
    assert levels["CanNotDelete"] and levels["ReadOnly"]
    assert scope_levels["subscription"] and scope_levels["resourceGroup"] and scope_levels["resource"]


def test_role_assignments_parse_with_principal_and_role(layers: list[Layer]) -> None:
    raw_types: Counter[str] = Counter()
    parsed_types: Counter[str] = Counter()
    for layer in layers:
        assignments = inv(layer).role_assignments
        assert len(assignments) == len(layer.docs["roleAssignments"]), layer.source
        raw_types.update(str(d["properties"].get("principalType")) for d in layer.docs["roleAssignments"])
        for ra in assignments:
            assert ids.is_guid(ra.principal_id) and ids.is_guid(ra.role_guid), (layer.source, ra.id)
            assert ra.scope and ra.principal_type in PRINCIPAL_TYPES and not ra.eligible
            assert ra.role_guid == ra.role_definition_id.rsplit("/", 1)[-1].lower()
            parsed_types[ra.principal_type] += 1
    # principalType comes through as ARM spells it: the LP checks key on "User", "Group", "Unknown", ...
    assert parsed_types == raw_types
    assert {"User", "ServicePrincipal"} <= set(parsed_types)


def test_role_assignments_at_root_management_group_and_with_conditions(layers: list[Layer]) -> None:
    levels: Counter[str] = Counter()
    conditions = 0
    for layer in layers:
        for ra in inv(layer).role_assignments:
            levels[ids.scope_level(ra.scope)] += 1
            conditions += bool(ra.condition)
    # Real listings return assignments inherited from `/` and management groups: the parser must place them.
    assert levels["root"] and levels["managementGroup"] and levels["subscription"] and levels["resourceGroup"]
    assert conditions >= 1  # ABAC conditions survive parsing (the LP evidence says the grant is conditional)


def test_role_definitions_parse_with_permissions(layers: list[Layer]) -> None:
    kinds: Counter[str] = Counter()
    with_actions = total = 0
    for layer in layers:
        guids = {str(d.get("name") or ids.name_of(d["id"])).lower() for d in layer.docs["roleDefinitions"]}
        defs = inv(layer).role_definitions
        assert set(defs) == guids, layer.source
        for rd in defs.values():
            assert rd.role_name and rd.role_type and rd.permissions, (layer.source, rd.id)
            raw = layer_role(layer, rd.guid)["properties"]["permissions"]
            assert [p.actions for p in rd.permissions] == [tuple(x.get("actions") or []) for x in raw]
            assert [p.not_actions for p in rd.permissions] == [tuple(x.get("notActions") or []) for x in raw]
            assert [p.data_actions for p in rd.permissions] == [tuple(x.get("dataActions") or []) for x in raw]
            kinds[rd.role_type] += 1
            total += 1
            # Some built-in service roles really have no actions at all (e.g. "Azure Center for SAP solutions
            # Service role for management"): they must parse as granting nothing, not be dropped.
            with_actions += any(p.actions or p.data_actions for p in rd.permissions)
    assert kinds["BuiltInRole"] and kinds["CustomRole"]
    assert with_actions > 0.9 * total
    owner = [rd for layer in layers for rd in inv(layer).role_definitions.values() if rd.role_name == "Owner"]
    assert owner and all(rd.permissions[0].actions == ("*",) for rd in owner)


def layer_role(layer: Layer, guid: str) -> dict[str, Any]:
    return next(d for d in layer.docs["roleDefinitions"] if str(d.get("name") or ids.name_of(d["id"])).lower() == guid)


def test_identities_galleries_and_images_parse(layers: list[Layer]) -> None:
    for layer in layers:
        i = inv(layer)
        assert len(i.identities) == len(layer.docs["userAssignedIdentities"]), layer.source
        assert len(i.galleries) == len(layer.docs["galleries"]), layer.source
        assert len(i.gallery_images) == len(layer.docs["galleryImages"]), layer.source
        assert len(i.resource_groups) == len(layer.docs["resourceGroups"]), layer.source
        for ident in i.identities.values():
            assert ident.name and ids.is_guid(ident.principal_id) and ident.client_id, (layer.source, ident.id)
        for g in i.galleries.values():
            assert g.name and g.location and g.sharing_permissions in ("Private", "Groups", "Community"), layer.source
        for gi in i.gallery_images.values():
            assert gi.name and gi.hyper_v_generation in ("V1", "V2"), (layer.source, gi.id)
        for rg in i.resource_groups.values():
            assert rg.name and rg.location, layer.source


# ------------------------------------------------------------------------------------------ real quirks


def test_mixed_case_resourcegroups_ids_join(layers: list[Layer]) -> None:
    """ARM returns `/resourcegroups/` in template and identity IDs but `resourceGroups` elsewhere."""
    lower = [(layer, t) for layer in layers for t in inv(layer).templates if "/resourcegroups/" in t.id]
    assert lower, "no template ID with a lower-case 'resourcegroups' segment"
    for layer, t in lower:
        assert t.resource_group == t.id.split("/")[4]
        for iid in t.identity_ids:
            # Look the identity up the way another document spells it: the join must not depend on case.
            respelled = re.sub("/resourcegroups/", "/resourceGroups/", iid, flags=re.IGNORECASE).upper()
            expected = inv(layer).principal_of_identity(iid, t)
            assert inv(layer).principal_of_identity(respelled, t) == expected
            if t.provisioning_state == "Succeeded":
                assert expected and ids.is_guid(expected), (layer.source, t.id)
    locks = [(layer, lk) for layer in layers for lk in inv(layer).locks if "/resourcegroups/" in lk.id]
    assert locks, "no lock ID with a lower-case 'resourcegroups' segment"
    for layer, lk in locks:
        below = re.sub("/resourcegroups/", "/ResourceGroups/", lk.id.split("/providers/Microsoft.Authorization")[0])
        child = below + "/providers/Microsoft.VirtualMachineImages/imageTemplates/t1"
        if ids.scope_level(lk.scope) in ("resourceGroup", "subscription"):
            assert lk in inv(layer).locks_applying_to(child), (layer.source, lk.id)


def test_staging_resource_group_without_leading_slash(layers: list[Layer]) -> None:
    found = 0
    for layer in layers:
        for t in inv(layer).templates:
            p = t.raw["properties"]
            given = p.get("stagingResourceGroup") or ""
            if given and not given.startswith("/"):
                found += 1
                assert t.staging_rg_user_supplied
                assert t.staging_rg_id and t.staging_rg_id.startswith("/subscriptions/")
                assert ids.scope_level(t.staging_rg_id) == "resourceGroup"
                if not p.get("exactStagingResourceGroup"):  # still Creating: the user's value is all there is
                    assert ids.norm(t.staging_rg_id) == ids.norm(given)
    assert found >= 2


def test_truncated_it_staging_names_are_taken_verbatim(layers: list[Layer]) -> None:
    """AIB truncates `IT_<rg>_<template>_<guid>`; the staging RG must come from exactStagingResourceGroup, not be rebuilt."""
    truncated = 0
    for layer in layers:
        for t in inv(layer).templates:
            exact = t.raw["properties"].get("exactStagingResourceGroup") or ""
            name = exact.rstrip("/").rsplit("/", 1)[-1]
            if not name.startswith("IT_"):
                continue
            assert t.staging_rg_id and ids.name_of(t.staging_rg_id) == name
            assert ids.resource_group_of(t.staging_rg_id) == name and not t.staging_rg_user_supplied
            if not name.startswith(f"IT_{t.resource_group}_{t.name}_"):
                truncated += 1
    assert truncated >= 5


def test_legacy_replication_regions_count_as_regions(layers: list[Layer]) -> None:
    """2020-02-14 templates distribute with `replicationRegions` (deprecated) and no `targetRegions`."""
    legacy = []
    for layer in layers:
        if "2021-01_api2020-02-14" not in layer.source:
            continue
        for t in inv(layer).templates:
            for raw, dist in zip(t.raw["properties"]["distribute"], t.distributions, strict=True):
                if raw.get("replicationRegions"):
                    legacy.append(dist)
                    assert dist.legacy_replication_regions, t.id
                    assert list(dist.region_names) == raw["replicationRegions"]
                    sat = raw.get("storageAccountType") or "Standard_LRS"
                    assert all(r.storage_account_type == sat and r.replica_count == 1 for r in dist.target_regions)
    assert legacy and any(len(d.region_names) >= 2 for d in legacy)


def test_templates_without_identity_parse(layers: list[Layer]) -> None:
    """Templates from before 2020-02-14 made identity required have none: they parse with no identity IDs."""
    none = [t for layer in layers for t in inv(layer).templates if not (t.raw.get("identity") or {}).get("type")]
    none += [t for layer in layers for t in inv(layer).templates if (t.raw.get("identity") or {}).get("type") == "None"]
    assert none
    assert all(t.identity_ids == [] and t.identity_principals == {} for t in none)


def test_principal_ids_of_cli_identities_match_template_bodies(layers: list[Layer]) -> None:
    """The principal a template GET reports for its identity is the identity resource's principalId.

    A template PUT response (provisioningState Creating) carries `{}` for the identity: the principal then comes
    from the identity resource, never from an empty string.
    """
    matched = fell_back = 0
    for layer in layers:
        i = inv(layer)
        for t in i.templates:
            for iid in t.identity_ids:
                ident = i.identity(iid)
                if ident is None:
                    continue
                body = t.identity_principals[ids.norm(iid)]
                if body:
                    matched += 1
                    assert body.lower() == ident.principal_id
                else:
                    fell_back += 1
                    assert i.principal_of_identity(iid, t) == ident.principal_id
    assert matched >= 1 and fell_back >= 1


def test_reference_examples_without_type_are_classified_by_id() -> None:
    assert arm_type_of_id("/providers/Microsoft.Compute/galleries/myGallery/Images/img") == "microsoft.compute/galleries/images"
    assert arm_type_of_id("/subscriptions/s/resourcegroups/rg") == "microsoft.resources/resourcegroups"
    assert kind_of({"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g"}) == "galleries"
    by_kind: defaultdict[str, int] = defaultdict(int)
    if not REFERENCE.is_dir():
        pytest.skip(f"{REFERENCE} is absent")
    for p in sorted(REFERENCE.glob("compute-gallery-*/*.json")):
        for body in reference_bodies(p):
            for doc in arm_docs(body):
                by_kind[kind_of(doc) or ""] += 1
    assert by_kind["galleries"] >= 1 and by_kind["galleryImages"] >= 1


# ------------------------------------------------------------------------------------------ fixture roles are real


def test_fixture_builtin_roles_match_microsofts_published_definitions() -> None:
    """fixtures.roles feeds every estate; its built-ins must be the roles Microsoft documents, action for action."""
    docs = sorted((REFERENCE / "builtin-roles").glob("*.json")) if REFERENCE.is_dir() else []
    if not docs:
        pytest.skip(f"{REFERENCE / 'builtin-roles'} is absent")
    for p in docs:
        published = json.loads(p.read_text(encoding="utf-8"))  # the docs' flat shape, not an ARM body
        ours = roles.builtin_role("00000000-0000-0000-0000-000000000000", published["name"])["properties"]
        assert ours["roleName"] == published["roleName"], p.name
        for key in ("actions", "notActions", "dataActions", "notDataActions"):
            assert sorted(ours["permissions"][0][key]) == sorted(published["permissions"][0][key]), (p.name, key)


def test_fixture_aib_custom_roles_match_the_documented_ones() -> None:
    docs = sorted((REFERENCE / "aib-custom-roles").glob("*.json")) if REFERENCE.is_dir() else []
    if not docs:
        pytest.skip(f"{REFERENCE / 'aib-custom-roles'} is absent")
    ours = {
        rd["properties"]["roleName"]: rd["properties"]["permissions"][0]["actions"]
        for rd in (roles.aib_image_creation_role("s", "g1"), roles.aib_networking_role("s", "g2"))
    }
    for p in docs:
        published = json.loads(p.read_text(encoding="utf-8"))
        assert sorted(ours[published["Name"]]) == sorted(published["Actions"]), p.name
