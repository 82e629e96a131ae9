"""The benchmark: `make bench` (`python -m tests.bench`). Not a test module (pytest collects test_*.py only).

For 10, 100 and 1,000 generated image templates (fixtures.generate) the emulator serves the estate with ARM's
behaviour switched on (50 ms latency per request, the per-subscription read bucket of 250 refilled at 25/s, 429
with Retry-After past it), and a fresh child process collects it through the real collector (SDK clients,
StaticTokenCredential, TLS against the emulator's CA) and audits it with every check. The emulator runs in this
process, the auditor in the child, so the child's memory is the auditor's alone. Then the RBAC engine is timed on
its own (tests.perf_rbac.measure: LP checks over 1,000 templates x 10,000 assignments), and the report formats at
1,000 templates (tests.bench_reports: render time and size of each, the HTML report's load time in Chromium).

A last row audits a modest estate twice, clean and through a fault mix (transient 429s with Retry-After: 1, 5xx
and dropped connections, as ARM has bad minutes): the findings must be identical, and the row reports the time
the retries cost.

Then the honest-floor rows (tests.bench_emulator): 1 and 3 subscriptions of the largest size audited end to end by
the `aib-audit` command, as wall time / the floor ARM's throttling allows; and the emulator's own per-request cost
at 50 ms latency.

Results, the machine and the settings are written to BENCHMARKS.md (overwritten) and printed.
`python -m tests.bench 10 100` runs only those sizes (and the fault mix at the largest of them, at most 100; the
floor rows at the largest).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from auditor.emulator import ARM_WHOLE_LISTS, Emulator, Faults
from auditor.limits import DEFAULT_WORKERS
from tests.bench_collector import ROWS as COLLECTOR_ROWS
from tests.bench_collector import CollectorRow, collector_section, collector_table
from tests.bench_emulator import FloorRow, OverheadRow, floor_table, measure_floor_row, measure_overhead, overhead_table
from tests.bench_emulator import section as floor_section
from tests.bench_memory import MemoryRow, measure_memory, memory_section, memory_table
from tests.bench_tenant import DEFAULT_SIZE, TenantRow, measure_tenant, tenant_table

SIZES = (10, 100, 1000)
FLOOR_SUBSCRIPTIONS = (1, 3)  # the honest-floor rows: this many subscriptions of the largest size each
SEED = 7
LATENCY_MS = 50.0
BURST = 250
REFILL_PER_S = 25.0
PAGE_SIZE = 100
WORKERS = DEFAULT_WORKERS  # the CLI's default --max-workers
# The fault mix: ARM having a bad few minutes. Every one of these is retried by the SDK (or ThrottleWait).
MIX_TEMPLATES = 100
MIX_THROTTLE_RATE = 0.3  # 429 with Retry-After: 1
MIX_ERROR_RATE = 0.05  # 500/503
MIX_RESET_RATE = 0.03  # connection dropped without an answer
OUT = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


@dataclass
class Row:
    templates: int
    reads: int  # requests answered with something other than 429: what the throttle bucket paid for
    requests: int  # every HTTP request sent, retries of 429s included (emulator's count)
    throttled: int  # 429s the collector saw
    read_errors: int
    collect_s: float
    audit_s: float
    rss_delta_mib: float
    rss_peak_mib: float
    findings: int

    @property
    def per_template(self) -> float:
        return self.reads / self.templates

    @property
    def wall_s(self) -> float:
        return self.collect_s + self.audit_s

    @property
    def throttle_floor_s(self) -> float:
        """The least time ARM's bucket allows for this many reads: the burst is free, the rest at the refill rate."""
        return max(0, self.reads - BURST) / REFILL_PER_S


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


@dataclass
class MixRow:
    templates: int
    clean_requests: int
    clean_s: float
    mix_requests: int
    throttled: int
    server_errors: int
    resets: int
    read_errors: int
    mix_s: float
    identical: bool

    @property
    def overhead_s(self) -> float:
        return self.mix_s - self.clean_s


