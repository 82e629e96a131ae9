"""Text from ARM made safe for a terminal: control and bidi characters shown as escapes, never sent raw.

Template names, `lastRunStatus.message`, trigger messages, role names and error messages come from whoever can
write to the estate. Printed raw, an ESC sequence can recolour, hide or rewrite what a reviewer sees (or set the
terminal's title, or worse) and a bidi override (U+202E) can make `evil` read as `live`. The table, the
`checks` listing and the one-line errors on stderr pass such text through `visible()`; the CSV and JSON keep the
exact data (JSON escapes controls by its own rules, the CSV defuses formulas).
"""

from __future__ import annotations

import unicodedata

# Cc: C0 and C1 controls and DEL (ESC, CR, BEL, ...); Cf: format characters, which include every bidi
# embedding, override, isolate and mark (U+202A-202E, U+2066-2069, U+200E/200F, U+061C), zero-width and tag
# characters; Zl/Zp: line and paragraph separators; Cs: lone surrogates (cannot even be encoded); Co: private use.
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(ch: str) -> str:
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: object) -> str:
    """`text` with every control, format (bidi) and separator character replaced by its Python-style escape."""
    s = str(text)
    if s.isprintable():  # the common case: nothing to do (a space is printable; every character escaped here is not)
        return s
    return "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in s)


def one_line(text: object) -> str:
    """A message folded to one visible line: runs of whitespace (newlines included) become one space."""
    return visible(" ".join(str(text).split()))
