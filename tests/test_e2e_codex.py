"""The pinned real `codex` CLI (tests/npm/package-lock.json) through the real orcad and `orca`
CLI, against a loopback fake of the OpenAI Responses API (tests/support/fake_responses_api.py) that
each test scripts: what the "model" answers, and what reached it.

The CLI comes from $ORCA_TEST_AGENT_BIN (scripts/test installs it), else .cache/agents; a missing
CLI fails these tests (it is never skipped). Each test gets its own CODEX_HOME, outside /tmp.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, DaemonProcess, events_of, output_of, process_exists, run_orca, wait_until
from support.fake_responses_api import (
    FakeResponsesAPI,
    ask,
    failed,
    http_error,
    message,
    question,
    real_codex,
    shell,
    slow,
    tool_call,
    write_codex_home,
)

pytestmark = pytest.mark.e2e

ORCA_MODEL = "gpt-5-codex-orca"
"""The model Orca's config asks for (CODEX_HOME's own default is another)."""
DEADLINE = 60.0


@pytest.fixture(scope="session")
def codex_binary() -> Path:
    return real_codex()


@pytest.fixture
def model() -> Iterator[FakeResponsesAPI]:
    with FakeResponsesAPI() as api:
        yield api


@pytest.fixture
def codex_home() -> Iterator[Path]:
    """Outside /tmp: Codex will not install its helpers (apply_patch) under a temporary dir."""
    home = REPO / ".cache" / "e2e" / f"codex-{uuid.uuid4().hex[:12]}"
    yield home
    shutil.rmtree(home, ignore_errors=True)


class Codex:
    """A running orcad whose codex agents are the real codex, talking to the fake model."""

    def __init__(self, daemon: DaemonProcess, home: Path, work: Path, api: FakeResponsesAPI):
        self.daemon = daemon
        self.codex_home = home
        self.work = work
        self.api = api

    def orca(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_orca(self.daemon.env, *args, cwd=self.work)

    def run(self, prompt: str, *options: str, agent: str = "codex") -> str:
        started = self.orca("run", "--agent", agent, *options, prompt)
        assert started.returncode == 0, started.stderr
        return started.stdout.strip()

    def wait(self, run_id: str, *statuses: str) -> Any:
        wanted = frozenset(statuses) if statuses else None
        if wanted is None:
            return self.daemon.wait_for_run(run_id, timeout=DEADLINE)
        return self.daemon.wait_for_run(run_id, wanted, timeout=DEADLINE)

    def session(self, run_id: str) -> Any:
        return self.daemon.status(run_id).sessions[0]

    def logs(self, run_id: str) -> str:
        """What `orca logs RUN` prints: stdout and orca's notes, then the agent's stderr."""
        shown = self.orca("logs", run_id)
        assert shown.returncode == 0, shown.stderr
        return shown.stdout + shown.stderr

    def rollout(self, thread_id: str) -> list[dict[str, Any]]:
        """Codex's own record of a thread (CODEX_HOME/sessions/.../rollout-*-<thread>.jsonl)."""
        (path,) = self.codex_home.glob(f"sessions/**/rollout-*{thread_id}.jsonl")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def turn_contexts(self, thread_id: str) -> list[dict[str, Any]]:
        return [r["payload"] for r in self.rollout(thread_id) if r.get("type") == "turn_context"]


@pytest.fixture
def make_codex(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    codex_binary: Path,
    codex_home: Path,
    model: FakeResponsesAPI,
) -> Callable[..., Codex]:
    def build(agent: str = "", codex_config: str = "") -> Codex:
        """`agent`: more settings for [agents.codex]; `codex_config`: for CODEX_HOME's config."""
        orca_home.mkdir(mode=0o700, exist_ok=True)
        (orca_home / "config.toml").write_text(
            f'[agents.codex]\nmodel = "{ORCA_MODEL}"\n{agent}\n'
            f'[agents.codex-exec]\nmodel = "{ORCA_MODEL}"\n'
        )
        env = write_codex_home(codex_home, model, extra=codex_config)
        daemon = make_daemon(extra_env={**env, "ORCA_CODEX_PATH": str(codex_binary)}).start()
        work = orca_home.parent / "work"
        work.mkdir(exist_ok=True)
        return Codex(daemon, codex_home, work, model)

    return build


