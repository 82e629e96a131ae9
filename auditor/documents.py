"""One typed dataclass per ARM document, and the lenient parser that makes it.

Parsing is lenient about shape (real ARM bodies vary across API versions 2020-2025: legacy
`replicationRegions`, missing `exactStagingResourceGroup`, mixed-case IDs) and strict about meaning:
anything that could not be read is kept as such (None, a `problem` text) so that checks fail closed.
RBAC documents (role definitions, assignments, denies) are in auditor.rbac_documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from auditor import ids

EVERYONE = "00000000-0000-0000-0000-000000000000"  # deny assignments: "all principals"


def _props(doc: dict[str, Any]) -> dict[str, Any]:
    p = doc.get("properties")
    return p if isinstance(p, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class TargetRegion:
    name: str
    replica_count: int = 1  # ARM default
    storage_account_type: str = "Standard_LRS"  # ARM default


@dataclass(frozen=True)
class Distribution:
    type: str  # SharedImage | ManagedImage | VHD
    run_output_name: str
    gallery_image_id: str | None = None  # the image *definition* (a `/versions/x` suffix stripped)
    explicit_version: str | None = None  # set when galleryImageId names a version
    target_regions: tuple[TargetRegion, ...] = ()
    legacy_replication_regions: bool = False  # regions came from the deprecated replicationRegions
    image_id: str | None = None  # ManagedImage
    location: str | None = None  # ManagedImage

    @property
    def gallery_id(self) -> str | None:
        """`/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g` (original case)."""
        if not self.gallery_image_id:
            return None
        parts = self.gallery_image_id.rstrip("/").split("/")
        low = [p.lower() for p in parts]
        if "galleries" in low:
            i = low.index("galleries")
            return "/".join(parts[: i + 2])
        return None

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.target_regions)


@dataclass(frozen=True)
class ScriptRef:
    """A file or script that AIB fetches by URI during the build."""

    stage: str  # customize | validate | optimize
    type: str  # Shell | PowerShell | File | workload ...
    name: str
    uri: str
    sha256: str | None


@dataclass
class Trigger:
    id: str
    name: str
    kind: str
    status_code: str | None
    status_message: str | None
    provisioning_state: str | None


@dataclass
class Template:
    id: str
    name: str
    subscription_id: str
    resource_group: str
    location: str
    provisioning_state: str | None
    provisioning_error: str | None
    last_run_state: str | None  # lastRunStatus.runState: Running | Canceling | Succeeded | PartiallySucceeded | Failed | Canceled
    last_run_message: str | None
    last_run_sub_state: str | None  # lastRunStatus.runSubState: Queued | Building | Customizing | Validating | Distributing
    last_run_end: str | None  # lastRunStatus.endTime (ISO-8601, as ARM wrote it)
    identity_type: str | None
    identity_ids: list[str]  # template identity resource IDs (AIB allows one)
    identity_principals: dict[str, str]  # norm(identity id) -> principalId, as the template GET returns it
    build_vm_identity_ids: list[str]
    staging_rg_id: str | None  # exactStagingResourceGroup, with a leading slash
    staging_rg_user_supplied: bool  # stagingResourceGroup was set by the user
    source_type: str | None
    source_version: str | None  # PlatformImage version ("latest")
    source_image_version_id: str | None  # SharedImageVersion / ManagedImage source ID
    distributions: list[Distribution]
    scripts: list[ScriptRef]
    subnet_id: str | None
    aci_subnet_id: str | None
    vm_boot_state: str | None
    auto_run_state: str | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def key(self) -> str:
        return ids.norm(self.id)

    @property
    def gallery_distributions(self) -> list[Distribution]:
        return [d for d in self.distributions if d.type.lower() == "sharedimage"]


def _parse_target_regions(dist: dict[str, Any]) -> tuple[tuple[TargetRegion, ...], bool]:
    regions = []
    for r in _list(dist.get("targetRegions")):
        r = _dict(r)
        if not r.get("name"):
            continue
        count = r.get("replicaCount")
        regions.append(
            TargetRegion(
                name=str(r["name"]),
                replica_count=int(count) if isinstance(count, int) and count > 0 else 1,
                storage_account_type=str(r.get("storageAccountType") or "Standard_LRS"),
            )
        )
    if regions:
        return tuple(regions), False
    legacy = [str(x) for x in _list(dist.get("replicationRegions")) if x]
    if legacy:
        sat = str(dist.get("storageAccountType") or "Standard_LRS")
        return tuple(TargetRegion(name=n, storage_account_type=sat) for n in legacy), True
    return (), False


def _parse_distribution(dist: dict[str, Any]) -> Distribution:
    dtype = str(dist.get("type") or "")
    gid = dist.get("galleryImageId")
    definition, version = None, None
    if isinstance(gid, str) and gid:
        low = gid.lower().rstrip("/")
        if "/versions/" in low:
            cut = low.rindex("/versions/")
            definition, version = gid[:cut], gid[cut + len("/versions/") :]
        else:
            definition = gid.rstrip("/")
    regions, legacy = _parse_target_regions(dist) if dtype.lower() == "sharedimage" else ((), False)
    return Distribution(
        type=dtype,
        run_output_name=str(dist.get("runOutputName") or ""),
        gallery_image_id=definition,
        explicit_version=version,
        target_regions=regions,
        legacy_replication_regions=legacy,
        image_id=dist.get("imageId"),
        location=dist.get("location"),
    )


def _parse_scripts(props: dict[str, Any]) -> list[ScriptRef]:
    out: list[ScriptRef] = []

    def add(stage: str, item: dict[str, Any]) -> None:
        uri = item.get("scriptUri") or item.get("sourceUri")
        if isinstance(uri, str) and uri:
            out.append(
                ScriptRef(
                    stage=stage,
                    type=str(item.get("type") or ""),
                    name=str(item.get("name") or ""),
                    uri=uri,
                    sha256=item.get("sha256Checksum") or None,
                )
            )

    for c in _list(props.get("customize")):
        add("customize", _dict(c))
    validate = _dict(props.get("validate"))
    for v in _list(validate.get("inVMValidations")):
        add("validate", _dict(v))
    workload = _dict(_dict(props.get("optimize")).get("workload"))
    if workload.get("scriptUri"):
        add("optimize", {"type": "workload", "name": "optimize.workload", **workload})
    return out


def parse_template(doc: dict[str, Any]) -> Template:
    p = _props(doc)
    tid = str(doc.get("id") or "")
    identity = _dict(doc.get("identity"))
    uai = _dict(identity.get("userAssignedIdentities"))
    vm = _dict(p.get("vmProfile"))
    vnet = _dict(vm.get("vnetConfig"))
    src = _dict(p.get("source"))
    last_run = _dict(p.get("lastRunStatus"))
    staging = p.get("exactStagingResourceGroup") or p.get("stagingResourceGroup") or None
    if staging and not str(staging).startswith("/"):
        staging = "/" + str(staging)  # ARM returns it without a leading slash at times
    perr = _dict(p.get("provisioningError"))
    return Template(
        id=tid,
        name=str(doc.get("name") or ids.name_of(tid)),
        subscription_id=ids.subscription_of(tid) or "",
        resource_group=ids.resource_group_of(tid) or "",
        location=str(doc.get("location") or ""),
        provisioning_state=p.get("provisioningState"),
        provisioning_error=perr.get("message") or perr.get("provisioningErrorCode"),
        last_run_state=last_run.get("runState"),
        last_run_message=last_run.get("message"),
        last_run_sub_state=last_run.get("runSubState"),
        last_run_end=last_run.get("endTime"),
        identity_type=identity.get("type"),
        identity_ids=list(uai.keys()),
        identity_principals={ids.norm(k): str(_dict(v).get("principalId") or "") for k, v in uai.items()},
        build_vm_identity_ids=[str(x) for x in _list(vm.get("userAssignedIdentities")) if x],
        staging_rg_id=str(staging) if staging else None,
        staging_rg_user_supplied=bool(p.get("stagingResourceGroup")),
        source_type=src.get("type"),
        source_version=src.get("version"),
        source_image_version_id=src.get("imageVersionId") or src.get("imageId"),
        distributions=[_parse_distribution(_dict(d)) for d in _list(p.get("distribute"))],
        scripts=_parse_scripts(p),
        subnet_id=vnet.get("subnetId") or None,
        aci_subnet_id=vnet.get("containerInstanceSubnetId") or None,
        vm_boot_state=_dict(_dict(p.get("optimize")).get("vmBoot")).get("state"),
        auto_run_state=_dict(p.get("autoRun")).get("state"),
        raw=doc,
    )


def parse_trigger(doc: dict[str, Any]) -> Trigger:
    p = _props(doc)
    status = _dict(p.get("status"))
    return Trigger(
        id=str(doc.get("id") or ""),
        name=str(doc.get("name") or ""),
        kind=str(p.get("kind") or doc.get("kind") or ""),
        status_code=status.get("code"),
        status_message=status.get("message"),
        provisioning_state=p.get("provisioningState"),
    )


# --------------------------------------------------------------------------------------------- locks, RGs


@dataclass
class Lock:
    id: str
    name: str
    level: str  # CanNotDelete | ReadOnly | NotSpecified
    scope: str  # normalized ID of what the lock is applied to
    notes: str | None


def parse_lock(doc: dict[str, Any]) -> Lock:
    p = _props(doc)
    lid = str(doc.get("id") or "")
    return Lock(
        id=lid,
        name=str(doc.get("name") or ids.name_of(lid)),
        level=str(p.get("level") or doc.get("level") or "NotSpecified"),
        scope=ids.owner_scope_of_extension(lid, "/providers/Microsoft.Authorization/locks/"),
        notes=p.get("notes"),
    )


@dataclass
class ResourceGroup:
    id: str
    name: str
    location: str
    tags: dict[str, str]


def parse_resource_group(doc: dict[str, Any]) -> ResourceGroup:
    rid = str(doc.get("id") or "")
    return ResourceGroup(
        id=rid,
        name=str(doc.get("name") or ids.name_of(rid)),
        location=str(doc.get("location") or ""),
        tags={str(k): str(v) for k, v in _dict(doc.get("tags")).items()},
    )


# --------------------------------------------------------------------------------------------- identities, galleries


@dataclass
class Identity:
    id: str
    name: str
    principal_id: str
    client_id: str


def parse_identity(doc: dict[str, Any]) -> Identity:
    p = _props(doc)
    iid = str(doc.get("id") or "")
    return Identity(
        id=iid,
        name=str(doc.get("name") or ids.name_of(iid)),
        principal_id=str(p.get("principalId") or "").lower(),
        client_id=str(p.get("clientId") or ""),
    )


@dataclass(frozen=True)
class SharingGroup:
    type: str  # Subscriptions | AADTenants
    ids: tuple[str, ...]


@dataclass
class Gallery:
    id: str
    name: str
    location: str
    sharing_permissions: str  # Private | Groups | Community (absent means Private)
    # sharingProfile.groups: whom a Groups gallery is shared with directly. ARM returns them only to a GET with
    # `$expand=sharingProfile/Groups` (the collector asks for Groups galleries); None when the body has none.
    sharing_groups: tuple[SharingGroup, ...] | None = None


def _sharing_groups(value: Any) -> tuple[SharingGroup, ...] | None:
    if not isinstance(value, list):
        return None
    groups = (_dict(g) for g in value)
    return tuple(SharingGroup(str(g.get("type") or ""), tuple(str(i) for i in _list(g.get("ids")) if i)) for g in groups)


def parse_gallery(doc: dict[str, Any]) -> Gallery:
    p = _props(doc)
    gid = str(doc.get("id") or "")
    sharing = _dict(p.get("sharingProfile"))
    return Gallery(
        id=gid,
        name=str(doc.get("name") or ids.name_of(gid)),
        location=str(doc.get("location") or ""),
        sharing_permissions=str(sharing.get("permissions") or "Private"),
        sharing_groups=_sharing_groups(sharing.get("groups")),
    )


@dataclass
class GalleryImage:
    id: str
    name: str
    location: str
    hyper_v_generation: str | None
    os_state: str | None = None  # Generalized | Specialized (VM boot optimization skips Specialized images)


def parse_gallery_image(doc: dict[str, Any]) -> GalleryImage:
    p = _props(doc)
    gid = str(doc.get("id") or "")
    return GalleryImage(
        id=gid,
        name=str(doc.get("name") or ids.name_of(gid)),
        location=str(doc.get("location") or ""),
        hyper_v_generation=p.get("hyperVGeneration"),
        os_state=p.get("osState"),
    )


