"""Small estates and CLI helpers shared by the workflow tests (exceptions, baseline, gate, reports).

Each template sits in a resource group of its own, so a lock on that group decides its AIB-LOCK-001 alone:
locked PASS, unlocked FAIL (medium). AIB-LOCK-002 (low) passes unless the lock is ReadOnly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fixtures import builders as b
from tests.test_cli import csv_rows, run  # noqa: F401 - re-exported: the workflow tests import them from here

SUB = b.guid("workflow:sub-1")
SUB2 = b.guid("workflow:sub-2")
LOCKS = ["--check", "AIB-LOCK-001", "--check", "AIB-LOCK-002"]


def rg(name: str) -> str:
    return f"rg-{name}"


def tid(name: str, sub: str = SUB) -> str:
    return b.template_id(sub, rg(name), name)


def estate(
    templates: dict[str, str | None],
    sub: str = SUB,
    errors: list[dict[str, Any]] | None = None,
    extra_subs: dict[str, dict[str, str | None]] | None = None,
) -> dict[str, Any]:
    """`templates`: name -> lock level on its resource group (None: no lock, so AIB-LOCK-001 FAILs)."""
    resources: dict[str, list[dict[str, Any]]] = {"imageTemplates": [], "locks": [], "resourceGroups": []}
    subs = {sub: templates, **(extra_subs or {})}
    for s, tpls in subs.items():
        for name, level in tpls.items():
            resources["imageTemplates"].append(b.template(s, rg(name), name))
            resources["resourceGroups"].append(b.resource_group(s, rg(name)))
            if level:
                resources["locks"].append(b.lock(b.rg_id(s, rg(name)), f"lock-{name}", level))
    return b.snapshot(list(subs), resources, errors)


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("aib-audit: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
