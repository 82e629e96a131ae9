"""The memory benchmark: peak RSS of one whole `aib-audit` run at scale (part of `make bench`; also runnable alone).

`python -m tests.bench_memory [TEMPLATES [ASSIGNMENTS_PER_TEMPLATE]] [--live]` (default 10,000 templates x 10 =
100,000 role assignments, what issue 8 asks for: peak RSS < 1 GiB end to end with CSV output).

A generated estate (fixtures.generate, one subscription) is written as a snapshot and audited by the installed
command in a child process, exactly as a user runs it: `aib-audit --snapshot FILE --format csv --output FILE`
(every check, the CSV streamed to the file). The child's own peak RSS comes from `os.wait4` (its rusage alone,
not that of other children the benchmark started). No emulator and no network: collection is measured by the
other rows; this one is about what the auditor holds (the parsed inventory, the findings, the report).

The live row collects the same estate from the emulator (in this process; no latency, no throttle) with
`aib-audit -s SUB --arm-endpoint ... --format csv --output FILE`: the collector's documents, the early audit run
while the trigger lists are read, and the report, in one process.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATES = 10_000
DEFAULT_ASSIGNMENTS_PER_TEMPLATE = 10
SEED = 7
TARGET_MIB = 1024.0


@dataclass
class MemoryRow:
    source: str  # snapshot | live
    templates: int
    role_assignments: int
    snapshot_mib: float  # the snapshot file audited
    findings: int  # CSV rows
    csv_mib: float
    exit_code: int
    wall_s: float  # the whole command: start-up, loading, checks and the CSV
    peak_rss_mib: float

    @property
    def within_target(self) -> bool:
        return self.peak_rss_mib < TARGET_MIB


def _csv_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1  # the header


def measure_memory(
    templates: int = DEFAULT_TEMPLATES, assignments_per_template: int = DEFAULT_ASSIGNMENTS_PER_TEMPLATE, live: bool = False
) -> MemoryRow:
    from fixtures.generate import generate

    estate = generate(templates, seed=SEED, assignments_per_template=assignments_per_template)
    assignments = len(estate["resources"].get("roleAssignments", []))
    with tempfile.TemporaryDirectory(prefix="aib-bench-memory-") as tmp:
        snap, out = Path(tmp) / "estate.json", Path(tmp) / "findings.csv"
        snap.write_text(json.dumps(estate), encoding="utf-8")
        if live:
            return _measure_live(estate, Path(tmp), snap.stat().st_size, assignments)
        del estate  # the parent's copy is not the child's memory, but the machine's
        cmd = [sys.executable, "-m", "auditor.cli", "--snapshot", str(snap), "--format", "csv", "--output", str(out)]
        return _run_child("snapshot", cmd, None, out, templates, assignments, snap.stat().st_size)


def _measure_live(estate: dict[str, Any], tmp: Path, snapshot_bytes: int, assignments: int) -> MemoryRow:
    from auditor.emulator import ARM_WHOLE_LISTS, Emulator
    from tests.bench_emulator import _STAND_IN_AZ, _TOKEN, _cli_env

    az = tmp / "az"
    az.write_text(_STAND_IN_AZ.format(token=json.dumps(_TOKEN)), encoding="utf-8")
    az.chmod(0o755)
    out = tmp / "live.csv"
    templates = len(estate["resources"]["imageTemplates"])
    with Emulator(estate, whole_lists=ARM_WHOLE_LISTS) as emu:
        cmd = [sys.executable, "-m", "auditor.cli", "-s", estate["subscriptions"][0], "--arm-endpoint", emu.endpoint]
        cmd += ["--format", "csv", "--output", str(out)]
        return _run_child("live", cmd, _cli_env(tmp, emu.ca_bundle), out, templates, assignments, snapshot_bytes)


def _run_child(
    source: str, cmd: list[str], env: dict[str, str] | None, out: Path, templates: int, assignments: int, snapshot_bytes: int
) -> MemoryRow:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4: tell Popen, so it does not wait again
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode not in (0, 1, 3):
        raise RuntimeError(f"aib-audit exited {proc.returncode}: {err.strip()}")
    return MemoryRow(
        source=source,
        templates=templates,
        role_assignments=assignments,
        snapshot_mib=snapshot_bytes / 2**20,
        findings=_csv_rows(out),
        csv_mib=out.stat().st_size / 2**20,
        exit_code=proc.returncode,
        wall_s=wall,
        peak_rss_mib=usage.ru_maxrss / 1024.0,  # Linux reports KiB
    )


def memory_table(rows: list[MemoryRow]) -> list[str]:
    out = [
        "| audited from | templates | role assignments | snapshot (MiB) | findings (CSV rows) | CSV (MiB) | exit code "
        f"| wall time (s) | peak RSS (MiB) | < {TARGET_MIB:.0f} MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.source} | {r.templates:,} | {r.role_assignments:,} | {r.snapshot_mib:.0f} | {r.findings:,} | {r.csv_mib:.0f} "
            f"| {r.exit_code} | {r.wall_s:.1f} | {r.peak_rss_mib:.0f} | {'yes' if r.within_target else 'NO'} |"
        )
    return out


def memory_section(rows: list[MemoryRow]) -> list[str]:
    return [
        "## Memory: one run at scale, CSV output",
        "",
        "`tests.bench_memory`: a generated estate written as a snapshot and audited by a child process exactly as a",
        "user runs it (`aib-audit --snapshot FILE --format csv --output FILE`, every check); the peak RSS is the",
        f"child's own (`os.wait4`), start-up included. Target: under {TARGET_MIB:.0f} MiB. The live row collects the",
        "same estate from the emulator (in the parent; no latency or throttle) with `aib-audit -s SUB --arm-endpoint",
        "URL --format csv --output FILE`: the collected documents, the audit run while the trigger lists are read,",
        "and the report, in one process.",
        "",
        *memory_table(rows),
        "",
    ]


def main(argv: list[str]) -> int:
    live = "--live" in argv
    argv = [a for a in argv if a != "--live"]
    templates = int(argv[0]) if argv else DEFAULT_TEMPLATES
    per = int(argv[1]) if len(argv) > 1 else DEFAULT_ASSIGNMENTS_PER_TEMPLATE
    row = measure_memory(templates, per, live=live)
    print(asdict(row))
    print("\n".join(memory_table([row])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
