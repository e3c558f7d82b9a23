"""An agent's output as lines: split bytes into bounded text lines, join adjacent output, and
strip terminal escapes from log lines."""

from __future__ import annotations

import codecs
import re
from itertools import accumulate
from operator import add

from orca_daemon.agents.base import Effect, Output


class LineSplitter:
    """Bytes in, text lines out; a line longer than `max_bytes` comes out in pieces.

    Pieces are `(text, False, end)`: raw output, never a protocol line — the tail of an overlong
    line included (it ends with its newline), so a fragment of JSON is never taken for a message.
    `end` is where in the stream (bytes from `start`) a line or piece ends, newline included: a
    re-attached orcad reads on from the last one recorded.
    """

    def __init__(self, max_bytes: int, start: int = 0) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._inside_long_line = False
        self._offset = start
        """Where in the stream `_buffer` begins."""

    def feed(self, data: bytes) -> list[tuple[str, bool, int]]:
        """Returns `(text, complete, end)`: complete lines without newline, or overlong pieces."""
        self._buffer += data
        lines: list[tuple[str, bool, int]] = []
        end = self._buffer.rfind(b"\n")
        if 0 <= end < self._max and not self._inside_long_line:  # no overlong line: all at once
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            texts = self._decoder.decode(raw, final=True).split("\n")
            sizes = map(len, raw.split(b"\n"))  # decoded text may differ in size: count bytes
            ends = map(add, accumulate(sizes, initial=self._offset), range(len(texts) + 1))
            next(ends)
            lines = [(text, True, stop) for text, stop in zip(texts, ends, strict=True)]
            self._offset += end + 1
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            if newline > self._max:
                lines.append(self._piece(self._max))
                continue
            raw = bytes(self._buffer[: newline + 1])
            del self._buffer[: newline + 1]
            self._offset += newline + 1
            text = self._decoder.decode(raw, final=True)
            if self._inside_long_line:
                self._inside_long_line = False
                lines.append((text, False, self._offset))
            else:
                lines.append((text[:-1], True, self._offset))
        while len(self._buffer) > self._max:
            lines.append(self._piece(self._max))
        return lines

    def feed_plain(self, data: bytes, mark: bytes) -> list[tuple[str, bool, int]]:
        """`feed` for output that holds protocol lines only where `mark` is: the complete
        lines before the first line that has it come out as one piece of raw output
        (`(text, False, end)`, the text with its newlines), with no work per line; the rest as
        `feed` gives it."""
        if self._inside_long_line or mark in self._buffer:
            return self.feed(data)
        first = data.find(mark)
        plain = data if first < 0 else data[: data.rfind(b"\n", 0, first) + 1]
        end = len(self._buffer) + plain.rfind(b"\n")
        if not len(self._buffer) <= end < self._max:  # no line ends before the mark, or a long one
            return self.feed(data)
        self._buffer += plain
        raw = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        self._offset += end + 1
        pieces = [(self._decoder.decode(raw, final=True), False, self._offset)]
        if first >= 0:
            return pieces + self.feed(data[len(plain) :])
        while len(self._buffer) > self._max:  # the line begun is already too long
            pieces.append(self._piece(self._max))
        return pieces

    @property
    def offset(self) -> int:
        """Where the next line begins: the end of the last one given out."""
        return self._offset

    def finish(self) -> list[tuple[str, bool, int]]:
        size = len(self._buffer)
        rest = self._decoder.decode(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._offset += size
        if not rest:
            return []
        return [(rest, not self._inside_long_line, self._offset)]

    def _piece(self, size: int) -> tuple[str, bool, int]:
        self._inside_long_line = True
        raw = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._offset += size
        return self._decoder.decode(raw, final=False), False, self._offset


_TERMINAL_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, erasing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # the other two-character escapes
)


def without_terminal_escapes(text: str) -> str:
    """`text` without the terminal escape sequences an agent wrote for a terminal."""
    return _TERMINAL_ESCAPE.sub("", text) if "\x1b" in text else text


def join_outputs(effects: list[Effect], ends: list[int]) -> tuple[list[Effect], list[int]]:
    """Adjacent outputs as one (joined once, not pairwise), other effects in place; each with
    the stream position of the line it came from (a joined output: of its last)."""
    joined: list[Effect] = []
    joined_ends: list[int] = []
    texts: list[str] = []
    last = 0
    for effect, end in zip(effects, ends, strict=True):
        if isinstance(effect, Output):
            texts.append(effect.text)
            last = end
            continue
        if texts:
            joined.append(Output("".join(texts)))
            joined_ends.append(last)
            texts = []
        joined.append(effect)
        joined_ends.append(end)
    if texts:
        joined.append(Output("".join(texts)))
        joined_ends.append(last)
    return joined, joined_ends
