"""Where reports and snapshots are written: atomically, and never half-way.

An existing file is replaced only when the new text is complete; stdout is written as a stream.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from auditor.errors import UsageError


def check_writable(flag: str, path: Path) -> None:
    """Fail before a long collection rather than after it."""
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory, not a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: directory {parent} is not writable")


def _new_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_target(path: Path, flag: str) -> Iterator[Path]:
    """A temp file beside `path`, renamed over it only when the body succeeds: an old report is never lost half-way."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        mode = path.stat().st_mode & 0o777 if path.exists() else _new_file_mode()
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, path)
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {path}: {exc.strerror or exc}") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, flag: str = "--output") -> None:
    with atomic_target(path, flag) as tmp:
        # newline="" keeps the CSV's RFC 4180 CRLF line ends as they are on every platform.
        tmp.write_text(text, encoding="utf-8", newline="")


def emit(text: str, output: Path | None) -> None:
    if output is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:  # `aib-audit ... | head`: the reader left; keep the audit's exit code, no noise
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
    else:
        write_text_atomic(output, text)
