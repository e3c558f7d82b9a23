"""Text fit for a terminal: control characters shown, never obeyed; widths in terminal cells.

Text from agents (and from anyone who can start a run) goes through `visible` or `one_line`
before it reaches a terminal, so an escape sequence is shown, never obeyed.
"""

from __future__ import annotations

import re
import shutil
import unicodedata

_CONTROLS = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[{_CONTROLS}]|\r(?!\n)")
"""What a terminal may act on: C0 controls but tab, newline and the CR of a CRLF; DEL; C1
controls; bidirectional overrides and isolates; and lone surrogates (which cannot be printed)."""


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode control picture: ESC is ␛, CR is ␍
    if code == 0x7F:
        return "␡"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """`text` safe for a terminal: every control character shown as a symbol or an escape
    (ESC as ␛, a bare CR as ␍, C1 CSI as \\x9b), newlines and tabs kept."""
    return _UNSAFE.sub(_shown, text)


def one_line(text: str) -> str:
    """`text` safe for a terminal, on one line: newlines shown as ⏎, tabs as spaces."""
    return visible(text.replace("\r\n", "\n").replace("\n", " ⏎ ").replace("\t", " "))


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` terminal cells with `…`."""
    text = one_line(text)
    if cells(text) <= width:
        return text
    return _cut(text, width - 1) + "…"


def clip_words(text: str, width: int) -> str:
    """`text` on one line in at most `width` terminal cells, cut at a word boundary (unless
    that loses more than half of it) with `…`."""
    text = one_line(text)
    if cells(text) <= width:
        return text
    cut = _cut(text, width - 1)
    space = cut.rfind(" ")
    if space >= len(cut) // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def cells(text: str) -> int:
    """How many terminal columns `text` takes: wide characters two, combining ones none."""
    return sum(_cell(char) for char in text)


def _cell(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def _cut(text: str, width: int) -> str:
    """The longest start of `text` that fits in `width` cells."""
    used = 0
    for index, char in enumerate(text):
        used += _cell(char)
        if used > width:
            return text[:index]
    return text


def terminal_width() -> int:
    """The terminal's columns (`$COLUMNS` first; 80 when stdout is not a terminal)."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)
