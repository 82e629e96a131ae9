"""The command line: `aib-audit` (audit), `aib-audit checks` (the catalog), `aib-audit emulate` (serve an estate).

Exit codes are a contract for scheduled jobs: 0 nothing failed, 1 a FAIL, 2 usage/configuration/authentication
error, 3 incomplete (a read failed), 4 a bug in aib-audit. Every error is one line on stderr, never a traceback:
`main()` runs the typer app with standalone_mode=False and turns every user-facing error into that line.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import traceback
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from auditor import DEFAULT_ARM_ENDPOINT, __version__
from auditor.command import AuditOptions, run_audit_command
from auditor.errors import Interrupted, Terminated, UsageError
from auditor.limits import DEFAULT_WORKERS, Limits
from auditor.reports import EXIT_INTERNAL, EXIT_MEANINGS, EXIT_USAGE
from auditor.textsafe import one_line, visible

# SIGTERM: 128 + 15, what a shell reports for a process the signal ended (no report is written; see main()).
EXIT_TERMINATED = 143

try:  # typer >= 0.20 vendors click; older typer uses click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException  # type: ignore[no-redef]

PROG = "aib-audit"
EMULATOR_HOST = "127.0.0.1"  # the emulator serves loopback only: it hands out estates without real auth

EPILOG = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_MEANINGS.items()) + "."


class ReportFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    sarif = "sarif"
    html = "html"
    markdown = "markdown"


class FailOn(StrEnum):  # reports.FAIL_ON_LEVELS, as typer wants it (an Enum); a test keeps the two equal
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"
    info = "info"


class CatalogFormat(StrEnum):
    table = "table"
    json = "json"


app = typer.Typer(
    name=PROG,
    help="Audit Azure VM Image Builder templates against Microsoft's best practices.",
    epilog=EPILOG,
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def audit(
    ctx: typer.Context,
    subscription: Annotated[
        list[str] | None, typer.Option("--subscription", "-s", metavar="SUB", help="Subscription ID to audit live (repeatable).")
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Audit the bundled sample estate; no Azure needed.")] = False,
    snapshot: Annotated[Path | None, typer.Option("--snapshot", metavar="FILE", help="Audit a saved snapshot offline.")] = None,
    snapshot_out: Annotated[
        Path | None,
        typer.Option("--snapshot-out", metavar="FILE", help="Save what was collected (with --subscription or --demo)."),
    ] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", "-f", help="Report format.")] = ReportFormat.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the report here (default: stdout).")
    ] = None,
    arm_endpoint: Annotated[
        str | None,
        typer.Option(
            "--arm-endpoint", metavar="URL", help=f"ARM endpoint, e.g. for sovereign clouds (default: {DEFAULT_ARM_ENDPOINT})."
        ),
    ] = None,
    check: Annotated[list[str] | None, typer.Option("--check", metavar="ID", help="Run only this check ID (repeatable).")] = None,
    skip_check: Annotated[
        list[str] | None, typer.Option("--skip-check", metavar="ID", help="Skip this check ID (repeatable).")
    ] = None,
    policy: Annotated[Path | None, typer.Option("--policy", metavar="FILE", help="Audit policy file (TOML or YAML).")] = None,
    max_workers: Annotated[
        int, typer.Option("--max-workers", metavar="N", min=1, max=64, help="ARM reads in flight (each subscription paced).")
    ] = DEFAULT_WORKERS,
    exceptions: Annotated[
        Path | None,
        typer.Option("--exceptions", metavar="FILE", help="Accepted risks (TOML or YAML): matching FAILs become ACCEPTED."),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", metavar="FILE", help="JSON report of an earlier run: mark new, regressed, fixed."),
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Lowest severity of a FAIL that sets exit 1 (critical: none is).")
    ] = FailOn.info,
    fail_on_new: Annotated[
        bool, typer.Option("--fail-on-new", help="Exit 1 only for new or regressed FAILs (needs --baseline).")
    ] = False,
    report: Annotated[
        list[str] | None,
        typer.Option("--report", metavar="FORMAT=PATH", help="Also write this report (repeatable), e.g. csv=findings.csv."),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help=f"Time limit for the whole collection (default {Limits.run_timeout_s:g}); what is not read by then is ERROR.",
        ),
    ] = None,
    read_timeout: Annotated[
        float | None,
        typer.Option(
            "--read-timeout",
            metavar="SECONDS",
            help=f"Time limit for one read, every page, retry and wait included (default {Limits.read_timeout_s:g}).",
        ),
    ] = None,
    connect_timeout: Annotated[
        float | None,
        typer.Option(
            "--connect-timeout",
            metavar="SECONDS",
            help=f"Time limit to connect to ARM and finish the TLS handshake (default {Limits.connect_timeout_s:g}).",
        ),
    ] = None,
    management_group: Annotated[
        list[str] | None,
        typer.Option("--management-group", metavar="MG", help="Audit every subscription below this group (repeatable)."),
    ] = None,
    all_subscriptions: Annotated[
        bool, typer.Option("--all-subscriptions", help="Audit every Enabled subscription the credential can list.")
    ] = False,
    exclude_subscription: Annotated[
        list[str] | None,
        typer.Option("--exclude-subscription", metavar="SUB", help="Leave out of a discovered scope (repeatable)."),
    ] = None,
    no_resource_graph: Annotated[
        bool,
        typer.Option("--no-resource-graph", help="Read every discovered subscription through ARM; skip Resource Graph."),
    ] = False,
    no_graph: Annotated[
        bool, typer.Option("--no-graph", help="Do not read principals' names (and group members) from Microsoft Graph.")
    ] = False,
    graph_endpoint: Annotated[
        str | None,
        typer.Option("--graph-endpoint", metavar="URL", help="Microsoft Graph endpoint (default: derived from --arm-endpoint)."),
    ] = None,
    expand_groups: Annotated[
        bool,
        typer.Option("--expand-groups", help="Report each member of a group that holds a right as its own row (Graph)."),
    ] = False,
    all_rows: Annotated[
        bool, typer.Option("--all-rows", help="The table lists every row (PASS, N/A, ACCEPTED too), not only FAIL and ERROR.")
    ] = False,
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = None,
) -> None:
    """Audit VM Image Builder templates: a live scope (--subscription, --management-group, --all-subscriptions or
    AZURE_SUBSCRIPTION_ID), --demo or --snapshot."""
    opts = AuditOptions(
        subscriptions=list(subscription or []),
        demo=demo,
        snapshot=snapshot,
        snapshot_out=snapshot_out,
        fmt=fmt.value,
        output=output,
        arm_endpoint=arm_endpoint,
        only=list(check or []),
        skip=list(skip_check or []),
        policy=policy,
        max_workers=max_workers,
        exceptions=exceptions,
        baseline=baseline,
        fail_on=fail_on.value,
        fail_on_new=fail_on_new,
        reports=list(report or []),
        timeout=timeout,
        read_timeout=read_timeout,
        connect_timeout=connect_timeout,
        management_groups=list(management_group or []),
        all_subscriptions=all_subscriptions,
        exclude_subscriptions=list(exclude_subscription or []),
        resource_graph=not no_resource_graph,
        no_graph=no_graph,
        graph_endpoint=graph_endpoint,
        expand_groups=expand_groups,
        all_rows=all_rows,
    )
    if ctx.invoked_subcommand is not None:
        # `aib-audit --demo checks` is ambiguous: refuse rather than silently drop the audit options.
        given = (snapshot, snapshot_out, output, arm_endpoint, check, skip_check, policy, exceptions, baseline, report)
        timed = any(v is not None for v in (timeout, read_timeout, connect_timeout))
        scope_given = opts.subscriptions or management_group or all_subscriptions or exclude_subscription or no_resource_graph
        graph = no_graph or graph_endpoint or expand_groups
        if scope_given or demo or any(given) or fail_on_new or fail_on != FailOn.info or timed or graph or all_rows:
            raise UsageError(f"audit options cannot be combined with the '{ctx.invoked_subcommand}' command")
        return
    try:
        code = run_audit_command(opts)
    except KeyboardInterrupt:
        raise Interrupted() from None  # typer would turn it into a silent 130
    raise typer.Exit(code)


# --------------------------------------------------------------------------------------------- subcommands


@app.command("checks")
def list_checks(
    fmt: Annotated[CatalogFormat, typer.Option("--format", "-f", help="Listing format.")] = CatalogFormat.table,
) -> None:
    """List the check catalog: ID, practice, severity, title and documentation link."""
    from checks.registry import catalog

    metas = [chk.meta for chk in catalog().values()]
    if fmt == CatalogFormat.json:
        rows = [
            {
                "id": m.id,
                "practice": m.practice,
                "severity": str(m.severity),
                "score": m.score,
                "title": m.title,
                "description": m.description,
                "rationale": m.rationale,
                "remediation": m.remediation,
                "remediation_cli": m.remediation_cli,
                "remediation_bicep": m.remediation_bicep,
                "permissions": m.permissions,
                "docs_url": m.docs_url,
            }
            for m in metas
        ]
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    to_terminal = sys.stdout.isatty()
    console = Console(width=None if to_terminal else 160, no_color=not to_terminal, highlight=False, soft_wrap=False)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name, no_wrap in (("ID", True), ("Practice", False), ("Sev", True), ("Title", False), ("Docs", False)):
        table.add_column(name, overflow="fold", no_wrap=no_wrap)
    for m in metas:
        table.add_row(*(Text(visible(v)) for v in (m.id, m.practice, m.severity, m.title, m.docs_url)))
    console.print(table)


@app.command("emulate")
def emulate(
    estate: Annotated[Path, typer.Option("--estate", metavar="FILE", help="Estate (snapshot) file to serve.")],
    port: Annotated[int, typer.Option("--port", metavar="N", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")] = 0,
    page_size: Annotated[int, typer.Option("--page-size", metavar="N", min=1, help="Items per page before a nextLink.")] = 100,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", metavar="MS", min=0, help="Added latency per request, in ms.")
    ] = 0.0,
    throttle: Annotated[bool, typer.Option("--throttle", help="Enforce ARM's per-subscription read bucket (429).")] = False,
    burst: Annotated[int, typer.Option("--burst", metavar="N", min=1, help="Throttle bucket size (ARM: 250).")] = 250,
    refill: Annotated[float, typer.Option("--refill", metavar="N", min=0.001, help="Bucket refill per second (ARM: 25).")] = 25.0,
    error_rate: Annotated[
        float, typer.Option("--error-rate", metavar="P", min=0.0, max=1.0, help="Share of requests answered 500/503.")
    ] = 0.0,
    forbid: Annotated[
        list[str] | None,
        typer.Option("--forbid", metavar="SCOPE", help="Answer 403 AuthorizationFailed under this ARM path (repeatable)."),
    ] = None,
    break_path: Annotated[
        list[str] | None,
        typer.Option(
            "--break",
            metavar="TEXT",
            help="Answer a truncated or non-JSON body on paths containing TEXT (repeatable; prefix truncated:, text:"
            " or html: (a proxy sign-in page) to pick one).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed for --error-rate, --throttle-rate, --reset-rate.")] = 0,
    loop: Annotated[
        list[str] | None, typer.Option("--loop", metavar="TEXT", help="Lists on paths containing TEXT page back to themselves.")
    ] = None,
    foreign_link: Annotated[
        list[str] | None,
        typer.Option("--foreign-link", metavar="TEXT", help="Lists on paths with TEXT page to a decoy host."),
    ] = None,
    redirect: Annotated[
        list[str] | None, typer.Option("--redirect", metavar="TEXT", help="Answer 307 to the decoy host on paths with TEXT.")
    ] = None,
    hang: Annotated[
        list[str] | None, typer.Option("--hang", metavar="TEXT", help="Never answer requests on paths containing TEXT.")
    ] = None,
    drip: Annotated[
        list[str] | None, typer.Option("--drip", metavar="TEXT", help="Answer a byte at a time on paths containing TEXT.")
    ] = None,
    drip_interval: Annotated[
        float, typer.Option("--drip-interval", metavar="S", min=0.001, help="Seconds between dripped bytes.")
    ] = 2.0,
    retry_after_path: Annotated[
        list[str] | None,
        typer.Option("--retry-after-path", metavar="TEXT", help="Answer 429 with --retry-after on paths containing TEXT."),
    ] = None,
    retry_after: Annotated[
        int, typer.Option("--retry-after", metavar="S", min=0, help="Retry-After for --retry-after-path.")
    ] = 3600,
    throttle_rate: Annotated[
        float, typer.Option("--throttle-rate", metavar="P", min=0.0, max=1.0, help="Share of requests answered 429 (1 s).")
    ] = 0.0,
    reset_rate: Annotated[
        float, typer.Option("--reset-rate", metavar="P", min=0.0, max=1.0, help="Share of connections dropped without an answer.")
    ] = 0.0,
    black_hole: Annotated[
        bool, typer.Option("--black-hole", help="Also open a port that accepts TCP and never answers (not even TLS).")
    ] = False,
) -> None:
    """Serve an estate the way ARM does, on 127.0.0.1 over HTTPS, until interrupted.

    Faults on demand let you see how an audit behaves when ARM throttles, fails or refuses a read.
    """
    from auditor.emulator import Faults, serve

    try:
        faults = Faults(
            latency_ms=latency_ms,
            throttle=throttle,
            burst=burst,
            refill_per_s=refill,
            error_rate=error_rate,
            forbidden_scopes=tuple(forbid or ()),
            broken_paths=tuple(break_path or ()),
            seed=seed,
            loop_paths=tuple(loop or ()),
            foreign_link_paths=tuple(foreign_link or ()),
            redirect_paths=tuple(redirect or ()),
            hang_paths=tuple(hang or ()),
            drip_paths=tuple(drip or ()),
            drip_interval_s=drip_interval,
            retry_after_paths=tuple(retry_after_path or ()),
            retry_after_s=retry_after,
            throttle_rate=throttle_rate,
            reset_rate=reset_rate,
        )
    except ValueError as exc:
        raise UsageError(f"emulator faults: {exc}") from None
    try:
        # A bad estate raises SnapshotError (exit 2).
        serve(str(estate), EMULATOR_HOST, port, page_size, faults, black_hole=black_hole)
    except OSError as exc:  # the port is taken, or not ours to bind
        raise UsageError(f"cannot serve on {EMULATOR_HOST}:{port}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------------------------- entry point


def _fail(message: str) -> None:
    # One line, always: a multi-line message from a library is folded so log scrapers see a single record, and
    # ARM text it echoes (an error message, a name) cannot drive the terminal: controls and bidi are escaped.
    sys.stderr.write(f"{PROG}: error: {one_line(message)}\n")
    sys.stderr.flush()


def quiet_sdk_logging() -> None:
    """The Azure SDKs log failures as multi-line WARNINGs; with no handler configured Python prints them to stderr.

    Our own one-line error says what failed. AIB_AUDIT_DEBUG=1 shows the SDK's log (and tracebacks) instead.
    """
    if os.environ.get("AIB_AUDIT_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        return
    sdk = logging.getLogger("azure")
    if not any(isinstance(h, logging.NullHandler) for h in sdk.handlers):
        sdk.addHandler(logging.NullHandler())  # a handler on the path: Python's last-resort stderr handler stays silent


def run(argv: list[str] | None = None) -> int:
    """Run the CLI on `argv` and return the exit code; errors are reported as one line on stderr."""
    quiet_sdk_logging()
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        _fail("interrupted")
        return 130
    except (KeyboardInterrupt, Interrupted):
        _fail("interrupted")
        return 130
    except Terminated:
        _fail("terminated")
        return EXIT_TERMINATED
    except ClickException as exc:  # unknown option, bad --format value, missing value ...
        _fail(exc.format_message())
        return EXIT_USAGE
    except UsageError as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except Exception as exc:  # a bug: still one line, and a distinct exit code so jobs do not blame the user
        if os.environ.get("AIB_AUDIT_DEBUG"):
            traceback.print_exc()
        sys.stderr.write(f"{PROG}: internal error: {type(exc).__name__}: {one_line(exc)}\n")
        return EXIT_INTERNAL
    return rv if isinstance(rv, int) else 0


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main() -> NoReturn:
    # Raised in the main thread wherever it is (waiting for reads, rendering): the run unwinds as on Ctrl-C.
    signal.signal(signal.SIGTERM, _terminate)
    from auditor.heap import UNTIL_EXIT, leave_to_exit

    UNTIL_EXIT.on = True  # the process ends with this run: its heap need not be freed object by object
    code = run(sys.argv[1:])

    leave_to_exit()
    sys.exit(code)


if __name__ == "__main__":
    main()
