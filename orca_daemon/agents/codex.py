"""`codex app-server` (JSON-RPC over stdio) as a pure translator. See docs/real-agent-protocols.md.

initialize → initialized → thread/start → turn/start; item notifications become output;
`item/tool/requestUserInput` becomes a question, answered `{"answers": {id: {"answers": [..]}}}`;
`serverRequest/resolved` clears it; `turn/completed` ends the session. Success is the turn's
status, or a JSON verdict (`{"outcome": ...}`) on the last line of the agent's final message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from orca_client.wire import Question
from orca_daemon.agents import jsonrpc
from orca_daemon.agents.base import (
    Effect,
    Identified,
    Note,
    Output,
    QuestionsAsked,
    QuestionsWithdrawn,
    Result,
    Send,
    text_of,
    usage_of,
    validate_questions,
)

MAX_COMMAND_OUTPUT_CHARS = 4000
MAX_SUMMARY_CHARS = 2000
APPROVAL_REQUESTS = frozenset(
    {
        "item/commandExecution/requestApproval",
        "item/fileChange/requestApproval",
        "item/permissions/requestApproval",
    }
)


@dataclass(frozen=True)
class CodexSettings:
    """How to start the thread; `label` names the binary and its version in errors."""

    label: str
    cwd: str
    model: str | None = None
    sandbox: str | None = "workspace-write"
    approval_policy: str | None = "never"
    approval_decision: str = "decline"
    """What to answer an approval request with when one comes anyway (`accept` or `decline`)."""
    client_version: str = "0"
    resume_thread: str | None = None
    """Continue this thread (`thread/resume`) instead of starting one."""


def command_output(command: object, exit_code: object, status: object, output: object) -> Output:
    """A command the agent ran, as output: `$ command  (exit N, status)` and its output's tail."""
    tail = str(output or "")[-MAX_COMMAND_OUTPUT_CHARS:]
    ending = "" if tail.endswith("\n") or not tail else "\n"
    return Output(f"$ {command}  (exit {exit_code}, {status})\n{tail}{ending}")


def verdict_of(message: str) -> Result | None:
    """A `{"outcome": "done"|"failed", ...}` object on the last non-empty line, if there is one."""
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return None
    try:
        value = msgspec.json.decode(lines[-1].strip().strip("`"))
    except msgspec.DecodeError:
        return None
    if not isinstance(value, dict) or value.get("outcome") not in ("done", "failed"):
        return None
    summary = value.get("summary")
    error = value.get("error")
    return Result(
        value["outcome"],
        summary if isinstance(summary, str) else None,
        error if isinstance(error, str) else None,
    )


