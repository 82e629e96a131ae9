"""Where the audited data comes from: a live collection, the bundled demo (through the emulator) or a snapshot."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Any

from auditor import DEFAULT_ARM_ENDPOINT
from auditor.errors import UsageError
from auditor.limits import Limits, is_timeout
from auditor.output import atomic_target
from auditor.snapshot import Snapshot
from auditor.textsafe import one_line, visible

if TYPE_CHECKING:
    from auditor.cli import AuditOptions
    from auditor.graph import GraphSettings


@contextmanager
def progress_display() -> Iterator[Callable[[str], None] | None]:
    """A spinner with the collector's latest step on stderr, only for a person at a terminal; CI logs stay clean."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.text import Text

    with Console(stderr=True).status(Text("collecting"), spinner="dots") as status:

        def say(message: str) -> None:  # called from the collector's worker threads; rich's Live locks
            status.update(Text(f"collecting: {visible(message)}"))

        yield say


def validate_graph(opts: AuditOptions) -> None:
    """--no-graph, --graph-endpoint and --expand-groups: no combination that would silently do nothing."""
    if opts.no_graph and (opts.graph_endpoint or opts.expand_groups):
        flag = "--graph-endpoint" if opts.graph_endpoint else "--expand-groups"
        raise UsageError(f"{flag} needs Microsoft Graph; it cannot be combined with --no-graph")
    if opts.graph_endpoint is not None:
        if opts.source != "live":
            raise UsageError("--graph-endpoint only applies to a live scope")
        from auditor.graph import normalize_graph_endpoint

        opts.graph_endpoint = normalize_graph_endpoint(opts.graph_endpoint)
    if opts.no_graph and opts.snapshot:
        raise UsageError("--no-graph only applies to a collection; a snapshot keeps what was collected")


def graph_settings(opts: AuditOptions, arm_endpoint: str) -> GraphSettings:
    from auditor.graph import settings

    return settings(arm_endpoint, enabled=not opts.no_graph, override=opts.graph_endpoint, expand_groups=opts.expand_groups)


def say_graph_notes(snap: Snapshot) -> None:
    """One stderr line when Microsoft Graph could not be read: the audit goes on, its verdicts do not change."""
    from auditor.graph import stderr_lines
    from auditor.textsafe import one_line

    for line in stderr_lines(snap.meta):  # Graph's error text is the server's: shown escaped, on one line
        sys.stderr.write(f"aib-audit: warning: {one_line(line)}\n")


# collect's `early(snapshot, over)`: the audit's first pass while the trigger lists are read, until over()
Early = Callable[[Snapshot, Callable[[], bool]], None]


def collect_live(opts: AuditOptions, early: Early | None = None) -> Snapshot:
    from auditor.azure import default_credential
    from auditor.collect import collect

    opts.arm_endpoint = opts.arm_endpoint or DEFAULT_ARM_ENDPOINT
    credential = default_credential()
    try:
        with progress_display() as progress:
            snap = collect(
                opts.scope or opts.subscriptions,
                credential,
                arm_endpoint=opts.arm_endpoint,
                connection_verify=True,  # the system CA store, or REQUESTS_CA_BUNDLE as Azure users expect
                max_workers=opts.max_workers,
                progress=progress,
                limits=opts.limits,
                graph=graph_settings(opts, opts.arm_endpoint),
                early=early,
            )
            opts.subscriptions = list(snap.subscriptions)  # what was audited: named and discovered
            return snap
    finally:
        credential.close()


def demo_estate() -> dict[str, Any]:
    """The bundled demo estate, found through the `fixtures` package so it works from an installed wheel too."""
    ref = resources.files("fixtures").joinpath("estates", "demo.json")
    try:
        return json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"the bundled demo estate cannot be read ({exc}); reinstall aib-audit") from None


def collect_demo(opts: AuditOptions, early: Early | None = None) -> Snapshot:
    """Serve the demo estate from the in-process emulator and collect it through the real SDK path."""
    from auditor.azure import StaticTokenCredential
    from auditor.collect import collect
    from auditor.emulator import Emulator

    estate = demo_estate()
    opts.subscriptions = [str(s).lower() for s in estate.get("subscriptions", [])]
    with Emulator(estate) as emu, progress_display() as progress:
        opts.arm_endpoint = emu.endpoint
        return collect(
            opts.subscriptions,
            StaticTokenCredential(),
            arm_endpoint=emu.endpoint,
            connection_verify=emu.ca_bundle,
            max_workers=opts.max_workers,
            progress=progress,
            limits=opts.limits,
            graph=graph_settings(opts, emu.endpoint),
            early=early,
        )


def timeout_summary(snap: Snapshot, limits: Limits, shown: int = 5) -> str | None:
    """One line naming the reads that ran out of time, for a scheduled job's log; None when none did."""
    late = [e for e in snap.errors if is_timeout(e.code)]
    if not late:
        return None
    names = [f"{e.kind} at {e.scope}" for e in late[:shown]]
    more = f" and {len(late) - shown} more" if len(late) > shown else ""
    return (
        f"{len(late)} read{'s' * (len(late) != 1)} timed out (--timeout {limits.run_timeout_s:g} s, "
        f"--read-timeout {limits.read_timeout_s:g} s); their checks say ERROR: {'; '.join(names)}{more}"
    )


def acquire(opts: AuditOptions, early: Early | None = None) -> Snapshot:
    """The snapshot to audit. A collection calls `early` while it reads the trigger lists (auditor.collect)."""
    if opts.source == "snapshot" and opts.snapshot is not None:
        snap = Snapshot.load(opts.snapshot)
        opts.subscriptions = [s.lower() for s in snap.subscriptions]
        opts.arm_endpoint = str(snap.meta.get("arm_endpoint") or "")
        say_graph_notes(snap)
        return snap
    snap = collect_demo(opts, early) if opts.source == "demo" else collect_live(opts, early)
    summary = timeout_summary(snap, opts.limits)
    if summary is not None:
        sys.stderr.write(f"aib-audit: warning: {one_line(summary)}\n")  # scopes are ARM text: shown escaped
        sys.stderr.flush()
    say_graph_notes(snap)
    if opts.snapshot_out is not None:  # saved before the audit, so the data survives whatever follows
        with atomic_target(opts.snapshot_out, "--snapshot-out") as tmp:
            snap.save(tmp)
    return snap
