"""Benchmark rows that keep the figures honest (part of `make bench`; also runnable alone).

- **The honest floor** (`honest_floor_s`): the least time ARM's throttling allows an audit of an estate. Per
  subscription, the reads that cannot be avoided are each template's trigger list, the subscription's own lists
  at one page each (`SUBSCRIPTION_LISTS`) and the image-definition list of each target gallery it holds; the first
  `burst` are free and the rest come at `refill_per_s`. Subscriptions have their own buckets and are read in
  parallel, so the floor is the largest subscription's: `max over s of max(0, reads_s - 250) / 25`.
- **Floor rows** (`measure_floor_row`): S generated subscriptions of N templates (fixtures.generate.generate_estate)
  audited end to end by the real `aib-audit` command in a fresh process (startup, DefaultAzureCredential through a
  stand-in `az`, collection, checks and the CSV report), against the emulator with ARM's behaviour on; the row
  prints wall time / floor (target <= 1.15).
- **Emulator overhead** (`measure_overhead`): N sequential GETs over one keep-alive TLS connection from a plain
  client (http.client) at 50 ms configured latency; the mean over 50 ms is what the emulator adds (target <= 10%).

`python -m tests.bench_emulator overhead [N]` and `python -m tests.bench_emulator floor SUBSCRIPTIONS TEMPLATES`.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from auditor import ids
from auditor.emulator import ARM_WHOLE_LISTS, Emulator, Faults

LATENCY_MS = 50.0
BURST = 250
REFILL_PER_S = 25.0
PAGE_SIZE = 100
WORKERS: int | None = None  # None: the CLI's default --max-workers
FLOOR_TARGET = 1.15
OVERHEAD_TARGET_PCT = 10.0
OVERHEAD_REQUESTS = 100
# What every audited subscription lists, at least one page each (auditor/collect.py phase 1). The built-in roles
# are listed once per run at the tenant root, which is not a subscription's bucket.
SUBSCRIPTION_LISTS = (
    "image templates",
    "locks",
    "resource groups",
    "role assignments",
    "role assignments atScope()",
    "deny assignments",
    "PIM eligibilities",
    "custom roles",
    "user-assigned identities",
    "galleries",
)
ROOT = Path(__file__).resolve().parent.parent
_TOKEN = {
    "accessToken": "bench-stand-in-token",
    "expiresOn": "2099-01-01 00:00:00.000000",
    "expires_on": 4070908800,
    "tokenType": "Bearer",
}
_STAND_IN_AZ = """#!/bin/sh
# A stand-in Azure CLI for the benchmark: answers `az account get-access-token` like the real one.
if [ "$1" = "account" ] && [ "$2" = "get-access-token" ]; then
  cat <<'JSON'
{token}
JSON
  exit 0
