"""Durability against the real orcad: concurrent clients, kill -9 at random moments, restart.

Every reply a client got must survive the kill; the restarted daemon's projection must equal a
fresh replay of the SQLite log; sessions in flight at the kill end `failed` (RESTARTED_REASON) and
their orphaned processes are stopped; terminal statuses never change.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from conftest import DaemonProcess, wait_until
from support.durability import (
    CLIENT_TIMEOUT,
    MIN_ACKS_PER_ROUND,
    THREADS,
    Load,
    check_after_restart,
    check_live_projection_matches_log,
    dur_agent,
    kill_leftover_agents,
    process_running,
    replay_file,
    session_starts,
)

from orca_client.events import RESTARTED_REASON
from orca_client.views import StatusResult
from orca_client.wire import RunStarted, StartRun, Status
from orca_daemon.log.records import StoredEvent
from orca_daemon.state.projection import State

SEED = 20240611
ROUNDS = 4


def check_orphans_gone(before: State, before_events: list[StoredEvent]) -> int:
    """The agents of sessions in flight at the kill (by their recorded pids) are gone."""
    starts = session_starts(before_events)
    orphans = [
        starts[s.session_id]
        for s in before.live_sessions()
        if s.session_id in starts and s.pid is not None
    ]
    for pid, ticks in orphans:
        wait_until(
            lambda pid=pid, ticks=ticks: not process_running(pid, ticks),
            timeout=5.0,
            what=f"orphaned agent pid {pid} to be stopped",
        )
    return len(orphans)


def test_kill9_at_random_moments_loses_nothing(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    rng = random.Random(SEED)
    orca_home.mkdir(mode=0o700)
    os.chmod(orca_home, 0o700)
    # Keep restarts quick: an orphan that exits on SIGTERM may linger as a zombie (when init
    # is slow to reap it), and orcad waits the whole grace for it.
    (orca_home / "config.toml").write_text("[daemon]\ncancel_grace_seconds = 0.3\n")
    pid_dir = orca_home.parent / "pids"
    pid_dir.mkdir()
    try:
        run_kill9_rounds(make_daemon(), rng, pid_dir)
    finally:
        kill_leftover_agents(pid_dir)


def run_kill9_rounds(daemon: DaemonProcess, rng: random.Random, pid_dir: Path) -> None:
    acked: list[tuple[RunStarted, str]] = []
    before: State | None = None
    before_events: list[StoredEvent] = []
    snapshot: StatusResult | None = None
    reconciled = 0
    orphans = 0
    started_at = time.monotonic()

    for round_index in range(ROUNDS + 1):
        daemon.start(timeout=30)
        if before is not None:
            check_after_restart(daemon, before, before_events, snapshot, acked)
            orphans += check_orphans_gone(before, before_events)
            reconciled += len(before.live_sessions())
        if round_index == ROUNDS:
            break

        load = Load(daemon, pid_dir, SEED + round_index)
        load.start()

        def enough(load: Load = load) -> bool:
            with load.lock:
                count = len(load.acked)
            if count < MIN_ACKS_PER_ROUND:
                return False
            return any(s.status == "running" for s in daemon.status().sessions)

        wait_until(enough, timeout=20, what="runs to be acknowledged and sessions running")
        check_live_projection_matches_log(daemon)
        time.sleep(rng.uniform(0.0, 0.5))  # the random moment of the kill, not a condition
        with daemon.client(timeout=CLIENT_TIMEOUT) as client:
            snapshot = client.request(Status(ended=None))
        load.killed.set()
        daemon.kill()
        assert daemon.process is not None and daemon.process.returncode == -signal.SIGKILL
        load.join()
        assert not load.errors, load.errors
        acked.extend(load.acked)
        before, before_events = replay_file(daemon.paths.log_file)
        assert before.live_sessions(), "no session was in flight at the kill"

    # Still serving after all that: a new run completes, then a clean stop.
    with daemon.client() as client:
        started: RunStarted = client.request(
            StartRun(command=dur_agent("--lines", "2"), cwd=str(pid_dir))
        )
    final = daemon.wait_for_run(started.run_id)
    assert final.status == "completed", (final, daemon.status(started.run_id).sessions)
    assert daemon.stop() == 0

    assert len(acked) >= ROUNDS * MIN_ACKS_PER_ROUND
    assert reconciled >= ROUNDS * THREADS  # at least each thread's first (long) session
    assert orphans >= ROUNDS
    assert time.monotonic() - started_at < 60


def test_agent_spawned_but_not_yet_recorded_is_stopped_after_restart(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """kill -9 while an agent's processes are not (all) known to the log.

    The agent starts a child in a process group of its own (so the recorded pid's group does not
    hold it), then freezes orcad (SIGSTOP to its parent), which usually also holds orcad before
    SessionStarted is committed; orcad is then killed. Whatever the log recorded, the restarted
    orcad must find both processes by the session id in their environment and stop them.
    """
    daemon = make_daemon().start()
    pid_dir = orca_home.parent / "pids"
    pid_dir.mkdir()
    script = (
        'setsid sleep 60 & echo $! > "$0/$ORCA_SESSION_ID.child"; '
        'kill -STOP "$PPID"; echo $$ > "$0/$ORCA_SESSION_ID.pid"; exec sleep 60'
    )
    with daemon.client() as client:
        started: RunStarted = client.request(
            StartRun(command=["/bin/sh", "-c", script, str(pid_dir)], cwd=str(pid_dir))
        )
    pid_file = pid_dir / f"{started.session_id}.pid"
    child_file = pid_dir / f"{started.session_id}.child"
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(),
        timeout=10,
        what="the agent to freeze orcad and write its pid",
    )
    agent_pid = int(pid_file.read_text())
    child_pid = int(child_file.read_text())
    try:
        daemon.kill()
        before, _ = replay_file(daemon.paths.log_file)
        assert before.sessions[started.session_id].status in ("created", "running")
        assert process_running(agent_pid) and process_running(child_pid)

        daemon.start()
        after = daemon.status(started.run_id)
        assert after.sessions[0].status == "failed"
        assert after.sessions[0].reason == RESTARTED_REASON
        assert after.runs[0].status == "failed"
        wait_until(
            lambda: not process_running(agent_pid) and not process_running(child_pid),
            timeout=5,
            what=f"the agent ({agent_pid}) and its child ({child_pid}) of the killed orcad to stop",
        )
    finally:
        for pid in (agent_pid, child_pid):
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)
