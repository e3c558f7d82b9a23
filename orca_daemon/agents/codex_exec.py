"""`codex exec --json` (JSONL events) as a pure translator, for runs that need no interaction.

The prompt goes in on stdin (the argument is `-`); `thread.started` gives the thread id that a
follow-up resumes with `codex exec resume <id>`; `turn.completed` / `turn.failed` end the session
and a top-level `error` (a stream error codex may recover from) is recorded as a note.
"""

from __future__ import annotations

from typing import Any

import msgspec

from orca_daemon.agents.base import (
    CloseInput,
    Effect,
    Identified,
    Note,
    Output,
    Result,
    Send,
    text_of,
    usage_of,
)
from orca_daemon.agents.codex import MAX_SUMMARY_CHARS, command_output, verdict_of


def exec_argv(
    binary: list[str],
    *,
    resume_thread: str | None,
    model: str | None,
    sandbox: str | None,
    extra: list[str],
) -> list[str]:
    """The command line: options, then `resume <thread>` for a follow-up, then `-` (stdin)."""
    argv = [*binary, "exec", "--json", "--skip-git-repo-check"]
    if model:
        argv += ["--model", model]
    if sandbox:
        argv += ["--sandbox", sandbox]
    argv += extra
    if resume_thread:
        argv += ["resume", resume_thread]
    return [*argv, "-"]


class CodexExecTranslator:
    """Reads `codex exec --json` events."""

    plain_mark: bytes | None = None  # every stdout line is a protocol message

    def __init__(self, label: str) -> None:
        self._label = label
        self._last_message = ""
        self._done = False

    def start(self, prompt: str) -> list[Effect]:
        return [Send(prompt.encode()), CloseInput()]

    def answer(self, request_id: str, answers: dict[str, list[str]]) -> list[Effect]:
        return []

    def answered(self, request_id: str) -> bool:
        return False

    def cancel(self, reason: str) -> list[Effect]:
        return []

    def finish(self) -> list[Effect]:
        if self._done:
            return []
        self._done = True
        return [Result("failed", error=f"{self._label} ended without turn.completed")]

    def feed_line(self, line: str) -> list[Effect]:
        try:
            event = msgspec.json.decode(line)
        except msgspec.DecodeError:
            return [Output(line + "\n")]
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return [Output(line + "\n")]
        try:
            return self._on_event(event)
        except (KeyError, TypeError, AttributeError) as exc:
            return [
                Note(f"codex exec printed an event orca could not read ({exc!r}): {line[:200]}")
            ]

    def _on_event(self, event: dict[str, Any]) -> list[Effect]:
        kind = event["type"]
        if kind == "thread.started":
            return [Identified(str(event["thread_id"]))]
        if kind == "item.completed":
            return self._on_item(event["item"])
        if kind == "turn.completed":
            usage = usage_of(event.get("usage") or {}, "input_tokens", "output_tokens")
            return self._end(usage, self._verdict())
        if kind == "turn.failed":
            error = event.get("error")
            message = text_of(error.get("message")) if isinstance(error, dict) else None
            return self._end([], Result("failed", error=message or "turn failed"))
        if kind == "error":
            return [Note(f"codex exec error: {event.get('message')}")]
        return []

    def _on_item(self, item: dict[str, Any]) -> list[Effect]:
        kind = item.get("type")
        if kind == "agent_message":
            self._last_message = str(item.get("text") or "")
            return [Output(self._last_message + "\n")]
        if kind == "command_execution":
            return [
                command_output(
                    item.get("command"),
                    item.get("exit_code"),
                    item.get("status"),
                    item.get("aggregated_output"),
                )
            ]
        if kind == "file_change":
            changes = item.get("changes") or []
            return (
                [Output("".join(f"{c.get('kind')} {c.get('path')}\n" for c in changes))]
                if changes
                else []
            )
        if kind == "error":
            return [Note(f"codex exec: {item.get('message')}")]
        return []

    def _verdict(self) -> Result:
        summary = self._last_message[-MAX_SUMMARY_CHARS:] or None
        return verdict_of(self._last_message) or Result("done", summary=summary)

    def _end(self, usage: list[Effect], result: Result) -> list[Effect]:
        if self._done:
            return []
        self._done = True
        return [*usage, result]
