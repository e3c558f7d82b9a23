"""The real agent adapters (codex app-server, codex exec --json, claude stream-json) against a
real orcad, driving the protocol-faithful fake CLIs in tests/fakes/ (`codex`, `claude`).

The fakes choose their behaviour from `SCENARIO=<name>` in the prompt and write what they
received to a per-run log in their home ($FAKE_CODEX_HOME / $FAKE_CLAUDE_HOME), so a test can
check exactly what reached the agent. See the docstrings of tests/fakes/codex and claude.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, events_of, run_orca, wait_until

from orca_client.views import SessionInfo
from orca_client.wire import RunStarted, StartRun

FAKES = Path(__file__).resolve().parent / "fakes"
FAKE_CODEX = FAKES / "codex"
QUESTIONS_ON = ["-c", "features.default_mode_request_user_input=true"]
"""What orca passes so Codex may ask questions outside plan mode."""
FAKE_CLAUDE = FAKES / "claude"
DEADLINE = 20.0


class Agents:
    """A running orcad whose agent runs find the fakes, plus helpers to drive and inspect them."""

    def __init__(self, daemon: DaemonProcess, base: Path) -> None:
        self.daemon = daemon
        self.base = base
        self.codex_home = base / "codex-home"
        self.claude_home = base / "claude-home"
        self.work = base / "work"
        self.work.mkdir(exist_ok=True)

    # -- starting runs

    def start(
        self,
        agent: str,
        prompt: str,
        *,
        cwd: Path | None = None,
        follow_up: str | None = None,
        search_path: str | None = str(FAKES),
        codex_path: str | None = None,
    ) -> str:
        request = StartRun(
            cwd=str(cwd or self.work),
            agent=agent,
            prompt=prompt,
            follow_up=follow_up,
            search_path=search_path,
            codex_path=codex_path,
        )
        with self.daemon.client() as client:
            started: RunStarted = client.request(request)
        return started.run_id

    def cli(
        self, *args: str, path: str = str(FAKES), input: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """The real `orca` CLI, with PATH (where agent CLIs are looked for) set to `path`."""
        return run_orca({**self.daemon.env, "PATH": path, **env}, *args, cwd=self.work, input=input)

    def cli_run(self, *args: str, **kwargs: Any) -> str:
        """`orca run ARGS`; returns the new run's id."""
        done = self.cli("run", *args, **kwargs)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    # -- inspecting

    def wait(self, run_id: str, statuses: frozenset[str] | None = None) -> Any:
        if statuses is None:
            return self.daemon.wait_for_run(run_id, timeout=DEADLINE)
        return self.daemon.wait_for_run(run_id, statuses, timeout=DEADLINE)

    def session(self, run_id: str) -> SessionInfo:
        return self.daemon.status(run_id).sessions[0]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return events_of(self.daemon, run_id)

    def output(self, run_id: str, stream: str = "stdout") -> str:
        return "".join(
            str(e["text"])
            for e in self.events(run_id)
            if e["type"] == "output_appended" and e["stream"] == stream
        )

    def fake_log(self, run_id: str, home: Path | None = None) -> list[dict[str, Any]]:
        path = (home or self.codex_home) / f"{run_id}.log.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def received(self, run_id: str, home: Path | None = None) -> list[Any]:
        """Every JSON message the fake read from its stdin, in order."""
        return [r["message"] for r in self.fake_log(run_id, home) if r["event"] == "in"]

    def release(self, run_id: str, home: Path | None = None) -> None:
        (home or self.codex_home).joinpath(f"release-{run_id}").touch()

    def wait_pending(self, run_id: str) -> SessionInfo:
        self.wait(run_id, frozenset({"waiting_for_answer"}))
        session = self.session(run_id)
        assert session.pending is not None
        return session


