"""The audit command behind `aib-audit`: validate the options, read the estate, run the checks, apply the
workflow (exceptions, baseline, gate) and write the reports. cli.py only parses the command line into
AuditOptions and calls `run_audit_command`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditor.errors import UsageError
from auditor.heap import UNTIL_EXIT
from auditor.limits import DEFAULT_WORKERS, Limits
from auditor.output import check_writable, emit_report
from auditor.reports import EVIDENCE_FORMATS, RunInfo, write_report
from auditor.scope import SCOPE_FLAGS, ScopeSpec, scope_spec
from auditor.sources import acquire, validate_graph

if TYPE_CHECKING:
    from auditor import workflow
    from auditor.audit import StagedAudit
    from auditor.reports.csv_spool import CsvSpool
    from auditor.snapshot import Snapshot

# --------------------------------------------------------------------------------------------- options


@dataclass
class AuditOptions:
    subscriptions: list[str] = field(default_factory=list)
    demo: bool = False
    snapshot: Path | None = None
    snapshot_out: Path | None = None
    fmt: str = "table"
    output: Path | None = None
    arm_endpoint: str | None = None
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    policy: Path | None = None
    max_workers: int = DEFAULT_WORKERS
    exceptions: Path | None = None
    baseline: Path | None = None
    fail_on: str = "info"
    fail_on_new: bool = False
    reports: list[str] = field(default_factory=list)
    timeout: float | None = None  # --timeout: the whole collection
    read_timeout: float | None = None  # --read-timeout: one read, with its pages, retries and waits
    connect_timeout: float | None = None  # --connect-timeout: one request's connect and TLS handshake
    limits: Limits = field(default_factory=Limits)  # set by validate() from the three above
    management_groups: list[str] = field(default_factory=list)
    all_subscriptions: bool = False
    exclude_subscriptions: list[str] = field(default_factory=list)
    resource_graph: bool = True
    no_graph: bool = False
    graph_endpoint: str | None = None
    expand_groups: bool = False
    all_rows: bool = False  # the table lists every row, not only FAIL and ERROR
    source: str = ""  # live | demo | snapshot, set by validate() once it made sure there is exactly one
    scope: ScopeSpec | None = None  # the live scope, set by validate()


def validate(opts: AuditOptions, environ: Mapping[str, str] | None = None) -> None:
    """Exactly one source, and no option that the chosen source would silently ignore.

    Live scope: --subscription, --management-group, --all-subscriptions (any mix), narrowed by
    --exclude-subscription; with none of them and neither --demo nor --snapshot, AZURE_SUBSCRIPTION_ID.
    """
    live = bool(opts.subscriptions or opts.management_groups or opts.all_subscriptions)
    given = [name for name, on in (("a live scope", live), ("--demo", opts.demo), ("--snapshot", opts.snapshot)) if on]
    if len(given) > 1:
        raise UsageError(f"give only one of a live scope ({SCOPE_FLAGS}), --demo and --snapshot (got {' and '.join(given)})")
    if opts.demo or opts.snapshot:
        live_only = (("--exclude-subscription", opts.exclude_subscriptions), ("--no-resource-graph", not opts.resource_graph))
        for flag, on in live_only:
            if on:
                raise UsageError(f"{flag} only applies to a live scope ({SCOPE_FLAGS})")
    else:
        opts.scope = scope_spec(
            opts.subscriptions,
            opts.management_groups,
            opts.all_subscriptions,
            opts.exclude_subscriptions,
            opts.resource_graph,
            os.environ if environ is None else environ,
        )
    opts.source = "live" if opts.scope is not None else "demo" if opts.demo else "snapshot"
    opts.subscriptions = list(opts.scope.subscriptions) if opts.scope is not None else []
    if opts.arm_endpoint is not None:
        if opts.scope is None:
            raise UsageError("--arm-endpoint only applies to a live scope")
        from auditor.azure import normalize_endpoint  # imports the Azure SDKs: only on the live path

        opts.arm_endpoint = normalize_endpoint(opts.arm_endpoint)
    validate_graph(opts)
    if opts.snapshot and opts.snapshot_out:
        raise UsageError("--snapshot-out saves what was collected; it cannot be combined with --snapshot")
    opts.limits = _limits(opts)
    if opts.all_rows and opts.fmt != "table" and not any(r.partition("=")[0].strip().lower() == "table" for r in opts.reports):
        raise UsageError("--all-rows only applies to the table (--format table or --report table=PATH)")
    for flag, path in (("--output", opts.output), ("--snapshot-out", opts.snapshot_out)):
        if path is not None:
            check_writable(flag, path)


def _limits(opts: AuditOptions) -> Limits:
    given = {"--timeout": opts.timeout, "--read-timeout": opts.read_timeout, "--connect-timeout": opts.connect_timeout}
    named = [flag for flag, value in given.items() if value is not None]
    if named and opts.source == "snapshot":
        verb = "apply" if len(named) > 1 else "applies"
        raise UsageError(f"{' and '.join(named)} only {verb} when reading ARM (--subscription or --demo), not --snapshot")
    for flag in named:
        value = given[flag]
        if value is None or not (math.isfinite(value) and value > 0):
            raise UsageError(f"{flag} must be a positive number of seconds (got {value:g})")
    default = Limits()
    return Limits(
        run_timeout_s=default.run_timeout_s if opts.timeout is None else opts.timeout,
        read_timeout_s=default.read_timeout_s if opts.read_timeout is None else opts.read_timeout,
        connect_timeout_s=default.connect_timeout_s if opts.connect_timeout is None else opts.connect_timeout,
    )


# --------------------------------------------------------------------------------------------- the audit


def _meta_int(meta: dict[str, Any], key: str) -> int:
    value = meta.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def run_audit_command(opts: AuditOptions) -> int:
    from auditor.heap import young_collections_only

    with young_collections_only():
        return _audit(opts)


def _audit(opts: AuditOptions) -> int:
    from auditor import workflow
    from auditor.audit import StagedAudit, select_checks
    from auditor.inventory import build_early_inventory
    from auditor.policy import Policy, load_policy
    from auditor.reports.csv_spool import CsvSpool

    started = datetime.now(UTC)
    validate(opts)
    checks = select_checks(opts.only, opts.skip)  # unknown IDs fail before any network call
    from checks.registry import catalog

    policy = load_policy(opts.policy, known_checks=catalog()) if opts.policy is not None else Policy()
    flow = workflow.prepare(  # exceptions, baseline and report paths: validated before any network call too
        exceptions=opts.exceptions,
        baseline=opts.baseline,
        fail_on=opts.fail_on,
        fail_on_new=opts.fail_on_new,
        reports=opts.reports,
        taken={"--output": opts.output, "--snapshot-out": opts.snapshot_out},
        inputs={"--snapshot": opts.snapshot, "--policy": opts.policy, "--exceptions": opts.exceptions},
        known_checks=list(catalog()),
    )
    formats = {opts.fmt, *(t.fmt for t in flow.reports)}
    audit = StagedAudit(checks, policy, keep_evidence=not formats.isdisjoint(EVIDENCE_FORMATS))
    spools: list[CsvSpool] = []  # the CSV records the early pass's rows got while ARM was still read

    def early(part: Snapshot, over: Callable[[], bool]) -> None:
        """A collection runs the checks that need no trigger while ARM paces the trigger reads (one per template).
        A bug here must not cost the collection, nor its --snapshot-out: the single pass after it meets it again."""
        try:
            inventory = build_early_inventory(part, opts.expand_groups)
        except Exception:
            return  # no early inventory: build_inventory after the collection
        if opts.snapshot_out is None:  # parsed, and nobody will save them: the findings need the room
            for kind in [k for k in part.resources if k != "triggers"]:
                part.resources[kind] = []
        try:
            audit.early(inventory, over)
        except Exception:
            audit.restart(inventory)  # the early results are dropped: finish runs every check
            return
        if "csv" in formats and workflow.spools_csv(flow) and CsvSpool.available():
            try:
                spools.append(CsvSpool())
            except OSError:
                return  # no temporary file: the CSV renders every row at the end
            spools[0].add(audit.rows_so_far(), over)

    try:
        return _finish(opts, audit, flow, started, acquire(opts, early=early), spools[0] if spools else None)
    finally:
        for spool in spools:
            spool.close()


def _finish(
    opts: AuditOptions,
    audit: StagedAudit,
    flow: workflow.Workflow,
    started: datetime,
    snap: Snapshot,
    csv_spool: CsvSpool | None,
) -> int:
    """The collection is over: complete the audit, apply the workflow and write the reports."""
    from auditor import workflow
    from auditor.inventory import build_inventory, complete_inventory

    if audit.inventory is not None:
        inventory = audit.inventory
        complete_inventory(inventory, snap)
    else:
        inventory = build_inventory(snap, expand_groups=opts.expand_groups)
    snap.resources.clear()  # parsed now (and saved by --snapshot-out): the raw documents need not outlive the audit
    result = audit.finish(inventory)
    UNTIL_EXIT.keep(audit, result)
    workflow.apply(flow, result, opts.subscriptions, started.date())
    code = workflow.exit_code(flow, result)
    run = RunInfo(
        source=opts.source,
        subscriptions=opts.subscriptions,
        arm_endpoint=opts.arm_endpoint or "",
        started_at=started,
        finished_at=datetime.now(UTC),
        exit_code=code,
        arm_calls=_meta_int(snap.meta, "arm_calls"),
        throttled=_meta_int(snap.meta, "throttled"),
        collected_at=str(snap.meta.get("collected_at") or ""),
        fail_on=flow.fail_on,
        fail_on_new=flow.fail_on_new,
        exceptions=flow.exceptions_path,
        baseline=flow.baseline_path,
    )
    to_terminal = opts.output is None and sys.stdout.isatty()
    width = max(shutil.get_terminal_size((120, 24)).columns, 80) if to_terminal else 120
    color = to_terminal and not os.environ.get("NO_COLOR")
    # Written as rendered: the CSV and JSON of thousands of templates are hundreds of MiB, never one string.
    render = partial(write_report, opts.fmt, result, run, color=color, width=width, all_rows=opts.all_rows, csv_spool=csv_spool)
    emit_report(render, opts.output)
    workflow.write_reports(flow, result, run, all_rows=opts.all_rows, csv_spool=csv_spool)
    workflow.print_notes(result)
    return code
