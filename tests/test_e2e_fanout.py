"""A fan-out of real agents: one real Codex and one real Claude worker on one prompt, then a real
Codex orchestrator that reads both outputs and writes the synthesis file; each CLI talks to its
loopback fake of its model API."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO, DaemonProcess
from support.fake_anthropic_api import FakeAnthropicAPI, claude_agent_toml, text
from support.fake_responses_api import (
    FakeResponsesAPI,
    message,
    real_codex,
    shell,
    write_codex_home,
)

pytestmark = pytest.mark.e2e

MODEL = "gpt-5-codex-orca"
CODEX_FINDING = "codex worker: the cache TTL is never refreshed"
CLAUDE_FINDING = "claude worker: the clock skews on CI"
SYNTHESIS = "Both: refresh the TTL and pin the clock."


@pytest.fixture
def codex_home() -> Iterator[Path]:
    """Outside /tmp: Codex will not install its helpers (apply_patch) under a temporary dir."""
    home = REPO / ".cache" / "e2e" / f"codex-{uuid.uuid4().hex[:12]}"
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_a_fan_out_of_real_codex_and_claude_is_synthesized_by_a_real_codex(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, codex_home: Path
) -> None:
    work = orca_home.parent / "work"
    work.mkdir()
    synthesis = work / "synthesis.md"
    with FakeResponsesAPI() as openai, FakeAnthropicAPI() as anthropic:
        orca_home.mkdir(mode=0o700)
        (orca_home / "config.toml").write_text(
            f'[agents.codex]\nmodel = "{MODEL}"\n' + claude_agent_toml(anthropic, orca_home.parent)
        )
        env = write_codex_home(codex_home, openai)
        daemon = make_daemon(extra_env={**env, "ORCA_CODEX_PATH": str(real_codex())}).start()
        # The Codex worker answers first; the orchestrator starts only once both have ended,
        # then writes the synthesis with a shell command and says it is done.
        openai.script(
            message(CODEX_FINDING),
            shell(f"printf '%s\\n' '{SYNTHESIS}' > {synthesis}"),
            message("The synthesis is written."),
        )
        anthropic.script(text(CLAUDE_FINDING))
        command = [sys.executable, "-m", "orca_client.cli", "debug", "--agents", "codex,claude"]
        command += ["--orchestrator", "codex", "--task-file", str(synthesis), "--cwd", str(work)]
        command += ["--wait", "why does the login test fail on CI only?"]
        started = subprocess.run(
            command,
            env=daemon.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        status = daemon.status()
        (run,) = status.runs
        sessions = {s.session_id: s for s in status.sessions}
        orchestrator = sessions[run.orchestrator_session_id or ""]
        workers = [s for s in sessions.values() if s.role == "worker"]
        prompt = openai.user_texts()[-1]

    assert run.status == "completed", run
    assert sorted(s.agent for s in workers) == ["claude", "codex"]
    assert all(s.status == "completed" for s in workers), workers
    assert orchestrator.agent == "codex" and orchestrator.status == "completed"
    # The orchestrator's prompt held both workers' outputs and the task file.
    assert CODEX_FINDING in prompt and CLAUDE_FINDING in prompt and str(synthesis) in prompt
    assert synthesis.read_text() == SYNTHESIS + "\n"
    assert run.task_file == str(synthesis)
    # Each session's usage, and the run's sum of them.
    assert all(s.input_tokens for s in sessions.values()), sessions
    assert run.input_tokens == sum(s.input_tokens or 0 for s in sessions.values())
