"""Plain-line tables for the long parts of the terminal report (one line per template, one row per finding).

rich's Table measures and wraps every cell through its segment machinery, about a millisecond a row: the FAIL
rows of 1,000 generated templates (about 48,000) took minutes. These rows need less: columns as wide as their
widest cell (capped), the last one wrapped at word boundaries, one style per cell and an optional second line
(the principal and role under a finding's detail). Thousands of rows render in well under a second.

Cells must already be safe to print (`textsafe.visible`): nothing here escapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from rich.color import ColorSystem
from rich.style import Style

GAP = "  "
MIN_LAST = 20  # the last column (the detail) never gets narrower than this
RULE = "─"


@dataclass(frozen=True)
class Column:
    header: str
    max_width: int = 0  # 0: as wide as its widest cell; the last column takes what the others leave
    right: bool = False


@dataclass(frozen=True)
class Cell:
    text: str
    style: str = ""
    note: str = ""  # a second line under the text, e.g. the principal and role under a finding's detail
    note_style: str = ""


@lru_cache(maxsize=64)
def _style(style: str) -> Style:
    return Style.parse(style)


def paint(text: str, style: str, color: bool) -> str:
    """`text` in `style` (SGR codes) when colour is on; as it is otherwise."""
    if not color or not style or not text:
        return text
    return _style(style).render(text, color_system=ColorSystem.STANDARD)


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width`, broken at spaces (a longer word is cut). Greedy, like textwrap.wrap but
    several times faster: it runs once per cell, tens of thousands of times."""
    if len(text) <= width:
        return [text]
    out: list[str] = []
    line = ""
    for word in text.split(" "):
        while len(word) > width:
            if line:
                out.append(line)
                line = ""
            out.append(word[:width])
            word = word[width:]
        if not line:
            line = word
        elif len(line) + 1 + len(word) <= width:
            line += " " + word
        else:
            out.append(line)
            line = word
    if line or not out:
        out.append(line)
    return out


@dataclass
class Grid:
    columns: list[Column]
    rows: list[tuple[Cell, ...]] = field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(cells)

    def widths(self, width: int) -> list[int]:
        """Each column as wide as its widest cell (capped); the last takes the rest of `width`, at least MIN_LAST."""
        out = []
        for i, col in enumerate(self.columns[:-1]):
            w = max([len(col.header)] + [max(len(r[i].text), len(r[i].note)) for r in self.rows])
            out.append(min(w, col.max_width) if col.max_width else w)
        room = width - len(GAP) * (len(self.columns) - 1) - MIN_LAST
        while sum(out) > room:  # too wide for the screen: narrow the widest column, never below its header
            i = max(range(len(out)), key=lambda j: out[j] - len(self.columns[j].header))
            if out[i] <= len(self.columns[i].header):
                break
            out[i] -= 1
        out.append(max(MIN_LAST, width - sum(out) - len(GAP) * (len(self.columns) - 1)))
        return out

    def lines(self, width: int, color: bool) -> Iterator[str]:
        widths = self.widths(width)
        last = len(self.columns) - 1
        yield self._line([(c.header, "bold") for c in self.columns], widths, color).rstrip()
        yield RULE * min(width, sum(widths) + len(GAP) * last)
        for row in self.rows:
            cells = []
            for cell, w in zip(row, widths, strict=True):
                parts = [(t, cell.style) for t in wrap(cell.text, w)]
                if cell.note:
                    parts += [(t, cell.note_style) for t in wrap(cell.note, w)]
                cells.append(parts)
            for n in range(max(len(c) for c in cells)):
                yield self._line([c[n] if n < len(c) else ("", "") for c in cells], widths, color)

    def _line(self, pieces: list[tuple[str, str]], widths: list[int], color: bool) -> str:
        out = []
        last = len(pieces) - 1
        for i, ((text, style), w) in enumerate(zip(pieces, widths, strict=True)):
            pad = " " * max(0, w - len(text))
            if i == last:
                out.append(paint(text, style, color))
            elif self.columns[i].right:
                out.append(pad + paint(text, style, color))
            else:
                out.append(paint(text, style, color) + pad)
        return GAP.join(out).rstrip()

    def render(self, width: int, color: bool) -> str:
        return "\n".join(self.lines(width, color)) + "\n"
