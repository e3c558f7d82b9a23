"""`Doctor` against a real orcad (heartbeat every 0.2 s): a silent agent is flagged stuck, an
active one and one waiting for an answer are not, one whose worktree is still being made is
"creating its worktree" (stuck only past the limit); an unknown run is not found."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, agent, output_of, process_exists, wait_until
from support.homes import write_config
from support.questions import q, wait_pending
from support.worktrees import gate_checkout, make_repo

from orca_client.client import RequestFailed
from orca_client.views import DoctorResult, SessionHealth
from orca_client.wire import Cancel, Doctor, RunStarted, StartRun

HEARTBEAT = 0.2
STUCK_AFTER = 0.5


@pytest.fixture
def daemon(make_daemon: Callable[..., DaemonProcess], orca_home: Path) -> DaemonProcess:
    write_config(orca_home, f"[orchestration]\nheartbeat_seconds = {HEARTBEAT}\n")
    return make_daemon().start()


def start(daemon: DaemonProcess, command: list[str]) -> RunStarted:
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(cwd=str(daemon.home), command=command))
    return started


def doctor(
    daemon: DaemonProcess, run_id: str, stuck_after: float | None = STUCK_AFTER
) -> DoctorResult:
    with daemon.client() as client:
        result: DoctorResult = client.request(Doctor(run_id=run_id, stuck_after=stuck_after))
    return result


def only(result: DoctorResult) -> SessionHealth:
    assert len(result.sessions) == 1, result
    return result.sessions[0]


def started_long_enough(daemon: DaemonProcess, run_id: str, seconds: float) -> None:
    """Wait until the run's session has been running for more than `seconds`."""
    started_at: float = wait_until(
        lambda: daemon.status(run_id).sessions[0].started_at, what="the session to start"
    )
    wait_until(lambda: time.time() - started_at > seconds, what=f"{seconds}s to pass")


def test_a_silent_agent_is_flagged_stuck_with_pid_heartbeat_and_output_tail(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    started = start(daemon, agent("wt_agent.py", "--wait", str(go)))
    wait_until(lambda: "branch=" in output_of(daemon, started.run_id), what="the agent's output")

    health = wait_until(
        lambda: (h := only(doctor(daemon, started.run_id))).stuck and h, what="stuck flagged"
    )
    session = daemon.status(started.run_id).sessions[0]
    assert health.session_id == started.session_id
    assert health.status == "running"
    assert health.pid is not None and health.pid == session.pid
    assert process_exists(health.pid)
    assert health.alive is True
    assert "no activity for" in health.why and "limit 0.5s" in health.why, health.why
    assert health.last_activity_at is not None
    assert time.time() - health.last_activity_at > STUCK_AFTER
    assert health.last_heartbeat is not None
    assert session.started_at is not None and health.last_heartbeat >= session.started_at
    assert f"cwd={daemon.home}\n" in health.output_tail
    assert "branch=" in health.output_tail
    assert health.task_id is None and health.retry_command is None

    # The heartbeat goes on while the process lives; activity does not.
    first = health.last_heartbeat
    later = wait_until(
        lambda: (h := only(doctor(daemon, started.run_id))).last_heartbeat > first and h,  # type: ignore[operator]
        what="a newer heartbeat",
        timeout=5,
    )
    assert later.last_activity_at == health.last_activity_at and later.stuck

    result = doctor(daemon, started.run_id)
    assert (result.run_id, result.status, result.stuck_after) == (
        started.run_id,
        "running",
        STUCK_AFTER,
    )

    # Once it ends, nothing is live: doctor has nothing to show.
    go.touch()
    assert daemon.wait_for_run(started.run_id).status == "completed"
    ended = doctor(daemon, started.run_id)
    assert ended.status == "completed" and ended.sessions == []


def test_an_active_agent_is_not_stuck(daemon: DaemonProcess, tmp_path: Path) -> None:
    go = tmp_path / "go"
    started = start(daemon, agent("wt_agent.py", "--wait", str(go), "--tick", "0.05"))
    started_long_enough(daemon, started.run_id, 3 * STUCK_AFTER)
    for _ in range(3):
        health = only(doctor(daemon, started.run_id))
        assert not health.stuck, health
        assert health.alive and health.pid is not None
        assert health.why.startswith("active"), health.why
        assert "tick " in health.output_tail
        time.sleep(0.1)
    # The same agent with a longer limit, and the configured default (600 s), is fine too.
    assert doctor(daemon, started.run_id, stuck_after=None).stuck_after == 600.0
    assert not only(doctor(daemon, started.run_id, stuck_after=None)).stuck
    go.touch()
    assert daemon.wait_for_run(started.run_id).status == "completed"


def test_a_session_waiting_for_an_answer_is_not_stuck(daemon: DaemonProcess) -> None:
    script = {"steps": [{"say": "about to ask"}, {"ask": [q("name")]}]}
    started = start(daemon, agent("q_ask.py", json.dumps(script)))
    wait_pending(daemon, started.run_id)
    waiting_since = daemon.status(started.run_id).sessions[0].last_activity_at
    assert waiting_since is not None
    wait_until(lambda: time.time() - waiting_since > 3 * STUCK_AFTER, what="time to pass")

    result = doctor(daemon, started.run_id)
    assert result.status == "waiting_for_answer"
    health = only(result)
    assert health.status == "waiting_for_answer"
    assert not health.stuck, health
    assert "answer" in health.why
    assert health.alive and health.pid is not None and process_exists(health.pid)
    assert "about to ask" in health.output_tail

    with daemon.client() as client:
        client.request(Cancel(run_id=started.run_id))
    assert daemon.wait_for_run(started.run_id).status == "cancelled"


def test_a_session_whose_worktree_is_being_made_is_starting_until_it_takes_too_long(
    daemon: DaemonProcess, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    gate = tmp_path / "gate"
    gate_checkout(repo, gate)  # git worktree add waits for the gate
    with daemon.client() as client:
        request = StartRun(cwd=str(repo), command=agent("wt_agent.py"), worktree=True)
        started: RunStarted = client.request(request)
    wait_until(
        (daemon.paths.state_dir / "runs" / started.run_id).exists, what="the worktree under way"
    )

    health = only(doctor(daemon, started.run_id, stuck_after=60))
    assert (health.status, health.pid, health.alive) == ("created", None, False)
    assert not health.stuck, health
    assert health.why.startswith("creating its worktree for"), health.why

    created_at = daemon.status(started.run_id).sessions[0].created_at
    wait_until(lambda: time.time() - created_at > 2 * STUCK_AFTER, what="time to pass")
    health = only(doctor(daemon, started.run_id))
    assert health.stuck and health.why.startswith("creating its worktree for"), health
    assert "limit 0.5s" in health.why

    gate.touch()
    assert daemon.wait_for_run(started.run_id).status == "completed"


def test_doctor_of_an_unknown_run_or_with_a_bad_limit_is_refused(daemon: DaemonProcess) -> None:
    with pytest.raises(RequestFailed) as unknown:
        doctor(daemon, "no-such-run")
    assert unknown.value.code == "not_found"

    started = start(daemon, agent("wt_agent.py"))
    assert daemon.wait_for_run(started.run_id).status == "completed"
    for limit in (0.0, -1.0):
        with pytest.raises(RequestFailed) as bad:
            doctor(daemon, started.run_id, stuck_after=limit)
        assert bad.value.code == "bad_request"
        assert "stuck_after" in str(bad.value)
    # orcad serves on.
    assert doctor(daemon, started.run_id).sessions == []