fi
exit 2
"""


# --------------------------------------------------------------------------------------------- the honest floor


def floor_reads(estate: dict[str, Any]) -> dict[str, int]:
    """The unavoidable reads per subscription (lower case): trigger lists of its templates, its own lists at one
    page each, and the image-definition list of every target gallery it holds."""
    subs = {s.lower() for s in estate["subscriptions"]}
    reads: Counter[str] = Counter(dict.fromkeys(subs, len(SUBSCRIPTION_LISTS)))
    galleries: set[str] = set()
    for template in estate["resources"].get("imageTemplates", []):
        reads[ids.subscription_of(ids.norm(template["id"])) or ""] += 1
        for target in (template.get("properties") or {}).get("distribute") or []:
            image = str(target.get("galleryImageId") or "")
            if "/galleries/" in image.lower():
                galleries.add(ids.norm(image).split("/images/", 1)[0])
    for gallery in galleries:
        reads[ids.subscription_of(gallery) or ""] += 1
    return dict(reads)


def floor_s(per_subscription: Iterable[int], burst: int = BURST, refill_per_s: float = REFILL_PER_S) -> float:
    """Subscriptions in parallel, each paced by its own bucket: the slowest one bounds the run."""
    return max((max(0, reads - burst) / refill_per_s for reads in per_subscription), default=0.0)


def honest_floor_s(estate: dict[str, Any], burst: int = BURST, refill_per_s: float = REFILL_PER_S) -> float:
    """The honest floor of auditing `estate` (see the module docstring), in seconds."""
    return floor_s(floor_reads(estate).values(), burst, refill_per_s)


# --------------------------------------------------------------------------------------------- floor rows


@dataclass
class FloorRow:
    subscriptions: int
    templates_per_subscription: int
    floor_s: float
    wall_s: float  # the aib-audit process, spawn to exit
    paged_floor_s: float  # the same bucket arithmetic over the reads actually answered (pages at PAGE_SIZE included)
    requests: int
    throttled: int
    exit_code: int
    rows: int  # CSV rows written
    error_rows: int

    @property
    def ratio(self) -> float | None:
        return self.wall_s / self.floor_s if self.floor_s > 0 else None

    @property
    def paged_ratio(self) -> float | None:
        return self.wall_s / self.paged_floor_s if self.paged_floor_s > 0 else None


def _cli_env(bin_dir: Path, ca_bundle: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "MSI_", "IDENTITY_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"  # the stand-in az first
    env["AZURE_TOKEN_CREDENTIALS"] = "AzureCliCredential"  # no managed-identity probe (169.254.169.254)
    env["REQUESTS_CA_BUNDLE"] = ca_bundle
    return env


def measure_floor_row(subscriptions: int, templates: int, seed: int = 7) -> FloorRow:
    """S x N generated templates audited end to end by `aib-audit` against the emulator with ARM's behaviour on."""
    from fixtures.generate import generate_estate

    estate = generate_estate(subscriptions, templates, seed=seed)
    floor = honest_floor_s(estate)
    faults = Faults(latency_ms=LATENCY_MS, throttle=True, burst=BURST, refill_per_s=REFILL_PER_S)
    emulator = Emulator(estate, page_size=PAGE_SIZE, faults=faults, whole_lists=ARM_WHOLE_LISTS)
    with tempfile.TemporaryDirectory(prefix="aib-bench-") as tmp, emulator as emu:
        az = Path(tmp) / "az"
        az.write_text(_STAND_IN_AZ.format(token=json.dumps(_TOKEN)), encoding="utf-8")
        az.chmod(0o755)
        out = Path(tmp) / "findings.csv"
        cmd = [str(Path(sys.executable).with_name("aib-audit"))]
        for sub in estate["subscriptions"]:
            cmd += ["-s", sub]
        cmd += ["--arm-endpoint", emu.endpoint, "--format", "csv", "--output", str(out)]
        cmd += ["--max-workers", str(WORKERS)] if WORKERS else []
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=_cli_env(Path(tmp), emu.ca_bundle), capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        if proc.returncode not in (0, 1, 3):
            raise RuntimeError(f"aib-audit exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        with out.open(encoding="utf-8", newline="") as f:
            statuses = Counter(row.get("status", "") for row in csv.DictReader(f))
        requests, throttled, writes = emu.calls, emu.throttled, emu.writes
        answered = Counter(ids.subscription_of(r.path) for r in emu.requests if r.status != 429)
    if writes:
        raise RuntimeError(f"the auditor sent {len(writes)} write requests")
    answered.pop(None, None)  # tenant-level reads (built-in roles, scope) are not a subscription's bucket
    return FloorRow(
        subscriptions=subscriptions,
        templates_per_subscription=templates,
        floor_s=floor,
        wall_s=wall,
        paged_floor_s=floor_s(answered.values()),
        requests=requests,
        throttled=throttled,
        exit_code=proc.returncode,
        rows=sum(statuses.values()),
        error_rows=statuses.get("ERROR", 0),
    )


def floor_table(rows: list[FloorRow]) -> list[str]:
    out = [
        "| subscriptions x templates | honest floor (s) | wall time, end to end (s) | wall / floor | target "
        "| bucket floor of the reads sent (s) | wall / that floor | requests | 429s | exit | report rows | ERROR rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "n/a (under the burst)"
        paged = f"{r.paged_ratio:.2f}x" if r.paged_ratio is not None else "n/a"
        out.append(
            f"| {r.subscriptions:,} x {r.templates_per_subscription:,} | {r.floor_s:.1f} | {r.wall_s:.1f} | {ratio} "
            f"| <= {FLOOR_TARGET:.2f}x | {r.paged_floor_s:.1f} | {paged} | {r.requests:,} | {r.throttled:,} "
            f"| {r.exit_code} | {r.rows:,} | {r.error_rows:,} |"
        )
    return out


# --------------------------------------------------------------------------------------------- emulator overhead


@dataclass
class OverheadRow:
    latency_ms: float
    requests: int
    connections: int  # new connections the client opened: 1 means keep-alive held throughout
    mean_ms: float
    median_ms: float
    p95_ms: float

    @property
    def overhead_pct(self) -> float:
        """What the emulator (and TLS, and the client) add over the configured latency, in percent of it."""
        return 100.0 * (self.mean_ms - self.latency_ms) / self.latency_ms

    @property
    def within_target(self) -> bool:
        return self.overhead_pct <= OVERHEAD_TARGET_PCT


def measure_overhead(requests: int = OVERHEAD_REQUESTS, latency_ms: float = LATENCY_MS) -> OverheadRow:
    """`requests` sequential GETs of a subscription over one keep-alive TLS connection (after one warm-up GET that
    pays the handshake); per-request time from send to the last body byte."""
    from fixtures.generate import generate

    if requests < 1:
        raise ValueError("requests must be at least 1")
    estate = generate(1, seed=0)
    sub = estate["subscriptions"][0]
    with Emulator(estate, faults=Faults(latency_ms=latency_ms)) as emu:
        host, port = emu.endpoint.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=emu.ca_bundle))
        path = f"/subscriptions/{sub}?api-version=2022-12-01"
        headers = {"Authorization": "Bearer bench"}
        times: list[float] = []
        sockets: list[Any] = []  # kept alive, so a reconnect cannot reuse an id()
        try:
            for i in range(requests + 1):
                started = time.perf_counter()
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise RuntimeError(f"GET {path} answered {response.status}")
                if all(conn.sock is not seen for seen in sockets):
                    sockets.append(conn.sock)
                if i:  # the first one pays the TLS handshake
                    times.append(elapsed * 1000.0)
        finally:
            conn.close()
    times.sort()
    return OverheadRow(
        latency_ms=latency_ms,
        requests=requests,
        connections=len(sockets),
        mean_ms=statistics.fmean(times),
        median_ms=statistics.median(times),
        p95_ms=times[min(len(times) - 1, int(0.95 * len(times)))],
    )


