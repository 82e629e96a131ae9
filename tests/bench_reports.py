"""The report formats at scale: part of `make bench`, or alone with `python -m tests.bench_reports` (which rewrites
only the "Reports" section of BENCHMARKS.md). Not a test module.

A generated estate of 1,000 templates (fixtures.generate, the same seed as the collection benchmark) is audited
from its snapshot (no I/O), then each format is rendered and timed, and the HTML report is loaded in headless
Chromium (`--screenshot`: the wall time covers parsing, the script, layout and the first paint). Browser start-up
is measured on an empty page and given beside it (tests/test_browser.py checks what the script renders). No
network: file:// only, DNS mapped to nothing, the page's CSP forbids fetches.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

TEMPLATES = 1000
SEED = 7
OUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADING = "## Reports at 1,000 templates"
FORMATS = ("csv", "json", "sarif", "html", "markdown")


@dataclass
class ReportRow:
    fmt: str
    render_s: float
    size_bytes: int


@dataclass
class ReportBench:
    templates: int
    findings: int
    listed_rows: int  # FAIL/ERROR/ACCEPTED rows, which the HTML lists one by one
    rows: list[ReportRow]
    load_s: float | None  # chromium --screenshot of the HTML report, wall time
    browser_start_s: float | None  # the same for an empty page


def _chromium(path: Path, profile: Path) -> float:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium is not None
    cmd = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=http://127.0.0.1:9",
        f"--screenshot={profile.parent / 'shot.png'}",
        "--window-size=1400,1600",
        path.as_uri(),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "HOME": str(profile)}, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"chromium failed: {proc.stderr[-500:]}")
    return elapsed


def measure(n: int = TEMPLATES) -> ReportBench:
    from auditor.audit import run_audit, select_checks
    from auditor.findings import Status
    from auditor.inventory import build_inventory
    from auditor.reports import RunInfo, all_findings, exit_code_for, render
    from auditor.snapshot import Snapshot
    from fixtures.generate import generate

    snap = Snapshot.from_dict(generate(n, seed=SEED))
    result = run_audit(build_inventory(snap), select_checks())
    now = datetime.now(UTC)
    run = RunInfo("snapshot", list(snap.subscriptions), "", now, now, exit_code_for(result))
    rows: list[ReportRow] = []
    html = ""
    for fmt in FORMATS:
        t0 = time.perf_counter()
        text = render(fmt, result, run)
        rows.append(ReportRow(fmt, time.perf_counter() - t0, len(text.encode("utf-8"))))
        if fmt == "html":
            html = text
    findings = all_findings(result)
    listed = sum(1 for f in findings if f.status in (Status.FAIL, Status.ERROR, Status.ACCEPTED))
    load_s = start_s = None
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        with tempfile.TemporaryDirectory(prefix="aib-bench-") as tmp:
            page, empty = Path(tmp) / "report.html", Path(tmp) / "empty.html"
            page.write_text(html, encoding="utf-8")
            empty.write_text("<!DOCTYPE html><title>empty</title>", encoding="utf-8")
            start_s = _chromium(empty, Path(tmp) / "profile")
            load_s = _chromium(page, Path(tmp) / "profile")
    return ReportBench(n, len(findings), listed, rows, load_s, start_s)


def section(b: ReportBench) -> list[str]:
    mib = 1024 * 1024
    lines = [
        HEADING,
        "",
        f"`tests.bench_reports` (`python -m tests.bench_reports` runs it alone): `fixtures.generate.generate({b.templates}, "
        f"seed={SEED})` audited",
        f"from its snapshot with every check: {b.findings:,} findings, of which {b.listed_rows:,} FAIL/ERROR/ACCEPTED rows (the",
        "HTML lists those one by one; PASS and N/A are named per template). Render time is the renderer alone.",
        "",
        "| format | render (s) | size (MiB) |",
        "|---|---:|---:|",
        *[f"| {r.fmt} | {r.render_s:.2f} | {r.size_bytes / mib:.2f} |" for r in b.rows],
        "",
    ]
    if b.load_s is None or b.browser_start_s is None:
        lines.append("HTML load time: not measured (no chromium on this machine).")
    else:
        lines.append(
            f"HTML load and first paint in headless Chromium (`--screenshot`, wall time, browser start included): "
            f"{b.load_s:.1f} s; an empty page takes {b.browser_start_s:.1f} s, so the report itself about "
            f"{max(0.0, b.load_s - b.browser_start_s):.1f} s. Folded templates keep the first paint to the scorecard and the "
            f"template list; the filter indexes the rows only once something is typed."
        )
    lines += ["", f"Machine load while measuring (1-minute load average): {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.", ""]
    return lines


def replace_section(text: str, new: list[str]) -> str:
    """BENCHMARKS.md with the reports section replaced (or appended), the rest as it was."""
    lines = text.rstrip("\n").splitlines()
    if HEADING in lines:
        start = lines.index(HEADING)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines = lines[:start] + new + lines[end:]
    else:
        lines = [*lines, "", *new]
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    print(f"rendering every report format for {TEMPLATES:,} templates ...", flush=True)
    bench = measure()
    new = section(bench)
    OUT.write_text(replace_section(OUT.read_text(encoding="utf-8") if OUT.exists() else "# Benchmarks\n", new), encoding="utf-8")
    print("\n".join(new))
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