@pytest.fixture
def make_agents(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> Iterator[Callable[..., Agents]]:
    """Build the daemon, optionally with a global config.toml (written before it starts)."""
    base = orca_home.parent

    def build(config: str | None = None, **extra_env: str) -> Agents:
        if config is not None:
            orca_home.mkdir(mode=0o700, exist_ok=True)
            (orca_home / "config.toml").write_text(config)
        env = {
            "FAKE_CODEX_HOME": str(base / "codex-home"),
            "FAKE_CLAUDE_HOME": str(base / "claude-home"),
            "ORCA_CODEX_PATH": "",
            "ORCA_CLAUDE_PATH": "",
            **extra_env,
        }
        daemon = make_daemon(extra_env=env).start()
        return Agents(daemon, base)

    yield build


@pytest.fixture
def agents(make_agents: Callable[..., Agents]) -> Agents:
    return make_agents()


def fake_codex_copy(directory: Path, version: str, *, old: bool = False) -> Path:
    """A separate copy of the fake codex (a distinct binary) that reports `version`."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy2(FAKE_CODEX, directory / "codex")
    shutil.copy2(FAKES / "fakelib.py", directory / "fakelib.py")
    (directory / "VERSION").write_text(version + "\n")
    if old:
        (directory / "OLD").touch()
    return directory / "codex"


def event_types(agents: Agents, run_id: str) -> list[str]:
    return [str(e["type"]) for e in agents.events(run_id)]


# --------------------------------------------------------------------------- codex app-server


def test_codex_app_server_run_completes_with_output_usage_and_thread_id(agents: Agents) -> None:
    run_id = agents.cli_run("--agent", "codex", "SCENARIO=done make the tests pass")
    run = agents.wait(run_id)
    assert run.status == "completed", agents.session(run_id)
    session = agents.session(run_id)
    assert session.command == [str(FAKE_CODEX), *QUESTIONS_ON, "app-server"]
    assert session.agent == "codex"
    output = agents.output(run_id)
    assert "fake codex did: SCENARIO=done make the tests pass" in output
    assert "$ bash -lc 'npm test'  (exit 0, completed)\nok 3 tests\n" in output
    assert "add a.py\n" in output  # relative to the session's cwd
    assert session.summary is not None and "fake codex did:" in session.summary

    log = agents.fake_log(run_id)
    thread_id = next(
        r["message"]["result"]["thread"]["id"]
        for r in log
        if r["event"] == "out" and "thread" in (r["message"].get("result") or {})
    )
    assert session.agent_session_id == thread_id
    identified = [e for e in agents.events(run_id) if e["type"] == "agent_session_identified"]
    assert [e["agent_session_id"] for e in identified] == [thread_id]
    usage = [e for e in agents.events(run_id) if e["type"] == "usage_recorded"]
    assert usage and usage[-1]["data"]["total"]["totalTokens"] == 1500
    assert session.usage is not None and session.usage["total"]["inputTokens"] == 1200

    # What orca sent, in order, is exactly the documented handshake and calls (no "jsonrpc").
    received = agents.received(run_id)
    assert [m.get("method") for m in received] == [
        "initialize",
        "initialized",
        "thread/start",
        "turn/start",
    ]
    assert all("jsonrpc" not in m for m in received)
    initialize, _, thread_start, turn_start = received
    assert initialize["id"] == 0 and initialize["params"]["clientInfo"]["name"] == "orca"
    assert thread_start["params"]["cwd"] == str(agents.work)
    assert thread_start["params"]["sandbox"] == "workspace-write"
    assert thread_start["params"]["approvalPolicy"] == "never"
    assert turn_start["params"] == {
        "threadId": thread_id,
        "input": [{"type": "text", "text": "SCENARIO=done make the tests pass"}],
    }
    assert not [r for r in log if r["event"] == "note"], "the fake saw protocol problems"


def test_codex_one_question_answered_with_plain_text(agents: Agents) -> None:
    run_id = agents.cli_run("--agent", "codex", "SCENARIO=ask set up storage")
    session = agents.wait_pending(run_id)
    assert session.pending is not None
    assert session.pending.request_id == "codex-0"
    assert [q.id for q in session.pending.questions] == ["db"]
    assert session.pending.questions[0].options is not None
    shown = agents.cli("status", run_id)
    assert "db" in shown.stdout and "Which database should I use?" in shown.stdout

    answered = agents.cli("answer", run_id, "Postgres")
    assert answered.returncode == 0, answered.stderr
    run = agents.wait(run_id)
    assert run.status == "completed"
    assert 'ANSWERS={"db": ["Postgres"]}' in agents.output(run_id)
    responses = [m for m in agents.received(run_id) if m.get("id") == 0 and "method" not in m]
    assert responses == [{"id": 0, "result": {"answers": {"db": {"answers": ["Postgres"]}}}}]
    assert agents.session(run_id).pending is None
    types = event_types(agents, run_id)
    assert "question_asked" in types and "question_answered" in types


def test_codex_several_questions_are_answered_by_id_and_only_in_full(agents: Agents) -> None:
    run_id = agents.cli_run("--agent", "codex", "SCENARIO=ask-two set up storage")
    session = agents.wait_pending(run_id)
    assert session.pending is not None
    assert [q.id for q in session.pending.questions] == ["db", "name"]

    partial = agents.cli("answer", run_id, "--json", '{"db": "SQLite"}')
    assert partial.returncode == 1
    assert "missing answers for question ids: name" in partial.stderr
    plain = agents.cli("answer", run_id, "SQLite")
    assert plain.returncode == 1
    assert agents.daemon.status(run_id).runs[0].status == "waiting_for_answer"
    assert not [m for m in agents.received(run_id) if "result" in m or "error" in m]

    full = agents.cli("answer", run_id, "--json", '{"db": "SQLite", "name": ["orca_main"]}')
    assert full.returncode == 0, full.stderr
    assert agents.wait(run_id).status == "completed"
    assert 'ANSWERS={"db": ["SQLite"], "name": ["orca_main"]}' in agents.output(run_id)
    responses = [m for m in agents.received(run_id) if "result" in m]
    assert responses == [
        {
            "id": 0,
            "result": {
                "answers": {"db": {"answers": ["SQLite"]}, "name": {"answers": ["orca_main"]}}
            },
        }
    ]


def test_codex_secret_answer_reaches_the_agent_but_never_touches_disk(agents: Agents) -> None:
    secret = f"hunter2-{secrets.token_hex(8)}"
    run_id = agents.cli_run("--agent", "codex", "SCENARIO=secret deploy")
    session = agents.wait_pending(run_id)
    assert session.pending is not None and session.pending.questions[0].is_secret

    answered = agents.cli("answer", run_id, "-", input=secret + "\n")
    assert answered.returncode == 0, answered.stderr
    assert agents.wait(run_id).status == "completed"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert f'ANSWERS={{"token": "sha256:{digest}"}}' in agents.output(run_id)
    answered_events = [e for e in agents.events(run_id) if e["type"] == "question_answered"]
    assert answered_events[0]["redacted_ids"] == ["token"]
    assert answered_events[0]["answers"] == {}

    needle = secret.encode()
    leaks = [
        str(path)
        for path in [*agents.daemon.home.rglob("*"), agents.daemon.stderr_path]
        if path.is_file() and needle in path.read_bytes()
    ]
    assert leaks == [], f"the secret was written to {leaks}"
    for command in (("status", run_id, "--json"), ("logs", run_id)):
        shown = agents.cli(*command)
        assert secret not in shown.stdout + shown.stderr


def test_codex_question_cleared_by_the_agent_disappears_and_the_run_goes_on(
    agents: Agents,
) -> None:
    run_id = agents.cli_run("--agent", "codex", "SCENARIO=clear")
    session = agents.wait_pending(run_id)
    assert session.pending is not None and session.pending.request_id == "codex-0"

    agents.release(run_id)
    run = agents.wait(run_id)
    assert run.status == "completed"
    assert agents.session(run_id).pending is None
    cleared = [e for e in agents.events(run_id) if e["type"] == "question_cleared"]
    assert [e["request_id"] for e in cleared] == ["codex-0"]
    assert "CLEARED request 0 myself; went on (no late answer)" in agents.output(run_id)
    late = agents.cli("answer", run_id, "Postgres")
    assert late.returncode == 1


def test_codex_turn_failure_fails_the_run_with_the_agents_error(agents: Agents) -> None:
    run_id = agents.start("codex", "SCENARIO=fail")
    run = agents.wait(run_id)
    assert run.status == "failed"
    session = agents.session(run_id)
    assert session.reason == "fake codex: stream disconnected before completion"
    notes = agents.output(run_id, "orca")
    assert "codex error (codex retries): reconnecting 1/5" in notes


def test_codex_cancel_during_a_pending_question_stays_cancelled(agents: Agents) -> None:
    run_id = agents.start("codex", "SCENARIO=ask")
    agents.wait_pending(run_id)
    cancelled = agents.cli("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr

    def fake_got_error_and_interrupt() -> bool:
        received = agents.received(run_id)
        errors = [m for m in received if m.get("id") == 0 and "error" in m]
        interrupts = [m for m in received if m.get("method") == "turn/interrupt"]
        return bool(errors and interrupts)

    wait_until(fake_got_error_and_interrupt, "the fake to get an error response and turn/interrupt")
    wait_until(
        lambda: any(r["event"] in ("exit", "sigterm") for r in agents.fake_log(run_id)),
        "the fake to be stopped",
    )
    wait_until(lambda: agents.session(run_id).ended_at is not None, "the session to end")
    run = agents.daemon.status(run_id).runs[0]
    assert run.status == "cancelled"
    session = agents.session(run_id)
    assert session.status == "cancelled" and session.pending is None
    statuses = [e["status"] for e in agents.events(run_id) if e["type"] == "run_status_changed"]
    assert statuses[-1] == "cancelled" and statuses.count("cancelled") == 1
    late = agents.cli("answer", run_id, "Postgres")
    assert late.returncode == 1 and "cancelled" in late.stderr
    assert not [m for m in agents.received(run_id) if "result" in m]


def test_codex_cancel_during_a_turn_interrupts_it(agents: Agents) -> None:
    run_id = agents.start("codex", "SCENARIO=interrupt-wait")
    wait_until(lambda: "working, interrupt me" in agents.output(run_id), "the turn to be running")
    assert agents.cli("cancel", run_id).returncode == 0

    def interrupt() -> dict[str, Any] | None:
        found = [m for m in agents.received(run_id) if m.get("method") == "turn/interrupt"]
        return found[0] if found else None

    sent = wait_until(interrupt, "turn/interrupt to reach the fake")
    scenario = next(r for r in agents.fake_log(run_id) if r["event"] == "scenario")
    assert sent["params"] == {"threadId": scenario["thread"], "turnId": scenario["turn"]}
    wait_until(
        lambda: any(r["event"] in ("exit", "sigterm") for r in agents.fake_log(run_id)),
        "the fake to be stopped",
    )
    assert agents.wait(run_id).status == "cancelled"
    assert agents.session(run_id).status == "cancelled"


def test_codex_malformed_output_never_crashes_the_daemon(agents: Agents) -> None:
    run_id = agents.start("codex", "SCENARIO=malformed")
    run = agents.wait(run_id)
    assert run.status == "completed", agents.session(run_id)
    assert agents.daemon.process is not None and agents.daemon.process.poll() is None
    output = agents.output(run_id)
    # Unusable question requests get error responses; a call of a tool orca does not provide,
    # the unsuccessful result its schema has (DynamicToolCallResponse).
    assert "MALFORMED dup=-32602 notlist=-32602 toolcall=unsuccessful" in output
    assert "x" * 10_000 in output
    notes = agents.output(run_id, "orca")
    assert "this line is not JSON at all" in notes
    assert "duplicate question ids: db" in notes
    assert agents.session(run_id).pending is None
    # And the daemon still serves other runs.
    assert agents.wait(agents.start("codex", "SCENARIO=done again")).status == "completed"


def test_codex_final_verdict_failed_fails_the_run_even_though_the_turn_completed(
    agents: Agents,
) -> None:
    run_id = agents.start("codex", "SCENARIO=verdict-failed")
    assert agents.wait(run_id).status == "failed"
    assert agents.session(run_id).reason == "tests still fail"


def test_codex_approval_requests_are_answered_with_the_configured_decision(
    agents: Agents,
) -> None:
    run_id = agents.start("codex", "SCENARIO=approval")
    assert agents.wait(run_id).status == "completed"
    assert "APPROVALS=decline,decline,none" in agents.output(run_id)  # none: nothing granted


def test_finding_10_codex_follow_up_resumes_the_thread_with_the_planning_answer(
    agents: Agents,
) -> None:
    first = agents.cli_run("--agent", "codex", "SCENARIO=ask plan the storage layer")
    agents.wait_pending(first)
    assert agents.cli("answer", first, "Postgres").returncode == 0
    assert agents.wait(first).status == "completed"
    thread_id = agents.session(first).agent_session_id
    assert thread_id

    second = agents.cli_run(
        "--agent", "codex", "--follow-up", first, "SCENARIO=done now implement it"
    )
    assert agents.wait(second).status == "completed"
    resumes = [m for m in agents.received(second) if m.get("method") == "thread/resume"]
    assert [m["params"]["threadId"] for m in resumes] == [thread_id]
    assert not [m for m in agents.received(second) if m.get("method") == "thread/start"]
    context = json.dumps(["SCENARIO=ask plan the storage layer", 'ANSWERS={"db": ["Postgres"]}'])
    assert f"CONTEXT={context}" in agents.output(second)
    assert agents.session(second).agent_session_id == thread_id


def test_follow_up_of_a_run_without_a_conversation_is_refused(agents: Agents) -> None:
    first = agents.start("claude", "SCENARIO=done")
    agents.wait(first)
    refused = agents.cli("run", "--agent", "codex", "--follow-up", first, "more")
    assert refused.returncode == 1
    assert "no codex conversation" in refused.stderr


# --------------------------------------------------------------------------- codex exec


def test_codex_exec_completes_with_usage_and_thread_id(agents: Agents) -> None:
    run_id = agents.start("codex-exec", "SCENARIO=done summarize the README")
    assert agents.wait(run_id).status == "completed"
    session = agents.session(run_id)
    assert session.command == [
        str(FAKE_CODEX),
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        "workspace-write",
        "-",
    ]
    output = agents.output(run_id)
    assert "$ bash -lc ls  (exit 0, completed)\nREADME.md\n" in output
    assert "fake codex exec did: SCENARIO=done summarize the README" in output
    started = next(r["message"] for r in agents.fake_log(run_id) if r["event"] == "out")
    assert started["type"] == "thread.started"
    assert session.agent_session_id == started["thread_id"]
    assert session.usage == {
        "input_tokens": 24763,
        "cached_input_tokens": 24448,
        "output_tokens": 122,
    }


def test_codex_exec_turn_failed_fails_the_run(agents: Agents) -> None:
    run_id = agents.start("codex-exec", "SCENARIO=fail")
    assert agents.wait(run_id).status == "failed"
    assert agents.session(run_id).reason == "fake codex exec: stream disconnected before completion"


def test_codex_exec_top_level_error_is_not_terminal(agents: Agents) -> None:
    run_id = agents.start("codex-exec", "SCENARIO=error-then-done go")
    assert agents.wait(run_id).status == "completed"
    assert "reconnecting... 1/5" in agents.output(run_id, "orca")
    assert "fake codex exec did: SCENARIO=error-then-done go" in agents.output(run_id)


def test_codex_exec_final_verdict_failed_fails_the_run(agents: Agents) -> None:
    run_id = agents.start("codex-exec", "SCENARIO=verdict-failed")
    assert agents.wait(run_id).status == "failed"
    assert agents.session(run_id).reason == "tests still fail"


def test_finding_10_codex_exec_follow_up_resumes_the_thread(agents: Agents) -> None:
    first = agents.start("codex-exec", "SCENARIO=done remember the codeword BLUE-42")
    assert agents.wait(first).status == "completed"
    thread_id = agents.session(first).agent_session_id
    assert thread_id

    second = agents.start("codex-exec", "what was the codeword?", follow_up=first)
    assert agents.wait(second).status == "completed"
    session = agents.session(second)
    assert session.command[-3:] == ["resume", thread_id, "-"]
    assert session.agent_session_id == thread_id
    assert 'CONTEXT=["SCENARIO=done remember the codeword BLUE-42"]' in agents.output(second)


# --------------------------------------------------------------------------- claude


def test_claude_completes_with_cost_and_session_recorded(agents: Agents) -> None:
    run_id = agents.cli_run("--agent", "claude", "SCENARIO=done review the last commit")
    assert agents.wait(run_id).status == "completed"
    session = agents.session(run_id)
    assert session.command == [
        str(FAKE_CLAUDE),
        "--output-format",
        "stream-json",
        "--verbose",
        "--input-format",
        "stream-json",
        "--permission-prompt-tool",
        "stdio",
    ]
    assert "fake claude did: SCENARIO=done review the last commit" in agents.output(run_id)
    assert session.usage is not None
    assert session.usage["total_cost_usd"] == 0.0123
    assert session.usage["usage"]["output_tokens"] == 300
    init = next(
        r["message"]
        for r in agents.fake_log(run_id, agents.claude_home)
        if r["event"] == "out" and r["message"].get("subtype") == "init"
    )
    assert session.agent_session_id == init["session_id"]
    assert session.usage["session_id"] == init["session_id"]
    user = agents.received(run_id, agents.claude_home)[0]
    assert user["type"] == "user"
    assert user["message"] == {"role": "user", "content": "SCENARIO=done review the last commit"}
    wait_until(
        lambda: any(
            r["event"] == "exit" and r.get("why") == "stdin closed"
            for r in agents.fake_log(run_id, agents.claude_home)
        ),
        "claude to exit once its stdin is closed after the result",
    )


def test_claude_ask_user_question_is_answered(agents: Agents) -> None:
    run_id = agents.start("claude", "SCENARIO=ask-two design")
    session = agents.wait_pending(run_id)
    assert session.pending is not None
    questions = session.pending.questions
    assert [q.question for q in questions] == ["Which color?", "Which sizes?"]
    ids = [q.id for q in questions]
    answers = json.dumps({ids[0]: "Red", ids[1]: ["S", "L"]})
    answered = agents.cli("answer", run_id, "--json", answers)
    assert answered.returncode == 0, answered.stderr
    assert agents.wait(run_id).status == "completed"
    assert 'ANSWERS={"Which color?": "Red", "Which sizes?": "S, L"}' in agents.output(run_id)


def test_claude_single_question_takes_plain_text(agents: Agents) -> None:
    run_id = agents.start("claude", "SCENARIO=ask")
    agents.wait_pending(run_id)
    assert agents.cli("answer", run_id, "{Blue, really}").returncode == 0
    assert agents.wait(run_id).status == "completed"
    assert 'ANSWERS={"Which color?": "{Blue, really}"}' in agents.output(run_id)


def test_claude_tool_permission_is_allowed_with_the_input(agents: Agents) -> None:
    run_id = agents.start("claude", "SCENARIO=tool")
    assert agents.wait(run_id).status == "completed"
    assert "TOOL=allow command=ls -la" in agents.output(run_id)
    responses = [
        m for m in agents.received(run_id, agents.claude_home) if m["type"] == "control_response"
    ]
    assert responses[0]["response"]["response"] == {
        "behavior": "allow",
        "updatedInput": {"command": "ls -la", "description": "List files"},
    }


def test_claude_failure_fails_the_run(agents: Agents) -> None:
    run_id = agents.start("claude", "SCENARIO=fail")
    assert agents.wait(run_id).status == "failed"
    assert agents.session(run_id).reason == "API error: Overloaded"


def test_claude_cancel_request_clears_the_question(agents: Agents) -> None:
    run_id = agents.start("claude", "SCENARIO=cancel-ask")
    agents.wait_pending(run_id)
    agents.release(run_id, agents.claude_home)
    assert agents.wait(run_id).status == "completed"
    assert agents.session(run_id).pending is None
    assert [e["type"] for e in agents.events(run_id)].count("question_cleared") == 1
    assert "CANCELLED my question myself; went on (no late response)" in agents.output(run_id)


def test_claude_cancel_during_a_question_denies_it_and_interrupts(agents: Agents) -> None:
    run_id = agents.start("claude", "SCENARIO=ask")
    session = agents.wait_pending(run_id)
    assert session.pending is not None
    control_id = session.pending.request_id.removeprefix("claude-")
    assert agents.cli("cancel", run_id).returncode == 0

    def denied_and_interrupted() -> bool:
        received = agents.received(run_id, agents.claude_home)
        denied = [
            m
            for m in received
            if m["type"] == "control_response"
            and m["response"]["request_id"] == control_id
            and m["response"]["response"]["behavior"] == "deny"
        ]
        interrupts = [
            m
            for m in received
            if m["type"] == "control_request" and m["request"]["subtype"] == "interrupt"
        ]
        return bool(denied and interrupts)

    wait_until(denied_and_interrupted, "claude to get a deny and an interrupt")
    assert agents.wait(run_id).status == "cancelled"


def test_finding_10_claude_follow_up_resumes_the_session(agents: Agents) -> None:
    first = agents.cli_run("--agent", "claude", "SCENARIO=done we chose Postgres")
    assert agents.wait(first).status == "completed"
    session_id = agents.session(first).agent_session_id
    assert session_id

    second = agents.cli_run("--agent", "claude", "--follow-up", first, "which database?")
    assert agents.wait(second).status == "completed"
    session = agents.session(second)
    assert f"--resume={session_id}" in session.command
    assert session.agent_session_id == session_id
    assert 'CONTEXT=["SCENARIO=done we chose Postgres"]' in agents.output(second)


# --------------------------------------------------------------------------- finding 12


GLOBAL_MULTI_AGENT = {
    "documented": "[agents.codex]\nmulti_agent = true\n",
    "explicit-adapter": '[agents.codex]\nadapter = "codex"\nmulti_agent = true\n',
}


@pytest.mark.parametrize("global_config", sorted(GLOBAL_MULTI_AGENT))
def test_finding_12_project_false_beats_global_true(
    make_agents: Callable[..., Agents], global_config: str
) -> None:
    agents = make_agents(GLOBAL_MULTI_AGENT[global_config])
    project = agents.base / "project"
    (project / ".orca").mkdir(parents=True)
    (project / ".orca" / "config.toml").write_text("[agents.codex]\nmulti_agent = false\n")
    cwd = project / "src" / "deep"
    cwd.mkdir(parents=True)

    run_id = agents.start("codex", "SCENARIO=done", cwd=cwd)
    assert agents.wait(run_id).status == "completed"
    command = agents.session(run_id).command
    assert command[:3] == [str(FAKE_CODEX), "-c", "features.multi_agent=false"]
    assert "features.multi_agent=true" not in command
    argv = next(r for r in agents.fake_log(run_id) if r["event"] == "argv")
    assert argv["overrides"] == ["features.multi_agent=false", QUESTIONS_ON[1]]


@pytest.mark.parametrize("global_config", sorted(GLOBAL_MULTI_AGENT))
def test_finding_12_global_true_applies_when_the_project_leaves_it_unset(
    make_agents: Callable[..., Agents], global_config: str
) -> None:
    agents = make_agents(GLOBAL_MULTI_AGENT[global_config])
    project = agents.base / "project"
    (project / ".orca").mkdir(parents=True)
    (project / ".orca" / "config.toml").write_text('[agents.codex]\nmodel = "gpt-project"\n')

    run_id = agents.start("codex", "SCENARIO=done", cwd=project)
    assert agents.wait(run_id).status == "completed"
    command = agents.session(run_id).command
    assert command[:3] == [str(FAKE_CODEX), "-c", "features.multi_agent=true"]
    thread_start = next(m for m in agents.received(run_id) if m.get("method") == "thread/start")
    assert thread_start["params"]["model"] == "gpt-project"

    elsewhere = agents.start("codex", "SCENARIO=done")  # no project file: the global alone
    assert agents.wait(elsewhere).status == "completed"
    assert "features.multi_agent=true" in agents.session(elsewhere).command


def test_finding_12_project_setting_without_a_global_one(agents: Agents) -> None:
    project = agents.base / "project"
    (project / ".orca").mkdir(parents=True)
    (project / ".orca" / "config.toml").write_text("[agents.codex]\nmulti_agent = false\n")
    run_id = agents.start("codex", "SCENARIO=done", cwd=project)
    assert agents.wait(run_id).status == "completed"
    assert agents.session(run_id).command[:3] == [
        str(FAKE_CODEX),
        "-c",
        "features.multi_agent=false",
    ]
    plain = agents.start("codex", "SCENARIO=done")
    assert agents.wait(plain).status == "completed"
    assert agents.session(plain).command == [str(FAKE_CODEX), *QUESTIONS_ON, "app-server"]


def test_a_bad_project_config_is_refused_naming_the_file_and_key(agents: Agents) -> None:
    project = agents.base / "project"
    (project / ".orca").mkdir(parents=True)
    config = project / ".orca" / "config.toml"
    config.write_text('[agents.codex]\nmulti_agent = "no"\n')
    refused = agents.cli("run", "--agent", "codex", "--cwd", str(project), "SCENARIO=done")
    assert refused.returncode == 1
    assert str(config) in refused.stderr
    assert "agents.codex.multi_agent" in refused.stderr
    assert agents.daemon.status().runs == []


# --------------------------------------------------------------------------- finding 13


def test_finding_13_the_newest_codex_on_path_is_chosen(agents: Agents) -> None:
    older = fake_codex_copy(agents.base / "bin-a", "9.0.0")
    newer = fake_codex_copy(agents.base / "bin-b", "10.0.0")
    other = agents.base / "bin-empty"
    other.mkdir()
    path = os.pathsep.join([str(older.parent), str(other), str(newer.parent)])

    run_id = agents.cli_run("--agent", "codex", "SCENARIO=done", path=path)
    assert agents.wait(run_id).status == "completed"
    assert agents.session(run_id).command[0] == str(newer)
    argv = next(r for r in agents.fake_log(run_id) if r["event"] == "argv")
    assert argv["version"] == "10.0.0"


def test_finding_13_orca_codex_path_overrides_the_search(agents: Agents) -> None:
    older = fake_codex_copy(agents.base / "bin-a", "9.0.0")
    newer = fake_codex_copy(agents.base / "bin-b", "10.0.0")
    path = os.pathsep.join([str(older.parent), str(newer.parent)])

    run_id = agents.cli_run(
        "--agent", "codex", "SCENARIO=done", path=path, ORCA_CODEX_PATH=str(older)
    )
    assert agents.wait(run_id).status == "completed"
    assert agents.session(run_id).command[0] == str(older)

    direct = agents.start("codex", "SCENARIO=done", search_path=path, codex_path=str(older))
    assert agents.wait(direct).status == "completed"
    assert agents.session(direct).command[0] == str(older)


def test_finding_13_orca_codex_path_in_the_daemons_environment(
    make_agents: Callable[..., Agents], orca_home: Path
) -> None:
    older = fake_codex_copy(orca_home.parent / "bin-a", "0.150.0")
    agents = make_agents(ORCA_CODEX_PATH=str(older))
    run_id = agents.start("codex", "SCENARIO=done")  # the fakes dir (0.150.0) is on search_path
    assert agents.wait(run_id).status == "completed"
    assert agents.session(run_id).command[0] == str(older)


def test_finding_13_no_codex_anywhere_is_a_clear_error(agents: Agents) -> None:
    empty = agents.base / "nothing-here"
    empty.mkdir()
    refused = agents.cli("run", "--agent", "codex", "SCENARIO=done", path=str(empty))
    assert refused.returncode == 1
    assert "no `codex` found on PATH" in refused.stderr
    assert str(empty) in refused.stderr
    assert "[agents.codex] command" in refused.stderr
    assert agents.daemon.status().runs == []

    missing = agents.cli("run", "--agent", "codex", "x", ORCA_CODEX_PATH=str(empty / "codex"))
    assert missing.returncode == 1
    assert str(empty / "codex") in missing.stderr


def test_finding_13_a_codex_too_old_for_thread_start_fails_naming_binary_and_version(
    agents: Agents,
) -> None:
    old = fake_codex_copy(agents.base / "bin-old", "0.150.0", old=True)
    run_id = agents.start("codex", "SCENARIO=done", search_path=str(old.parent))
    assert agents.wait(run_id).status == "failed"
    reason = agents.session(run_id).reason or ""
    assert str(old) in reason
    assert "codex-cli 0.150.0" in reason
    assert "thread/start" in reason
    assert agents.session(run_id).command[0] == str(old)


# --------------------------------------------------------------------------- configuration


BAD_AGENT_CONFIGS = {
    "unknown-adapter": ('[agents.x]\nadapter = "gpt"\n', "agents.x.adapter"),
    "command-missing": ('[agents.x]\nadapter = "command"\n', "agents.x.command"),
    "wrong-type": ('[agents.x]\nadapter = "codex"\nmulti_agent = "yes"\n', "agents.x.multi_agent"),
    "unknown-key": ('[agents.x]\nadapter = "codex"\nbogus = 1\n', "agents.x.bogus"),
    "command-not-a-list": ('[agents.x]\ncommand = "python3 a.py"\n', "agents.x.command"),
}


@pytest.mark.parametrize("case", sorted(BAD_AGENT_CONFIGS))
def test_a_bad_agent_config_makes_orcad_exit_2_naming_file_and_key(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, case: str
) -> None:
    text, key = BAD_AGENT_CONFIGS[case]
    orca_home.mkdir(mode=0o700)
    config = orca_home / "config.toml"
    config.write_text(text)
    daemon = make_daemon().start(wait=False)
    assert daemon.process is not None
    assert daemon.process.wait(timeout=DEADLINE) == 2
    stderr = daemon.output()
    assert str(config) in stderr
    assert key in stderr


def test_an_unknown_agent_is_a_clear_error(agents: Agents) -> None:
    refused = agents.cli("run", "--agent", "nosuch", "p")
    assert refused.returncode == 1
    assert "no agent named 'nosuch'" in refused.stderr
    assert "codex" in refused.stderr  # it lists the agents that do exist
    assert agents.daemon.status().runs == []
