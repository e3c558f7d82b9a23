"""A loopback fake of the OpenAI Responses API, for driving the real `codex` CLI in tests.

Standard library only. `POST /v1/responses` answers with the next scripted `Turn` (a server-sent
event stream, an HTTP error, or a slow stream that waits to be cut off); every request body is
recorded, so a test can check what reached the "model" (a tool's output, say). The event shapes
follow openai/codex `codex-rs/core/tests/common/responses.rs` (what Codex's own tests serve).

    with FakeResponsesAPI() as api:
        api.script(ask([question("db", "Which database?", ["Postgres", "SQLite"])]),
                   message("done"))
        ... point a CODEX_HOME at api.base_url (see `write_codex_home`) and run codex ...
        assert api.tool_output("call_ask") == ...
"""

from __future__ import annotations

import http.server
import itertools
import json
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import pinned_agent

REPO = Path(__file__).resolve().parents[2]
CODEX_VERSION = "0.169.0"
"""The codex the suite pins (tests/npm/package-lock.json)."""
MODEL = "gpt-5-codex"
API_KEY_VARIABLE = "ORCA_TEST_FAKE_OPENAI_KEY"
PROVIDER = "orca-fake"
SLOW_STREAM_LIMIT_SECONDS = 30.0
"""A slow stream gives up after this long even if nobody cuts it off."""

_ids = itertools.count(1)


