"""Agents' stderr reaches the log without terminal colours: every agent gets NO_COLOR=1, and
escape sequences still written to stderr are removed before it is recorded."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, events_of, output_of, wait_until
from support.fake_responses_api import real_codex

from orca_client.views import TERMINAL_STATUSES

COLOURED_STDERR = (
    "import json, os, sys\n"
    "sys.stderr.write('\\x1b[31mERROR\\x1b[0m \\x1b]0;a title\\x07broken ')\n"
    "sys.stderr.write('\\x1b[1mthing\\x1b[0m\\n')\n"
    "print(json.dumps({'type': 'result', 'outcome': 'done', 'summary': os.environ['NO_COLOR']}))\n"
)


def start_with(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, config: str
) -> DaemonProcess:
    orca_home.mkdir(mode=0o700, exist_ok=True)
    (orca_home / "config.toml").write_text(config)
    return make_daemon(extra_env={"NO_COLOR": "", "ORCA_CODEX_PATH": ""}).start()


def test_escape_sequences_on_stderr_are_not_recorded_and_agents_get_no_color(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    command = [sys.executable, "-c", COLOURED_STDERR]
    daemon = start_with(
        make_daemon, orca_home, f"[agents.coloured]\ncommand = {json.dumps(command)}\n"
    )
    started = daemon.orca("run", "--agent", "coloured", "go")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    assert daemon.wait_for_run(run_id).status == "completed"
    assert output_of(daemon, run_id, "stderr") == "ERROR broken thing\n"
    assert daemon.status(run_id).sessions[0].summary == "1"  # NO_COLOR=1 in its environment
    logs = daemon.orca("logs", run_id)
    assert logs.stderr == "ERROR broken thing\n"


@pytest.mark.e2e
def test_the_real_codex_log_lines_reach_orca_logs_without_colour(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """codex app-server colours its stderr log even into a pipe, unless NO_COLOR is set."""
    codex = real_codex()
    codex_home = orca_home.parent / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(  # no model: nothing on loopback answers
        'model_provider = "nowhere"\n'
        "[model_providers.nowhere]\n"
        'name = "nowhere"\n'
        'base_url = "http://127.0.0.1:9/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "ORCA_TEST_NO_KEY"\n'
        "supports_websockets = false\n"
    )
    env = {"CODEX_HOME": str(codex_home), "RUST_LOG": "info", "ORCA_TEST_NO_KEY": "x"}
    config = (
        f"[agents.codex]\ncommand = {json.dumps([str(codex)])}\n[agents.codex.env]\n"
        + "".join(f"{name} = {json.dumps(value)}\n" for name, value in env.items())
    )
    daemon = start_with(make_daemon, orca_home, config)
    done = daemon.orca("run", "--agent", "codex", "say hello")
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    wait_until(lambda: "INFO" in output_of(daemon, run_id, "stderr"), "codex's INFO lines")
    if daemon.status(run_id).runs[0].status not in TERMINAL_STATUSES:
        daemon.orca("cancel", run_id)
    daemon.wait_for_run(run_id)
    stderr = output_of(daemon, run_id, "stderr")
    assert "\x1b" not in stderr, stderr[:500]
    assert "␛" not in daemon.orca("logs", run_id).stderr
    assert [e for e in events_of(daemon, run_id) if e["type"] == "session_terminated"]
