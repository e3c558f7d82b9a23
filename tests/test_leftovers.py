"""A session leaves nothing running: children that left the group, background children, and an
agent that keeps running after its result are all stopped, and the session ends by its result."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import DaemonProcess, agent, process_exists, wait_until
from test_runs import start


@pytest.mark.parametrize("mode", ["detached", "background"])
def test_children_are_stopped_when_the_agent_exits(
    daemon: DaemonProcess, tmp_path: Path, mode: str
) -> None:
    pid_file = tmp_path / "pid"
    started = start(daemon, agent("leaver.py", mode, str(pid_file)))
    run = daemon.wait_for_run(started.run_id, timeout=30)
    assert (run.status, daemon.status(started.run_id).sessions[0].summary) == ("completed", mode)
    child = int(pid_file.read_text())
    wait_until(lambda: not process_exists(child), timeout=10)


def test_an_agent_that_lingers_after_its_result_is_stopped(
    make_daemon, orca_home: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    orca_home.mkdir(mode=0o700, parents=True)
    daemon = make_daemon().start()
    pid_file = tmp_path / "pid"
    begun = time.monotonic()
    started = start(daemon, agent("leaver.py", "linger", str(pid_file)))
    run = daemon.wait_for_run(started.run_id, timeout=40)
    assert run.status == "completed"
    assert time.monotonic() - begun < 30
    wait_until(lambda: not process_exists(int(pid_file.read_text())), timeout=10)
