"""Azure Compute Gallery targets (best practices in "Azure Compute Gallery": locks, ZRS, replicas, sharing).

A template's gallery targets are its SharedImage distributions. The gallery checks look at the gallery
resources themselves (locks, sharing) and at how the template replicates versions into them (storage type,
replica count). The helpers here are shared with the other resilience checks that need gallery targets.
"""

from __future__ import annotations

from collections.abc import Callable

from auditor import ids
from auditor.documents import Distribution, Gallery, Lock, Template
from auditor.findings import Finding, error, failed, not_applicable, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check

ZRS_TYPES = frozenset({"standard_zrs", "premium_zrs"})
MIN_REPLICAS = 3
NO_GALLERY = "the template distributes to no Azure Compute Gallery"


def target_galleries(t: Template) -> dict[str, str]:
    """norm(gallery ID) -> the gallery ID as the template spells it, in distribution order."""
    out: dict[str, str] = {}
    for d in t.gallery_distributions:
        gid = d.gallery_id
        if gid:
            out.setdefault(ids.norm(gid), gid)
    return out


def malformed_gallery_targets(t: Template) -> list[Finding]:
    """ERROR findings for SharedImage distributions whose galleryImageId names no gallery."""
    return [
        error(
            f"gallery distribution '{d.run_output_name}' has galleryImageId '{d.gallery_image_id or ''}', which names no gallery",
            evidence={"run_output_name": d.run_output_name, "gallery_image_id": d.gallery_image_id},
        )
        for d in t.gallery_distributions
        if not d.gallery_id
    ]


def _lock_where(lock: Lock, gallery_id: str) -> str:
    if ids.norm(lock.scope) == ids.norm(gallery_id):
        return "on the gallery"
    level = ids.scope_level(lock.scope)
    return {"resourceGroup": "on its resource group", "subscription": "on its subscription"}.get(level, f"at {lock.scope}")


def _lock_evidence(locks: list[Lock]) -> list[dict[str, str]]:
    return [{"lock_id": lk.id, "level": lk.level, "applied_at": lk.scope} for lk in locks]


def _gallery_lock_finding(gallery_id: str, inv: Inventory) -> Finding:
    locks = sorted(inv.locks_applying_to(gallery_id), key=lambda lk: lk.id.lower())
    read_only = [lk for lk in locks if lk.level.lower() == "readonly"]
    cannot_delete = [lk for lk in locks if lk.level.lower() == "cannotdelete"]
    evidence = {"gallery_id": gallery_id, "locks": _lock_evidence(locks)}
    if read_only:
        lk = read_only[0]
        # A ReadOnly lock also protects from deletion, but it blocks writes to child resources: the
        # template identity can no longer add image versions, so every build fails at distribution.
        return failed(
            f"ReadOnly lock '{lk.name}' {_lock_where(lk, gallery_id)} blocks Image Builder from writing image versions"
            f" to gallery {ids.name_of(gallery_id)}: replace it with a CanNotDelete lock",
            resource_id=gallery_id,
            evidence=evidence,
        )
    if errs := inv.read_errors("locks", gallery_id):
        # A lock that could not be read might be a ReadOnly one: fail closed even when a CanNotDelete lock is seen.
        return error(f"cannot tell how gallery {ids.name_of(gallery_id)} is locked: {errs[0].describe()}", resource_id=gallery_id)
    if cannot_delete:
        lk = cannot_delete[0]
        return passed(
            f"gallery {ids.name_of(gallery_id)} is protected by CanNotDelete lock '{lk.name}' {_lock_where(lk, gallery_id)}",
            resource_id=gallery_id,
            evidence=evidence,
        )
    if sub := inv.unaudited_subscription(gallery_id):
        return error(
            f"cannot tell whether gallery {ids.name_of(gallery_id)} is locked: its subscription {sub} is not in the audit"
            " (add it with --subscription)",
            resource_id=gallery_id,
            evidence=evidence,
        )
    return failed(
        f"no CanNotDelete lock on gallery {ids.name_of(gallery_id)}, its resource group or its subscription",
        resource_id=gallery_id,
        evidence=evidence,
    )


