"""The collector against ARM's speed limit, end to end: `python -m tests.bench_collector [SUBSxTEMPLATES ...]`.

Each row runs the installed `aib-audit` script (startup, DefaultAzureCredential through a stand-in `az`, collection,
every check, the CSV report written) against the emulator with ARM's behaviour: 50 ms latency and a read bucket
per subscription (250, refilled at 25/s). The estate is `fixtures.generate` once per subscription (seeds 1..S),
merged. The figure that matters is the ratio to the *honest floor* (issue 8):

    floor = max over subscriptions of (its templates' trigger lists + its unavoidable subscription-wide lists at one
            page each + its target galleries' image lists - 250 burst) / 25 s   (subscriptions in parallel)

Rows: 1 x 1,000 and 3 x 1,000 (targets <= 1.15x the floor) and 300 x 30 (no throttling reached: collect <= 60 s).
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auditor import ids
from auditor.emulator import Emulator, Faults
from auditor.inventory import parse_template

LATENCY_MS = 50.0
BURST = 250
REFILL_PER_S = 25.0
PAGE_SIZE = 100
SUBSCRIPTION_LISTS = 10  # the per-subscription lists of auditor.collect phase 1 (built-in roles: once, tenant lane)
ROWS = ((1, 1000), (3, 1000), (300, 30))
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
    floor_s: float
    az_calls: int

    @property
    def ratio(self) -> float:
        return self.wall_s / self.floor_s if self.floor_s > 0 else float("nan")


def merged_estate(subscriptions: int, templates_each: int) -> dict[str, Any]:
    """`fixtures.generate` once per subscription, merged; a document two of them share (a built-in role) once."""
    from fixtures.generate import generate

    subs: list[str] = []
    resources: dict[str, dict[str, Any]] = {}
    base: dict[str, Any] = {}
    for seed in range(1, subscriptions + 1):
        part = generate(templates_each, seed=seed)
        base = base or part
        subs += [str(s) for s in part["subscriptions"]]
        for kind, docs in part["resources"].items():
            bucket = resources.setdefault(kind, {})
            for doc in docs:
                bucket.setdefault(ids.norm(str(doc.get("id"))), doc)
    return {**base, "subscriptions": subs, "resources": {k: list(v.values()) for k, v in resources.items()}}


def honest_floor(estate: dict[str, Any]) -> float:
    per_sub: dict[str, int] = {str(s).lower(): SUBSCRIPTION_LISTS for s in estate["subscriptions"]}
    galleries: dict[str, set[str]] = {}
    for doc in estate["resources"].get("imageTemplates", []):
        template = parse_template(doc)
        sub = (ids.subscription_of(template.id) or "").lower()
        per_sub[sub] = per_sub.get(sub, SUBSCRIPTION_LISTS) + 1
        for dist in template.gallery_distributions:
            gid = ids.norm(dist.gallery_id or "")
            if gid:
                galleries.setdefault((ids.subscription_of(gid) or "").lower(), set()).add(gid)
    for sub, found in galleries.items():
        per_sub[sub] = per_sub.get(sub, 0) + len(found)
    return max(max(0, reads - BURST) / REFILL_PER_S for reads in per_sub.values())


def measure(subscriptions: int, templates_each: int, workdir: Path) -> CollectorRow:
    from tests.test_e2e import Harness

    estate = merged_estate(subscriptions, templates_each)
    harness = Harness(workdir)
    report = workdir / "report.csv"
    faults = Faults(latency_ms=LATENCY_MS, throttle=True, burst=BURST, refill_per_s=REFILL_PER_S)
    with Emulator(estate, page_size=PAGE_SIZE, faults=faults) as emu:
        args = [str(AIB_AUDIT)]
        for sub in estate["subscriptions"]:
            args += ["-s", str(sub)]
        args += ["--arm-endpoint", emu.endpoint, "--format", "csv", "--output", str(report)]
        started = time.monotonic()
        proc = subprocess.run(args, env=harness.env(emu.ca_bundle), capture_output=True, text=True, timeout=3600)
        wall = time.monotonic() - started
        requests, throttled, writes = emu.calls, emu.throttled, emu.writes
    if writes:
        raise RuntimeError(f"the auditor sent {len(writes)} write requests")
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"aib-audit exited {proc.returncode}: {proc.stderr[-2000:]}")
    with report.open(encoding="utf-8") as fh:
        csv_rows = sum(1 for _ in fh) - 1
    az_calls = len(harness.az_log.read_text(encoding="utf-8").splitlines()) if harness.az_log.exists() else 0
    return CollectorRow(
        subscriptions, templates_each, requests, throttled, proc.returncode, csv_rows, wall, honest_floor(estate), az_calls
    )


def collector_table(rows: list[CollectorRow]) -> list[str]:
    out = [
        "| subscriptions x templates | requests | 429s | token fetches (az) | CSV rows | wall, end to end (s) "
        "| honest floor (s) | ratio to floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.floor_s > 0 else "n/a (no throttling reached)"
        out.append(
            f"| {r.subscriptions:,} x {r.templates_each:,} | {r.requests:,} | {r.throttled:,} | {r.az_calls} "
            f"| {r.csv_rows:,} | {r.wall_s:.1f} | {r.floor_s:.1f} | {ratio} |"
        )
    return out


def collector_section(rows: list[CollectorRow]) -> list[str]:
    return [
        "## The collector against ARM's limit, end to end",
        "",
        "`tests.bench_collector`: the installed `aib-audit` (startup, credential through a stand-in `az`, collection,",
        "all checks, CSV written) against `fixtures.generate` estates merged per subscription, each subscription with",
        f"its own bucket ({BURST}, {REFILL_PER_S:.0f}/s), {LATENCY_MS:.0f} ms latency. Honest floor: per subscription,",
        f"(trigger lists + {SUBSCRIPTION_LISTS} lists at one page + target gallery image lists - {BURST}) / "
        f"{REFILL_PER_S:.0f} s, subscriptions in parallel. Targets: <= 1.15x for 1 x 1,000 and 3 x 1,000; 300 x 30 "
        "in <= 60 s.",
        "",
        *collector_table(rows),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    import tempfile

    args = argv if argv is not None else sys.argv[1:]
    sizes = [tuple(int(x) for x in a.lower().split("x")) for a in args] or list(ROWS)
    rows: list[CollectorRow] = []
    for subs, each in sizes:
        print(f"aib-audit end to end: {subs} subscriptions x {each} templates ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="aib-bench-") as tmp:
            row = measure(subs, each, Path(tmp))
        rows.append(row)
        print(f"  {row} ratio {row.ratio:.2f}", flush=True)
    print("\n".join(collector_table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
