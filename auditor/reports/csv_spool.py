"""CSV records rendered while ARM is still read, copied into the report at the end.

A live audit checks most of each template while ARM paces the trigger reads (auditor.audit.StagedAudit.early);
those rows do not change afterwards. Rendering their CSV records then, into a temporary file, leaves only the
trigger check's rows to render after the last read: the report copies the rest in the kernel (sendfile). At
1,000 templates that moves about 200,000 records (250 MB, some 2 seconds) out of the time after the last read.

What the spool cannot know early:
- `audited_at`, the run's finish time: each record holds a placeholder of the same width, overwritten once the
  time is known (through a window of the file mapped at a time, so the process never maps the whole spool);
- rows that exceptions or a baseline change afterwards: the command spools nothing when either is given.

Fails closed: a spool that could not be written is not used, and every row is rendered as usual. The spool is a
temporary file in TMPDIR (as `sort` spills there), as large as the rows it holds; it is gone when the run ends.
"""

from __future__ import annotations

import codecs
import contextlib
import mmap
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable
from typing import IO, TextIO

from auditor.findings import Finding
from auditor.reports.csv_report import WRITE_BATCH, Records
from checks.registry import catalog_metas

PLACEHOLDER = "0000-00-00T00:00:00Z"  # as wide as reports.iso(): an audited_at cell of the same bytes
_CELL_END = len(PLACEHOLDER) + 1  # the placeholder and its closing quote end a record's first piece
_WINDOW = 32 << 20  # bytes of the spool mapped at a time to stamp audited_at
_RESERVE = 64 << 20  # bytes of the spool's filesystem left free beyond a report as large as the spool
_COPY_CHUNK = 1 << 20  # bytes read at a time where the kernel cannot copy (a stream without a file behind it)


