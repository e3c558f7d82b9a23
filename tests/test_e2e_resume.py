"""After a reboot, the pinned real Codex and Claude CLIs continue their conversation (issue 12).

A reboot, as orcad sees it: orcad, the session's holder and the agent's whole process group are
killed (-9) while the agent is mid-turn (the fake model holds its second reply, after a first
that said a marker and called a tool). The next orcad finds the holder gone and starts the same
session again as a new process that resumes the agent's own conversation — Codex with
`thread/resume` (app-server) or `codex exec resume`, Claude with `--resume` — told that it was
interrupted. The resumed turn's request to the model carries the earlier conversation (the
prompt's marker and the first answer's marker) and the "you were interrupted" prompt, and the
session completes with the model's final answer.
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    REPO,
    DaemonProcess,
    events_of,
    output_of,
    parent_of,
    process_exists,
    run_orca,
    wait_until,
)
from support.fake_anthropic_api import FakeAnthropicAPI, claude_agent_toml, slow, text, tool_use
from support.fake_anthropic_api import wait_for as wait_for_event
from support.fake_responses_api import (
    FakeResponsesAPI,
    message,
    real_codex,
    shell,
    write_codex_home,
)
from support.fake_responses_api import slow as slow_stream
from support.processes import kill_processes_with_env, processes_with_env

from orca_client.views import SessionInfo
from orca_daemon.orchestration.recovery import INTERRUPTED_PROMPT

pytestmark = [pytest.mark.e2e]

DEADLINE = 60.0


class Markers:
    """Words unique to one test: in the prompt, in the model's first answer, in its last."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:10]
        self.prompt = f"Build the widget prompt-mark-{tag}."
        self.answer = f"First I look around answer-mark-{tag}."
        self.final = f"The widget is built final-mark-{tag}."

    @property
    def interrupted(self) -> str:
        """The prompt the resumed turn starts with."""
        return INTERRUPTED_PROMPT.format(prompt=self.prompt)


