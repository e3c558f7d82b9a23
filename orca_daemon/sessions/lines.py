"""An agent's output as lines: split bytes into bounded text lines, join adjacent output, and
strip terminal escapes from log lines."""

from __future__ import annotations

import codecs
import re

from orca_daemon.agents.base import Effect, Output


class LineSplitter:
    """Bytes in, text lines out; a line longer than `max_bytes` comes out in pieces.

    Pieces are `(text, False)`: raw output, never a protocol line — the tail of an overlong line
    included (it ends with its newline), so a fragment of JSON is never taken for a message.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._buffer = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._inside_long_line = False

    def feed(self, data: bytes) -> list[tuple[str, bool]]:
        """Returns `(text, complete)` pairs: complete lines without newline, or overlong pieces."""
        self._buffer += data
        lines: list[tuple[str, bool]] = []
        end = self._buffer.rfind(b"\n")
        if 0 <= end < self._max and not self._inside_long_line:  # no overlong line: all at once
            block = self._decoder.decode(bytes(self._buffer[:end]), final=True)
            del self._buffer[: end + 1]
            lines = [(line, True) for line in block.split("\n")]
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            if newline > self._max:
                lines.append(self._piece(self._max))
                continue
            raw = bytes(self._buffer[: newline + 1])
            del self._buffer[: newline + 1]
            text = self._decoder.decode(raw, final=True)
            if self._inside_long_line:
                self._inside_long_line = False
                lines.append((text, False))
            else:
                lines.append((text[:-1], True))
        while len(self._buffer) > self._max:
            lines.append(self._piece(self._max))
        return lines

    def finish(self) -> list[tuple[str, bool]]:
        rest = self._decoder.decode(bytes(self._buffer), final=True)
        self._buffer.clear()
        if not rest:
            return []
        return [(rest, not self._inside_long_line)]

    def _piece(self, size: int) -> tuple[str, bool]:
        self._inside_long_line = True
        return self._decode(size), False

    def _decode(self, size: int) -> str:
        raw = bytes(self._buffer[:size])
        del self._buffer[:size]
        return self._decoder.decode(raw, final=False)


_TERMINAL_ESCAPE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement, erasing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: window titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # the other two-character escapes
)


def without_terminal_escapes(text: str) -> str:
    """`text` without the terminal escape sequences an agent wrote for a terminal."""
    return _TERMINAL_ESCAPE.sub("", text) if "\x1b" in text else text


def join_outputs(effects: list[Effect]) -> list[Effect]:
    """Adjacent outputs as one (joined once, not pairwise), other effects in place."""
    joined: list[Effect] = []
    texts: list[str] = []
    for effect in effects:
        if isinstance(effect, Output):
            texts.append(effect.text)
            continue
        if texts:
            joined.append(Output("".join(texts)))
            texts = []
        joined.append(effect)
    if texts:
        joined.append(Output("".join(texts)))
    return joined
