"""A session leaves nothing running: children that left the group, background children, and an
agent that keeps running after its result are all stopped, and the session ends by its result."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import DaemonProcess, agent, output_of, process_exists, wait_until
from support.runs import start

from orca_client.views import DoctorResult
from orca_client.wire import Doctor


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


def escaped(pid: int) -> bool:
    """True when the process left the session every other way: its own session, no environment."""
    if not process_exists(pid):
        return False
    with open(f"/proc/{pid}/stat") as handle:
        session = int(handle.read().rsplit(")", 1)[1].split()[3])
    with open(f"/proc/{pid}/environ", "rb") as handle:
        return session == pid and handle.read() == b""


@pytest.mark.parametrize("ending", ["cancel", "result", "exit"])
def test_a_grandchild_that_calls_setsid_and_clears_its_environment_is_stopped(
    make_daemon, orca_home: Path, tmp_path: Path, ending: str
) -> None:  # type: ignore[no-untyped-def]
    """However the session ends: cancelled, by its result, or by its exit alone. orcad knows of
    the grandchild from a look at the agent's descendants: before it signals them, when the agent
    gives its result, and at each heartbeat."""
    orca_home.mkdir(mode=0o700, parents=True)
    heartbeat = 0.2 if ending == "exit" else 60  # only the exit alone relies on a heartbeat
    (orca_home / "config.toml").write_text(f"[orchestration]\nheartbeat_seconds = {heartbeat}\n")
    daemon = make_daemon().start()
    pid_file, go = tmp_path / "pid", tmp_path / "go"
    argv = {"cancel": ["hang"], "result": ["result", str(go)], "exit": ["exit", str(go)]}[ending]
    started = start(daemon, agent("escaper.py", str(pid_file), *argv))
    grandchild = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), "its pid"))
    try:
        wait_until(lambda: escaped(grandchild), "its escape")
        if ending == "cancel":
            done = daemon.orca("cancel", started.run_id)
            assert done.returncode == 0, done.stderr
        elif ending == "result":  # its result line was handled before the next one
            wait_until(lambda: "after result" in output_of(daemon, started.run_id), "the result")
            go.touch()
        else:
            seen_after = time.time()
            wait_until(lambda: heartbeat_of(daemon, started.run_id) > seen_after, "a heartbeat")
            go.touch()
        expected = {"cancel": "cancelled", "result": "completed", "exit": "completed"}[ending]
        assert daemon.wait_for_run(started.run_id).status == expected
        wait_until(lambda: not process_exists(grandchild), "the grandchild's end", timeout=10)
    finally:
        with contextlib.suppress(OSError):
            os.kill(grandchild, signal.SIGKILL)


def heartbeat_of(daemon: DaemonProcess, run_id: str) -> float:
    with daemon.client() as client:
        result: DoctorResult = client.request(Doctor(run_id=run_id))
    return max((s.last_heartbeat or 0.0) for s in result.sessions)
