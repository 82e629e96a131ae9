"""Triggers (best practice: "Set up triggers"): rebuild automatically when the source image gets a new version.

A SourceImage trigger can only exist when the template allows it (triggers how-to): the source is a
PlatformImage or gallery image at `latest`, the template distributes to a gallery image definition
without an explicit version, that definition is not the source's own, and the template provisioned.
When there is no trigger the finding lists every requirement the template misses, so the reviewer
knows whether "create a trigger" is enough or the template must be redeployed first.
"""

from __future__ import annotations

from auditor import ids
from auditor.documents import Template, Trigger
from auditor.findings import Finding, error, failed, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check

SOURCE_IMAGE = "sourceimage"


def _source_definition(t: Template) -> str | None:
    """The gallery image definition a SharedImageVersion source belongs to (normalized)."""
    vid = t.source_image_version_id
    return ids.norm(ids.parent_at(vid, "versions") or vid) or None


def _source_reasons(t: Template) -> list[str]:
    stype = (t.source_type or "").lower()
    if stype == "platformimage":
        if (t.source_version or "").lower() != "latest":
            pinned = f"is pinned to version '{t.source_version}'" if t.source_version else "has no version"
            return [f"the PlatformImage source {pinned}, not 'latest'"]
        return []
    if stype == "sharedimageversion":
        if not ids.norm(t.source_image_version_id).endswith("/versions/latest"):
            return [f"the gallery source {t.source_image_version_id or '(none)'} names a fixed version, not /versions/latest"]
        return []
    if stype == "managedimage":
        return ["a ManagedImage source never gets new versions"]
    return [f"source type '{t.source_type or ''}' cannot be watched by a trigger (PlatformImage or SharedImageVersion only)"]


def cannot_trigger_reasons(t: Template) -> list[str]:
    """Every documented requirement for a SourceImage trigger that the template misses."""
    reasons = _source_reasons(t)
    dists = t.gallery_distributions
    if not dists:
        reasons.append("it distributes to no gallery image definition")
    for d in dists:
        if d.explicit_version:
            reasons.append(f"gallery distribution '{d.run_output_name}' names explicit version {d.explicit_version}")
    source_def = _source_definition(t) if (t.source_type or "").lower() == "sharedimageversion" else None
    if source_def and any(ids.norm(d.gallery_image_id) == source_def for d in dists):
        reasons.append(f"the source and the target are the same image definition {ids.name_of(source_def)}")
    if (t.provisioning_state or "").lower() != "succeeded":
        reasons.append(f"provisioningState is {t.provisioning_state or 'unknown'}, not Succeeded")
    return reasons


def _auto_run_note(t: Template) -> str:
    if (t.auto_run_state or "").lower() == "enabled":
        return " (autoRun is Enabled, but it builds only once, when the template is created, so it does not count)"
    return ""


def _evidence(t: Template, triggers: list[Trigger], reasons: list[str]) -> dict[str, object]:
    return {
        "triggers": [
            {"id": tr.id, "kind": tr.kind, "status_code": tr.status_code, "status_message": tr.status_message} for tr in triggers
        ],
        "cannot_trigger_reasons": reasons,
        "source_type": t.source_type,
        "source_version": t.source_version,
        "source_image_version_id": t.source_image_version_id,
        "auto_run_state": t.auto_run_state,
    }


@check("AIB-TRIG-001")
def source_image_trigger(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    reasons = cannot_trigger_reasons(t)
    if errs := inv.read_errors("triggers", t.id):
        return [
            error(f"cannot tell whether the template has a trigger: {e.describe()}", evidence=_evidence(t, [], reasons))
            for e in errs
        ]
    triggers = [tr for tr in inv.triggers_of(t) if tr.kind.lower() == SOURCE_IMAGE]
    evidence = _evidence(t, triggers, reasons)
    healthy = [tr for tr in triggers if (tr.status_code or "").lower() == "healthy"]
    if healthy:
        return [passed(f"SourceImage trigger '{healthy[0].name}' is Healthy", evidence=evidence)]
    if triggers:
        tr = triggers[0]
        status = f"{tr.status_code or 'no status'}: {tr.status_message}" if tr.status_message else (tr.status_code or "no status")
        why = f"; the template also misses trigger requirements: {'; '.join(reasons)}" if reasons else ""
        return [
            failed(
                f"SourceImage trigger '{tr.name}' is not healthy (status {status}), so source updates do not rebuild the image"
                f"{why}",
                evidence=evidence,
            )
        ]
    if reasons:
        return [
            failed(
                f"no SourceImage trigger, and the template cannot have one: {'; '.join(reasons)}{_auto_run_note(t)}",
                evidence=evidence,
            )
        ]
    return [
        failed(
            f"no SourceImage trigger: the template meets the requirements, so create one to rebuild when the source image"
            f" is updated{_auto_run_note(t)}",
            evidence=evidence,
        )
    ]
