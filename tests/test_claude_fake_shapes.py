"""tests/fakes/claude may send and accept only what the pinned real claude does.

The same conversations run twice: once with the pinned real claude against the fake Anthropic
API (scripted to match the fake's scenario), once with tests/fakes/claude. Every line the fake
writes must have a shape the real one also wrote: the same kind of line (its `type` and
subtype; for a `result`, whether it is an error and its `terminal_reason`), and only fields
the real one had, with the same JSON types. And every answer to an AskUserQuestion that orca
could send, well-formed or not, must get the same treatment from both (answered, unanswered,
refused), so the fake accepts nothing the real one refuses.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.fake_anthropic_api import (
    FakeAnthropicAPI,
    Reply,
    claude_env,
    error,
    pinned_claude,
    slow,
    text,
    tool_use,
)

from orca_daemon.agents.base import QuestionsAsked, Send
from orca_daemon.agents.claude import ClaudeTranslator, claude_argv

pytestmark = pytest.mark.e2e
FAKE_CLAUDE = Path(__file__).resolve().parent / "fakes" / "claude"
LINE_SECONDS = 30.0
FREE_FORM = {"input", "updatedInput", "tool_use_result", "modelUsage", "permission_suggestions"}
"""Fields whose inside is the tool's or the model's business, not the protocol's."""
COLOR = {
    "question": "Which color?",
    "header": "Color",
    "options": [
        {"label": "Red", "description": "Red color"},
        {"label": "Blue", "description": "Blue color"},
    ],
    "multiSelect": False,
}
Line = dict[str, Any]