@pytest.fixture
def codex(make_codex: Callable[..., Codex]) -> Codex:
    return make_codex()


# --------------------------------------------------------------------------- plain turns


def test_finding_6_a_plain_app_server_turn_with_usage_and_codex_warnings_in_the_log(
    codex: Codex,
) -> None:
    codex.api.script(message("Hello from the model."))
    run_id = codex.run("say hello")
    run = codex.wait(run_id)
    session = codex.session(run_id)
    assert run.status == "completed", session
    assert session.summary == "Hello from the model."
    assert "say hello" in codex.api.user_texts()
    assert codex.api.requests[0]["model"] == ORCA_MODEL
    assert session.usage is not None
    assert session.usage["total"]["inputTokens"] == 1200
    assert session.usage["total"]["outputTokens"] == 300
    assert (session.input_tokens, session.output_tokens) == (1200, 300)
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (1200, 300, None)
    shown = codex.daemon.orca("status", run_id).stdout
    assert "usage    1,200 tokens in, 300 out" in shown
    logs = codex.logs(run_id)
    assert "Hello from the model." in logs
    # Every Orca Codex session turns on this feature, and Codex says so: the user sees it.
    assert (
        "codex warning: Under-development features enabled: default_mode_request_user_input" in logs
    )
    assert "\x1b[" not in output_of(codex.daemon, run_id, "orca")


def test_a_plain_codex_exec_turn(codex: Codex) -> None:
    codex.api.script(message("Done by exec."))
    run_id = codex.run("say done", agent="codex-exec")
    run = codex.wait(run_id)
    session = codex.session(run_id)
    assert run.status == "completed", session
    assert session.summary == "Done by exec."
    assert "say done" in codex.api.user_texts()
    assert session.usage is not None and session.usage["input_tokens"] == 1200
    assert session.input_tokens == 1200 and session.output_tokens is not None
    assert (run.input_tokens, run.output_tokens) == (session.input_tokens, session.output_tokens)
    assert session.agent_session_id  # a follow-up can resume it


# --------------------------------------------------------------------------- questions


def test_questions_with_options_and_free_text_are_answered_and_reach_the_model(
    codex: Codex,
) -> None:
    codex.api.script(
        ask(
            [
                question("db", "Which database should I use?", ["Postgres", "SQLite"]),
                question("name", "What should it be called?", ["orca"]),
            ]
        ),
        message("Set up Postgres as orca_main."),
    )
    run_id = codex.run("set up storage")
    codex.wait(run_id, "waiting_for_answer")
    pending = codex.session(run_id).pending
    assert [q.id for q in pending.questions] == ["db", "name"]
    assert [o.label for o in pending.questions[0].options] == ["Postgres", "SQLite"]
    shown = codex.orca("status", run_id)
    assert "Which database should I use?" in shown.stdout

    # An option for one, free text (Codex's "Other") for the other.
    answered = codex.orca("answer", run_id, "--json", '{"db": "Postgres", "name": "orca_main"}')
    assert answered.returncode == 0, answered.stderr
    assert codex.wait(run_id).status == "completed"
    output = json.loads(codex.api.tool_output("call_ask") or "null")
    assert output == {
        "answers": {"db": {"answers": ["Postgres"]}, "name": {"answers": ["orca_main"]}}
    }


