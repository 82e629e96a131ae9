"""The typed inventory: a snapshot's raw ARM documents parsed and joined.

Checks see only these dataclasses, never SDK objects or raw JSON (except `raw`, kept for evidence).
Parsing is lenient about shape (real ARM bodies vary across API versions 2020-2025: legacy
`replicationRegions`, missing `exactStagingResourceGroup`, mixed-case IDs) and strict about meaning:
anything that could not be read is recorded so that checks fail closed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from auditor import ids
from auditor.directory import Directory, build_directory
from auditor.snapshot import ReadError, Snapshot

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


# --------------------------------------------------------------------------------------------- RBAC


@dataclass(frozen=True)
class Permission:
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    data_actions: tuple[str, ...] = ()
    not_data_actions: tuple[str, ...] = ()
    # An ABAC condition on this block (deny assignments, API 2022-04-01): the block applies only when it holds.
    condition: str | None = None


@dataclass
class RoleDefinition:
    id: str
    guid: str  # the last segment, lower case: how assignments are joined to definitions
    role_name: str
    role_type: str  # BuiltInRole | CustomRole
    permissions: tuple[Permission, ...]
    assignable_scopes: tuple[str, ...]
    # Why the permissions could not be read ("" when they could): such a role's rights are unknown, so an
    # assignment of it is UNRESOLVED (rbac.py), never a role that grants nothing.
    unreadable: str = ""


PERMISSION_KEYS: tuple[str, ...] = ("actions", "notActions", "dataActions", "notDataActions")


def _condition(value: Any) -> str | None:
    return (str(value).strip() or None) if value else None


def _perm(p: dict[str, Any]) -> Permission:
    def strs(key: str) -> tuple[str, ...]:
        return tuple(str(x) for x in _list(p.get(key)) if x)

    return Permission(
        strs("actions"), strs("notActions"), strs("dataActions"), strs("notDataActions"), condition=_condition(p.get("condition"))
    )


def _permissions_problem(props: dict[str, Any]) -> str:
    """Why a role definition's permissions cannot be trusted ("" when they can).

    `permissions: [{"actions": []}]` is a real role that grants nothing; a missing or null list, a block that is
    not an object, or a pattern list that is not a list of strings is an unreadable body, not an empty role.
    """
    perms = props.get("permissions")
    if not isinstance(perms, list):
        return "its permissions list is missing or null" if perms is None else "its permissions are not a list"
    for block in perms:
        if not isinstance(block, dict):
            return "a permission block is not an object"
        for key in PERMISSION_KEYS:
            value = block.get(key)
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
                return f"its {key} are not a list of action names"
    return ""


def parse_role_definition(doc: dict[str, Any]) -> RoleDefinition:
    p = _props(doc)
    rid = str(doc.get("id") or "")
    return RoleDefinition(
        id=rid,
        guid=(str(doc.get("name") or ids.name_of(rid))).lower(),
        role_name=str(p.get("roleName") or doc.get("name") or ""),
        role_type=str(p.get("type") or p.get("roleType") or ""),
        permissions=tuple(_perm(_dict(x)) for x in _list(p.get("permissions"))),
        assignable_scopes=tuple(str(s) for s in _list(p.get("assignableScopes"))),
        unreadable=_permissions_problem(p) if isinstance(doc.get("properties"), dict) else "its properties are missing or null",
    )


@dataclass
class RoleAssignment:
    id: str
    scope: str  # as ARM wrote it
    role_definition_id: str
    role_guid: str
    principal_id: str
    principal_type: str  # User | Group | ServicePrincipal | ForeignGroup | Device | Unknown (deleted) | "" (not reported)
    condition: str | None
    eligible: bool = False  # a PIM eligibility (roleEligibilityScheduleInstances), not an active assignment
    # Microsoft Graph was asked about the principal and does not know it (directory.py): deleted, whatever
    # principalType ARM kept. Set by build_inventory; never set when Graph was not read.
    principal_deleted: bool = False

    @property
    def scope_key(self) -> str:
        return ids.norm(self.scope)


def parse_role_assignment(doc: dict[str, Any], eligible: bool = False) -> RoleAssignment:
    p = _props(doc)
    rdid = str(p.get("roleDefinitionId") or "")
    aid = str(doc.get("id") or "")
    # The ID always carries the scope; a `scope` field that is not an ARM scope ("x", "*", a number) is ignored.
    scope = p.get("scope")
    if not (isinstance(scope, str) and scope.startswith("/")):
        scope = ids.owner_scope_of_extension(aid, "/providers/Microsoft.Authorization/")
    return RoleAssignment(
        id=aid,
        scope=str(scope),
        role_definition_id=rdid,
        role_guid=ids.name_of(rdid).lower(),
        principal_id=str(p.get("principalId") or "").lower(),
        # Only ARM's explicit "Unknown" marks a deleted principal; a body without the field says nothing about it.
        principal_type=str(p.get("principalType") or ""),
        condition=p.get("condition") or None,
        eligible=eligible,
    )


@dataclass
class DenyAssignment:
    id: str
    name: str
    scope: str
    permissions: tuple[Permission, ...]
    principal_ids: tuple[str, ...]  # EVERYONE means all principals
    exclude_principal_ids: tuple[str, ...]
    does_not_apply_to_child_scopes: bool
    # principals[].type / excludePrincipals[].type, parallel to the ID tuples (User, Group, ServicePrincipal,
    # SystemDefined for Everyone; "" when ARM did not say): an excluded group may hold any principal (rbac.py).
    principal_types: tuple[str, ...] = ()
    exclude_principal_types: tuple[str, ...] = ()
    # An ABAC condition on the whole deny (API 2022-04-01): it removes rights only when the condition holds.
    condition: str | None = None


def parse_deny_assignment(doc: dict[str, Any]) -> DenyAssignment:
    p = _props(doc)
    did = str(doc.get("id") or "")
    return DenyAssignment(
        id=did,
        name=str(p.get("denyAssignmentName") or doc.get("name") or ""),
        scope=str(p.get("scope") or ids.owner_scope_of_extension(did, "/providers/Microsoft.Authorization/")),
        permissions=tuple(_perm(_dict(x)) for x in _list(p.get("permissions"))),
        principal_ids=tuple(str(_dict(x).get("id") or "").lower() for x in _list(p.get("principals"))),
        exclude_principal_ids=tuple(str(_dict(x).get("id") or "").lower() for x in _list(p.get("excludePrincipals"))),
        does_not_apply_to_child_scopes=bool(p.get("doNotApplyToChildScopes")),
        principal_types=tuple(str(_dict(x).get("type") or "") for x in _list(p.get("principals"))),
        exclude_principal_types=tuple(str(_dict(x).get("type") or "") for x in _list(p.get("excludePrincipals"))),
        condition=_condition(p.get("condition")),
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


# --------------------------------------------------------------------------------------------- the inventory


@dataclass
class Inventory:
    subscriptions: list[str]
    templates: list[Template]
    triggers: dict[str, list[Trigger]]  # norm(template id) -> triggers
    locks: list[Lock]
    resource_groups: dict[str, ResourceGroup]  # norm(id) -> RG
    role_assignments: list[RoleAssignment]  # active and eligible (eligible=True)
    role_definitions: dict[str, RoleDefinition]  # guid -> definition
    deny_assignments: list[DenyAssignment]
    identities: dict[str, Identity]  # norm(id) -> identity
    galleries: dict[str, Gallery]  # norm(id) -> gallery
    gallery_images: dict[str, GalleryImage]  # norm(id) -> image definition
    errors: list[ReadError]
    meta: dict[str, Any] = field(default_factory=dict)
    # lower-case subscription ID -> normalized management-group / root scopes above it (snapshot.py, ids.py)
    subscription_ancestors: dict[str, frozenset[str]] = field(default_factory=dict)
    # Who the principals are (Microsoft Graph), and with --expand-groups who is in each group; empty without Graph.
    directory: Directory = field(default_factory=Directory)
    # Indexes into `errors` that a check has asked about: the runner reports the others on their own rows.
    consulted: set[int] = field(default_factory=set, repr=False, compare=False)

    # -- joins ------------------------------------------------------------------------------------

    def triggers_of(self, template: Template) -> list[Trigger]:
        return self.triggers.get(template.key, [])

    def applies_at(self, ancestor: str, scope: str) -> bool:
        """Does something at `ancestor` apply at `scope`? Management groups only above their own subscriptions."""
        return ids.is_ancestor_or_self(ancestor, scope, self.subscription_ancestors)

    def unaudited_subscription(self, resource_id: str) -> str | None:
        """The resource's subscription when the audit did not cover it (so nothing was read there), else None."""
        sub = ids.subscription_of(resource_id)
        return sub if sub and sub not in self.subscriptions else None

    def locks_applying_to(self, resource_id: str) -> list[Lock]:
        """Locks on the resource or inherited from its RG / subscription, in `locks` order.

        Looks up the resource's ancestor chain in an index of lock scopes (built once) instead of testing every
        lock: the same answer as `applies_at` on each lock. Locks above a subscription (ARM has none, but a
        snapshot may) still go through `applies_at`, which knows the management-group ancestry.
        """
        s = ids.norm(resource_id)
        if not s:
            return []
        by_scope, above_sub = self._lock_index()
        parts = s.split("/")
        hits = {i for n in range(2, len(parts) + 1) for i in by_scope.get("/".join(parts[:n]), ())}
        hits.update(i for i in above_sub if self.applies_at(self.locks[i].scope, s))
        return [self.locks[i] for i in sorted(hits)]

    def _lock_index(self) -> tuple[dict[str, list[int]], list[int]]:
        """norm(lock scope) -> positions in `locks`, and the positions of locks above subscription scope.

        Kept on the instance, not as a field (invisible to eq/repr/asdict); rebuilt if `locks` is replaced or grows.
        """
        cached = vars(self).get("_locks_by_scope")
        if cached is not None and cached[0] is self.locks and cached[1] == len(self.locks):
            return cached[2], cached[3]
        by_scope: dict[str, list[int]] = {}
        above_sub: list[int] = []
        for i, lk in enumerate(self.locks):
            key = ids.norm(lk.scope)
            if ids.is_above_subscription(key):
                above_sub.append(i)  # root and management groups: ancestry is per subscription, not by prefix
            elif key:
                by_scope.setdefault(key, []).append(i)
        vars(self)["_locks_by_scope"] = (self.locks, len(self.locks), by_scope, above_sub)
        return by_scope, above_sub

    def identity(self, identity_id: str) -> Identity | None:
        return self.identities.get(ids.norm(identity_id))

    def principal_of_identity(self, identity_id: str, template: Template | None = None) -> str | None:
        """An identity's principal ID: from the identity resource, else from the template's GET body."""
        ident = self.identity(identity_id)
        if ident and ident.principal_id:
            return ident.principal_id
        if template is not None:
            pid = template.identity_principals.get(ids.norm(identity_id))
            if pid:
                return pid.lower()
        return None

    def staging_rg(self, template: Template) -> ResourceGroup | None:
        if not template.staging_rg_id:
            return None
        return self.resource_groups.get(ids.norm(template.staging_rg_id))

    def role_definition(self, role_definition_id: str) -> RoleDefinition | None:
        return self.role_definitions.get(ids.name_of(role_definition_id).lower())

    # -- failed reads (fail closed) -----------------------------------------------------------------

    def read_errors(self, kind: str, scope: str) -> list[ReadError]:
        """Failed reads of `kind` that cover `scope`.

        An error covers a scope when it was for the scope itself, an ancestor of it (a failed
        subscription-wide list taints everything in the subscription), or for a descendant that the
        caller asks about directly.
        """
        s = ids.norm(scope)
        out = []
        for i, e in enumerate(self.errors):
            if e.kind != kind:
                continue
            es = ids.norm(e.scope)
            if self.applies_at(es, s) or self.applies_at(s, es):
                out.append(e)
                self.consulted.add(i)
        return out


