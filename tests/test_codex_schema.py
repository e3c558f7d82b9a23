"""The fake `codex` (tests/fakes/codex) and Orca's app-server translator against the JSON Schema
of the pinned real codex (`codex app-server generate-json-schema --experimental`).

The fake is driven by the real translator through every scenario it has; every message either
side sent must be one the real codex sends or accepts: each request, notification and response
is checked against its schema (unknown fields included), so the fake cannot drift from the real
CLI, and Orca cannot answer a request in a shape Codex would not read (issue 10, finding 3).
The validator is a small subset of JSON Schema draft 7: what Codex's schema uses.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.fake_responses_api import real_codex

from orca_daemon.agents.base import Effect, Identified, Output, QuestionsAsked, Result, Send
from orca_daemon.agents.codex import SERVER_REQUESTS, CodexAppServerTranslator, CodexSettings

FAKE_CODEX = Path(__file__).resolve().parent / "fakes" / "codex"
pytestmark = pytest.mark.e2e  # it runs the real codex (to generate its schema)

# --------------------------------------------------------------------------- the validator


class Schema:
    """A JSON Schema document (draft 7), for the keywords Codex's schema uses."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def definition(self, name: str) -> Any:
        """`#/definitions/NAME`, or `#/definitions/v2/NAME`."""
        definitions = self.document["definitions"]
        return definitions.get(name) or definitions["v2"][name]

    def errors(
        self, value: Any, schema: Any, where: str = "$", inherited: frozenset[str] = frozenset()
    ) -> list[str]:
        """Why `value` does not match `schema`; [] when it does. An object may have only the
        properties its schema lists unless the schema allows others (`additionalProperties`);
        a branch of `oneOf`/`anyOf`/`allOf` also allows those its parent lists (`inherited`:
        Codex flattens common fields that way)."""
        if schema is True or schema == {}:
            return []
        if schema is False:
            return [f"{where}: nothing is allowed here"]
        if "$ref" in schema:
            target: Any = self.document
            for part in schema["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            found = self.errors(value, target, where, inherited)
            if found:
                return found
        branches = inherited | frozenset(schema.get("properties", {}))
        found = []
        for sub in schema.get("allOf", []):
            found += self.errors(value, sub, where, branches)
        if "anyOf" in schema and all(
            self.errors(value, s, where, branches) for s in schema["anyOf"]
        ):
            closest = self._closest(value, schema["anyOf"], where, branches)
            found.append(f"{where}: matches none of anyOf: {closest}")
        if "oneOf" in schema:
            matches = sum(not self.errors(value, s, where, branches) for s in schema["oneOf"])
            if matches != 1:
                closest = self._closest(value, schema["oneOf"], where, branches)
                found.append(f"{where}: matches {matches} of oneOf (need 1): {closest}")
        if "enum" in schema and value not in schema["enum"]:
            found.append(f"{where}: {value!r} is not one of {schema['enum']}")
        if "type" in schema and not _has_type(value, schema["type"]):
            return [*found, f"{where}: {json.dumps(value)[:80]} is not of type {schema['type']}"]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and "minimum" in schema and value < schema["minimum"]:
            found.append(f"{where}: {value} is below the minimum {schema['minimum']}")
        if isinstance(value, str) and len(value) < schema.get("minLength", 0):
            found.append(f"{where}: shorter than {schema['minLength']}")
        if isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                found += self.errors(item, schema["items"], f"{where}[{index}]")
        if isinstance(value, dict):
            combined = any(key in schema for key in ("allOf", "anyOf", "oneOf"))
            found += self._object_errors(value, schema, where, inherited, closed=not combined)
        return found

    def _object_errors(
        self,
        value: dict[str, Any],
        schema: Any,
        where: str,
        inherited: frozenset[str],
        closed: bool,
    ) -> list[str]:
        required = schema.get("required", [])
        found = [f"{where}: missing {key!r}" for key in required if key not in value]
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                found += self.errors(item, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                found += self.errors(item, extra, f"{where}.{key}")
            elif key in inherited or extra is True or not closed:
                continue
            elif properties or extra is False:
                found.append(f"{where}: {key!r} is not a field of this message")
        return found

    def _closest(
        self, value: Any, options: list[Any], where: str, inherited: frozenset[str]
    ) -> str:
        tried = [self.errors(value, option, where, inherited) for option in options]
        return "; ".join(min(tried, key=len)[:3]) if tried else "no options"


def _has_type(value: Any, expected: str | list[str]) -> bool:
    kinds = [expected] if isinstance(expected, str) else expected
    checks = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    return any(checks[kind] for kind in kinds)


def test_the_validator_catches_what_it_must() -> None:
    schema = Schema(
        {
            "definitions": {
                "Kind": {"enum": ["a", "b"], "type": "string"},
                "v2": {"Id": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
            }
        }
    )
    thing = {
        "properties": {
            "id": {"$ref": "#/definitions/v2/Id"},
            "kind": {"$ref": "#/definitions/Kind"},
            "n": {"type": ["integer", "null"], "minimum": 0},
            "free": {"additionalProperties": {"type": "string"}, "type": "object"},
        },
        "required": ["id", "kind"],
        "type": "object",
    }
    assert schema.errors({"id": 1, "kind": "a", "n": None, "free": {"x": "y"}}, thing) == []
    assert schema.errors({"id": True, "kind": "c", "n": -1, "free": {"x": 1}, "z": 0}, thing) == [
        "$.id: matches none of anyOf: $.id: true is not of type string",
        "$.kind: 'c' is not one of ['a', 'b']",
        "$.n: -1 is below the minimum 0",
        "$.free.x: 1 is not of type string",
        "$: 'z' is not a field of this message",
    ]
    assert schema.errors({}, thing) == ["$: missing 'id'", "$: missing 'kind'"]


# --------------------------------------------------------------------------- the real schema


class Protocol:
    """The messages of one codex version, by method: what each request, response and
    notification must look like."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.client_requests = self._methods("ClientRequest")
        self.server_requests = self._methods("ServerRequest")
        self.server_notifications = self._methods("ServerNotification")
        self.client_notifications = self._methods("ClientNotification")

    def _methods(self, union: str) -> dict[str, Any]:
        found = {}
        for variant in self.schema.definition(union)["oneOf"]:
            (method,) = variant["properties"]["method"]["enum"]
            found[method] = variant["properties"].get("params")
        return found

    def response_schema(self, params: Any) -> Any:
        """`...Params` → `...Response`, as Codex names them."""
        name = params["$ref"].rsplit("/", 1)[1].removesuffix("Params") + "Response"
        return self.schema.definition(name)

    def check(self, message: dict[str, Any], sender: str, calls: dict[Any, str]) -> list[str]:
        """Errors of one message `sender` ("client" = Orca, "server" = codex) sent; `calls`
        remembers each request's method by id (both ways) to check its response."""
        mine = "client" if sender == "client" else "server"
        theirs = "server" if sender == "client" else "client"
        method = message.get("method")
        known = {"id", "method", "params", "result", "error"}
        errors = [
            f"{key!r} is not a member of a JSON-RPC message" for key in message if key not in known
        ]
        if method is not None and "id" in message:
            methods = self.client_requests if mine == "client" else self.server_requests
            if method not in methods:
                return [*errors, f"{method!r} is not a {mine} request of this codex"]
            calls[(mine, message["id"])] = method
            return errors + self.schema.errors(message.get("params"), methods[method], f"{method}")
        if method is not None:
            methods = self.client_notifications if mine == "client" else self.server_notifications
            if method not in methods:
                return [*errors, f"{method!r} is not a {mine} notification of this codex"]
            if methods[method] is None:
                return errors + ([f"{method}: has params"] if "params" in message else [])
            return errors + self.schema.errors(message.get("params"), methods[method], method)
        answered = calls.get((theirs, message.get("id")))
        if answered is None:
            return [*errors, f"a response to no request: {json.dumps(message)[:200]}"]
        if "error" in message:
            return errors + self.schema.errors(message, self.schema.definition("JSONRPCError"))
        methods = self.client_requests if theirs == "client" else self.server_requests
        where = f"response to {answered}"
        return errors + self.schema.errors(
            message.get("result"), self.response_schema(methods[answered]), where
        )


@pytest.fixture(scope="module")
def protocol(tmp_path_factory: pytest.TempPathFactory) -> Protocol:
    out = tmp_path_factory.mktemp("codex-schema")
    generated = subprocess.run(
        [
            str(real_codex()),
            "app-server",
            "generate-json-schema",
            "--experimental",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    bundle = json.loads((out / "codex_app_server_protocol.schemas.json").read_text())
    return Protocol(Schema(bundle))


# --------------------------------------------------------------------------- the fake, driven


class FakeSession:
    """The fake `codex app-server`, driven by Orca's translator until the turn's result."""

    def __init__(self, home: Path, work: Path, name: str) -> None:
        self.home = home
        self.work = work
        self.name = name
        self.thread_id: str | None = None

    def run(self, prompt: str, *, resume: str | None = None, cancel_on: str | None = None) -> None:
        env = {**os.environ, "FAKE_CODEX_HOME": str(self.home), "ORCA_RUN_ID": self.name}
        (self.home / f"release-{self.name}").touch()  # `clear` goes on at once
        process = subprocess.Popen(
            [sys.executable, str(FAKE_CODEX), "app-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self.work,
            env=env,
        )
        assert process.stdin is not None and process.stdout is not None
        translator = CodexAppServerTranslator(
            CodexSettings(label="fake codex", cwd=str(self.work), resume_thread=resume)
        )
        done = False
        cancelled = False

        def carry_out(effects: list[Effect]) -> None:
            nonlocal done, cancelled
            assert process.stdin is not None
            for effect in effects:
                if isinstance(effect, Send):
                    process.stdin.write(effect.line)
                    process.stdin.flush()
                elif isinstance(effect, QuestionsAsked):
                    answers = {q.id: [f"answer to {q.id}"] for q in effect.questions}
                    carry_out(translator.answer(effect.request_id, answers))
                    assert translator.answered(effect.request_id)
                elif isinstance(effect, Identified):
                    self.thread_id = effect.agent_session_id
                elif isinstance(effect, Output) and cancel_on and cancel_on in effect.text:
                    if not cancelled:
                        cancelled = True
                        carry_out(translator.cancel("the test cancels"))
                elif isinstance(effect, Result):
                    done = True

        try:
            carry_out(translator.start(prompt))
            for raw in process.stdout:
                carry_out(translator.feed_line(raw.decode().rstrip("\n")))
                if done:
                    break
            assert done, f"the fake's {prompt!r} turn never ended"
        finally:
            process.stdin.close()
            process.wait(timeout=30)

    def log(self) -> list[dict[str, Any]]:
        path = self.home / f"{self.name}.log.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


SCENARIOS = [
    ("done", None),
    ("ask", None),
    ("ask-two", None),
    ("secret", None),
    ("clear", None),
    ("fail", None),
    ("verdict-failed", None),
    ("approval", None),
    ("interrupt-wait", "interrupt me"),
]
"""Every app-server scenario of the fake but `malformed` (whose point is messages no codex
sends), with what to cancel on."""


@pytest.fixture
def fake_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "fake-codex-home"
    home.mkdir()
    yield home


@pytest.mark.parametrize(("scenario", "cancel_on"), SCENARIOS)
def test_every_message_between_orca_and_the_fake_is_one_the_real_codex_knows(
    protocol: Protocol, fake_home: Path, tmp_path: Path, scenario: str, cancel_on: str | None
) -> None:
    session = FakeSession(fake_home, tmp_path, f"run-{scenario}")
    session.run(f"SCENARIO={scenario} do the work", cancel_on=cancel_on)
    assert_known(protocol, session.log())


def test_a_resumed_thread_speaks_the_real_protocol_too(
    protocol: Protocol, fake_home: Path, tmp_path: Path
) -> None:
    first = FakeSession(fake_home, tmp_path, "first")
    first.run("SCENARIO=done start")
    assert first.thread_id
    again = FakeSession(fake_home, tmp_path, "again")
    again.run("SCENARIO=done go on", resume=first.thread_id)
    assert_known(protocol, again.log())


def assert_known(protocol: Protocol, log: list[dict[str, Any]]) -> None:
    calls: dict[Any, str] = {}
    problems = []
    exchanged = [
        r for r in log if r["event"] in ("in", "out") and isinstance(r.get("message"), dict)
    ]
    assert exchanged, "nothing was exchanged"
    for record in exchanged:
        sender = "client" if record["event"] == "in" else "server"
        for error in protocol.check(record["message"], sender, calls):
            problems.append(f"{sender}: {error}")
    assert problems == [], "\n".join(problems)


def test_orca_answers_every_request_the_real_codex_may_send(protocol: Protocol) -> None:
    """Each server request of the schema is one Orca answers (or knowingly refuses), and each
    answer Orca gives has the shape of that request's response."""
    assert sorted(protocol.server_requests) == sorted(SERVER_REQUESTS)
    for decision in ("decline", "accept"):
        translator = CodexAppServerTranslator(
            CodexSettings(label="codex", cwd="/w", approval_decision=decision)
        )
        for number, method in enumerate(SERVER_REQUESTS):
            params = EXAMPLE_PARAMS.get(method, {})
            request = {"id": number, "method": method, "params": params}
            calls: dict[Any, str] = {("server", number): method}
            replies = [
                json.loads(e.line)
                for e in translator.feed_line(json.dumps(request))
                if isinstance(e, Send)
            ]
            if method == "item/tool/requestUserInput":
                (question,) = params["questions"]
                effects = translator.answer(f"codex-{number}", {question["id"]: ["yes"]})
                replies = [json.loads(e.line) for e in effects if isinstance(e, Send)]
            assert len(replies) == 1, method
            assert protocol.check(replies[0], "client", calls) == [], (method, replies[0])


EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "item/tool/requestUserInput": {
        "threadId": "t",
        "turnId": "u",
        "itemId": "i",
        "questions": [
            {
                "id": "db",
                "header": "DB",
                "question": "Which?",
                "isOther": True,
                "isSecret": False,
                "options": [{"label": "a", "description": "b"}],
            }
        ],
    },
    "item/permissions/requestApproval": {
        "threadId": "t",
        "turnId": "u",
        "itemId": "i",
        "cwd": "/w",
        "startedAtMs": 1,
        "reason": "fetch",
        "permissions": {"network": {"enabled": True}, "fileSystem": {"write": ["/w/out"]}},
    },
    "item/tool/call": {
        "threadId": "t",
        "turnId": "u",
        "callId": "c",
        "tool": "lookup",
        "arguments": {},
    },
}


def test_the_fake_knows_only_methods_the_real_codex_has(
    protocol: Protocol, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FAKE_CODEX_HOME", str(tmp_path))
    monkeypatch.syspath_prepend(str(FAKE_CODEX.parent))
    loader = importlib.machinery.SourceFileLoader("fake_codex", str(FAKE_CODEX))
    fake = types.ModuleType(loader.name)
    loader.exec_module(fake)
    assert set(fake.V2_METHODS) <= set(protocol.client_requests)
    assert set(fake.APPROVAL_POLICIES) <= {"untrusted", "on-request", "never"}
