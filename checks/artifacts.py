"""Artifact integrity: what the build downloads by URI (customizers, validators, the optimize workload).

Image Builder runs whatever the URI serves at build time, with the build VM's rights, and bakes the result
into every VM made from the image. A `sha256Checksum` makes the build fail when the file changed; https
keeps the download from being altered on the way.
"""

from __future__ import annotations

from auditor.documents import ScriptRef, Template
from auditor.findings import Finding, failed, not_applicable, passed
from auditor.inventory import Inventory
from auditor.policy import Policy
from checks.registry import check

NOTHING_FETCHED = "the template fetches nothing by URI (inline customizers only)"


def _label(s: ScriptRef) -> str:
    kind = f" ({s.type})" if s.type else ""
    return f"{s.stage} '{s.name or '(unnamed)'}'{kind}"


def _evidence(s: ScriptRef) -> dict[str, object]:
    return {"stage": s.stage, "type": s.type, "name": s.name, "uri": s.uri, "sha256Checksum": s.sha256}


@check("AIB-SC-001")
def checksums(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if not t.scripts:
        return [not_applicable(NOTHING_FETCHED)]
    missing = [s for s in t.scripts if not (s.sha256 or "").strip()]
    if not missing:
        return [
            passed(
                f"all {len(t.scripts)} files fetched by URI carry sha256Checksum",
                evidence={"scripts": [_evidence(s) for s in t.scripts]},
            )
        ]
    return [failed(f"{_label(s)} fetches {s.uri} without sha256Checksum", evidence=_evidence(s)) for s in missing]


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def _transport(uri: str) -> str:
    scheme = _scheme(uri)
    return f"{scheme}://" if scheme else "a URI without a scheme"


@check("AIB-SC-002")
def https_only(t: Template, inv: Inventory, policy: Policy) -> list[Finding]:
    if not t.scripts:
        return [not_applicable(NOTHING_FETCHED)]
    insecure = [s for s in t.scripts if _scheme(s.uri) != "https"]
    if not insecure:
        return [passed(f"all {len(t.scripts)} files fetched by URI use https", evidence={"uris": [s.uri for s in t.scripts]})]
    return [failed(f"{_label(s)} fetches {s.uri} over {_transport(s.uri)}, not https", evidence=_evidence(s)) for s in insecure]
