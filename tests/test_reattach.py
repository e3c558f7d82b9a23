"""Agents outlive orcad: each runs in a session holder, and an orcad started after a crash, a
stop or an upgrade re-attaches to it. Against the real orcad, its holders and real agents."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, agent, output_of, process_exists, wait_until
from support.homes import write_config
from support.processes import processes_with_env
from support.questions import of_type, pending_of

from orca_client.wire import Answer, Cancel, RunStarted, StartRun

SESSIONS = 20
LINES = 200
DELAY = 0.01
SEED = 1212


def expected_stdout(answer: str) -> str:
    half = LINES // 2
    before = "".join(f"line {n}\n" for n in range(1, half + 1))
    after = "".join(f"line {n}\n" for n in range(half + 1, LINES + 1))
    return f"{before}answer: {answer}\n{after}"


def expected_stderr() -> str:
    return "".join(f"err {n}\n" for n in range(10, LINES + 1, 10))


def start_counters(daemon: DaemonProcess) -> list[str]:
    run_ids = []
    with daemon.client() as client:
        for _ in range(SESSIONS):
            request = StartRun(command=agent("counter.py", str(LINES), str(DELAY)), cwd="/tmp")
            started: RunStarted = client.request(request)
            run_ids.append(started.run_id)
    return run_ids


def restart(daemon: DaemonProcess, how: int) -> None:
    daemon.stop(how)
    daemon.start(timeout=30)


@pytest.mark.slow
def test_sessions_survive_kill9_and_stop_of_orcad_with_every_line_recorded_once(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """20 counting agents; orcad is killed (-9) at random moments, once while every session
    waits for an answer, and stopped once (SIGTERM); each time a new orcad re-attaches. Every
    session completes, every line is recorded exactly once and in order, the question asked
    before a kill is answered after it and the answer reaches the agent, nothing is left."""
    rng = random.Random(SEED)
    daemon = make_daemon().start()
    run_ids = start_counters(daemon)
    for _ in range(2):
        time.sleep(rng.uniform(0.05, 0.6))  # the random moment of the kill, not a condition
        restart(daemon, signal.SIGKILL)

    def all_waiting() -> bool:
        return all(pending_of(daemon, run_id) is not None for run_id in run_ids)

    wait_until(all_waiting, "every session to ask its question", timeout=60)
    restart(daemon, signal.SIGKILL)  # with a question pending in every session
    with daemon.client() as client:
        for run_id in run_ids:
            assert daemon.status(run_id).runs[0].status == "waiting_for_answer"
            client.request(Answer(run_id, text="yes", answered_by="test"))
    time.sleep(rng.uniform(0.05, 0.4))
    restart(daemon, signal.SIGTERM)
    time.sleep(rng.uniform(0.05, 0.4))
    restart(daemon, signal.SIGKILL)

    for run_id in run_ids:
        run = daemon.wait_for_run(run_id, timeout=60)
        assert run.status == "completed", (run, daemon.status(run_id).sessions)
        assert output_of(daemon, run_id, "stdout") == expected_stdout("yes"), run_id
        assert output_of(daemon, run_id, "stderr") == expected_stderr(), run_id
        assert len(of_type(daemon, run_id, "question_asked")) == 1
        assert len(of_type(daemon, run_id, "question_answered")) == 1
    assert daemon.stop() == 0
    wait_until(
        lambda: processes_with_env("ORCA_HOME", str(orca_home)) == [],
        "every holder and agent to be gone",
    )
    assert not list((daemon.paths.runtime_dir / "holders").iterdir())


def refused_after_a_restart(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> tuple[DaemonProcess, RunStarted, Path, str]:
    """A counting session waits for its answer; orcad is killed, the session's secret file is
    changed (so its holder refuses the next orcad), and orcad starts again. Returns the daemon,
    the run, the secret file and its right content."""
    write_config(orca_home, "[orchestration]\nheartbeat_seconds = 0.2\n")
    daemon = make_daemon().start()
    with daemon.client() as client:
        request = StartRun(command=agent("counter.py", str(LINES), str(DELAY)), cwd="/tmp")
        started: RunStarted = client.request(request)
    wait_until(lambda: pending_of(daemon, started.run_id), "the question")
    daemon.kill()
    secret = daemon.paths.runtime_dir / "holders" / started.session_id / "secret"
    kept = secret.read_text()
    secret.write_text("0" * len(kept))
    daemon.start()
    return daemon, started, secret, kept


def test_a_holder_that_refuses_the_new_orcad_is_shown_and_tried_again_until_it_attaches(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The holder is alive but refuses the restarted orcad (its secret file was changed while
    orcad was down): the session is not ended and its agent runs on; `orca status` says it is
    not re-attached and why; once the secret is right again, orcad attaches at a heartbeat and
    the session goes on and completes with every line recorded once."""
    daemon, started, secret, kept = refused_after_a_restart(make_daemon, orca_home)
    session = daemon.status(started.run_id).sessions[0]
    agent_pid = session.pid
    assert agent_pid is not None
    assert session.status == "waiting_for_answer" and session.detached is not None, session
    assert "refused us" in session.detached
    assert process_exists(agent_pid)
    shown = daemon.orca("status", started.run_id)
    assert "holder   not re-attached yet: " in shown.stdout, shown.stdout
    time.sleep(0.5)  # a few heartbeats: still refused, still not ended
    assert daemon.status(started.run_id).sessions[0].status == "waiting_for_answer"

    secret.write_text(kept)
    wait_until(lambda: daemon.status(started.run_id).sessions[0].detached is None, "re-attach")
    with daemon.client() as client:
        client.request(Answer(started.run_id, text="yes", answered_by="test"))
    run = daemon.wait_for_run(started.run_id, timeout=30)
    assert run.status == "completed", daemon.status(started.run_id)
    assert output_of(daemon, started.run_id, "stdout") == expected_stdout("yes")
    assert "Traceback" not in daemon.output()


@pytest.mark.parametrize("ending", ["cancel", "cancelling stop"])
def test_a_session_not_re_attached_yet_that_is_ended_leaves_nothing_running(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, ending: str
) -> None:
    """A cancel, or a stop that ends sessions, while orcad is not attached to the session's
    holder: its agent and its holder are stopped all the same (by the pids the log had)."""
    daemon, started, secret, _ = refused_after_a_restart(make_daemon, orca_home)
    assert daemon.status(started.run_id).sessions[0].detached is not None
    assert daemon.process is not None
    running = set(processes_with_env("ORCA_HOME", str(orca_home))) - {daemon.process.pid}
    assert len(running) >= 2  # the holder and its agent

    if ending == "cancel":
        with daemon.client() as client:
            client.request(Cancel(run_id=started.run_id))
        assert daemon.wait_for_run(started.run_id).status == "cancelled"
    else:
        assert daemon.stop_ending_sessions() == 0
    wait_until(
        lambda: not [pid for pid in running if process_exists(pid)],
        f"the agent and its holder to end: {running}",
    )
    wait_until(lambda: not secret.parent.exists(), "its holder's files to be removed")