def findings_digest(findings: list[Any]) -> str:
    """A digest of every row (evidence included): equal digests mean identical findings."""
    rows = sorted(json.dumps(asdict(f), sort_keys=True, default=str) for f in findings)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _child(conn: Connection, subscriptions: list[str], endpoint: str, ca_bundle: str) -> None:
    """Runs in a fresh interpreter: collect + audit, and report times, counts and memory."""
    from auditor.audit import run_audit, select_checks
    from auditor.azure import StaticTokenCredential
    from auditor.collect import collect
    from auditor.inventory import build_inventory

    baseline = _maxrss_mib()  # the interpreter and the SDKs, imported
    t0 = time.perf_counter()
    snap = collect(
        subscriptions, StaticTokenCredential(), arm_endpoint=endpoint, connection_verify=ca_bundle, max_workers=WORKERS
    )
    t1 = time.perf_counter()
    result = run_audit(build_inventory(snap), select_checks())
    t2 = time.perf_counter()
    peak = _maxrss_mib()
    conn.send(
        {
            "arm_calls": snap.meta["arm_calls"],
            "throttled": snap.meta["throttled"],
            "read_errors": len(snap.errors),
            "collect_s": t1 - t0,
            "audit_s": t2 - t1,
            "rss_delta_mib": peak - baseline,
            "rss_peak_mib": peak,
            "findings": len(result.findings),
            "digest": findings_digest([*result.findings, *result.extra_errors]),
        }
    )
    conn.close()


def _collect_in_child(estate: dict[str, Any], faults: Faults, n: int) -> tuple[dict[str, Any], Emulator]:
    ctx = mp.get_context("spawn")
    with Emulator(estate, page_size=PAGE_SIZE, faults=faults, whole_lists=ARM_WHOLE_LISTS) as emu:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(child, list(estate["subscriptions"]), emu.endpoint, emu.ca_bundle))
        proc.start()
        child.close()
        try:
            got: dict[str, Any] = parent.recv()
        except EOFError:
            raise RuntimeError(f"the benchmark child for {n} templates died (exit {proc.exitcode})") from None
        finally:
            proc.join()
    if emu.writes:
        raise RuntimeError(f"the auditor sent {len(emu.writes)} write requests")
    return got, emu


def measure_collection(n: int) -> Row:
    from fixtures.generate import generate

    estate = generate(n, seed=SEED)
    faults = Faults(latency_ms=LATENCY_MS, throttle=True, burst=BURST, refill_per_s=REFILL_PER_S)
    got, emu = _collect_in_child(estate, faults, n)
    requests, emu_throttled, writes = emu.calls, emu.throttled, emu.writes
    if writes:
        raise RuntimeError(f"the auditor sent {len(writes)} write requests")
    if requests != got["arm_calls"] or emu_throttled != got["throttled"]:
        raise RuntimeError(f"client and emulator disagree: {got} vs {requests} requests, {emu_throttled} 429s")
    return Row(
        templates=n,
        reads=requests - emu_throttled,
        requests=requests,
        throttled=got["throttled"],
        read_errors=got["read_errors"],
        collect_s=got["collect_s"],
        audit_s=got["audit_s"],
        rss_delta_mib=got["rss_delta_mib"],
        rss_peak_mib=got["rss_peak_mib"],
        findings=got["findings"],
    )


