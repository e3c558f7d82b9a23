"""`orca daemon stop` with live runs: a plain stop leaves their sessions running in their holders
and says so; with --cancel-sessions it names the runs it will end, asks on a terminal, and
without a terminal stops only with --force. orcad is started by `orca daemon start`, as a user
would, so `stop` sees it exit."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterator

import pytest
from conftest import DaemonProcess, process_exists, run_orca, wait_until
from support.terminal import Terminal


def orca(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_orca(env, *args)


@pytest.fixture
def started(make_daemon: Callable[..., DaemonProcess]) -> Iterator[tuple[dict[str, str], int]]:
    """orcad started by `orca daemon start`: its environment and pid (killed afterwards)."""
    env = make_daemon().env
    result = orca(env, "daemon", "start")
    assert result.returncode == 0, result.stderr
    found = re.search(r"pid (\d+)", result.stdout)
    assert found, result.stdout
    pid = int(found.group(1))
    yield env, pid
    if process_exists(pid):
        os.kill(pid, signal.SIGKILL)


def live_run(env: dict[str, str], title: str) -> str:
    """A run of `sleep 60`, once its agent runs (on a loaded machine a run can be `queued`
    for a while after `orca run` returns, while its holder starts)."""
    result = orca(env, "run", "--title", title, "--", "sleep", "60")
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip()
    agent_pid(env, run_id)
    return run_id


def agent_pid(env: dict[str, str], run_id: str) -> int:
    """The pid of the run's agent, once it has started."""
    found = wait_until(
        lambda: re.findall(r'"pid":(\d+)', orca(env, "status", run_id, "--json").stdout),
        "the agent to start",
    )
    return int(found[0])


def test_without_a_terminal_it_refuses_to_end_live_runs_unless_forced(
    started: tuple[dict[str, str], int],
) -> None:
    env, pid = started
    run_id = live_run(env, "long job")
    refused = orca(env, "daemon", "stop", "--cancel-sessions")
    assert refused.returncode == 2
    assert "orcad has 1 live run; stopping it with --cancel-sessions ends" in refused.stderr
    assert f"{run_id}  running  long job" in refused.stderr
    assert "orca daemon stop --cancel-sessions --force" in refused.stderr
    assert process_exists(pid)
    assert orca(env, "status", run_id, "--json").stdout.count('"status":"running"') >= 1

    forced = orca(env, "daemon", "stop", "--cancel-sessions", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"{run_id}  running  long job" in forced.stderr
    assert f"orcad stopped (pid {pid})" in forced.stdout
    wait_until(lambda: not process_exists(pid), "orcad to exit")


def test_on_a_terminal_it_asks_first(started: tuple[dict[str, str], int]) -> None:
    env, pid = started
    run_id = live_run(env, "long job")
    terminal = Terminal(env, "daemon", "stop", "--cancel-sessions")
    try:
        shown = terminal.read_until("[y/N] ")
        assert run_id in shown
        terminal.type("n\n")
        code = terminal.wait()
        screen = terminal.screen
    finally:
        terminal.close()
    assert code == 1 and "orcad is still running" in screen
    assert process_exists(pid)

    terminal = Terminal(env, "daemon", "stop", "--cancel-sessions")
    try:
        terminal.read_until("[y/N] ")
        terminal.type("y\n")
        code = terminal.wait()
        screen = terminal.screen
    finally:
        terminal.close()
    assert code == 0, screen
    assert f"orcad stopped (pid {pid})" in screen
    wait_until(lambda: not process_exists(pid), "orcad to exit")


def test_with_no_live_run_it_stops_without_asking(started: tuple[dict[str, str], int]) -> None:
    env, pid = started
    assert orca(env, "run", "--wait", "--", "true").returncode == 0
    stopped = orca(env, "daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "live run" not in stopped.stderr
    wait_until(lambda: not process_exists(pid), "orcad to exit")


def test_a_plain_stop_leaves_running_sessions_running_and_the_next_orcad_takes_them_back(
    started: tuple[dict[str, str], int],
) -> None:
    env, pid = started
    run_id = live_run(env, "long job")
    agent = agent_pid(env, run_id)
    stopped = orca(env, "daemon", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "live run" not in stopped.stderr  # nothing is ended, so nothing to confirm
    assert "1 session keeps running; orcad will re-attach to them" in stopped.stdout
    assert "orca daemon stop --cancel-sessions" in stopped.stdout
    wait_until(lambda: not process_exists(pid), "orcad to exit")
    assert process_exists(agent)
    down = orca(env, "status")
    assert "orcad is not running" in down.stderr
    assert "1 session keeps running in a holder, and orcad re-attaches" in down.stderr

    assert orca(env, "daemon", "start").returncode == 0
    again = orca(env, "status", run_id, "--json").stdout
    assert '"status":"running"' in again and f'"pid":{agent}' in again
    assert orca(env, "daemon", "stop", "--cancel-sessions", "--force").returncode == 0
    wait_until(lambda: not process_exists(agent), "the agent to be stopped")
