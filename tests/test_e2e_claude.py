"""The pinned real Claude Code CLI, driven by a real orcad and the `orca` CLI, against a
loopback fake of the Anthropic Messages API (tests/fake_anthropic_api.py) that each test scripts.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import DaemonProcess, process_exists, wait_until
from fake_anthropic_api import (
    PINNED_CLAUDE_VERSION,
    FakeAnthropicAPI,
    claude_agent_toml,
    error,
    pinned_claude,
    slow,
    text,
    tool_use,
    wait_for,
)

from orca_client.wire import EventRecord, ReadEvents, RunInfo, SessionInfo

pytestmark = pytest.mark.e2e
DEADLINE = 60.0


class ClaudeRuns:
    """A real orcad whose `claude` agent is the pinned real CLI talking to `api`."""

    def __init__(self, daemon: DaemonProcess, api: FakeAnthropicAPI, work: Path) -> None:
        self.daemon = daemon
        self.api = api
        self.work = work

    def orca(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "orca_client.cli", *args],
            env=self.daemon.env,
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=DEADLINE,
        )
        return done

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
        records: list[EventRecord] = []
        with self.daemon.client() as client:
            while True:
                after = records[-1].position if records else 0
                page = client.request(ReadEvents(after=after, limit=1000, run_id=run_id))
                if not page.events:
                    return [msgspec.json.decode(r.event) for r in records]
                records.extend(page.events)

    def logs(self, run_id: str) -> str:
        done = self.orca("logs", run_id)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def claude(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> Iterator[ClaudeRuns]:
    base = orca_home.parent
    work = base / "work"
    work.mkdir()
    with FakeAnthropicAPI() as api:
        orca_home.mkdir(mode=0o700, exist_ok=True)
        (orca_home / "config.toml").write_text(claude_agent_toml(api, base))
        daemon = make_daemon(extra_env={"ORCA_CLAUDE_PATH": ""}).start()
        yield ClaudeRuns(daemon, api, work)


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
