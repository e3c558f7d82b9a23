"""Claude Code's bidirectional stream-json mode as a pure translator.

`claude --output-format stream-json --verbose --input-format stream-json --permission-prompt-tool
stdio`: the prompt goes in as a `user` line; `AskUserQuestion` arrives as a `can_use_tool`
`control_request` and its answer returns as the `control_response` (an `allow` whose
`updatedInput` carries `answers` keyed by question text). The `result` line decides success.
What Claude did shows in the output compactly: each tool call as one line (`$ command` for
Bash, the tool and its file or its input otherwise) and the start of its result, indented.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from orca_client.views import Question, QuestionOption
from orca_daemon.agents.base import (
    Effect,
    Identified,
    Interrupting,
    Note,
    Output,
    QuestionsAsked,
    QuestionsWithdrawn,
    Result,
    Send,
    Usage,
    count_of,
    sum_of,
    validate_questions,
)
from orca_daemon.agents.codex import MAX_SUMMARY_CHARS, verdict_of

_encoder = msgspec.json.Encoder()
MAX_TOOL_INPUT_CHARS = 300
MAX_TOOL_RESULT_LINES = 5
MAX_TOOL_RESULT_CHARS = 600
INTERRUPTED = "claude's turn was interrupted"
USAGE_FIELDS = ("total_cost_usd", "usage", "num_turns", "duration_ms", "session_id", "subtype")


def claude_argv(
    binary: list[str], *, model: str | None, resume_session: str | None, extra: list[str]
) -> list[str]:
    argv = [
        *binary,
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--permission-prompt-tool",
        "stdio",
    ]
    if model:
        argv += ["--model", model]
    if resume_session:
        argv.append(f"--resume={resume_session}")
    return argv + extra


@dataclass
class _PendingAsk:
    control_id: str
    tool_input: dict[str, Any]
    questions: list[Question]


def _line(value: Any) -> Send:
    return Send(_encoder.encode(value) + b"\n")


def _reply(control_id: str, response: dict[str, Any]) -> Send:
    return _line(
        {
            "type": "control_response",
            "response": {"subtype": "success", "request_id": control_id, "response": response},
        }
    )


class ClaudeTranslator:
    """One conversation: the prompt, tool permissions, questions, the result."""

    plain_mark: bytes | None = None  # every stdout line is a protocol message

    def __init__(self, label: str, tool_permission: Literal["allow", "deny"] = "allow") -> None:
        self._label = label
        self._tool_permission = tool_permission
        self._asks: dict[str, _PendingAsk] = {}
        self._counter = itertools.count(1)
        self._done = False
        self._last_text = ""

    def start(self, prompt: str) -> list[Effect]:
        message = {
            "type": "user",
            "message": {"role": "user", "content": prompt},
            "parent_tool_use_id": None,
            "session_id": "default",
        }
        return [_line(message)]

    def answer(self, request_id: str, answers: dict[str, list[str]]) -> list[Effect]:
        ask = self._asks.get(request_id)
        if ask is None:
            return []
        by_text = {q.question: ", ".join(answers.get(q.id, [])) for q in ask.questions}
        updated = {**ask.tool_input, "answers": by_text}
        return [_reply(ask.control_id, {"behavior": "allow", "updatedInput": updated})]

    def answered(self, request_id: str) -> bool:
        return self._asks.pop(request_id, None) is not None

    def cancel(self, reason: str) -> list[Effect]:
        effects: list[Effect] = [
            _reply(ask.control_id, {"behavior": "deny", "message": f"cancelled: {reason}"})
            for ask in self._asks.values()
        ]
        self._asks.clear()
        interrupt = {"subtype": "interrupt"}
        effects.append(
            _line(
                {
                    "type": "control_request",
                    "request_id": f"orca_{next(self._counter)}",
                    "request": interrupt,
                }
            )
        )
        # Claude then reports its turn interrupted (a `result`), orcad closes its input and it
        # exits: the session gives it a moment for that before it signals.
        effects.append(Interrupting())
        return effects

    def finish(self) -> list[Effect]:
        if self._done:
            return []
        self._done = True
        return [Result("failed", error=f"{self._label} exited without a result line")]

    def feed_line(self, line: str) -> list[Effect]:
        try:
            message = msgspec.json.decode(line)
        except msgspec.DecodeError:
            return [Output(line + "\n")] if line.strip() else []
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return [Output(line + "\n")]
        try:
            return self._on_message(message)
        except (KeyError, TypeError, AttributeError) as exc:
            return [Note(f"claude printed a line orca could not read ({exc!r}): {line[:200]}")]

    def _on_message(self, message: dict[str, Any]) -> list[Effect]:
        kind = message["type"]
        if kind == "system" and message.get("subtype") == "init" and message.get("session_id"):
            return [Identified(str(message["session_id"]))]
        if kind == "system" and message.get("subtype") == "api_retry":
            return [_retry_note(message)]
        if kind == "assistant":
            return self._on_assistant(message.get("message") or {})
        if kind == "user":
            return _tool_results(message.get("message") or {})
        if kind == "result":
            return self._on_result(message)
        if kind == "control_request":
            return self._on_control_request(
                str(message["request_id"]), message.get("request") or {}
            )
        if kind == "control_cancel_request":
            return self._on_cancel_request(str(message.get("request_id")))
        return []

    def _on_assistant(self, body: dict[str, Any]) -> list[Effect]:
        shown: list[str] = []
        for block in body.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                self._last_text = str(block.get("text", ""))
                shown.append(self._last_text)
            elif block.get("type") == "tool_use":
                shown.append(_tool_call(str(block.get("name")), block.get("input")))
        return (
            [Output("".join(t if t.endswith("\n") else t + "\n" for t in shown))] if shown else []
        )

    def _on_result(self, message: dict[str, Any]) -> list[Effect]:
        if self._done:
            return []
        self._done = True
        usage = _usage(message)
        withdrawn: list[Effect] = [
            QuestionsWithdrawn(request_id, "claude's turn ended") for request_id in self._asks
        ]
        self._asks.clear()
        text = str(message.get("result") or self._last_text or "")
        if str(message.get("terminal_reason") or "").startswith("aborted"):
            return [*withdrawn, usage, Note(INTERRUPTED), Result("failed", error=INTERRUPTED)]
        # An API error is `subtype: success` with `is_error: true` (Claude Code 2.1.332).
        if message.get("subtype") == "success" and not message.get("is_error"):
            result = verdict_of(text) or Result("done", summary=text[-MAX_SUMMARY_CHARS:] or None)
        else:
            errors = message.get("errors") or []
            detail = "; ".join(str(e) for e in errors) or text or str(message.get("subtype"))
            result = Result("failed", error=detail[-MAX_SUMMARY_CHARS:])
        return [*withdrawn, usage, result]

    def _on_control_request(self, control_id: str, request: dict[str, Any]) -> list[Effect]:
        if request.get("subtype") != "can_use_tool":
            error = {
                "subtype": "error",
                "request_id": control_id,
                "error": "orca does not handle this",
            }
            return [_line({"type": "control_response", "response": error})]
        tool_input = request.get("input") or {}
        if request.get("tool_name") == "AskUserQuestion":
            return self._ask(control_id, tool_input)
        if self._tool_permission == "allow":
            return [_reply(control_id, {"behavior": "allow", "updatedInput": tool_input})]
        note = Note(f"denied claude the tool {request.get('tool_name')} (tool_permission = deny)")
        denial = {"behavior": "deny", "message": "orca is configured to deny tool use"}
        return [note, _reply(control_id, denial)]

    def _ask(self, control_id: str, tool_input: dict[str, Any]) -> list[Effect]:
        raw = tool_input.get("questions")
        if not isinstance(raw, list) or not raw:
            denial = {"behavior": "deny", "message": "AskUserQuestion needs questions"}
            return [
                Note("claude asked AskUserQuestion without questions; orca refused it"),
                _reply(control_id, denial),
            ]
        questions = [
            Question(
                id=f"q{index}",
                question=str(item.get("question", "")),
                header=str(item.get("header", "")),
                options=[
                    QuestionOption(str(o.get("label", "")), str(o.get("description", "")))
                    for o in item.get("options") or []
                    if isinstance(o, dict)
                ]
                or None,
                is_other=True,
            )
            for index, item in enumerate(raw, 1)
            if isinstance(item, dict)
        ]
        texts = [q.question for q in questions]
        problem = validate_questions(questions) or (
            "two questions have the same text" if len(set(texts)) != len(texts) else None
        )
        if problem is not None:
            denial = {"behavior": "deny", "message": problem}
            return [
                Note(f"claude asked an unusable question ({problem}); orca refused it"),
                _reply(control_id, denial),
            ]
        # One pending request per session: a newer one replaces (and refuses) the older.
        superseded: list[Effect] = []
        for old_id, old in self._asks.items():
            denial = {"behavior": "deny", "message": "superseded by a newer question"}
            superseded += [_reply(old.control_id, denial), QuestionsWithdrawn(old_id, "superseded")]
        self._asks.clear()
        request_id = f"claude-{control_id}"
        self._asks[request_id] = _PendingAsk(control_id, tool_input, questions)
        return [*superseded, QuestionsAsked(request_id, questions)]

    def _on_cancel_request(self, control_id: str) -> list[Effect]:
        request_id = f"claude-{control_id}"
        if self._asks.pop(request_id, None) is None:
            return []
        return [QuestionsWithdrawn(request_id, "claude cancelled its question")]


def _tool_call(name: str, tool_input: Any) -> str:
    """One line for a tool call: `$ command` for Bash, else the tool and what it works on."""
    fields = tool_input if isinstance(tool_input, dict) else {}
    if name == "Bash" and isinstance(fields.get("command"), str):
        return _clip(f"$ {fields['command']}", MAX_TOOL_INPUT_CHARS)
    for key in ("file_path", "notebook_path", "path", "pattern", "url", "query"):
        if isinstance(fields.get(key), str):
            return _clip(f"{name} {fields[key]}", MAX_TOOL_INPUT_CHARS)
    return _clip(f"{name} {_encoder.encode(tool_input).decode()}", MAX_TOOL_INPUT_CHARS)


def _tool_results(body: dict[str, Any]) -> list[Effect]:
    """The start of each tool result in a `user` line, indented under its call."""
    content = body.get("content")
    blocks = content if isinstance(content, list) else []
    shown = [
        _tool_result(block)
        for block in blocks
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return [Output("".join(shown))] if shown else []


def _tool_result(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        parts = [
            str(part.get("text", "")) if part.get("type") == "text" else f"[{part.get('type')}]"
            for part in content
            if isinstance(part, dict)
        ]
        content = "\n".join(parts)
    every = str(content or "").strip("\n").splitlines()
    start = "\n".join(every[:MAX_TOOL_RESULT_LINES])
    lines = _clip(start, MAX_TOOL_RESULT_CHARS).splitlines() or ["(no output)"]
    if len(every) > MAX_TOOL_RESULT_LINES:
        lines.append(f"… ({len(every) - MAX_TOOL_RESULT_LINES} more lines)")
    if block.get("is_error"):
        lines[0] = f"error: {lines[0]}"
    return "".join(f"  {line}\n" for line in lines)


def _retry_note(message: dict[str, Any]) -> Note:
    delay = message.get("retry_delay_ms")
    when = f" in {delay / 1000:.1f}s" if isinstance(delay, int | float) else ""
    return Note(
        f"claude: API error {message.get('error_status')} ({message.get('error')}); "
        f"retry {message.get('attempt')} of {message.get('max_retries')}{when}"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _usage(result: dict[str, Any]) -> Usage:
    """A result line's usage: what it reported, and the session's totals (input counts cache
    reads and writes too, as Codex's does) and cost."""
    tokens = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    assert isinstance(tokens, dict)
    cost = result.get("total_cost_usd")
    return Usage(
        {key: result[key] for key in USAGE_FIELDS if key in result},
        sum_of(
            tokens.get("input_tokens"),
            tokens.get("cache_creation_input_tokens"),
            tokens.get("cache_read_input_tokens"),
        ),
        count_of(tokens.get("output_tokens")),
        float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
    )