def test_a_secret_answer_reaches_the_model_and_no_orca_file(codex: Codex) -> None:
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    token = {**question("token", "Paste the deploy token", ["I have none"]), "isSecret": True}
    codex.api.script(ask([token], call_id="call_secret"), message("Deployed."))
    run_id = codex.run("deploy it")
    codex.wait(run_id, "waiting_for_answer")
    pending = codex.session(run_id).pending
    assert pending.questions[0].is_secret
    answered = codex.orca("answer", run_id, secret)
    assert answered.returncode == 0, answered.stderr
    assert codex.wait(run_id).status == "completed"
    assert secret in (codex.api.tool_output("call_secret") or "")
    codex.daemon.stop()  # every Orca file flushed and closed
    leaked = [
        path
        for path in codex.daemon.home.rglob("*")
        if path.is_file() and secret.encode() in path.read_bytes()
    ]
    assert leaked == []


# --------------------------------------------------------------------------- failures


def test_a_failed_verdict_line_fails_the_run(codex: Codex) -> None:
    codex.api.script(
        message('I ran the suite.\n{"outcome": "failed", "error": "tests still fail"}')
    )
    run_id = codex.run("make the tests pass")
    run = codex.wait(run_id)
    assert run.status == "failed"
    assert codex.session(run_id).reason == "tests still fail"


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (http_error(400, "The model `gpt-x` does not exist"), "The model `gpt-x` does not exist"),
        (failed("the model overloaded", code="server_error"), "the model overloaded"),
    ],
)
def test_a_model_error_fails_the_run_with_its_message(codex: Codex, reply: Any, said: str) -> None:
    codex.api.script(reply)
    run_id = codex.run("do something")
    run = codex.wait(run_id)
    assert run.status == "failed"
    assert said in (codex.session(run_id).reason or ""), codex.session(run_id)


# --------------------------------------------------------------------------- cancel