def measure_fault_mix(n: int) -> MixRow:
    """The same estate, clean and through the fault mix; the same latency, no throttle bucket (its 429s would
    depend on timing): the difference in wall time is what the retries cost."""
    from fixtures.generate import generate

    estate = generate(n, seed=SEED)
    clean, clean_emu = _collect_in_child(estate, Faults(latency_ms=LATENCY_MS), n)
    mix_faults = Faults(
        latency_ms=LATENCY_MS,
        throttle_rate=MIX_THROTTLE_RATE,
        error_rate=MIX_ERROR_RATE,
        reset_rate=MIX_RESET_RATE,
        seed=SEED,
    )
    mix, mix_emu = _collect_in_child(estate, mix_faults, n)
    statuses = [r.status for r in mix_emu.requests]
    return MixRow(
        templates=n,
        clean_requests=clean_emu.calls,
        clean_s=clean["collect_s"] + clean["audit_s"],
        mix_requests=mix_emu.calls,
        throttled=statuses.count(429),
        server_errors=sum(1 for s in statuses if s >= 500),
        resets=statuses.count(0),
        read_errors=mix["read_errors"],
        mix_s=mix["collect_s"] + mix["audit_s"],
        identical=mix["digest"] == clean["digest"] and mix["read_errors"] == clean["read_errors"] == 0,
    )


def mix_table(row: MixRow) -> list[str]:
    pct = 100.0 * row.overhead_s / row.clean_s if row.clean_s else 0.0
    return [
        "| templates | requests clean | requests with faults | 429s | 5xx | dropped connections | read errors "
        "| wall clean (s) | wall with faults (s) | overhead | identical findings |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
        f"| {row.templates:,} | {row.clean_requests:,} | {row.mix_requests:,} | {row.throttled:,} | {row.server_errors:,} "
        f"| {row.resets:,} | {row.read_errors} | {row.clean_s:.1f} | {row.mix_s:.1f} | +{row.overhead_s:.1f} s ({pct:+.0f}%) "
        f"| {'yes' if row.identical else 'NO'} |",
    ]


# --------------------------------------------------------------------------------------------- machine and report


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def machine() -> dict[str, str]:
    return {
        "CPUs (nproc)": str(os.cpu_count()),
        "CPU model": _cpu_model(),
        "RAM": _ram_gib(),
        "Python": platform.python_version(),
        "OS": f"{platform.system()} {platform.release()}",
    }


def collection_table(rows: list[Row]) -> list[str]:
    out = [
        "| templates | ARM reads | reads / template | requests sent | 429s seen | read errors | wall time (s) "
        "| of which audit (s) | throttle floor (s) | peak memory, ru_maxrss delta (MiB) | findings |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.templates:,} | {r.reads:,} | {r.per_template:.2f} | {r.requests:,} | {r.throttled:,} | {r.read_errors} "
            f"| {r.wall_s:.1f} | {r.audit_s:.2f} | {r.throttle_floor_s:.1f} | {r.rss_delta_mib:.1f} "
            f"(peak {r.rss_peak_mib:.0f}) | {r.findings:,} |"
        )
    return out


def growth(rows: list[Row]) -> list[str]:
    """Reads added per template added, between consecutive sizes (pages of the subscription-wide lists included)."""
    steps = [
        f"{a.templates:,} -> {b.templates:,}: {(b.reads - a.reads) / (b.templates - a.templates):.2f}"
        for a, b in zip(rows, rows[1:], strict=False)
    ]
    return [
        "Reads added per template added: " + "; ".join(steps) + ". One is the template's trigger list; the rest are",
        f"extra pages ({PAGE_SIZE} items each) of the subscription-wide lists, which grow with the data (about an",
        "identity and a resource group per generated template; role-assignment lists come whole, as on ARM), not with",
        "per-template requests.",
    ]


def rbac_table(rbac: dict[str, Any]) -> list[str]:
    return [
        "| templates | role assignments + eligibilities | deny assignments | LP checks | findings | inventory build (s) "
        "| LP evaluation (s) | ms / template |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {rbac['templates']:,} | {rbac['role_assignments']:,} | {rbac['deny_assignments']:,} | {rbac['checks']} "
        f"| {rbac['findings']:,} | {rbac['build_seconds']:.2f} | {rbac['audit_seconds']:.2f} | {rbac['ms_per_template']:.2f} |",
    ]


