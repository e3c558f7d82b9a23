"""`codex app-server` (JSON-RPC over stdio) as a pure translator. See docs/real-agent-protocols.md.

initialize → initialized → thread/start (or thread/resume with the same settings) → turn/start;
item notifications become compact output (messages, commands run, files changed, tools used);
Codex's warnings become notes; `item/tool/requestUserInput` becomes a question, answered
`{"answers": {id: {"answers": [..]}}}`; `serverRequest/resolved` clears it; every other server
request gets the answer its schema asks for (`SERVER_REQUESTS`); `turn/completed` ends the
session. Success is the turn's status, or a JSON verdict (`{"outcome": ...}`) on the last line of
the agent's final message. Cancel interrupts the turn (`turn/interrupt`) and says so
(`Interrupting`), so the process gets a moment to end the turn before it is signalled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import msgspec

from orca_client.views import Question
from orca_daemon.agents import jsonrpc
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
    text_of,
    usage_of,
    validate_questions,
)

MAX_COMMAND_OUTPUT_LINES = 5
MAX_COMMAND_LINE_CHARS = 200
MAX_SUMMARY_CHARS = 2000
SERVER_REQUESTS = (
    "item/tool/requestUserInput",
    "item/commandExecution/requestApproval",
    "item/fileChange/requestApproval",
    "item/permissions/requestApproval",
    "mcpServer/elicitation/request",
    "item/tool/call",
    "currentTime/read",
    "execCommandApproval",
    "applyPatchApproval",
    "account/chatgptAuthTokens/refresh",
    "attestation/generate",
)
"""Every request codex app-server 0.169 may send (its `ServerRequest` schema); each is answered
in the shape of its `...Response` schema, or refused where Orca has nothing to give."""


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
    """A command the agent ran, compactly: `$ command  (exit N, status)` and the last few lines
    of its output (each cut to a line's width), with how many lines were left out."""
    lines = str(output or "").splitlines()
    shown = [
        line if len(line) <= MAX_COMMAND_LINE_CHARS else line[:MAX_COMMAND_LINE_CHARS] + "…"
        for line in lines[-MAX_COMMAND_OUTPUT_LINES:]
    ]
    left_out = len(lines) - len(shown)
    more = [f"… {left_out} earlier line(s) of output (left out)"] if left_out else []
    ended = f"exit {exit_code}, {status}" if exit_code is not None else status
    head = f"$ {command}  ({ended})"
    return Output("".join(f"{line}\n" for line in [head, *more, *shown]))


def shown_command(item: dict[str, Any]) -> object:
    """The command as the agent wrote it: Codex wraps it (`/bin/bash -lc '...'`) in `command`
    and keeps the original in its one `commandActions` entry."""
    actions = item.get("commandActions")
    if isinstance(actions, list) and len(actions) == 1 and isinstance(actions[0], dict):
        original = actions[0].get("command")
        if isinstance(original, str) and original:
            return original
    return item.get("command")


def file_changes(changes: object, status: object, cwd: str) -> list[Effect]:
    """Files the agent changed (or was refused), one line each: `add path`, `update path`..."""
    if not isinstance(changes, list) or not changes:
        return []
    suffix = "" if status in (None, "completed") else f"  ({status})"
    lines = []
    for change in changes:
        if not isinstance(change, dict):
            continue
        kind = change.get("kind")
        kind_name = kind.get("type", "?") if isinstance(kind, dict) else kind
        lines.append(f"{kind_name} {_relative(change.get('path'), cwd)}{suffix}\n")
    return [Output("".join(lines))] if lines else []


def _relative(path: object, cwd: str) -> object:
    if isinstance(path, str) and cwd and path.startswith(cwd.rstrip("/") + "/"):
        return path[len(cwd.rstrip("/")) + 1 :]
    return path


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


WARNINGS = {
    "warning": "codex warning",
    "configWarning": "codex config warning",
    "deprecationNotice": "codex deprecation notice",
    "guardianWarning": "codex guardian warning",
}
"""What Codex says about itself (a feature under development, a config problem), as notes."""


def server_request_answer(
    method: str, params: dict[str, Any], decision: str
) -> tuple[str, dict[str, Any]] | None:
    """A note and the result for a server request other than a question, in the shape of the
    request's `...Response` schema (Codex 0.169); None for one Orca has nothing to answer with
    (a JSON-RPC error goes back instead). `decision` is `accept` or `decline`."""
    accept = decision == "accept"
    said = f"codex asked for approval ({method}); orca answered {decision}"
    if method in ("item/commandExecution/requestApproval", "item/fileChange/requestApproval"):
        return said, {"decision": decision}
    if method == "item/permissions/requestApproval":
        requested = params.get("permissions")
        granted = (
            {k: v for k, v in requested.items() if k in ("fileSystem", "network")}
            if accept and isinstance(requested, dict)
            else {}
        )
        return said, {"permissions": granted, "scope": "turn"}
    if method in ("execCommandApproval", "applyPatchApproval"):
        review = "approved" if accept else {"denied": {"rejection": "orca declines approvals"}}
        return said, {"decision": review}
    if method == "mcpServer/elicitation/request":
        return f"codex asked for input for an MCP server ({method}); orca declined", {
            "action": "decline",
            "content": None,
        }
    if method == "currentTime/read":
        return "codex asked for the time", {"currentTimeAt": int(time.time())}
    if method == "item/tool/call":
        tool = params.get("tool")
        text = f"orca provides no tool named {tool!r}"
        return f"codex called a client tool orca does not provide: {tool}", {
            "contentItems": [{"type": "inputText", "text": text}],
            "success": False,
        }
    return None


class CodexAppServerTranslator:
    """Drives one thread with one turn for the prompt."""

    plain_mark: bytes | None = None  # every stdout line is a protocol message

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
        rpc_id = self._questions.get(request_id)
        if rpc_id is None:
            return []
        body = {"answers": {qid: {"answers": values} for qid, values in answers.items()}}
        return [Send(jsonrpc.response(rpc_id, body))]

    def answered(self, request_id: str) -> bool:
        return self._questions.pop(request_id, None) is not None

    def cancel(self, reason: str) -> list[Effect]:
        effects: list[Effect] = [
            Send(jsonrpc.error_response(rpc_id, -32000, f"cancelled: {reason}"))
            for rpc_id in self._questions.values()
        ]
        self._questions.clear()
        if self._thread_id and self._turn_id and not self._done:
            params = {"threadId": self._thread_id, "turnId": self._turn_id}
            effects += [self._call("turn/interrupt", params), Interrupting()]
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
                # Without its settings again, a resumed thread falls back to Codex's defaults
                # (a read-only sandbox, say).
                resume = {
                    "threadId": self._settings.resume_thread,
                    **self._thread_params(),
                    "excludeTurns": True,
                }
                thread = self._call("thread/resume", resume)
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
        answer = server_request_answer(message.method, params, self._settings.approval_decision)
        if answer is None:
            refusal = f"orca does not handle {message.method}"
            return [
                Note(f"codex sent a request orca does not handle: {message.method}"),
                Send(jsonrpc.error_response(message.id, -32601, refusal)),
            ]
        note, result = answer
        return [Note(note), Send(jsonrpc.response(message.id, result))]

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
            return _thread_usage(params.get("tokenUsage"))
        if method == "serverRequest/resolved":
            request_id = f"codex-{params.get('requestId')}"
            if self._questions.pop(request_id, None) is None:
                return []
            return [QuestionsWithdrawn(request_id, "codex resolved the request itself")]
        if method == "error":
            error = params.get("error") or {}
            retry = " (codex retries)" if params.get("willRetry") else ""
            return [Note(f"codex error{retry}: {error.get('message', error)}")]
        if method in WARNINGS:
            text = params.get("message") or params.get("summary")
            details = params.get("details")
            more = f" ({details})" if details else ""
            return [Note(f"{WARNINGS[method]}: {text}{more}")]
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
                    shown_command(item),
                    item.get("exitCode"),
                    item.get("status"),
                    item.get("aggregatedOutput"),
                )
            ]
        if kind == "fileChange":
            return file_changes(item.get("changes"), item.get("status"), self._settings.cwd)
        if kind in ("mcpToolCall", "dynamicToolCall"):
            server = f"{item['server']}." if item.get("server") else ""
            return [Output(f"tool {server}{item.get('tool')}  ({item.get('status')})\n")]
        if kind == "webSearch":
            return [Output(f"web search: {item.get('query')}\n")]
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
            effects.append(Note("codex interrupted the turn"))
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


def _thread_usage(value: Any) -> list[Effect]:
    """The thread's usage as Codex reports it, its totals from `total` (cached input included
    in `inputTokens`)."""
    effects = usage_of(value)
    total = value.get("total") if isinstance(value, dict) else None
    if effects and isinstance(effects[0], Usage) and isinstance(total, dict):
        effects[0] = msgspec.structs.replace(
            effects[0],
            input_tokens=count_of(total.get("inputTokens")),
            output_tokens=count_of(total.get("outputTokens")),
        )
    return effects
