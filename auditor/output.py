"""Where reports and snapshots are written: atomically, never half-way, and through links to what they name.

A path is resolved once (`os.path.realpath`). A regular file, or a path that does not exist yet, is written to a
temp file beside the *resolved* target and renamed over it only when the text is complete, keeping the target's
mode: a symlink stays a link and its target gets the new report. A character device or FIFO (`/dev/stdout`,
`/dev/null`, a named pipe) cannot be replaced without breaking whoever reads it, so it is opened and written
plainly. Paths under /dev and /proc are written plainly too: `/dev/stdout` and `/proc/self/fd/1` are links to
whatever the caller's descriptor is (a terminal, a pipe, a file a shell opened), and replacing the file behind a
descriptor would leave the caller's descriptor pointing at the unlinked old one. Stdout itself (no path) is
written as a stream.

Reports are written as they are rendered (`report_stream`, `emit_report`): a CSV of 3,000 templates is hundreds
of MiB, never held as one string. The rules above hold as for a whole text: the temp file is renamed over the
target only once the writer returned, and removed if it raised or was interrupted.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from auditor.errors import UsageError

# Pseudo-filesystems whose entries are devices and descriptor links, never a report to replace.
_STREAM_ROOTS = ("/dev/", "/proc/")
# Reports are written row by row: a large buffer keeps that to few system calls.
_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class Target:
    """Where the text really goes: `path` is what to open, `stream` says to write it in place (no temp file)."""

    path: Path
    stream: bool


def resolve_target(path: Path) -> Target:
    """Classify `path` once: a device, FIFO or descriptor link is a stream; otherwise the resolved regular file."""
    absolute = os.path.abspath(path)
    try:
        mode = os.stat(absolute).st_mode  # follows links: what a write would reach
    except OSError:
        mode = None  # missing, or a dangling link: a new regular file at the resolved path
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return Target(Path(absolute), stream=True)
    if absolute.startswith(_STREAM_ROOTS) and mode is not None and not stat.S_ISDIR(mode):
        return Target(Path(absolute), stream=True)
    return Target(Path(os.path.realpath(absolute)), stream=False)


def check_writable(flag: str, path: Path) -> None:
    """Fail before a long collection rather than after it."""
    target = resolve_target(path)
    if target.stream:
        if not os.access(target.path, os.W_OK):
            raise UsageError(f"{flag} {path} is not writable")
        return
    where = path if target.path == Path(os.path.abspath(path)) else f"{path} (-> {target.path})"
    if target.path.is_dir():
        raise UsageError(f"{flag} {where} is a directory, not a file")
    parent = target.path.parent
    if not parent.is_dir():
        raise UsageError(f"{flag} {where}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {where}: directory {parent} is not writable")


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_target(path: Path, flag: str) -> Iterator[Path]:
    """The file to write `path`'s new contents into.

    For a regular (or new) file: a temp file beside the resolved target, renamed over it only when the body
    succeeds, so an old report is never lost half-way and a symlink is never replaced. For a device or FIFO: the
    path itself, written in place.
    """
    target = resolve_target(path)
    if target.stream:
        try:
            yield target.path
        except OSError as exc:
            raise UsageError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None
        return
    final = target.path
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            mode = stat.S_IMODE(final.stat().st_mode)
        except FileNotFoundError:
            mode = _new_file_mode()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, final)
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def report_stream(path: Path, flag: str = "--output") -> Iterator[TextIO]:
    """A text stream whose contents become `path`'s (see the module docstring for links, devices and FIFOs)."""
    # newline="" keeps the CSV's RFC 4180 CRLF line ends as they are on every platform.
    with atomic_target(path, flag) as dest, open(dest, "w", encoding="utf-8", newline="", buffering=_BUFFER_BYTES) as fh:
        yield fh


def write_text_atomic(path: Path, text: str, flag: str = "--output") -> None:
    """Write a whole report to `path` (see the module docstring for links, devices and FIFOs)."""
    with report_stream(path, flag) as fh:
        fh.write(text)


def _stdout_gone() -> None:
    """`aib-audit ... | head`: the reader left; keep the audit's exit code, no noise (nor a second EPIPE at exit)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def emit_report(write: Callable[[TextIO], None], output: Path | None, flag: str = "--output") -> None:
    """Run `write` on stdout (no path) or on `output`'s stream: the report is written as it is rendered."""
    if output is not None:
        with report_stream(output, flag) as fh:
            write(fh)
        return
    try:
        write(sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