def tenant_section(rows: list[TenantRow]) -> list[str]:
    return [
        "## A tenant: discovery through a management group",
        "",
        "`tests.bench_tenant`: a tenant estate (`fixtures.tenant`: a management-group tree, one Disabled subscription,",
        "a subscription that holds only a target gallery) audited with `--management-group contoso`, same emulator",
        "settings (plus Resource Graph's quota of 15 queries per 5 s). With Resource Graph only the subscriptions that",
        "hold templates (or their target galleries and identities) are read through ARM.",
        "",
        *tenant_table(rows),
        "",
    ]


def report(
    rows: list[Row],
    mix: MixRow,
    rbac: dict[str, Any],
    started: datetime,
    total_s: float,
    tenant_rows: list[TenantRow] | None = None,
    memory_rows: list[MemoryRow] | None = None,
) -> str:
    from checks.registry import catalog

    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m tests.bench`); rerun it to refresh this file. Each row audits a",
        "generated estate (`fixtures.generate`, one subscription) served by the ARM emulator with ARM's behaviour on:",
        f"{LATENCY_MS:.0f} ms latency per request and the per-subscription read bucket ({BURST} reads, refilled at "
        f"{REFILL_PER_S:.0f}/s,",
        "429 with Retry-After past it). A fresh child process collects through the real collector (Azure SDK clients,",
        "a static bearer token, TLS to the emulator) and runs every check; the emulator runs in the parent process, so",
        "the memory figures are the auditor's alone.",
        "",
        "- **ARM reads**: requests answered with anything but 429 (what the throttle bucket pays for); **requests sent**",
        "  adds the 429s that were waited out and retried. Reads grow as `templates + c` (each template's trigger list,",
        "  plus the subscription-wide lists and their pages), not as `k x templates`.",
        f"- **throttle floor**: `max(0, reads - {BURST}) / {REFILL_PER_S:.0f}` seconds, the least time ARM's bucket allows",
        "  for that many reads by one principal; past the burst, wall time is bound by it, not by latency or CPU.",
        "- **peak memory**: `ru_maxrss` of the child after the audit minus `ru_maxrss` once the SDKs were imported (the",
        "  peak RSS growth of collecting and auditing); the absolute peak is in brackets.",
        "- **wall time**: collection plus audit, in the child.",
        "",
        f"Run {started.strftime('%Y-%m-%d %H:%M UTC')}, {total_s:.0f} s in all.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in machine().items()],
        "",
        "## Settings",
        "",
        f"- emulator: latency {LATENCY_MS:.0f} ms, throttle on (burst {BURST}, refill {REFILL_PER_S:.0f}/s), "
        f"page size {PAGE_SIZE} (role-assignment lists below the root in one page, as ARM serves them)",
        f"- collector: {WORKERS} parallel reads (the CLI default), the SDKs' retry policy, StaticTokenCredential",
        f"- estates: `fixtures.generate.generate(n, seed={SEED})`; all {len(catalog())} checks",
        "",
        "## Collection and audit through the emulator",
        "",
        *collection_table(rows),
        "",
        *growth(rows),
        "",
        "## Through a fault mix",
        "",
        f"The {mix.templates:,}-template estate audited twice with {LATENCY_MS:.0f} ms latency and no throttle bucket:",
        f"clean, then with {MIX_THROTTLE_RATE:.0%} of requests answered 429 (Retry-After: 1), {MIX_ERROR_RATE:.0%} answered",
        f"500/503 and {MIX_RESET_RATE:.0%} of connections dropped without an answer. Everything the SDK retries must give",
        "identical findings (every row, evidence included); the overhead is the time the retries and their waits cost.",
        "",
        *mix_table(mix),
        "",
        "## RBAC evaluation (least-privilege checks)",
        "",
        "`tests.perf_rbac.measure()`: AIB-LP-001..007 over a synthetic estate with assignments at every level from the",
        "root to single resources, PIM eligibilities, ABAC conditions and deny assignments; no I/O.",
        "",
        *rbac_table(rbac),
        "",
        *(tenant_section(tenant_rows) if tenant_rows else []),
        *(memory_section(memory_rows) if memory_rows else []),
    ]
    return "\n".join(lines)


def measure_floor_rows(n: int) -> tuple[OverheadRow, list[FloorRow]]:
    """The emulator's own per-request cost, then 1 x n and 3 x n templates end to end against the honest floor."""
    print("timing the emulator's per-request overhead at 50 ms latency ...", flush=True)
    overhead = measure_overhead()
    print(f"  {asdict(overhead)}", flush=True)
    floor_rows: list[FloorRow] = []
    for subs in FLOOR_SUBSCRIPTIONS:
        print(f"auditing {subs} x {n} templates end to end against the honest floor ...", flush=True)
        floor_rows.append(measure_floor_row(subs, n, seed=SEED))
        print(f"  {asdict(floor_rows[-1])}", flush=True)
    return overhead, floor_rows


def measure_collector_rows() -> list[CollectorRow]:
    """The installed CLI end to end against each subscription's own bucket (tests.bench_collector)."""
    import tempfile

    from tests.bench_collector import measure as measure_end_to_end

    out: list[CollectorRow] = []
    for subs, each in COLLECTOR_ROWS:
        print(f"aib-audit end to end: {subs} subscriptions x {each} templates ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="aib-bench-") as tmp:
            out.append(measure_end_to_end(subs, each, Path(tmp)))
        print(f"  {asdict(out[-1])} ratio {out[-1].ratio:.2f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    from tests.perf_rbac import measure

    sizes = tuple(int(a) for a in (argv if argv is not None else sys.argv[1:])) or SIZES
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    rows: list[Row] = []
    for n in sizes:
        print(f"collecting and auditing {n} templates ...", flush=True)
        row = measure_collection(n)
        rows.append(row)
        print(f"  {asdict(row)}", flush=True)
    mix_n = min(MIX_TEMPLATES, max(sizes))
    print(f"auditing {mix_n} templates clean and through the fault mix ...", flush=True)
    mix = measure_fault_mix(mix_n)
    print(f"  {asdict(mix)}", flush=True)
    print("timing the RBAC engine (1,000 templates x 10,000 assignments) ...", flush=True)
    rbac = measure()
    subs, holders, per = DEFAULT_SIZE
    print(f"auditing a tenant of {subs:,} subscriptions, {holders} with {per} templates each ...", flush=True)
    tenant_rows = [measure_tenant(subs, holders, per)]
    print(f"  {asdict(tenant_rows[0])}", flush=True)
    print("auditing 10,000 templates x 100,000 role assignments from a snapshot (peak RSS, CSV output) ...", flush=True)
    memory_rows = [measure_memory(), measure_memory(live=True)]
    print(f"  {asdict(memory_rows[0])}", flush=True)
    from tests import bench_reports

    print("rendering every report format for 1,000 templates ...", flush=True)
    reports = bench_reports.section(bench_reports.measure())
    overhead, floor_rows = measure_floor_rows(max(sizes))
    collector_rows = measure_collector_rows()
    text = report(rows, mix, rbac, started, time.perf_counter() - t0, tenant_rows, memory_rows) + "\n" + "\n".join(reports)
    text += "\n" + "\n".join(floor_section(overhead, floor_rows))
    text += "\n" + "\n".join(collector_section(collector_rows))
    OUT.write_text(text, encoding="utf-8")
    print()
    print("\n".join(collection_table(rows)))
    print()
    print("\n".join(mix_table(mix)))
    print()
    print("\n".join(rbac_table(rbac)))
    print()
    print("\n".join(floor_table(floor_rows)))
    print()
    print("\n".join(overhead_table(overhead)))
    print()
    print("\n".join(collector_table(collector_rows)))
    print()
    print("\n".join(memory_table(memory_rows)))
    print(f"\nwritten to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