def test_finding_5_cancel_interrupts_the_turn_and_codex_ends_it_before_any_signal(
    codex: Codex,
) -> None:
    codex.api.script(slow("working on it"))
    run_id = codex.run("take your time")
    wait_until(lambda: "working on it" in output_of(codex.daemon, run_id), "the stream to start")
    session = codex.session(run_id)
    assert session.pid is not None and session.agent_session_id
    cancelled = codex.orca("cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert codex.wait(run_id).status == "cancelled"
    wait_until(lambda: not process_exists(session.pid), "codex to exit")
    wait_until(codex.api.hung_up.is_set, "codex to stop reading the model's stream")
    # Codex itself reported the turn interrupted, and saved it: it was never killed mid-turn.
    wait_until(
        lambda: "codex interrupted the turn" in output_of(codex.daemon, run_id, "orca"),
        "codex to report the turn interrupted",
    )
    aborted = [
        r["payload"]
        for r in codex.rollout(session.agent_session_id)
        if r.get("payload", {}).get("type") == "turn_aborted"
    ]
    assert [a.get("reason") for a in aborted] == ["interrupted"]


# --------------------------------------------------------------------------- follow-up


def test_finding_1_a_follow_up_keeps_sandbox_approval_policy_cwd_and_model_and_can_write(
    make_codex: Callable[..., Codex],
) -> None:
    codex = make_codex('approval_policy = "on-request"\n')
    codex.api.script(message("First turn done."))
    first = codex.run("remember the number 7")
    assert codex.wait(first).status == "completed"
    thread_id = codex.session(first).agent_session_id

    codex.api.script(
        shell("echo followed > followed.txt", call_id="call_write"), message("Wrote it.")
    )
    second = codex.run("now write the file", "--follow-up", first)
    assert codex.wait(second).status == "completed", codex.session(second)
    assert codex.session(second).agent_session_id == thread_id
    assert (codex.work / "followed.txt").read_text() == "followed\n"
    assert "remember the number 7" in codex.api.user_texts()  # the context came along
    assert codex.api.requests[-1]["model"] == ORCA_MODEL
    resumed = codex.turn_contexts(thread_id)[-1]
    assert resumed["cwd"] == str(codex.work)
    assert resumed["approval_policy"] == "on-request"
    assert resumed["sandbox_policy"]["type"] == "workspace-write"
    assert resumed["model"] == ORCA_MODEL


# --------------------------------------------------------------------------- configuration


def test_finding_2_orcad_refuses_an_approval_policy_codex_does_not_accept(
    orca_home: Path,
) -> None:
    orca_home.mkdir(mode=0o700)
    config = orca_home / "config.toml"
    config.write_text('[agents.codex]\napproval_policy = "on-failure"\n')
    env = {**os.environ, "ORCA_HOME": str(orca_home)}
    env.pop("NOTIFY_SOCKET", None)
    started = subprocess.Popen(
        [sys.executable, "-m", "orca_daemon"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = started.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        started.send_signal(signal.SIGTERM)
        started.communicate(timeout=30)
        raise AssertionError("orcad started with approval_policy = on-failure") from None
    assert started.returncode == 2
    assert f"{config}: key agents.codex: approval_policy 'on-failure'" in stderr
    assert "use untrusted, on-request, never" in stderr


# --------------------------------------------------------------------------- approvals


def test_finding_3_every_approval_request_is_answered_in_its_schema_shape(
    make_codex: Callable[..., Codex],
) -> None:
    codex = make_codex(
        'approval_policy = "on-request"\n', "[features]\nrequest_permissions_tool = true\n"
    )
    # Outside the workspace and outside /tmp (where the checkout may be, and which the sandbox
    # lets Codex write without asking): Codex must ask before it writes there.
    outside = Path.home() / f".orca-e2e-{codex.codex_home.name}-outside.txt"
    assert not outside.is_relative_to("/tmp")
    patch = f"apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: {outside}\n+x\n*** End Patch\nEOF"
    codex.api.script(
        tool_call(
            "request_permissions",
            {"permissions": {"network": {"enabled": True}}, "reason": "fetch deps"},
            "call_permissions",
        ),
        tool_call(
            "exec_command",
            {"cmd": "echo escalated", "sandbox_permissions": "require_escalated"},
            "call_command",
        ),
        shell(patch, call_id="call_patch"),
        message("Asked for everything."),
    )
    run_id = codex.run("ask for approvals")
    assert codex.wait(run_id).status == "completed", codex.session(run_id)
    logs = codex.logs(run_id)
    assert "failed to deserialize" not in logs  # Codex read every answer
    for method in (
        "item/permissions/requestApproval",
        "item/commandExecution/requestApproval",
        "item/fileChange/requestApproval",
    ):
        assert f"codex asked for approval ({method}); orca answered decline" in logs
    granted = json.loads(codex.api.tool_output("call_permissions") or "null")
    assert granted == {"permissions": {"network": None, "file_system": None}, "scope": "turn"}
    assert "rejected by user" in (codex.api.tool_output("call_command") or "")
    assert "patch rejected by user" in (codex.api.tool_output("call_patch") or "")
    assert not outside.exists()
    assert "$ echo escalated  (declined)\n" in logs


# --------------------------------------------------------------------------- the log


def test_finding_6_commands_and_file_changes_appear_compactly_in_orca_logs(codex: Codex) -> None:
    patch = (
        "apply_patch <<'EOF'\n*** Begin Patch\n*** Add File: notes.txt\n+hello\n*** End Patch\nEOF"
    )
    codex.api.script(
        shell("printf 'one\\ntwo\\n'", call_id="call_printf"),
        shell(patch, call_id="call_patch"),
        message("Ran and wrote."),
    )
    run_id = codex.run("run and write")
    assert codex.wait(run_id).status == "completed", codex.session(run_id)
    assert (codex.work / "notes.txt").read_text() == "hello\n"
    logs = codex.logs(run_id)
    assert "$ printf 'one\\ntwo\\n'  (exit 0, completed)\n" in logs
    assert "\ntwo\n" in logs
    assert "add notes.txt\n" in logs
    types = [e["type"] for e in events_of(codex.daemon, run_id)]
    assert "usage_recorded" in types