class Conversation:
    """One claude process (real or fake) with orca's command line, read line by line."""

    def __init__(self, command: list[str], env: dict[str, str], cwd: Path) -> None:
        argv = claude_argv(command, model=None, resume_session=None, extra=[])
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
        self.lines: queue.Queue[Line | None] = queue.Queue()
        self.seen: list[Line] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if raw.strip():
                self.lines.put(json.loads(raw))
        self.lines.put(None)

    def send(self, *lines: bytes) -> None:
        assert self.process.stdin is not None
        for line in lines:
            self.process.stdin.write(line)
        self.process.stdin.flush()

    def next(self) -> Line | None:
        line = self.lines.get(timeout=LINE_SECONDS)
        if line is not None:
            self.seen.append(line)
        return line

    def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(LINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(LINE_SECONDS)


Respond = Callable[[Conversation, Line, ClaudeTranslator], None]


@dataclass(frozen=True)
class Scenario:
    """What the model does (for the real claude), the fake's scenario, and how orca answers."""

    replies: list[Reply]
    fake_prompt: str
    respond: Respond = field(default=lambda conversation, line, translator: None)
    initialize: bool = False
    """Start with the SDK's `initialize` control request (orca does not send it; the fake
    accepts it, so the real must too)."""


def orca_answers(answers: dict[str, list[str]]) -> Respond:
    """Answer a question the way orca does (its translator), everything else as orca would."""

    def respond(conversation: Conversation, line: Line, translator: ClaudeTranslator) -> None:
        for effect in translator.feed_line(json.dumps(line)):
            if isinstance(effect, QuestionsAsked):
                effects = translator.answer(effect.request_id, answers)
                assert translator.answered(effect.request_id)
                conversation.send(*(e.line for e in effects if isinstance(e, Send)))
            elif isinstance(effect, Send):
                conversation.send(effect.line)

    return respond


def interrupt_when(ready: Callable[[Line], bool]) -> Respond:
    """Send orca's interrupt (alone) once a line says the turn is under way."""

    def respond(conversation: Conversation, line: Line, translator: ClaudeTranslator) -> None:
        if ready(line):
            interrupt = json.dumps(
                {
                    "type": "control_request",
                    "request_id": "orca_1",
                    "request": {"subtype": "interrupt"},
                }
            )
            conversation.send(interrupt.encode() + b"\n")

    return respond


def is_permission_request(line: Line) -> bool:
    return line.get("type") == "control_request"


SCENARIOS = {
    "done": Scenario([text("fake claude did: it")], "SCENARIO=done it", initialize=True),
    "ask": Scenario(
        [tool_use("AskUserQuestion", {"questions": [COLOR]}), text("Red it is")],
        "SCENARIO=ask",
        orca_answers({"q1": ["Red"]}),
    ),
    "tool": Scenario(
        [tool_use("Bash", {"command": "echo hi > made.txt", "description": "x"}), text("made")],
        "SCENARIO=tool",
        orca_answers({}),
    ),
    "fail": Scenario([error(529, "overloaded_error", "Overloaded")] * 3, "SCENARIO=fail"),
    "interrupt": Scenario(
        [slow("working, interrupt me")],
        "SCENARIO=wait",
        interrupt_when(lambda line: line.get("type") == "assistant"),
    ),
    "interrupt-ask": Scenario(
        [tool_use("AskUserQuestion", {"questions": [COLOR]}), text("never")],
        "SCENARIO=ask",
        interrupt_when(is_permission_request),
    ),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shapes")


def converse(
    who: str, scenario: Scenario, base: Path, api: FakeAnthropicAPI | None = None
) -> list[Line]:
    """Run one turn of `scenario` with the real claude (given `api`) or the fake; every line
    it wrote."""
    base.mkdir(parents=True, exist_ok=True)
    if api is not None:
        api.script(*scenario.replies)
        command, env = [str(pinned_claude())], {**os.environ, **claude_env(api, base)}
        prompt = "go"
    else:
        command = [sys.executable, str(FAKE_CLAUDE)]
        env = {**os.environ, "FAKE_CLAUDE_HOME": str(base / "fake-home")}
        prompt = scenario.fake_prompt
    conversation = Conversation(command, env, base)
    translator = ClaudeTranslator(who)
    try:
        if scenario.initialize:
            initialize = {"subtype": "initialize", "hooks": None}
            request = {"type": "control_request", "request_id": "req_1_0", "request": initialize}
            conversation.send(json.dumps(request).encode() + b"\n")
        conversation.send(*(e.line for e in translator.start(prompt) if isinstance(e, Send)))
        if api is not None and scenario.replies[0].hang:  # the real claude says nothing
            threading.Thread(  # until the stream ends: interrupt once it is under way
                target=lambda: (
                    api.hanging.wait(LINE_SECONDS)
                    and scenario.respond(conversation, {"type": "assistant"}, translator)
                ),
                daemon=True,
            ).start()
        while (line := conversation.next()) is not None:
            if line.get("type") == "result":
                break
            if not (api is not None and scenario.replies[0].hang):
                scenario.respond(conversation, line, translator)
    finally:
        conversation.close()
        if api is not None:
            api.release()
            api.rearm()
    return conversation.seen


def kind(line: Line) -> str:
    """What sort of line this is, as finely as the protocol tells them apart."""
    sort = str(line.get("type"))
    if sort == "system":
        return f"system/{line.get('subtype')}"
    if sort == "result":
        outcome = "error" if line.get("is_error") else "ok"
        return f"result/{line.get('subtype')}/{outcome}/{line.get('terminal_reason')}"
    if sort == "control_request":
        return f"control_request/{(line.get('request') or {}).get('subtype')}"
    if sort == "control_response":
        return f"control_response/{(line.get('response') or {}).get('subtype')}"
    if sort == "assistant":
        return "assistant/api_error" if line.get("is_api_error_message") else "assistant"
    if sort == "user":
        content = (line.get("message") or {}).get("content")
        blocks = sorted({str(b.get("type")) for b in content or [] if isinstance(b, dict)})
        return f"user/{'+'.join(blocks)}"
    return sort


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def fields(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, JSON type) of everything in a line, free-form payloads not looked into."""
    if isinstance(value, dict):
        for key, inner in value.items():
            here = f"{path}.{key}"
            yield here, json_type(inner)
            if key not in FREE_FORM:
                yield from fields(inner, here)
    elif isinstance(value, list):
        for item in value:
            yield f"{path}[]", json_type(item)
            yield from fields(item, f"{path}[]")


Shapes = dict[str, dict[str, set[str]]]


def shapes(lines: list[Line]) -> Shapes:
    """kind -> path -> the JSON types seen there."""
    found: Shapes = {}
    for line in lines:
        paths = found.setdefault(kind(line), {})
        for path, sort in fields(line):
            paths.setdefault(path, set()).add(sort)
    return found


def drift(fake: Shapes, real: Shapes) -> list[str]:
    """What the fake wrote that the real claude never did (null fits any type)."""
    problems = []
    for sort, paths in sorted(fake.items()):
        if sort not in real:
            problems.append(f"a {sort} line (the real claude wrote: {sorted(real)})")
            continue
        for path, types in sorted(paths.items()):
            known = real[sort].get(path)
            if known is None:
                problems.append(f"{sort}: field {path}")
            elif not (types - {"null"}) <= (known | {"null"}) and "null" not in known:
                problems.append(f"{sort}: {path} is {sorted(types)}, real: {sorted(known)}")
    return problems


@pytest.fixture(scope="module")
def recorded(workspace: Path) -> dict[str, tuple[list[Line], list[Line]]]:
    """Each scenario's lines: (real claude, fake claude)."""
    runs = {}
    with FakeAnthropicAPI() as api:
        for name, scenario in SCENARIOS.items():
            real = converse("real", scenario, workspace / "real" / name, api)
            fake = converse("fake", scenario, workspace / "fake" / name)
            runs[name] = (real, fake)
    return runs


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_fake_writes_only_what_the_real_claude_writes(
    recorded: dict[str, tuple[list[Line], list[Line]]], name: str
) -> None:
    real = shapes([line for lines, _ in recorded.values() for line in lines])
    own_real, fake = recorded[name]
    assert own_real and own_real[-1]["type"] == "result", own_real
    assert fake and fake[-1]["type"] == "result", fake
    problems = drift(shapes(fake), real)
    assert not problems, "the fake claude writes what the real one does not:\n" + "\n".join(
        problems
    )
    # The scenario's outcome is the same kind of result for both.
    assert kind(fake[-1]) == kind(own_real[-1])


ANSWERS: dict[str, Callable[[Line], Line]] = {
    "orca's answer": lambda asked: {
        "behavior": "allow",
        "updatedInput": {**asked["request"]["input"], "answers": {"Which color?": "Red"}},
    },
    "an answer list": lambda asked: {
        "behavior": "allow",
        "updatedInput": {**asked["request"]["input"], "answers": {"Which color?": ["Red"]}},
    },
    "no answers": lambda asked: {"behavior": "allow", "updatedInput": asked["request"]["input"]},
    "allow without input": lambda asked: {"behavior": "allow"},
    "orca's denial": lambda asked: {"behavior": "deny", "message": "cancelled: by orca"},
    "a denial without message": lambda asked: {"behavior": "deny"},
    "an unknown behavior": lambda asked: {"behavior": "maybe"},
}


def treatment(lines: list[Line]) -> str:
    """How claude took the answer: from the AskUserQuestion's tool_result."""
    for line in lines:
        content = (line.get("message") or {}).get("content")
        for block in content if line.get("type") == "user" and isinstance(content, list) else []:
            if block.get("type") == "tool_result":
                if block.get("is_error"):
                    return "refused"
                text_ = str(block.get("content"))
                return "answered Red" if '"Which color?"="Red"' in text_ else "unanswered"
    return "no tool_result"


def test_the_fake_takes_each_answer_as_the_real_claude_does(workspace: Path) -> None:
    def answer_with(make: Callable[[Line], Line]) -> Respond:
        def respond(conversation: Conversation, line: Line, translator: ClaudeTranslator) -> None:
            if is_permission_request(line):
                body = {
                    "subtype": "success",
                    "request_id": line["request_id"],
                    "response": make(line),
                }
                reply = {"type": "control_response", "response": body}
                conversation.send(json.dumps(reply).encode() + b"\n")

        return respond

    differences = []
    with FakeAnthropicAPI() as api:
        for name, make in ANSWERS.items():
            scenario = Scenario(
                [tool_use("AskUserQuestion", {"questions": [COLOR]}), text("ok")],
                "SCENARIO=ask",
                answer_with(make),
            )
            slug = name.replace(" ", "-").replace("'", "")
            real = treatment(converse("real", scenario, workspace / "answers-real" / slug, api))
            fake = treatment(converse("fake", scenario, workspace / "answers-fake" / slug))
            if real != fake:
                differences.append(f"{name}: the real claude {real}, the fake {fake}")
    assert not differences, "\n".join(differences)
