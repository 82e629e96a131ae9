"""Disaster recovery (best practice: "Set up image templates for disaster recovery").

Image Builder is a regional service without failover. A template survives a region outage only when a
standby template in another region already builds into the same gallery image definition, and an image
survives one when its versions are replicated to more than one region.
"""

from __future__ import annotations

from auditor import ids
from auditor.documents import Distribution, Template
from auditor.findings import Finding, error, failed, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check

ONLY_LOCAL = "distributes only to managed images/VHDs"


def region_key(name: str | None) -> str:
    """ARM spells regions 'westeurope' or 'West Europe'; compare them as one."""
    return (name or "").replace(" ", "").lower()


def _gallery_definitions(t: Template) -> dict[str, str]:
    """norm(image definition ID) -> the ID as the template spells it."""
    out: dict[str, str] = {}
    for d in t.gallery_distributions:
        if d.gallery_image_id:
            out.setdefault(ids.norm(d.gallery_image_id), d.gallery_image_id)
    return out


_INDEX_ATTR = "_dr_producers_index"


def producers_index(inv: Inventory) -> dict[str, list[Template]]:
    """norm(image definition ID) -> the templates that distribute to it, in inventory order; built once per inventory.

    Kept on the inventory object (like rbac.engine), so every template's AIB-DR-001 looks up instead of scanning
    every other template. Rebuilt if the template list is replaced or grows: an inventory is not meant to change.
    """
    cached = vars(inv).get(_INDEX_ATTR)
    if cached is not None and cached[0] is inv.templates and cached[1] == len(inv.templates):
        return cached[2]
    index: dict[str, list[Template]] = {}
    for t in inv.templates:
        for key in dict.fromkeys(ids.norm(d.gallery_image_id) for d in t.gallery_distributions if d.gallery_image_id):
            index.setdefault(key, []).append(t)
    vars(inv)[_INDEX_ATTR] = (inv.templates, len(inv.templates), index)
    return index


def _producers(inv: Inventory, definition_key: str, exclude: Template) -> list[Template]:
    """Other templates that distribute to the image definition."""
    return [other for other in producers_index(inv).get(definition_key, ()) if other.key != exclude.key]


def _template_list_errors(inv: Inventory) -> list[str]:
    if not any(e.kind == "imageTemplates" for e in inv.errors):  # the usual case, without asking each subscription
        return []
    return [
        e.describe() for sub in inv.subscriptions for e in inv.read_errors("imageTemplates", ids.norm(f"/subscriptions/{sub}"))
    ]


def _standby_finding(t: Template, inv: Inventory, key: str, definition: str) -> Finding:
    producers = _producers(inv, key, t)
    standbys = [o for o in producers if region_key(o.location) != region_key(t.location)]
    same_region = [o for o in producers if region_key(o.location) == region_key(t.location)]
    evidence = {
        "gallery_image_id": definition,
        "template_location": t.location,
        "standby_templates": [{"id": o.id, "location": o.location} for o in standbys],
        "same_region_templates": [{"id": o.id, "location": o.location} for o in same_region],
    }
    image = ids.name_of(definition)
    if standbys:
        names = ", ".join(f"{o.name} ({o.location})" for o in standbys)
        return passed(f"standby template {names} also builds gallery image definition {image}", evidence=evidence)
    if errs := _template_list_errors(inv):
        # The standby may be among the templates that could not be listed.
        return error(f"cannot tell whether a standby template builds image definition {image}: {errs[0]}", evidence=evidence)
    also = ""
    if same_region:
        also = f" ({', '.join(o.name for o in same_region)} builds it too, but from the same region {t.location})"
    return failed(
        f"no template in a region other than {t.location} builds gallery image definition {image} in the audited"
        f" subscriptions{also}: deploy a standby template in another region",
        evidence=evidence,
    )


@check("AIB-DR-001")
def standby_template(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    definitions = _gallery_definitions(t)
    if not definitions:
        return [failed(f"{ONLY_LOCAL}: no gallery image definition a standby could share")]
    return [_standby_finding(t, inv, key, definition) for key, definition in definitions.items()]


def _distinct_regions(d: Distribution) -> list[str]:
    seen: dict[str, str] = {}
    for name in d.region_names:
        seen.setdefault(region_key(name), name)
    return list(seen.values())


@check("AIB-DR-002")
def multi_region(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    dists = t.gallery_distributions
    if not dists:
        return [failed(f"{ONLY_LOCAL}, which stay in one region: add a gallery distribution replicated to 2+ regions")]
    evidence = {
        "distributions": [
            {
                "run_output_name": d.run_output_name,
                "regions": _distinct_regions(d),
                "legacy_replication_regions": d.legacy_replication_regions,
            }
            for d in dists
        ]
    }
    for d in dists:
        regions = _distinct_regions(d)
        if len(regions) >= 2:
            legacy = " (from the deprecated replicationRegions)" if d.legacy_replication_regions else ""
            return [
                passed(
                    f"gallery distribution '{d.run_output_name}' replicates to {len(regions)} regions:"
                    f" {', '.join(regions)}{legacy}",
                    evidence=evidence,
                )
            ]
    summary = "; ".join(
        f"'{d.run_output_name}' to {', '.join(_distinct_regions(d))} only"
        if d.region_names
        else f"'{d.run_output_name}' lists no regions"
        for d in dists
    )
    return [failed(f"no distribution reaches 2 or more regions ({summary}): add a second target region", evidence=evidence)]
