"""Terminal injection (issue 7, case 7): ARM text with ESC sequences and bidi overrides is shown escaped in the
table, the `checks` listing and one-line errors; the CSV and JSON keep the exact data."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from auditor.audit import run_audit, select_checks
from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.inventory import build_inventory
from auditor.reports import RunInfo, exit_code_for, render
from auditor.textsafe import one_line, visible
from fixtures import builders as b
from tests.conftest import StartEmulator

SUB = b.guid("textsafe-sub")
ESC = "\x1b"
RLO = "\u202e"
# A template name that clears the screen and reverses what follows; ARM allows neither, but a snapshot or a
# proxy can carry anything, and names are only one of the fields.
EVIL_NAME = f"img{ESC}[2J{RLO}gpj.exe"
RUN_MESSAGE = f"customizer failed {ESC}]0;pwned{chr(7)} {ESC}[31mFAKE PASS{ESC}[0m"
TRIGGER_MESSAGE = f"source image {RLO}deleted{chr(0x202C)} {ESC}[8mhidden"
ROLE_NAME = f"Builder {ESC}[1mAdmin{RLO}nimda"
WRITER = b.guid("principal:writer")
ROLE_GUID = b.guid("role:hostile")
HOSTILE = (ESC, RLO, "\x07", "\u202c")


def hostile_estate() -> dict[str, Any]:
    tpl = b.template(SUB, "rg-images", EVIL_NAME, last_run_state="Failed")
    tpl["properties"]["lastRunStatus"]["message"] = RUN_MESSAGE
    trigger = b.trigger(tpl, code="Unhealthy")
    trigger["properties"]["status"]["message"] = TRIGGER_MESSAGE
    role = b.role_definition(ROLE_GUID, ROLE_NAME, ["Microsoft.VirtualMachineImages/imageTemplates/*"], sub=SUB, custom=True)
    ra = b.role_assignment(b.sub_id(SUB), ROLE_GUID, WRITER, "User", sub=SUB)
    return b.snapshot(
        [SUB],
        {
            "imageTemplates": [tpl],
            "triggers": [trigger],
            "resourceGroups": [b.resource_group(SUB, "rg-images"), b.resource_group(SUB, b.staging_rg_name(tpl))],
            "roleDefinitions": [role],
            "roleAssignments": [ra],
        },
    )


def render_all(emulator: StartEmulator) -> dict[str, str]:
    emu = emulator(hostile_estate())
    snap = collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
    result = run_audit(build_inventory(snap), select_checks(["AIB-OPS-001", "AIB-TRIG-001", "AIB-LP-001"]))
    now = datetime(2026, 11, 30, tzinfo=UTC)
    run = RunInfo("live", [SUB], emu.endpoint, now, now, exit_code_for(result))
    return {fmt: render(fmt, result, run, color=(fmt == "table"), width=200) for fmt in ("table", "csv", "json")}


def test_the_table_shows_hostile_arm_text_escaped(emulator: StartEmulator) -> None:
    out = render_all(emulator)
    table = out["table"]
    # Colour is on (as at a terminal): ESC appears only in rich's own SGR sequences, never in the data.
    data_escs = table.replace(f"{ESC}[", "").count(ESC)
    assert data_escs == 0, repr(table)
    assert RLO not in table and "\x07" not in table and "\u202c" not in table
    plain = " ".join(_strip_sgr(table).split())
    assert "img\\x1b[2J\\u202egpj.exe" in plain  # the template name
    assert "\\x1b]0;pwned\\x07" in plain and "\\x1b[31mFAKE" in plain  # lastRunStatus.message
    assert "\\u202edeleted\\u202c" in plain and "\\x1b[8mhidden" in plain  # the trigger's status message
    assert "Builder \\x1b[1mAdmin\\u202enimda" in plain  # the role name


def test_csv_and_json_keep_the_exact_arm_text(emulator: StartEmulator) -> None:
    out = render_all(emulator)
    rows = list(csv.DictReader(io.StringIO(out["csv"], newline="")))
    assert EVIL_NAME in {r["resource_name"] for r in rows}
    by_check = {r["check_id"]: r for r in rows if r["check_id"] != "AIB-LP-001"}
    assert RUN_MESSAGE in by_check["AIB-OPS-001"]["detail"]
    assert TRIGGER_MESSAGE in by_check["AIB-TRIG-001"]["detail"]
    lp = [r for r in rows if r["check_id"] == "AIB-LP-001" and r["principal_id"] == WRITER]
    assert lp and lp[0]["role_name"] == ROLE_NAME
    assert ESC not in out["json"]  # JSON writes controls as \u001b, as it always did
    doc = json.loads(out["json"])
    assert [t["name"] for t in doc["templates"]] == [EVIL_NAME]
    details = [f["detail"] for f in doc["findings"]]
    assert any(RUN_MESSAGE in d for d in details) and any(TRIGGER_MESSAGE in d for d in details)
    assert ROLE_NAME in {f["role_name"] for f in doc["findings"]}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text [bold]", "plain text [bold]"),
        ("a\x1b[0mb", "a\\x1b[0mb"),
        ("tab\there\r\n", "tab\\there\\r\\n"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("\x7f", "\\x7f"),
        ("x\u202ey\u2066z\u2069\u200e\u200f\u061c", "x\\u202ey\\u2066z\\u2069\\u200e\\u200f\\u061c"),
        ("\u2028\ufeff\U000e0041", "\\u2028\\ufeff\\U000e0041"),
        ("Contoso Image Builder — ünïcode ✓", "Contoso Image Builder — ünïcode ✓"),
    ],
)
def test_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_one_line_folds_then_escapes() -> None:
    assert one_line("first\n  second\x1b[2J") == "first second\\x1b[2J"


def _strip_sgr(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
