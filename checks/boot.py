"""VM boot optimization (best practice: "Enable VM boot optimization").

`optimize.vmBoot.state` must be Enabled; absent means off. The optimization does not support Specialized
images, so a template whose every target is a Specialized gallery image definition is N/A. Deciding that
needs the image definitions' osState, read from the gallery: when that read failed and the answer depends
on it, the check says ERROR.
"""

from __future__ import annotations

from auditor import ids
from auditor.documents import Template
from auditor.findings import Finding, error, failed, not_applicable, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check


def _unknown_reason(inv: Inventory, definition: str, gallery_id: str | None) -> str | None:
    """Why the image definition's osState is unknown, or None when it is known (or the definition simply does not exist)."""
    if ids.norm(definition) in inv.gallery_images:
        return None
    scope = gallery_id or definition
    if errs := inv.read_errors("galleryImages", scope):
        return errs[0].describe()
    if sub := inv.unaudited_subscription(definition):
        return f"image definitions in subscription {sub} were not read (it is not in the audit)"
    return None


def _applicability(t: Template, inv: Inventory, os_states: dict[str, str | None]) -> Finding | None:
    """N/A or ERROR when the targets decide it, else None (the check applies)."""
    dists = t.distributions
    gallery = [(d.gallery_image_id, d.gallery_id) for d in dists if d.type.lower() == "sharedimage" and d.gallery_image_id]
    if not dists or len(gallery) < len(dists):
        return None  # a managed image or VHD target (or no target) is never Specialized here
    specialized, unknown = 0, []
    for definition, gallery_id in gallery:
        image = inv.gallery_images.get(ids.norm(definition))
        os_states[definition] = image.os_state if image else None
        if image and (image.os_state or "").lower() == "specialized":
            specialized += 1
        elif (why := _unknown_reason(inv, definition, gallery_id)) is not None:
            unknown.append(why)
    if specialized == len(gallery):
        return not_applicable("every target image definition is Specialized, which VM boot optimization does not support")
    if unknown and specialized + len(unknown) == len(gallery):
        return error(f"cannot tell whether the target image definitions are Specialized (then the check is N/A): {unknown[0]}")
    return None


@check("AIB-BOOT-001")
def vm_boot_optimization(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    state = t.vm_boot_state
    os_states: dict[str, str | None] = {}
    evidence: dict[str, object] = {"vm_boot_state": state, "os_states": os_states}
    if (decided := _applicability(t, inv, os_states)) is not None:
        decided.evidence = evidence
        return [decided]
    if (state or "").lower() == "enabled":
        return [passed("optimize.vmBoot.state is Enabled", evidence=evidence)]
    if state:
        return [failed(f"optimize.vmBoot.state is {state}: the image is not optimized for faster VM creation", evidence=evidence)]
    return [
        failed(
            "optimize.vmBoot is not set, so VM boot optimization is off and the image is not optimized for faster VM creation",
            evidence=evidence,
        )
    ]
