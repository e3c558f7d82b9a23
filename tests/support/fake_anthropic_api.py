"""A loopback fake of the Anthropic Messages API (standard library only), scripted per test.

The real `claude` CLI, pointed at it with ANTHROPIC_BASE_URL, sends `HEAD /api/hello` first,
then `POST /v1/messages?beta=true` with `"stream": true` for each model call (without it
when it falls back after a failed stream); it may also ask for side jobs that offer no tools
(a session title, say). Each model call takes the next scripted reply (none left: a 403, which
claude does not retry); a side job gets a short JSON title. Every request is recorded, in
order, so a test can assert what reached the model (an answer as a `tool_result`, say).

    with FakeAnthropicAPI() as api:
        api.script(text("Hello"), tool_use("AskUserQuestion", {...}), text("done"))
        ... run claude with ANTHROPIC_BASE_URL=api.url ...
        api.tool_results()   # every tool_result block the model received

Replies stream the SSE events of the Messages API: `message_start`, `content_block_start`,
`content_block_delta` (`text_delta`, `input_json_delta`), `content_block_stop`, `message_delta`
(with `stop_reason` and `usage`), `message_stop`. `error(...)` answers with an HTTP error body;
`slow(...)` starts a message and then sends only `ping`s until `release()` or the client goes.
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from conftest import pinned_agent

MODEL = "claude-opus-5-5"
PING_SECONDS = 0.1


@dataclass(frozen=True)
class Reply:
    """One scripted answer to a turn request."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    """Content blocks: `{"type": "text", "text": ...}` or `{"type": "tool_use", ...}`."""
    stop_reason: str = "end_turn"
    usage: dict[str, int] = field(
        default_factory=lambda: {"input_tokens": 100, "output_tokens": 20}
    )
    status: int = 200
    """Not 200: an HTTP error with `error_type` and `message`."""
    error_type: str = ""
    message: str = ""
    hang: bool = False
    """Stream the first text delta, then only pings until released or disconnected."""


def text(body: str, *, usage: dict[str, int] | None = None) -> Reply:
    return Reply([{"type": "text", "text": body}], **({"usage": usage} if usage else {}))


def tool_use(name: str, tool_input: dict[str, Any], *, say: str | None = None) -> Reply:
    """A turn that calls one tool (optionally after some text)."""
    block = {"type": "tool_use", "id": f"toolu_fake{next(_ids):04d}", "name": name}
    blocks = [{"type": "text", "text": say}] if say else []
    return Reply([*blocks, {**block, "input": tool_input}], stop_reason="tool_use")


def error(status: int, error_type: str, message: str) -> Reply:
    return Reply(status=status, error_type=error_type, message=message)


def slow(first_words: str) -> Reply:
    return Reply([{"type": "text", "text": first_words}], hang=True)


_ids = itertools.count(1)


@dataclass
class Request:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    turn: bool
    """A model turn (took a scripted reply), not a side job."""


class FakeAnthropicAPI:
    """The fake server; a context manager that serves on 127.0.0.1 from a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replies: list[Reply] = []
        self.requests: list[Request] = []
        self.released = threading.Event()
        self.abandoned = threading.Event()
        """Set when a client closed a streaming reply before its end (an interrupt)."""
        self.hanging = threading.Event()
        """Set once a `slow` reply has sent its first words."""
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeAnthropicAPI:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def script(self, *replies: Reply) -> None:
        """Append replies for the next turn requests, in order."""
        with self._lock:
            self._replies.extend(replies)

    def release(self) -> None:
        """Let a `slow` reply finish."""
        self.released.set()

    def rearm(self) -> None:
        """Ready for another conversation with a `slow` reply (after `release`)."""
        for event in (self.released, self.hanging, self.abandoned):
            event.clear()

    def turns(self) -> list[dict[str, Any]]:
        """The bodies of the turn requests so far."""
        with self._lock:
            return [r.body for r in self.requests if r.turn and r.body is not None]

    def tool_results(self) -> list[dict[str, Any]]:
        """Every `tool_result` block the model was sent (in the last turn's full history)."""
        turns = self.turns()
        if not turns:
            return []
        return [
            block
            for message in turns[-1].get("messages", [])
            if message.get("role") == "user" and isinstance(message.get("content"), list)
            for block in message["content"]
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]

    def bodies_text(self) -> str:
        """Every recorded request body, as JSON text (to search for a value)."""
        with self._lock:
            return "\n".join(json.dumps(r.body) for r in self.requests)

    # -- serving

    def _take(self) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        return error(403, "permission_error", "fake API: no scripted reply left")

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                api._record(Request("HEAD", self.path, dict(self.headers), None, False))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                api._record(Request("GET", self.path, dict(self.headers), None, False))
                self._json(404, _error_body("not_found_error", f"fake API: no {self.path}"))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = None
                path = self.path.split("?", 1)[0]
                turn = path == "/v1/messages" and isinstance(body, dict) and _is_turn(body)
                api._record(Request("POST", self.path, dict(self.headers), body, turn))
                if path == "/v1/messages/count_tokens":
                    self._json(200, {"input_tokens": 100})
                elif path != "/v1/messages" or not isinstance(body, dict):
                    self._json(404, _error_body("not_found_error", f"fake API: no {path}"))
                elif not turn:
                    self._side_job(body)
                else:
                    self._turn(api._take(), body)

            def _json(self, status: int, value: dict[str, Any]) -> None:
                data = json.dumps(value).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _side_job(self, body: dict[str, Any]) -> None:
                reply = _message(str(body.get("model") or MODEL), [_SIDE_TEXT], "end_turn")
                if body.get("stream"):
                    self._stream(_events(reply), hang=False)
                else:
                    self._json(200, reply)

            def _turn(self, reply: Reply, body: dict[str, Any]) -> None:
                if reply.status != 200:
                    self._json(reply.status, _error_body(reply.error_type, reply.message))
                    return
                model = str(body.get("model") or MODEL)
                message = _message(model, reply.blocks, reply.stop_reason, reply.usage)
                if body.get("stream"):
                    self._stream(_events(message), hang=reply.hang)
                else:  # claude's fallback after a failed stream
                    self._json(200, message)

            def _stream(self, events: list[tuple[str, dict[str, Any]]], hang: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if hang:  # message_start, the first block's start and its text
                        self._send(events[:3])
                        api.hanging.set()
                        while not api.released.wait(PING_SECONDS):
                            self._send([("ping", {"type": "ping"})])
                        events = events[3:]
                    self._send(events)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    api.abandoned.set()
                    self.close_connection = True

            def _send(self, events: list[tuple[str, dict[str, Any]]]) -> None:
                data = b"".join(
                    f"event: {name}\ndata: {json.dumps(value)}\n\n".encode()
                    for name, value in events
                )
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        return Handler


_SIDE_TEXT = {"type": "text", "text": '{"title": "Fake session"}'}


def _is_turn(body: dict[str, Any]) -> bool:
    """A request of the conversation itself; a side job (a title, a summary) offers no tools."""
    return bool(body.get("tools"))


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _message(
    model: str,
    blocks: list[dict[str, Any]],
    stop_reason: str,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "id": f"msg_fake{next(_ids):04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }


def _events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The SSE events that stream `message`."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": usage.get("input_tokens", 0), "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(message["content"]):
        events += list(_block_events(index, block))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events += [
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def _block_events(index: int, block: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    if block["type"] == "text":
        opening: dict[str, Any] = {"type": "text", "text": ""}
        delta: dict[str, Any] = {"type": "text_delta", "text": block["text"]}
    else:
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    yield (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": opening},
    )
    yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def wait_for(event: threading.Event, what: str, timeout: float = 30.0) -> None:
    """Wait for one of the fake's events; fail naming `what`."""
    if not event.wait(timeout):
        raise AssertionError(f"the fake Anthropic API never saw {what} within {timeout}s")


# -- running the pinned real claude against the fake

REPO = Path(__file__).resolve().parents[2]
PINNED_CLAUDE_VERSION = json.loads((REPO / "tests/npm/package.json").read_text())["dependencies"][
    "@anthropic-ai/claude-code"
]
"""The claude the end-to-end tests drive (docs/real-agent-protocols.md §3 describes it)."""


def pinned_claude() -> Path:
    """The pinned `claude`; a missing one fails the test (the test command installs it)."""
    return pinned_agent("claude")


def claude_env(api: FakeAnthropicAPI, base: Path) -> dict[str, str]:
    """The environment that points claude at the fake: its URL and a key, and a private
    config directory and HOME under `base` (nothing of the user's is read or written);
    telemetry, updates and other traffic off."""
    config, home = base / "claude-config", base / "claude-home"
    config.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    return {
        "ANTHROPIC_BASE_URL": api.url,
        "ANTHROPIC_API_KEY": "sk-ant-fake-key",
        "CLAUDE_CONFIG_DIR": str(config),
        "HOME": str(home),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
    }


def claude_agent_toml(api: FakeAnthropicAPI, base: Path, command: Path | None = None) -> str:
    """`[agents.claude]` for config.toml: the pinned claude (or `command`), with `claude_env`."""
    lines = ["[agents.claude]", f"command = {json.dumps([str(command or pinned_claude())])}"]
    lines.append("[agents.claude.env]")
    lines += [f"{k} = {json.dumps(v)}" for k, v in claude_env(api, base).items()]
    return "\n".join(lines) + "\n"


def signal_recorder(directory: Path, program: Path) -> tuple[Path, Path]:
    """A wrapper that runs `program` as its child and appends each SIGTERM it gets (as a
    member of the session's process group) to a file; returns the wrapper and that file."""
    signals = directory / "signals"
    wrapper = directory / "claude"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"trap 'echo TERM >> \"{signals}\"' TERM\n"
        "exec 3<&0\n"  # a background job's stdin would be /dev/null
        f'"{program}" "$@" <&3 3<&- &\n'
        "child=$!\n"
        'wait "$child"; status=$?\n'
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done\n'
        'exit "$status"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, signals