class CsvSpool:
    """Records of finished rows in a temporary file; each spooled row knows its index (Finding._spooled)."""

    def __init__(self, file: IO[bytes] | None = None) -> None:
        # Closed by close() (the command closes it in a finally); deleted as it is closed, or with the process.
        self._file = file if file is not None else tempfile.TemporaryFile(prefix="aib-audit-csv-")  # noqa: SIM115
        self._records = Records(catalog_metas(), PLACEHOLDER)
        self._starts = array("q", [0])  # record i is bytes [_starts[i], _starts[i + 1])
        self._marks = array("q")  # record i's audited_at text starts at _marks[i]
        self._stamped = PLACEHOLDER
        self.broken = False  # a write failed (a full disk): the report renders every row itself

    @staticmethod
    def available() -> bool:
        """Where the copy can read the spool at an offset (POSIX; not Windows, which renders every row at the end)."""
        return hasattr(os, "pread")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CsvSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._marks)

    def add(self, blocks: Iterable[list[Finding]], stop: Callable[[], bool] = lambda: False) -> None:
        """Render the rows not spooled yet, a block (a template's rows) at a time until `stop()`: the collection
        calls this while it waits on ARM, and the report renders whatever is left."""
        try:
            for rows in blocks:
                if stop() or self.broken:
                    return
                self._add(rows)
        except Exception:  # never the collection's problem: the report renders these rows itself
            self._release()

    def _release(self) -> None:
        """Give the spool up: the report renders every row, and the disk space goes back now, not at the end."""
        self.broken = True
        with contextlib.suppress(OSError, ValueError):  # a closed or failing file is given up all the same
            self._file.truncate(0)

    def _add(self, rows: list[Finding]) -> None:
        lines: list[str] = []
        pos = self._starts[-1]
        for f in rows:
            if f._spooled >= 0:
                continue
            head, tail = self._records.pieces(f)
            head_bytes = len(head) if head.isascii() else len(head.encode("utf-8"))
            size = head_bytes + (len(tail) if tail.isascii() else len(tail.encode("utf-8")))
            f._spooled = len(self._marks)
            self._marks.append(pos + head_bytes - _CELL_END)
            pos += size
            self._starts.append(pos)
            lines.append(head)
            lines.append(tail)
        if lines:
            data = "".join(lines).encode("utf-8")
            if not self._room_for(len(data), pos):
                self._release()
                return
            self._file.write(data)

    def _room_for(self, size: int, spooled: int) -> bool:
        """Whether `size` more bytes leave the spool's filesystem room for a report as large as the whole spool
        (`spooled` bytes), and some: with TMPDIR and the report on one filesystem, a run that fits without the
        spool must fit with it."""
        try:
            fs = os.fstatvfs(self._file.fileno())
        except (AttributeError, OSError):
            return True  # nothing to go by: a failed write gives the spool up as well
        return fs.f_bavail * fs.f_frsize - size >= spooled + _RESERVE

    def write(self, rows: list[Finding], records: Records, out: TextIO) -> bool:
        """Write `rows` to `out`: spooled records copied, the others rendered by `records`. False (nothing
        written) when the spool is not usable."""
        if self.broken or not len(self):
            return False
        try:
            self._file.flush()
            self._stamp(records.audited_at)
        except (OSError, ValueError):
            self._release()
            return False
        records.share(self._records)
        pending: list[str] = []  # rendered records before the run of spooled ones [first, end)
        first = end = -1
        for f in rows:
            i = f._spooled
            if i >= 0:
                if i == end:
                    end += 1
                    continue
                if first < end:
                    self._emit(out, pending, first, end)
                    pending = []
                first, end = i, i + 1
                continue
            if first < end:
                self._emit(out, pending, first, end)
                pending, first, end = [], -1, -1
            pending.append(records.line(f))
            if len(pending) >= WRITE_BATCH:
                out.write("".join(pending))
                pending = []
        self._emit(out, pending, first, end)
        return True

    def _stamp(self, audited_at: str) -> None:
        """Put the run's audited_at where each record holds the placeholder (once per value)."""
        if audited_at == self._stamped:
            return
        stamp = audited_at.encode("ascii")
        if len(stamp) != len(PLACEHOLDER):
            raise ValueError(f"audited_at {audited_at!r} is not {len(PLACEHOLDER)} characters")
        fd, size, marks = self._file.fileno(), self._starts[-1], self._marks
        i, n, width = 0, len(marks), len(stamp)
        while i < n:
            base = marks[i] - marks[i] % mmap.ALLOCATIONGRANULARITY
            end = min(size, base + _WINDOW)
            with mmap.mmap(fd, end - base, offset=base) as window:
                while i < n and marks[i] + width <= end:
                    at = marks[i] - base
                    window[at : at + width] = stamp
                    i += 1
        self._stamped = audited_at

    def _emit(self, out: TextIO, pending: list[str], first: int, end: int) -> None:
        if pending:
            out.write("".join(pending))
        if first < end:
            self._copy(out, self._starts[first], self._starts[end])

    def _copy(self, out: TextIO, start: int, stop: int) -> None:
        try:
            fd = out.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
            fd = -1
        if fd >= 0 and hasattr(os, "sendfile") and _utf8(out):  # the spool's bytes are UTF-8: copied as they are
            out.flush()  # what `out` holds goes first: the kernel writes at the file's position
            try:
                while start < stop:
                    sent = os.sendfile(fd, self._file.fileno(), start, stop - start)
                    if sent == 0:
                        raise OSError(f"the CSV spool ended at byte {start} of {stop}")
                    start += sent
                return
            except OSError:  # a target sendfile cannot write to: copy the rest through Python
                pass
        decoder = codecs.getincrementaldecoder("utf-8")()
        while start < stop:
            chunk = os.pread(self._file.fileno(), min(_COPY_CHUNK, stop - start), start)
            if not chunk:
                raise OSError(f"the CSV spool ended at byte {start} of {stop}")
            start += len(chunk)
            out.write(decoder.decode(chunk, final=start >= stop))


def _utf8(out: TextIO) -> bool:
    """Whether `out` writes UTF-8 (stdout under another locale or PYTHONIOENCODING does not: its rows are decoded
    and written through it, so the whole report has one encoding and an unencodable name fails as it would)."""
    encoding = getattr(out, "encoding", None)
    if not isinstance(encoding, str):
        return False
    try:
        return codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        return False