def _per_gallery(t: Template, inv: Inventory, judge: Callable[[str, Inventory], Finding]) -> list[Finding]:
    """One finding per target gallery (plus one per unparseable target); N/A without gallery distributions."""
    galleries = target_galleries(t)
    bad = malformed_gallery_targets(t)
    if not galleries and not bad:
        return [not_applicable(NO_GALLERY)]
    return bad + [judge(gid, inv) for gid in galleries.values()]


@check("AIB-GAL-001")
def gallery_locked(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    return _per_gallery(t, inv, _gallery_lock_finding)


def _regions_text(d: Distribution) -> str:
    return "the deprecated replicationRegions" if d.legacy_replication_regions else "targetRegions"


def _per_distribution(t: Template, judge: Callable[[Distribution], Finding]) -> list[Finding]:
    """One finding per gallery distribution; N/A without any."""
    dists = t.gallery_distributions
    if not dists:
        return [not_applicable(NO_GALLERY)]
    return [judge(d) for d in dists]


def _distribution_evidence(d: Distribution, key: str, per_region: dict[str, object]) -> dict[str, object]:
    return {
        "run_output_name": d.run_output_name,
        "gallery_image_id": d.gallery_image_id,
        key: per_region,
        "legacy_replication_regions": d.legacy_replication_regions,
    }


def _zrs_finding(d: Distribution) -> Finding:
    types: dict[str, object] = {r.name: r.storage_account_type for r in d.target_regions}
    evidence = _distribution_evidence(d, "storage_account_types", types)
    if not d.target_regions:
        return failed(
            f"gallery distribution '{d.run_output_name}' lists no target regions, so its versions use the default"
            " Standard_LRS storage",
            evidence=evidence,
        )
    lrs = [f"{r.name} ({r.storage_account_type})" for r in d.target_regions if r.storage_account_type.lower() not in ZRS_TYPES]
    if lrs:
        return failed(
            f"gallery distribution '{d.run_output_name}' stores replicas on locally redundant storage in"
            f" {', '.join(lrs)} ({_regions_text(d)}): use Standard_ZRS",
            evidence=evidence,
        )
    return passed(
        f"gallery distribution '{d.run_output_name}' stores replicas on ZRS in every target region ({', '.join(types)})",
        evidence=evidence,
    )


@check("AIB-GAL-002")
def gallery_zrs(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    return _per_distribution(t, _zrs_finding)


def _replicas_finding(d: Distribution) -> Finding:
    counts: dict[str, object] = {r.name: r.replica_count for r in d.target_regions}
    evidence = _distribution_evidence(d, "replica_counts", counts)
    if not d.target_regions:
        return failed(
            f"gallery distribution '{d.run_output_name}' lists no target regions, so its versions keep the default"
            f" single replica (keep {MIN_REPLICAS}+)",
            evidence=evidence,
        )
    few = [f"{r.name} ({r.replica_count})" for r in d.target_regions if r.replica_count < MIN_REPLICAS]
    if few:
        legacy = d.legacy_replication_regions
        how = ": the deprecated replicationRegions cannot set replicaCount, move to targetRegions" if legacy else ""
        return failed(
            f"gallery distribution '{d.run_output_name}' keeps fewer than {MIN_REPLICAS} replicas in {', '.join(few)}{how}",
            evidence=evidence,
        )
    return passed(
        f"gallery distribution '{d.run_output_name}' keeps {MIN_REPLICAS}+ replicas in every target region"
        f" ({', '.join(f'{n}: {c}' for n, c in counts.items())})",
        evidence=evidence,
    )


@check("AIB-GAL-003")
def gallery_replicas(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    return _per_distribution(t, _replicas_finding)


def _gallery_or_error(gallery_id: str, inv: Inventory) -> Gallery | Finding:
    """The target gallery, or the ERROR that says why how it is shared cannot be told."""
    name = ids.name_of(gallery_id)
    gallery = inv.galleries.get(ids.norm(gallery_id))
    if gallery is not None:
        return gallery
    if errs := inv.read_errors("galleries", gallery_id):
        return error(f"cannot tell how gallery {name} is shared: {errs[0].describe()}", resource_id=gallery_id)
    if sub := inv.unaudited_subscription(gallery_id):
        return error(
            f"cannot tell how gallery {name} is shared: its subscription {sub} is not in the audit (add it with --subscription)",
            resource_id=gallery_id,
        )
    return error(
        f"cannot tell how gallery {name} is shared: it was not among the galleries listed in its subscription"
        " (deleted, or the galleryImageId is wrong)",
        resource_id=gallery_id,
    )


def _sharing_finding(gallery_id: str, inv: Inventory) -> Finding:
    gallery = _gallery_or_error(gallery_id, inv)
    if isinstance(gallery, Finding):
        return gallery
    evidence = {"gallery_id": gallery.id, "sharing_permissions": gallery.sharing_permissions}
    if gallery.sharing_permissions.lower() == "community":
        return failed(
            f"gallery {gallery.name} is shared to the community: anyone in Azure can deploy its images",
            resource_id=gallery_id,
            evidence=evidence,
        )
    return passed(
        f"gallery {gallery.name} is not shared to the community (sharing: {gallery.sharing_permissions})",
        resource_id=gallery_id,
        evidence=evidence,
    )


@check("AIB-GAL-004")
def gallery_not_community(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    return _per_gallery(t, inv, _sharing_finding)


# --------------------------------------------------------------------------------------------- AIB-GAL-005

GROUP_KINDS: dict[str, str] = {"subscriptions": "subscription", "aadtenants": "tenant"}


def _direct_sharing_findings(t: Template, gallery_id: str, inv: Inventory, policy: Policy) -> list[Finding]:
    """One row per subscription or tenant the gallery is shared with directly; one PASS row when there is none."""
    gallery = _gallery_or_error(gallery_id, inv)
    if isinstance(gallery, Finding):
        return [gallery]
    evidence: dict[str, object] = {"gallery_id": gallery.id, "sharing_permissions": gallery.sharing_permissions}
    if gallery.sharing_permissions.lower() != "groups":
        return [
            passed(
                f"gallery {gallery.name} is not shared directly with other subscriptions or tenants"
                f" (sharing: {gallery.sharing_permissions})",
                resource_id=gallery_id,
                evidence=evidence,
            )
        ]
    if gallery.sharing_groups is None:
        # Groups sharing, but whom with was not read: the expanded GET failed, or an older snapshot lacks it.
        errs = inv.read_errors("galleries", gallery_id)
        why = errs[0].describe() if errs else "the gallery was not read with $expand=sharingProfile/Groups"
        return [
            error(
                f"gallery {gallery.name} is shared directly (permissions Groups), but with whom cannot be told: {why}",
                resource_id=gallery_id,
                evidence=evidence,
            )
        ]
    targets = [(kind, tid) for g in gallery.sharing_groups for kind in [GROUP_KINDS.get(g.type.lower(), g.type)] for tid in g.ids]
    evidence["shared_with"] = [{"type": g.type, "ids": list(g.ids)} for g in gallery.sharing_groups]
    if not targets:
        return [
            passed(
                f"gallery {gallery.name} has Groups sharing but is shared with no subscription or tenant",
                resource_id=gallery_id,
                evidence=evidence,
            )
        ]
    rows = []
    for kind, tid in dict.fromkeys(targets):
        allowed = policy.allows_gallery_share(tid)
        fields = {
            "resource_id": gallery_id,
            # The row's "who": the subscription or tenant the images are handed to (keys the finding ID).
            "principal_id": tid.lower(),
            "principal_type": "Subscription" if kind == "subscription" else "AADTenant" if kind == "tenant" else kind,
            "evidence": {**evidence, "shared_with_id": tid, "shared_with_type": kind, "allowed": allowed},
        }
        detail = f"gallery {gallery.name} is shared directly with {kind} {tid}: every image version {t.name} publishes there"
        if allowed:
            rows.append(passed(f"{detail}; accepted by the audit policy (allowed_gallery_share_targets)", **fields))
        else:
            rows.append(failed(f"{detail} is visible to it; not in the policy's allowed_gallery_share_targets", **fields))
    return rows


@check("AIB-GAL-005")
def gallery_direct_sharing(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    galleries = target_galleries(t)
    bad = malformed_gallery_targets(t)
    if not galleries and not bad:
        return [not_applicable(NO_GALLERY)]
    return bad + [f for gid in galleries.values() for f in _direct_sharing_findings(t, gid, inv, policy)]