class CodexAppServerTranslator:
    """Drives one thread with one turn for the prompt."""

    def __init__(self, settings: CodexSettings) -> None:
        self._settings = settings
        self._next_id = 0
        self._calls: dict[jsonrpc.Id, str] = {}
        self._prompt = ""
        self._thread_id: str | None = None
        self._turn_id: str | None = None
        self._questions: dict[str, jsonrpc.Id] = {}
        self._streamed: set[str] = set()
        self._last_message = ""
        self._done = False

    # ------------------------------------------------------------------ orca → codex

    def start(self, prompt: str) -> list[Effect]:
        self._prompt = prompt
        return [
            self._call(
                "initialize",
                {
                    "clientInfo": {
                        "name": "orca",
                        "title": "Orca",
                        "version": self._settings.client_version,
                    },
                    "capabilities": {"experimentalApi": True},
                },
            )
        ]

    def answer(self, request_id: str, answers: dict[str, list[str]]) -> list[Effect]:
        rpc_id = self._questions.pop(request_id, None)
        if rpc_id is None:
            return []
        body = {"answers": {qid: {"answers": values} for qid, values in answers.items()}}
        return [Send(jsonrpc.response(rpc_id, body))]

    def cancel(self, reason: str) -> list[Effect]:
        effects: list[Effect] = [
            Send(jsonrpc.error_response(rpc_id, -32000, f"cancelled: {reason}"))
            for rpc_id in self._questions.values()
        ]
        self._questions.clear()
        if self._thread_id and self._turn_id and not self._done:
            params = {"threadId": self._thread_id, "turnId": self._turn_id}
            effects.append(self._call("turn/interrupt", params))
        return effects

    def finish(self) -> list[Effect]:
        if self._done:
            return []
        self._done = True
        return [Result("failed", error=f"{self._settings.label} exited before its turn completed")]

    # ------------------------------------------------------------------ codex → orca

    def feed_line(self, line: str) -> list[Effect]:
        message = jsonrpc.parse(line)
        if message is None:
            return (
                [Note(f"codex printed a line that is not JSON-RPC: {line[:200]}")]
                if line.strip()
                else []
            )
        try:
            if message.is_response:
                return self._on_response(message)
            if message.is_request:
                return self._on_request(message)
            return self._on_notification(str(message.method), message.params or {})
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            return [Note(f"codex sent a message orca could not read ({exc!r}): {line[:200]}")]

    def _on_response(self, message: jsonrpc.Message) -> list[Effect]:
        assert message.id is not None
        method = self._calls.pop(message.id, None)
        if method is None:
            return [Note(f"codex answered a request orca never sent (id {message.id!r})")]
        if message.error is not None:
            text = jsonrpc.error_text(message.error)
            if method == "turn/interrupt":
                return [Note(f"codex refused turn/interrupt: {text}")]
            return self._fail(f"{self._settings.label} does not support `{method}`: {text}")
        result = message.result or {}
        if method == "initialize":
            if self._settings.resume_thread:
                thread = self._call("thread/resume", {"threadId": self._settings.resume_thread})
            else:
                thread = self._call("thread/start", self._thread_params())
            return [Send(jsonrpc.notification("initialized")), thread]
        if method in ("thread/start", "thread/resume"):
            self._thread_id = str(result["thread"]["id"])
            turn = {"threadId": self._thread_id, "input": [{"type": "text", "text": self._prompt}]}
            return [Identified(self._thread_id), self._call("turn/start", turn)]
        if method == "turn/start":
            self._turn_id = str(result["turn"]["id"])
        return []

    def _on_request(self, message: jsonrpc.Message) -> list[Effect]:
        assert message.id is not None and message.method is not None
        params = message.params or {}
        if message.method == "item/tool/requestUserInput":
            return self._ask(message.id, params)
        if message.method in APPROVAL_REQUESTS:
            decision = self._settings.approval_decision
            note = Note(f"codex asked for approval ({message.method}); orca answered {decision}")
            return [note, Send(jsonrpc.response(message.id, {"decision": decision}))]
        return [
            Note(f"codex sent a request orca does not handle: {message.method}"),
            Send(
                jsonrpc.error_response(message.id, -32601, f"orca does not handle {message.method}")
            ),
        ]

    def _ask(self, rpc_id: jsonrpc.Id, params: dict[str, Any]) -> list[Effect]:
        try:
            questions = msgspec.convert(params.get("questions"), list[Question])
        except msgspec.ValidationError as exc:
            problem: str | None = f"invalid questions: {exc}"
        else:
            problem = validate_questions(questions)
        if problem is not None:
            return [
                Note(f"codex asked an unusable question ({problem}); orca refused it"),
                Send(jsonrpc.error_response(rpc_id, -32602, problem)),
            ]
        # One pending request per session: a newer one replaces (and refuses) the older.
        superseded: list[Effect] = []
        for old_id, old_rpc in self._questions.items():
            superseded.append(
                Send(jsonrpc.error_response(old_rpc, -32000, "superseded by a newer question"))
            )
            superseded.append(QuestionsWithdrawn(old_id, "superseded by a newer question"))
        self._questions.clear()
        request_id = f"codex-{rpc_id}"
        self._questions[request_id] = rpc_id
        return [*superseded, QuestionsAsked(request_id, questions)]

    def _on_notification(self, method: str, params: dict[str, Any]) -> list[Effect]:
        if method == "item/agentMessage/delta":
            self._streamed.add(str(params.get("itemId")))
            return [Output(str(params.get("delta", "")))]
        if method == "item/completed":
            return self._on_item(params["item"])
        if method == "thread/tokenUsage/updated":
            return usage_of(params.get("tokenUsage") or {})
        if method == "serverRequest/resolved":
            request_id = f"codex-{params.get('requestId')}"
            if self._questions.pop(request_id, None) is None:
                return []
            return [QuestionsWithdrawn(request_id, "codex resolved the request itself")]
        if method == "error":
            error = params.get("error") or {}
            retry = " (codex retries)" if params.get("willRetry") else ""
            return [Note(f"codex error{retry}: {error.get('message', error)}")]
        if method == "turn/completed":
            return self._on_turn_completed(params["turn"])
        return []

    def _on_item(self, item: dict[str, Any]) -> list[Effect]:
        kind = item.get("type")
        if kind == "agentMessage":
            text = str(item.get("text") or "")
            self._last_message = text
            if str(item.get("id")) in self._streamed:
                return [Output("\n")]
            return [Output(text + "\n")] if text else []
        if kind == "commandExecution":
            return [
                command_output(
                    item.get("command"),
                    item.get("exitCode"),
                    item.get("status"),
                    item.get("aggregatedOutput"),
                )
            ]
        if kind == "fileChange":
            changes = item.get("changes") or []
            lines = [f"{(c.get('kind') or {}).get('type', '?')} {c.get('path')}\n" for c in changes]
            return [Output("".join(lines))] if lines else []
        return []

    def _on_turn_completed(self, turn: dict[str, Any]) -> list[Effect]:
        if self._done:
            return []
        effects: list[Effect] = [
            QuestionsWithdrawn(request_id, "the turn ended") for request_id in self._questions
        ]
        self._questions.clear()
        status = turn.get("status")
        summary = self._last_message[-MAX_SUMMARY_CHARS:] or None
        verdict = verdict_of(self._last_message)
        if status == "completed":
            result = verdict or Result("done", summary=summary)
        elif status == "interrupted":
            result = Result("failed", error="the turn was interrupted")
        else:
            error = turn.get("error") or {}
            message = text_of(error.get("message")) if isinstance(error, dict) else None
            result = Result("failed", error=message or f"the turn ended {status}")
        self._done = True
        return [*effects, result]

    # ------------------------------------------------------------------ helpers

    def _call(self, method: str, params: Any) -> Send:
        request_id = self._next_id
        self._next_id += 1
        self._calls[request_id] = method
        return Send(jsonrpc.request(request_id, method, params))

    def _thread_params(self) -> dict[str, Any]:
        settings = self._settings
        params: dict[str, Any] = {"cwd": settings.cwd}
        if settings.model:
            params["model"] = settings.model
        if settings.sandbox:
            params["sandbox"] = settings.sandbox
        if settings.approval_policy:
            params["approvalPolicy"] = settings.approval_policy
        return params

    def _fail(self, error: str) -> list[Effect]:
        if self._done:
            return [Note(error)]
        self._done = True
        return [Note(error), Result("failed", error=error)]
