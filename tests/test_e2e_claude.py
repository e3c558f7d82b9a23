"""The pinned real Claude Code CLI, driven by a real orcad and the `orca` CLI, against a
loopback fake of the Anthropic Messages API (tests/support/fake_anthropic_api.py) that each test
scripts.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import DaemonProcess, events_of, process_exists, run_orca, wait_until
from support.fake_anthropic_api import (
    PINNED_CLAUDE_VERSION,
    FakeAnthropicAPI,
    claude_agent_toml,
    error,
    pinned_claude,
    signal_recorder,
    slow,
    text,
    tool_use,
    wait_for,
)

from orca_client.views import RunInfo, SessionInfo

pytestmark = pytest.mark.e2e
DEADLINE = 60.0


class ClaudeRuns:
    """A real orcad whose `claude` agent is the pinned real CLI talking to `api`."""

    def __init__(self, daemon: DaemonProcess, api: FakeAnthropicAPI, work: Path) -> None:
        self.daemon = daemon
        self.api = api
        self.work = work

    def orca(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_orca(self.daemon.env, *args, cwd=self.work, timeout=DEADLINE)

    def run(self, prompt: str, *options: str) -> str:
        done = self.orca("run", "--agent", "claude", *options, prompt)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def wait(self, run_id: str, *statuses: str) -> RunInfo:
        wanted = frozenset(statuses) if statuses else None
        if wanted is None:
            return self.daemon.wait_for_run(run_id, timeout=DEADLINE)
        return self.daemon.wait_for_run(run_id, wanted, timeout=DEADLINE)

    def session(self, run_id: str) -> SessionInfo:
        return self.daemon.status(run_id).sessions[0]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return events_of(self.daemon, run_id)

    def logs(self, run_id: str) -> str:
        done = self.orca("logs", run_id)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def claude_with(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> Iterator[Callable[[Path | None], ClaudeRuns]]:
    """Start orcad with `[agents.claude]` on the pinned claude (or the given command)."""
    base = orca_home.parent
    with FakeAnthropicAPI() as api:

        def start(command: Path | None = None) -> ClaudeRuns:
            work = base / "work"
            work.mkdir()
            orca_home.mkdir(mode=0o700, exist_ok=True)
            (orca_home / "config.toml").write_text(claude_agent_toml(api, base, command))
            daemon = make_daemon(extra_env={"ORCA_CLAUDE_PATH": ""}).start()
            return ClaudeRuns(daemon, api, work)

        yield start


@pytest.fixture
def claude(claude_with: Callable[[Path | None], ClaudeRuns]) -> ClaudeRuns:
    return claude_with(None)


def test_the_pinned_claude_is_installed_at_its_version() -> None:
    done = subprocess.run(
        [str(pinned_claude()), "--version"], capture_output=True, text=True, timeout=30
    )
    assert done.stdout.strip() == f"{PINNED_CLAUDE_VERSION} (Claude Code)", done


def test_plain_turn_completes_with_the_models_words(claude: ClaudeRuns) -> None:
    claude.api.script(text("The tests pass."))
    run_id = claude.run("make the tests pass")
    run = claude.wait(run_id)
    assert run.status == "completed", claude.session(run_id)
    session = claude.session(run_id)
    assert session.summary == "The tests pass."
    assert "The tests pass." in claude.logs(run_id)
    (turn,) = claude.api.turns()
    assert "make the tests pass" in msgspec.json.encode(turn["messages"]).decode()


def database_question(**extra: Any) -> dict[str, Any]:
    options = [
        {"label": "Postgres", "description": "Production-grade"},
        {"label": "SQLite", "description": "Zero setup"},
    ]
    question = {"question": "Which database?", "header": "Database", "options": options}
    return {"questions": [{**question, "multiSelect": False, **extra}]}


def asked_and_answered(claude: ClaudeRuns, answer: str) -> tuple[str, dict[str, Any]]:
    """A run whose model asks `database_question` and is answered with `orca answer`; returns
    the run id and the tool_result the model got back."""
    claude.api.script(tool_use("AskUserQuestion", database_question()), text("Noted."))
    run_id = claude.run("set up storage")
    claude.wait(run_id, "waiting_for_answer")
    pending = claude.session(run_id).pending
    assert pending is not None
    (question,) = pending.questions
    assert question.question == "Which database?"
    assert [o.label for o in question.options or []] == ["Postgres", "SQLite"]
    answered = claude.orca("answer", run_id, answer)
    assert answered.returncode == 0, answered.stderr
    assert claude.wait(run_id).status == "completed"
    (result,) = claude.api.tool_results()
    return run_id, result


def test_a_question_with_options_is_answered_and_the_model_gets_the_choice(
    claude: ClaudeRuns,
) -> None:
    run_id, result = asked_and_answered(claude, "Postgres")
    assert '"Which database?"="Postgres"' in str(result["content"]), result
    answered = [e for e in claude.events(run_id) if e["type"] == "question_answered"]
    assert [a["answers"] for a in answered] == [{"q1": ["Postgres"]}]


def test_a_free_text_answer_reaches_the_model_verbatim(claude: ClaudeRuns) -> None:
    _, result = asked_and_answered(claude, "DuckDB, in a file next to the app")
    assert '"Which database?"="DuckDB, in a file next to the app"' in str(result["content"])


def test_a_failed_verdict_line_fails_the_run_with_its_error(claude: ClaudeRuns) -> None:
    claude.api.script(text('I ran the suite.\n{"outcome":"failed","error":"tests still fail"}'))
    run_id = claude.run("make the tests pass")
    run = claude.wait(run_id)
    assert (run.status, run.reason) == ("failed", "tests still fail")


def test_a_model_error_fails_the_run_with_the_apis_message(claude: ClaudeRuns) -> None:
    """Claude reports an API error as `subtype: success` with `is_error: true`."""
    claude.api.script(error(403, "permission_error", "fake: this model is not allowed"))
    run_id = claude.run("make the tests pass")
    run = claude.wait(run_id)
    assert run.status == "failed"
    assert run.reason is not None and "fake: this model is not allowed" in run.reason


def test_cancel_interrupts_the_turn_then_the_process_ends_unsignalled(
    claude_with: Callable[[Path | None], ClaudeRuns], tmp_path: Path
) -> None:
    """Cancel sends Claude's interrupt and lets it work: Claude ends its turn, orcad closes its
    input, and it exits by itself; no signal is needed (claude runs under a wrapper that
    records any SIGTERM its process group gets)."""
    wrapper, signals = signal_recorder(tmp_path, pinned_claude())
    claude = claude_with(wrapper)
    claude.api.script(slow("Working on it"))
    run_id = claude.run("a long job")
    wait_for(claude.api.hanging, "the model's first words")
    pid = wait_until(lambda: claude.session(run_id).pid, "the session's pid")
    cancelled = claude.orca("cancel", run_id, "--reason", "changed my mind")
    assert cancelled.returncode == 0, cancelled.stderr
    assert claude.wait(run_id).status == "cancelled"
    wait_for(claude.api.abandoned, "the streaming reply abandoned")
    wait_until(lambda: not process_exists(pid), "claude to exit", timeout=DEADLINE)
    logs = claude.logs(run_id)
    assert "Working on it" in logs and "claude's turn was interrupted" in logs
    assert not signals.exists(), "orcad signalled claude before it could end its turn"


def test_a_follow_up_resumes_the_conversation(claude: ClaudeRuns) -> None:
    claude.api.script(text("The answer is 42."), text("Still 42."))
    first = claude.run("what is the answer?")
    assert claude.wait(first).status == "completed"
    conversation = claude.session(first).agent_session_id
    assert conversation is not None
    second = claude.run("are you sure?", "--follow-up", first)
    assert claude.wait(second).status == "completed", claude.session(second)
    session = claude.session(second)
    assert f"--resume={conversation}" in session.command
    assert session.summary == "Still 42."
    _, resumed = claude.api.turns()
    history = msgspec.json.encode(resumed["messages"]).decode()
    assert "what is the answer?" in history and "The answer is 42." in history
    assert "are you sure?" in history


def test_usage_and_cost_are_recorded_for_the_session(claude: ClaudeRuns) -> None:
    """Claude sums the usage of every model call of its turn; orca records it with the cost."""
    claude.api.script(
        tool_use("Bash", {"command": "true", "description": "Nothing"}),
        text("Done.", usage={"input_tokens": 2000, "output_tokens": 70}),
    )
    run_id = claude.run("do nothing")
    assert claude.wait(run_id).status == "completed"
    usage = claude.session(run_id).usage
    assert usage is not None
    assert usage["usage"]["input_tokens"] == 100 + 2000
    assert usage["usage"]["output_tokens"] == 20 + 70
    assert usage["total_cost_usd"] > 0
    recorded = [e for e in claude.events(run_id) if e["type"] == "usage_recorded"]
    assert [e["data"]["total_cost_usd"] for e in recorded] == [usage["total_cost_usd"]]
    # Normalised: input counts cache reads and writes too; the run sums its sessions.
    session = claude.session(run_id)
    cached = sum(
        usage["usage"].get(key, 0)
        for key in ("cache_creation_input_tokens", "cache_read_input_tokens")
    )
    assert session.input_tokens == 100 + 2000 + cached
    assert session.output_tokens == 20 + 70
    assert session.cost_usd == usage["total_cost_usd"]
    run = claude.wait(run_id)
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (
        session.input_tokens,
        session.output_tokens,
        session.cost_usd,
    )


def test_tool_calls_and_their_results_are_shown_in_the_log(claude: ClaudeRuns) -> None:
    notes = claude.work / "notes.txt"
    claude.api.script(
        tool_use("Bash", {"command": "echo made > made.txt && echo wrote it", "description": "x"}),
        tool_use("Write", {"file_path": str(notes), "content": "first line\n"}),
        text("Both done."),
    )
    run_id = claude.run("make two files")
    assert claude.wait(run_id).status == "completed", claude.session(run_id)
    assert (claude.work / "made.txt").read_text() == "made\n"
    assert notes.read_text() == "first line\n"
    logs = claude.logs(run_id)
    assert "$ echo made > made.txt && echo wrote it\n" in logs
    assert "wrote it\n" in logs.split("$ echo made", 1)[1]
    assert f"Write {notes}\n" in logs
    assert "File created successfully" in logs
    assert logs.rstrip().endswith("Both done.")


def test_cancel_while_claude_asks_refuses_the_question_and_ends_unsignalled(
    claude_with: Callable[[Path | None], ClaudeRuns], tmp_path: Path
) -> None:
    wrapper, signals = signal_recorder(tmp_path, pinned_claude())
    claude = claude_with(wrapper)
    claude.api.script(tool_use("AskUserQuestion", database_question()), slow("Carrying on"))
    run_id = claude.run("set up storage")
    claude.wait(run_id, "waiting_for_answer")
    pid = claude.session(run_id).pid
    assert pid is not None
    assert claude.orca("cancel", run_id).returncode == 0
    assert claude.wait(run_id).status == "cancelled"
    wait_until(lambda: not process_exists(pid), "claude to exit", timeout=DEADLINE)
    assert not signals.exists(), "orcad signalled claude before it could end its turn"
    assert "claude's turn was interrupted" in claude.logs(run_id)