def build_inventory(snapshot: Snapshot, expand_groups: bool = False) -> Inventory:
    """The typed view of a snapshot; `expand_groups` (--expand-groups) judges groups by their members."""
    r = snapshot.resources
    templates = sorted((parse_template(d) for d in r.get("imageTemplates", [])), key=lambda t: t.key)
    triggers: dict[str, list[Trigger]] = defaultdict(list)
    for doc in r.get("triggers", []):
        trig = parse_trigger(doc)
        if parent := ids.parent_at(trig.id, "triggers"):
            triggers[ids.norm(parent)].append(trig)
    role_defs: dict[str, RoleDefinition] = {}
    for doc in r.get("roleDefinitions", []):
        rd = parse_role_definition(doc)
        role_defs.setdefault(rd.guid, rd)
    assignments = [parse_role_assignment(d) for d in r.get("roleAssignments", [])]
    assignments += [parse_role_assignment(d, eligible=True) for d in r.get("roleEligibilityScheduleInstances", [])]
    directory = build_directory(r, snapshot.meta, expand_groups)
    docs = [*r.get("roleAssignments", []), *r.get("roleEligibilityScheduleInstances", [])]
    # A principal of another tenant (a ForeignGroup, a delegated managed identity) is unknown to this tenant's
    # Graph by nature: that says nothing about whether it still exists.
    directory.foreign = {
        ra.principal_id
        for ra, doc in zip(assignments, docs, strict=True)
        if ra.principal_type.lower() == "foreigngroup" or _props(doc).get("delegatedManagedIdentityResourceId")
    }
    for ra in assignments:
        ra.principal_deleted = directory.is_deleted(ra.principal_id)
    return Inventory(
        subscriptions=[s.lower() for s in snapshot.subscriptions],
        templates=templates,
        triggers=dict(triggers),
        locks=[parse_lock(d) for d in r.get("locks", [])],
        resource_groups={ids.norm(rg.id): rg for rg in map(parse_resource_group, r.get("resourceGroups", []))},
        role_assignments=assignments,
        role_definitions=role_defs,
        deny_assignments=[parse_deny_assignment(d) for d in r.get("denyAssignments", [])],
        identities={ids.norm(i.id): i for i in map(parse_identity, r.get("userAssignedIdentities", []))},
        galleries={ids.norm(g.id): g for g in map(parse_gallery, r.get("galleries", []))},
        gallery_images={ids.norm(g.id): g for g in map(parse_gallery_image, r.get("galleryImages", []))},
        errors=list(snapshot.errors),
        meta=dict(snapshot.meta),
        subscription_ancestors=ids.norm_ancestors(snapshot.subscription_ancestors),
        directory=directory,
    )