def usage(input_tokens: int = 1200, output_tokens: int = 300, cached: int = 200) -> dict[str, Any]:
    """A `response.completed` usage object (what the Responses API reports per request)."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


@dataclass(frozen=True)
class Turn:
    """What the fake answers to one request."""

    events: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error: dict[str, Any] | None = None
    """For a status other than 200: the JSON error body."""
    slow: bool = False
    """Send `events`, then stream text deltas slowly until the client hangs up."""


def _created(response_id: str) -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": response_id}}


def _completed(response_id: str, used: dict[str, Any]) -> dict[str, Any]:
    return {"type": "response.completed", "response": {"id": response_id, "usage": used}}


def message(text: str, *, used: dict[str, Any] | None = None, pieces: int = 2) -> Turn:
    """An assistant message, streamed in `pieces` deltas, then the response's end with usage."""
    response_id, item_id = f"resp_{next(_ids)}", f"msg_{next(_ids)}"
    size = max(1, -(-len(text) // max(1, pieces)))
    deltas = [text[i : i + size] for i in range(0, len(text), size)]
    item = {"type": "message", "role": "assistant", "id": item_id}
    return Turn(
        [
            _created(response_id),
            {"type": "response.output_item.added", "item": {**item, "content": []}},
            *({"type": "response.output_text.delta", "delta": delta} for delta in deltas),
            {
                "type": "response.output_item.done",
                "item": {**item, "content": [{"type": "output_text", "text": text}]},
            },
            _completed(response_id, used or usage()),
        ]
    )


def tool_call(
    name: str,
    arguments: dict[str, Any],
    call_id: str,
    *,
    used: dict[str, Any] | None = None,
    say: str | None = None,
    namespace: str | None = None,
) -> Turn:
    """The model calls a function tool (after a message `say`, if given); Codex runs it and
    sends its output in the next request. An MCP server's tools are in the namespace
    `mcp__SERVER`."""
    response_id = f"resp_{next(_ids)}"
    item = {
        "type": "function_call",
        "id": f"fc_{next(_ids)}",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        **({"namespace": namespace} if namespace is not None else {}),
    }
    return Turn(
        [
            _created(response_id),
            *(_said(say) if say is not None else []),
            {"type": "response.output_item.added", "item": item},
            {"type": "response.output_item.done", "item": item},
            _completed(response_id, used or usage()),
        ]
    )


def _said(text: str) -> list[dict[str, Any]]:
    """The events of one whole assistant message item within a response."""
    item = {"type": "message", "role": "assistant", "id": f"msg_{next(_ids)}"}
    return [
        {"type": "response.output_item.added", "item": {**item, "content": []}},
        {"type": "response.output_text.delta", "delta": text},
        {
            "type": "response.output_item.done",
            "item": {**item, "content": [{"type": "output_text", "text": text}]},
        },
    ]


def question(
    qid: str, text: str, options: list[str] | None = None, *, header: str | None = None
) -> dict[str, Any]:
    """One question of Codex's `request_user_input` tool (options: labels, or none: free text)."""
    return {
        "id": qid,
        "header": header or qid.title()[:12],
        "question": text,
        "options": [{"label": label, "description": f"use {label}"} for label in options or []],
    }


def ask(questions: list[dict[str, Any]], call_id: str = "call_ask") -> Turn:
    """The model asks the user through Codex's `request_user_input` tool."""
    return tool_call("request_user_input", {"questions": questions}, call_id)


def shell(command: str, call_id: str = "call_shell", *, say: str | None = None) -> Turn:
    """The model runs a shell command through Codex's `exec_command` tool (after saying `say`)."""
    arguments = {"cmd": command, "login": False, "yield_time_ms": 5000}
    return tool_call("exec_command", arguments, call_id, say=say)


def failed(text: str, code: str = "server_error") -> Turn:
    """The response fails mid-stream (`response.failed`)."""
    response_id = f"resp_{next(_ids)}"
    error = {"code": code, "message": text}
    return Turn(
        [
            _created(response_id),
            {"type": "response.failed", "response": {"id": response_id, "error": error}},
        ]
    )


def http_error(status: int, text: str, kind: str = "invalid_request_error") -> Turn:
    """The request is refused with an HTTP error and an OpenAI-style error body."""
    return Turn(status=status, error={"error": {"message": text, "type": kind, "code": None}})


def slow(text: str = "working") -> Turn:
    """A stream that starts a message and goes on slowly until the client hangs up."""
    response_id, item_id = f"resp_{next(_ids)}", f"msg_{next(_ids)}"
    item = {"type": "message", "role": "assistant", "id": item_id, "content": []}
    return Turn(
        [
            _created(response_id),
            {"type": "response.output_item.added", "item": item},
            {"type": "response.output_text.delta", "delta": text},
        ],
        slow=True,
    )


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


class FakeResponsesAPI:
    """The fake model service on 127.0.0.1 (a random port), serving the scripted turns in order."""

    def __init__(self) -> None:
        self._turns: deque[Turn | Callable[[], Turn]] = deque()
        self._lock = threading.Condition()
        self.requests: list[dict[str, Any]] = []
        """Every `POST .../responses` body, in order."""
        self.unscripted = 0
        """Requests that found no scripted turn (answered with an HTTP 400)."""
        self.hung_up = threading.Event()
        """Set when a client hung up on a slow stream."""
        self.other_paths: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeResponsesAPI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeResponsesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def script(self, *turns: Turn | Callable[[], Turn]) -> None:
        """Queue what the next requests get, in order; a callable makes its turn when its
        request comes (from what earlier tools returned, say)."""
        with self._lock:
            self._turns.extend(turns)

    def wait_requests(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Block until at least `count` requests have come; returns them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(self.requests)} model requests, not {count}")
                self._lock.wait(left)
            return list(self.requests)

    def tool_output(self, call_id: str) -> str | None:
        """The output Codex sent back for a tool call (`function_call_output`), if it did."""
        with self._lock:
            requests = list(self.requests)
        for body in requests:
            for item in body.get("input") or []:
                if item.get("type") == "function_call_output" and item.get("call_id") == call_id:
                    output = item.get("output")
                    return output if isinstance(output, str) else json.dumps(output)
        return None

    def user_texts(self) -> list[str]:
        """Every user message text the model saw, across requests (duplicates removed)."""
        seen: list[str] = []
        with self._lock:
            requests = list(self.requests)
        for body in requests:
            for item in body.get("input") or []:
                if item.get("type") == "message" and item.get("role") == "user":
                    for span in item.get("content") or []:
                        text = span.get("text")
                        if isinstance(text, str) and text not in seen:
                            seen.append(text)
        return seen

    # ------------------------------------------------------------------ serving

    def _next_turn(self, body: dict[str, Any]) -> Turn | None:
        with self._lock:
            self.requests.append(body)
            self._lock.notify_all()
            if not self._turns:
                self.unscripted += 1
                return None
            turn = self._turns.popleft()
        return turn if isinstance(turn, Turn) else turn()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                api.other_paths.append(f"GET {self.path}")
                self._json(404, {"error": {"message": f"the fake has no {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/responses"):
                    api.other_paths.append(f"POST {self.path}")
                    self._json(404, {"error": {"message": f"the fake has no {self.path}"}})
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    self._json(400, {"error": {"message": "the body is not JSON"}})
                    return
                turn = api._next_turn(body)
                if turn is None:
                    message = "the fake model service has no scripted answer left"
                    self._json(400, {"error": {"message": message, "type": "invalid_request"}})
                elif turn.status != 200:
                    self._json(turn.status, turn.error or {})
                else:
                    self._stream(turn)

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, turn: Turn) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                self.end_headers()
                self.close_connection = True
                try:
                    for event in turn.events:
                        self.wfile.write(_sse(event))
                    self.wfile.flush()
                    if turn.slow:
                        self._trickle()
                except (BrokenPipeError, ConnectionResetError):
                    api.hung_up.set()

            def _trickle(self) -> None:
                deadline = time.monotonic() + SLOW_STREAM_LIMIT_SECONDS
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                    self.wfile.write(_sse({"type": "response.output_text.delta", "delta": "."}))
                    self.wfile.flush()

        return Handler


def real_codex() -> Path:
    """The pinned real codex: from $ORCA_TEST_AGENT_BIN (scripts/test installs the pinned CLIs
    and sets it), else .cache/agents. Its absence fails the test: it is never skipped."""
    binary = pinned_agent("codex")
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert version.stdout.strip() == f"codex-cli {CODEX_VERSION}", version
    return binary


def write_codex_home(home: Path, api: FakeResponsesAPI, *, extra: str = "") -> dict[str, str]:
    """A private CODEX_HOME whose model provider is `api`; returns the environment Codex needs.

    Put `home` outside /tmp: Codex will not install its helper binaries under a temporary dir.
    It is HOME as well, so the login shells Codex starts read no dotfiles of this machine's user
    (whose start-up scripts may be slow, or leave locks behind when a test kills them).
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        f'model = "{MODEL}"\n'
        f'model_provider = "{PROVIDER}"\n'
        "suppress_unstable_features_warning = false\n"
        f"{extra}\n"
        f"[model_providers.{PROVIDER}]\n"
        'name = "Orca test model service"\n'
        f'base_url = "{api.base_url}"\n'
        'wire_api = "responses"\n'
        f'env_key = "{API_KEY_VARIABLE}"\n'
        "supports_websockets = false\n"
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        "stream_idle_timeout_ms = 60000\n"
    )
    return {"CODEX_HOME": str(home), "HOME": str(home), API_KEY_VARIABLE: "sk-orca-test"}
