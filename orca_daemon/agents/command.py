"""The command-agent protocol (docs/agent-protocol.md) as a pure translator: lines in, effects out.

An agent prints one JSON object a line: `{"type":"output","text":...}` or
`{"type":"result","outcome":"done"|"failed","summary":...,"error":...}`. Anything else is output.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class Output(msgspec.Struct, frozen=True):
    """Text the agent produced, for the session's output."""

    text: str


class Result(msgspec.Struct, frozen=True):
    """The agent's own verdict: its terminal marker."""

    outcome: Literal["done", "failed"]
    summary: str | None = None
    error: str | None = None


Effect = Output | Result


class _OutputLine(msgspec.Struct, tag="output", tag_field="type"):
    text: str


class _ResultLine(msgspec.Struct, tag="result", tag_field="type"):
    outcome: Literal["done", "failed"]
    summary: str | None = None
    error: str | None = None


_line_decoder = msgspec.json.Decoder(_OutputLine | _ResultLine)


class _PromptLine(msgspec.Struct, tag="prompt", tag_field="type"):
    text: str


_encoder = msgspec.json.Encoder()


class CommandTranslator:
    """Translates a command agent's stdout lines; remembers the first result line."""

    def __init__(self) -> None:
        self.result: Result | None = None

    def prompt_line(self, prompt: str) -> bytes:
        """The first stdin line that hands the agent its prompt."""
        return _encoder.encode(_PromptLine(prompt)) + b"\n"

    def feed_line(self, line: str) -> list[Effect]:
        """One stdout line (without its newline) in; the effects it has out."""
        stripped = line.strip()
        if not stripped.startswith("{"):
            return [Output(line + "\n")]
        try:
            message = _line_decoder.decode(stripped)
        except msgspec.DecodeError:
            return [Output(line + "\n")]
        if isinstance(message, _OutputLine):
            return [Output(message.text)]
        if self.result is not None:
            return [Output(line + "\n")]
        self.result = Result(message.outcome, message.summary, message.error)
        return [self.result]
