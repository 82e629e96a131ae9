"""The collector against ARM's speed limit, end to end: `python -m tests.bench_collector [SUBSxTEMPLATES ...]`.

Each row runs the installed `aib-audit` script (startup, DefaultAzureCredential through a stand-in `az`, collection,
every check, the CSV report written) against the emulator with ARM's behaviour: 50 ms latency and a read bucket
per subscription (250, refilled at 25/s). The estate is S generated subscriptions,
each subscription under its own management group (fixtures.generate.generate_estate). Besides wall time it reports
when the collection was done (the `--snapshot-out` file appears after collecting, before the audit), and the ratio
to the honest floor (tests.bench_emulator.honest_floor_s) where the estate is large enough to be throttled.

`make bench` runs 300 x 30 (no throttling reached; target: collected in <= 60 s); 1 x 1,000 and 3 x 1,000 against
the floor are tests.bench_emulator's rows. `python -m tests.bench_collector 1x400 3x400 30x10 [--workers N]` runs
other sizes (N: --max-workers, default the CLI's).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor.emulator import ARM_WHOLE_LISTS, Emulator, Faults
from tests.bench_emulator import honest_floor_s

LATENCY_MS = 50.0
BURST = 250
REFILL_PER_S = 25.0
PAGE_SIZE = 100
SEED = 7
# make bench: the wide row. 1 x 1,000 and 3 x 1,000 against the honest floor are tests.bench_emulator's floor rows.
ROWS = ((300, 30),)
AIB_AUDIT = Path(sys.executable).with_name("aib-audit")


@dataclass
class CollectorRow:
    subscriptions: int
    templates_each: int
    requests: int
    throttled: int
    exit_code: int
    csv_rows: int
    wall_s: float
    collected_s: float  # from start until the --snapshot-out file appeared (startup, credential and collection)
    floor_s: float
    az_calls: int

    @property
    def ratio(self) -> float:
        return self.wall_s / self.floor_s if self.floor_s > 0 else float("nan")


def merged_estate(subscriptions: int, templates_each: int) -> dict[str, Any]:
    """S generated subscriptions, each under its own management group (fixtures.generate.generate_estate)."""
    from fixtures.generate import generate_estate

    return generate_estate(subscriptions, templates_each, seed=SEED)


def honest_floor(estate: dict[str, Any]) -> float:
    return honest_floor_s(estate, BURST, REFILL_PER_S)  # tests.bench_emulator's, as issue 8 defines it


def measure(subscriptions: int, templates_each: int, workdir: Path, workers: int | None = None) -> CollectorRow:
    from tests.test_e2e import Harness

    estate = merged_estate(subscriptions, templates_each)
    harness = Harness(workdir)
    report = workdir / "report.csv"
    faults = Faults(latency_ms=LATENCY_MS, throttle=True, burst=BURST, refill_per_s=REFILL_PER_S)
    with Emulator(estate, page_size=PAGE_SIZE, faults=faults, whole_lists=ARM_WHOLE_LISTS) as emu:
        args = [str(AIB_AUDIT)]
        for sub in estate["subscriptions"]:
            args += ["-s", str(sub)]
        snapshot = workdir / "snapshot.json"  # written (atomically) after collecting and before the audit
        args += ["--arm-endpoint", emu.endpoint, "--format", "csv", "--output", str(report), "--snapshot-out", str(snapshot)]
        args += ["--max-workers", str(workers)] if workers else []
        started = time.monotonic()
        collected = 0.0
        with subprocess.Popen(
            args, env=harness.env(emu.ca_bundle), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        ) as proc:
            while proc.poll() is None:
                if not collected and snapshot.exists():
                    collected = time.monotonic() - started
                time.sleep(0.05)
            stderr = proc.stderr.read() if proc.stderr else ""
        wall = time.monotonic() - started
        collected = collected or wall
        requests, throttled, writes = emu.calls, emu.throttled, emu.writes
    if writes:
        raise RuntimeError(f"the auditor sent {len(writes)} write requests")
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"aib-audit exited {proc.returncode}: {stderr[-2000:]}")
    with report.open(encoding="utf-8") as fh:
        csv_rows = sum(1 for _ in fh) - 1
    az_calls = len(harness.az_log.read_text(encoding="utf-8").splitlines()) if harness.az_log.exists() else 0
    return CollectorRow(
        subscriptions,
        templates_each,
        requests,
        throttled,
        proc.returncode,
        csv_rows,
        wall,
        collected,
        honest_floor(estate),
        az_calls,
    )


def collector_table(rows: list[CollectorRow]) -> list[str]:
    out = [
        "| subscriptions x templates | requests | 429s | token fetches (az) | CSV rows | collected (s) "
        "| wall, end to end (s) | honest floor (s) | ratio to floor, end to end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.floor_s > 0 else "n/a (no throttling reached)"
        out.append(
            f"| {r.subscriptions:,} x {r.templates_each:,} | {r.requests:,} | {r.throttled:,} | {r.az_calls} "
            f"| {r.csv_rows:,} | {r.collected_s:.1f} | {r.wall_s:.1f} | {r.floor_s:.1f} | {ratio} |"
        )
    return out


def collector_section(rows: list[CollectorRow]) -> list[str]:
    return [
        "## The collector against ARM's limit, end to end",
        "",
        "`tests.bench_collector`: the installed `aib-audit` (startup, credential through a stand-in `az`, collection,",
        "all checks, CSV written) against `fixtures.generate` estates merged per subscription, each subscription with",
        f"its own bucket ({BURST}, {REFILL_PER_S:.0f}/s), {LATENCY_MS:.0f} ms latency, the CLI's default --max-workers.",
        "Target: 300 x 30 collected in <= 60 s. **collected**: from the start of the process until its",
        "`--snapshot-out` file (written after collecting, before the audit) appeared; the honest floor is the one above.",
        "",
        *collector_table(rows),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = list(argv if argv is not None else sys.argv[1:])
    workers = int(args.pop(args.index("--workers") + 1)) if "--workers" in args else None
    args = [a for a in args if a != "--workers"]
    sizes = [tuple(int(x) for x in a.lower().split("x")) for a in args] or list(ROWS)
    rows: list[CollectorRow] = []
    for subs, each in sizes:
        print(f"aib-audit end to end: {subs} subscriptions x {each} templates ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="aib-bench-") as tmp:
            row = measure(subs, each, Path(tmp), workers)
        rows.append(row)
        print(f"  {row} ratio {row.ratio:.2f}", flush=True)
    print("\n".join(collector_table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
