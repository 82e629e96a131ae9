"""No secrets anywhere: even with the SDKs' debug log on, the bearer token never reaches stderr or a file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from auditor.azure import StaticTokenCredential

AIB_AUDIT = Path(sys.executable).with_name("aib-audit")


def test_debug_logging_redacts_the_bearer_token(tmp_path: Path) -> None:
    token = StaticTokenCredential().get_token("https://management.azure.com/.default").token  # what --demo sends
    snapshot, report = tmp_path / "snap.json", tmp_path / "report.json"
    env = {**os.environ, "AIB_AUDIT_DEBUG": "1"}
    args = [str(AIB_AUDIT), "--demo", "--snapshot-out", str(snapshot), "--format", "json", "--output", str(report)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "'Authorization': 'REDACTED'" in proc.stderr  # the debug log is really on, and redacts
    for where, text in (
        ("stderr", proc.stderr),
        ("stdout", proc.stdout),
        ("snapshot", snapshot.read_text()),
        ("report", report.read_text()),
    ):
        assert token not in text, f"the bearer token leaked into {where}"
        assert "eyJ" not in text, f"something like a JWT is in {where}"