def overhead_table(row: OverheadRow) -> list[str]:
    return [
        "| configured latency (ms) | sequential GETs | connections | mean (ms) | median (ms) | p95 (ms) "
        "| overhead over latency | target |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {row.latency_ms:.0f} | {row.requests:,} | {row.connections} | {row.mean_ms:.1f} | {row.median_ms:.1f} "
        f"| {row.p95_ms:.1f} | {row.overhead_pct:+.1f}% ({'met' if row.within_target else 'NOT met'}) "
        f"| <= {OVERHEAD_TARGET_PCT:.0f}% |",
    ]


def section(overhead: OverheadRow, floors: list[FloorRow]) -> list[str]:
    """The BENCHMARKS.md section for these rows."""
    return [
        "## Against the honest floor, end to end",
        "",
        "`tests.bench_emulator`: S generated subscriptions of N templates each (`fixtures.generate.generate_estate`:",
        "each subscription under its own management group, built-in roles once) audited by the `aib-audit` command in a",
        "fresh process: startup, DefaultAzureCredential (a stand-in `az`), collection, every check and the CSV report.",
        f"The honest floor is `max over subscriptions of max(0, trigger lists + {len(SUBSCRIPTION_LISTS)} subscription lists "
        f"+ target gallery image lists - {BURST}) / {REFILL_PER_S:.0f}` seconds: the least time ARM's per-subscription",
        "bucket allows, subscriptions in parallel, with every list at one page (the issue's definition). The emulator",
        f"pages at {PAGE_SIZE} items (role-assignment lists below the root come whole, as on ARM), so at 1,000 templates",
        "the template, resource-group, identity and lock lists take more pages than that: **bucket floor of the reads",
        "sent** applies the same arithmetic to the requests each subscription's bucket actually answered (pages",
        "included), the least time those reads can take. While the trigger lists (one per template, paced by the",
        "bucket) are read, the run reads Microsoft Graph and runs every check that needs no trigger; after the last",
        "read come the trigger check, the ordering of the rows and the CSV.",
        "",
        *floor_table(floors),
        "",
        "## The emulator's own cost",
        "",
        f"{overhead.requests} sequential GETs over one keep-alive TLS connection from a plain client (http.client) at "
        f"{overhead.latency_ms:.0f} ms",
        "configured latency: what the emulator adds per request beyond the latency it was told to add.",
        "",
        *overhead_table(overhead),
        "",
    ]


def main(argv: list[str]) -> int:
    if argv[:1] == ["overhead"]:
        row = measure_overhead(int(argv[1]) if len(argv) > 1 else OVERHEAD_REQUESTS)
        print(asdict(row))
        print("\n".join(overhead_table(row)))
        return 0
    if argv[:1] == ["floor"] and len(argv) == 3:
        floor_row = measure_floor_row(int(argv[1]), int(argv[2]))
        print(asdict(floor_row))
        print("\n".join(floor_table([floor_row])))
        return 0
    print("usage: python -m tests.bench_emulator overhead [N] | floor SUBSCRIPTIONS TEMPLATES", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