def strings_in(value: Any) -> Iterator[str]:
    """Every string anywhere in a decoded JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def says(body: Any, text: str) -> bool:
    """True when `text` is one of the strings of the request `body` (a message's whole text)."""
    return text in strings_in(body)


def carries_the_conversation(body: Any, marks: Markers) -> bool:
    """The request has the first prompt, then the first answer, then the interrupted prompt,
    each as a text of its own."""
    strings = list(strings_in(body))
    wanted = [marks.prompt, marks.answer, marks.interrupted]
    if not all(text in strings for text in wanted):
        return False
    places = [strings.index(text) for text in wanted]
    return places == sorted(places)


def start_run(daemon: DaemonProcess, agent: str, prompt: str, work: Path) -> str:
    started = run_orca(daemon.env, "run", "--agent", agent, prompt, cwd=work, timeout=DEADLINE)
    assert started.returncode == 0, started.stderr
    return started.stdout.strip()


def started_events(daemon: DaemonProcess, run_id: str) -> list[dict[str, Any]]:
    return [e for e in events_of(daemon, run_id) if e["type"] == "session_started"]


def reboot(daemon: DaemonProcess, run_id: str) -> str:
    """Kill -9 orcad, then the session's holder and its agent's process group, as a machine
    that goes down does; wait until none of their processes is left; start orcad again.
    Returns the session's id."""
    session = daemon.status(run_id).sessions[0]
    agent = session.pid
    assert agent is not None, session
    (started,) = started_events(daemon, run_id)
    holder = parent_of(agent)  # the holder owns the agent: its parent in the tree
    assert holder == started["holder_pid"], (holder, started)
    assert os.getpgid(agent) == agent  # the agent leads its own process group
    daemon.kill()
    os.kill(holder, signal.SIGKILL)
    os.killpg(agent, signal.SIGKILL)
    kill_processes_with_env("ORCA_HOME", str(daemon.home))  # what left the agent's group too
    wait_until(
        lambda: (
            not any(map(process_exists, (holder, agent)))
            and processes_with_env("ORCA_HOME", str(daemon.home)) == []
        ),
        "orcad, the holder and the agent to be gone",
    )
    daemon.start(timeout=30)
    return session.session_id


def check_resumed(
    daemon: DaemonProcess, run_id: str, session_id: str, final: str, new_command: bool
) -> SessionInfo:
    """The run completed through a second start of the same session, ending with `final`. With
    `new_command`, the second process resumed the conversation on its command line, which the
    session shows from then on."""
    run = daemon.wait_for_run(run_id, timeout=DEADLINE)
    session = daemon.status(run_id).sessions[0]
    assert run.status == "completed", (run, session, daemon.output()[-3000:])
    starts = started_events(daemon, run_id)
    assert [s["session_id"] for s in starts] == [session_id, session_id]
    assert starts[0]["pid"] != starts[1]["pid"]
    assert session.summary == final
    assert final in output_of(daemon, run_id)
    notes = output_of(daemon, run_id, "orca")
    assert f"orcad continues its conversation {session.agent_session_id}" in notes, notes
    assert starts[0].get("command") is None  # the first ran the command the session recorded
    if new_command:
        assert starts[1]["command"] == session.command, (starts[1], session.command)
        assert str(session.agent_session_id) in " ".join(session.command)
    else:
        assert starts[1].get("command") is None
    return session


# --------------------------------------------------------------------------- codex


@pytest.fixture
def codex_home() -> Iterator[Path]:
    """Outside /tmp: Codex will not install its helpers (apply_patch) under a temporary dir."""
    home = REPO / ".cache" / "e2e" / f"codex-{uuid.uuid4().hex[:12]}"
    yield home
    shutil.rmtree(home, ignore_errors=True)


def rollout_of(codex_home: Path, thread_id: str) -> str:
    """Codex's own record of a thread so far (empty before it has one)."""
    found = list(codex_home.glob(f"sessions/**/rollout-*{thread_id}.jsonl"))
    return found[0].read_text() if found else ""


@pytest.mark.parametrize("agent", ["codex", "codex-exec"])
def test_codex_continues_its_thread_after_a_reboot(
    agent: str,
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    codex_home: Path,
) -> None:
    marks = Markers()
    with FakeResponsesAPI() as api:
        orca_home.mkdir(mode=0o700)
        env = write_codex_home(codex_home, api)
        daemon = make_daemon(extra_env={**env, "ORCA_CODEX_PATH": str(real_codex())}).start()
        work = orca_home.parent / "work"
        work.mkdir()
        api.script(shell("echo looked", call_id="call_look", say=marks.answer), slow_stream())
        run_id = start_run(daemon, agent, marks.prompt, work)
        api.wait_requests(2, timeout=DEADLINE)  # the tool ran; the second reply is held
        thread = wait_until(
            lambda: daemon.status(run_id).sessions[0].agent_session_id, "codex's thread id"
        )
        wait_until(
            lambda: marks.answer in rollout_of(codex_home, thread),
            "codex to record its first answer",
        )
        before = len(api.requests)

        api.script(message(marks.final))
        session_id = reboot(daemon, run_id)
        session = check_resumed(daemon, run_id, session_id, marks.final, agent == "codex-exec")

        assert session.agent_session_id == thread
        resumed = [body for body in api.requests[before:] if says(body, marks.interrupted)]
        assert len(resumed) == 1, api.requests[before:]
        assert carries_the_conversation(resumed[0], marks), resumed[0]
        assert api.unscripted == 0


# --------------------------------------------------------------------------- claude


def transcript_of(config: Path, conversation: str) -> str:
    """Claude's own record of a conversation so far (empty before it has one)."""
    found = list(config.glob(f"projects/*/{conversation}.jsonl"))
    return found[0].read_text() if found else ""


def test_claude_resumes_its_conversation_after_a_reboot(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    marks = Markers()
    base = orca_home.parent
    with FakeAnthropicAPI() as api:
        orca_home.mkdir(mode=0o700)
        (orca_home / "config.toml").write_text(claude_agent_toml(api, base))
        daemon = make_daemon(extra_env={"ORCA_CLAUDE_PATH": ""}).start()
        work = base / "work"
        work.mkdir()
        look = {"command": "echo looked", "description": "Look around"}
        api.script(tool_use("Bash", look, say=marks.answer), slow("Still working"))
        run_id = start_run(daemon, "claude", marks.prompt, work)
        wait_for_event(api.hanging, "the second reply held", timeout=DEADLINE)
        conversation = wait_until(
            lambda: daemon.status(run_id).sessions[0].agent_session_id, "claude's session id"
        )
        wait_until(
            lambda: marks.answer in transcript_of(base / "claude-config", conversation),
            "claude to record its first answer",
        )
        before = len(api.turns())

        api.script(text(marks.final))
        session_id = reboot(daemon, run_id)
        session = check_resumed(daemon, run_id, session_id, marks.final, new_command=True)

        assert session.agent_session_id == conversation
        resumed = [body for body in api.turns()[before:] if says(body, marks.interrupted)]
        assert len(resumed) == 1, api.turns()[before:]
        assert carries_the_conversation(resumed[0], marks), resumed[0]
