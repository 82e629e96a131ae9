"""Configuration files the user hands the audit (policy, exceptions, baseline): read with a bound, parsed
without a crash.

They are read before collecting, outside `--timeout`, and a baseline often comes from a downloaded CI artifact:
so only regular files (a FIFO with no writer would block for ever), at most a bounded size (a NUL byte ends the
read at once: /dev/zero), and every way a parser can give up (bad syntax, an impossible date, an integer past
Python's 4,300 digits, nesting past the recursion limit) is one line and exit 2, never exit 4.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from auditor.errors import UsageError
from auditor.snapshot import MAX_DEPTH, nesting_depth, size_limit

CONFIG_LIMIT = 16 << 20  # a policy or exceptions file is a few KiB; 16 MiB is far past any real one
_CHUNK = 1 << 20


def read_text(path: str | Path, what: str, error: type[UsageError] = UsageError, limit: int = CONFIG_LIMIT) -> str:
    """The file's text, or `error` naming the file: missing, not a regular file, too large, binary or not UTF-8."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise error(f"{what} file not found: {p}") from None
    except OSError as exc:
        raise error(f"cannot read {what} file {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise error(f"{what} file {p} is a directory")
    if not stat.S_ISREG(mode):
        raise error(f"{what} file {p} is not a regular file (a pipe or device cannot be read with a bound)")
    buf = bytearray()
    try:
        with p.open("rb") as fh:
            while chunk := fh.read(min(_CHUNK, limit + 1 - len(buf))):
                if b"\0" in chunk:
                    raise error(f"{what} file {p} is not text (it holds NUL bytes)")
                buf += chunk
                if len(buf) > limit:
                    raise error(f"{what} file {p} is larger than {limit >> 20} MiB")
        return buf.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} file {p} is not UTF-8 text") from None
    except OSError as exc:
        raise error(f"cannot read {what} file {p}: {exc.strerror or exc}") from None


def baseline_limit() -> int:
    """A baseline is a JSON report: as large as a snapshot may be (AIB_AUDIT_SNAPSHOT_LIMIT_MB, default 512 MiB)."""
    return size_limit()


def parse_json(text: str, what: str, path: str | Path, error: type[UsageError] = UsageError) -> Any:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{what} {path} nests arrays or objects more than {MAX_DEPTH} deep") from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4,300-digit limit
        raise error(f"{what} {path} does not parse: {' '.join(str(exc).split())}") from None
    return check_depth(data, what, path, error)


def check_depth(data: Any, what: str, path: str | Path, error: type[UsageError] = UsageError) -> Any:
    """`data`, unless it nests deeper than any file of ours would (whatever walks it next must not recurse out)."""
    if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:
        raise error(f"{what} {path} nests arrays or objects more than {MAX_DEPTH} deep")
    return data
