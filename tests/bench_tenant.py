"""The tenant benchmark: scope discovery over many subscriptions (part of `make bench`; also runnable alone).

`python -m tests.bench_tenant SUBSCRIPTIONS HOLDERS TEMPLATES_PER_HOLDER [--no-resource-graph] [--workers N]`

A tenant estate (fixtures.tenant: a management-group tree, SUBSCRIPTIONS subscriptions of which HOLDERS hold
TEMPLATES_PER_HOLDER image templates each) is served by the emulator with ARM's behaviour on (50 ms latency, the
per-subscription read bucket, Resource Graph's quota). A fresh child process runs the collector over
`--management-group contoso` (Resource Graph on, or ARM alone) and audits the result with every check.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from auditor.emulator import ARM_WHOLE_LISTS, Emulator, Faults
from auditor.limits import DEFAULT_WORKERS

LATENCY_MS = 50.0
BURST = 250
REFILL_PER_S = 25.0
PAGE_SIZE = 100
WORKERS = DEFAULT_WORKERS  # the CLI default
# What the issue asks: 1,000 subscriptions of which 30 hold 20 templates each, in <= 2 minutes.
DEFAULT_SIZE = (1000, 30, 20)


@dataclass
class TenantRow:
    subscriptions: int
    holders: int
    templates: int
    discovery: str  # resource-graph | arm
    workers: int
    audited: int  # subscriptions read through ARM
    requests: int
    throttled: int
    read_errors: int
    collect_s: float
    audit_s: float
    findings: int

    @property
    def wall_s(self) -> float:
        return self.collect_s + self.audit_s


def _child(conn: Connection, endpoint: str, ca_bundle: str, resource_graph: bool, workers: int) -> None:
    from auditor.audit import run_audit, select_checks
    from auditor.azure import StaticTokenCredential
    from auditor.collect import collect
    from auditor.inventory import build_inventory
    from auditor.scope import scope_spec

    t0 = time.perf_counter()
    spec = scope_spec(management_groups=["contoso"], resource_graph=resource_graph)
    snap = collect(spec, StaticTokenCredential(), arm_endpoint=endpoint, connection_verify=ca_bundle, max_workers=workers)
    t1 = time.perf_counter()
    result = run_audit(build_inventory(snap), select_checks())
    t2 = time.perf_counter()
    conn.send(
        {
            "discovery": snap.meta["scope"]["discovery"],
            "audited": len(snap.subscriptions),
            "throttled": snap.meta["throttled"],
            "read_errors": len(snap.errors),
            "collect_s": t1 - t0,
            "audit_s": t2 - t1,
            "findings": len(result.findings),
        }
    )
    conn.close()


def measure_tenant(
    subscriptions: int, holders: int, per_holder: int, resource_graph: bool = True, workers: int = WORKERS
) -> TenantRow:
    from fixtures.tenant import tenant_estate

    estate = tenant_estate(subscriptions, holders, per_holder, seed="bench").estate
    faults = Faults(latency_ms=LATENCY_MS, throttle=True, burst=BURST, refill_per_s=REFILL_PER_S)
    ctx = mp.get_context("spawn")
    with Emulator(estate, page_size=PAGE_SIZE, faults=faults, whole_lists=ARM_WHOLE_LISTS) as emu:
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(child, emu.endpoint, emu.ca_bundle, resource_graph, workers))
        proc.start()
        child.close()
        try:
            got: dict[str, Any] = parent.recv()
        except EOFError:
            raise RuntimeError(f"the tenant benchmark child died (exit {proc.exitcode})") from None
        finally:
            proc.join()
        requests, writes = emu.calls, emu.writes
    if writes:
        raise RuntimeError(f"the auditor sent {len(writes)} write requests")
    return TenantRow(
        subscriptions=subscriptions,
        holders=holders,
        templates=holders * per_holder,
        discovery=got["discovery"],
        workers=workers,
        audited=got["audited"],
        requests=requests,
        throttled=got["throttled"],
        read_errors=got["read_errors"],
        collect_s=got["collect_s"],
        audit_s=got["audit_s"],
        findings=got["findings"],
    )


def tenant_table(rows: list[TenantRow]) -> list[str]:
    out = [
        "| subscriptions | holding templates | templates | discovery | parallel reads | subscriptions read | requests "
        "| 429s | read errors | wall time (s) | of which audit (s) | findings |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        out.append(
            f"| {r.subscriptions:,} | {r.holders:,} | {r.templates:,} | {r.discovery} | {r.workers} | {r.audited:,} "
            f"| {r.requests:,} | {r.throttled:,} | {r.read_errors} | {r.wall_s:.1f} | {r.audit_s:.2f} | {r.findings:,} |"
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_tenant")
    parser.add_argument("subscriptions", type=int)
    parser.add_argument("holders", type=int)
    parser.add_argument("per_holder", type=int)
    parser.add_argument("--no-resource-graph", action="store_true")
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    row = measure_tenant(args.subscriptions, args.holders, args.per_holder, not args.no_resource_graph, args.workers)
    print(asdict(row))
    print("\n".join(tenant_table([row])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
