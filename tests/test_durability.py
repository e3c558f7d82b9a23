"""Durability against the real orcad: concurrent clients, kill -9 at random moments, restart.

Every reply a client got must survive the kill; the restarted daemon's projection must equal a
fresh replay of the SQLite log, whose earlier part is the log at the kill; terminal statuses never
change. Agents outlive orcad in their holders: each session in flight at a kill is re-attached
(same agent, still running) or has ended by its agent's own end, never by the restart; every
line an agent printed is recorded once and in order; no process of an ended session stays; a
stop that ends the sessions leaves no process behind. And orcad killed after it started a
session's holder but before it recorded the start: the next orcad re-attaches to that holder.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import (
    DaemonProcess,
    events_of,
    output_of,
    parent_of,
    process_exists,
    wait_until,
)
from support.durability import (
    CLIENT_TIMEOUT,
    MIN_ACKS_PER_ROUND,
    THREADS,
    Carried,
    Load,
    check_after_restart,
    check_live_projection_matches_log,
    dur_agent,
    kill_leftover_agents,
    leftovers_of_ended,
    process_running,
    replay_file,
    stop_ending_sessions,
    wait_for_all_output,
)
from support.processes import processes_with_env

from orca_client.views import StatusResult
from orca_client.wire import RunStarted, StartRun, Status
from orca_daemon.log.records import StoredEvent
from orca_daemon.sessions.holder import TEST_READY_DELAY_VARIABLE
from orca_daemon.state.projection import State

SEED = 20240611
ROUNDS = 4


def test_kill9_at_random_moments_loses_nothing(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, any_log_env: dict[str, str]
) -> None:
    """On each log: the SQLite file, and a PostgreSQL database."""
    rng = random.Random(SEED)
    pid_dir = orca_home.parent / "pids"
    pid_dir.mkdir()
    try:
        run_kill9_rounds(make_daemon(extra_env=any_log_env), rng, pid_dir)
    finally:
        kill_leftover_agents(pid_dir)


def run_kill9_rounds(daemon: DaemonProcess, rng: random.Random, pid_dir: Path) -> None:
    acked: list[tuple[RunStarted, str]] = []
    before: State | None = None
    before_events: list[StoredEvent] = []
    snapshot: StatusResult | None = None
    carried = Carried()
    in_flight = 0

    for round_index in range(ROUNDS + 1):
        daemon.start(timeout=30)
        if before is not None:
            carried.add(check_after_restart(daemon, before, before_events, snapshot, acked))
            left = leftovers_of_ended(daemon)
            assert not left, f"processes {left} of ended sessions still run"
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
        before, before_events = replay_file(daemon.log_source)
        assert before.live_sessions(), "no session was in flight at the kill"
        in_flight += len(before.live_sessions())
        time.sleep(rng.uniform(0.0, 1.0))  # orcad stays away a while: some agents end meanwhile

    # Still serving after all that: a new run completes; then every line is recorded, and a
    # stop that ends the sessions still running leaves nothing behind.
    with daemon.client() as client:
        started: RunStarted = client.request(
            StartRun(command=dur_agent("--lines", "2"), cwd=str(pid_dir))
        )
    final = daemon.wait_for_run(started.run_id)
    assert final.status == "completed", (final, daemon.status(started.run_id).sessions)
    wait_for_all_output(daemon)
    assert stop_ending_sessions(daemon) == []

    assert len(acked) >= ROUNDS * MIN_ACKS_PER_ROUND
    assert in_flight >= ROUNDS * THREADS  # at least each thread's first (long) session
    # From the second kill on, at least the long sessions of the first round run on.
    assert carried.reattached >= (ROUNDS - 1) * THREADS, carried


WINDOW_AGENT = (
    'setsid sleep 60 & echo $! > "$0/$ORCA_SESSION_ID.child"; '
    'echo $$ > "$0/$ORCA_SESSION_ID.pid"; '
    'while [ ! -e "$0/go" ]; do sleep 0.02; done; '
    "for n in 1 2 3 4 5; do echo line $n; done; "
    'echo \'{"type":"result","outcome":"done","summary":"ok"}\''
)
"""A shell agent that starts a child in a session of its own, writes their pids, and prints
numbered lines and its result once the test creates the file `go`."""


@pytest.mark.parametrize("moment", ["before its ready line", "before its start was recorded"])
def test_orcad_killed_after_it_started_a_holder_reattaches_to_it(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, moment: str
) -> None:
    """kill -9 after orcad started a session's holder, before it recorded the start.

    Once the run is acknowledged, the test holds SQLite's write lock on the log, so orcad cannot
    commit SessionStarted. Then orcad is killed either while the holder starts (the holder is
    frozen first: its ready line meets a broken pipe later), or once the holder has started the
    agent (which starts a child of its own) and handed orcad its ready line. The log shows the
    session created, not started. The restarted orcad re-attaches to the holder (found by the
    session id), records the start of that same agent and everything it prints, once; the
    session's end is its agent's; then the agent, its child and the holder are gone. (Holders
    wait half a second before their ready line here, so that the freeze cannot come too late
    on a loaded machine.)"""
    daemon = make_daemon(extra_env={TEST_READY_DELAY_VARIABLE: "0.5"}).start()
    pid_dir = orca_home.parent / "pids"
    pid_dir.mkdir()
    with daemon.client() as client:
        started: RunStarted = client.request(
            StartRun(command=["/bin/sh", "-c", WINDOW_AGENT, str(pid_dir)], cwd=str(pid_dir))
        )
    spool = daemon.paths.state_dir / "runs" / started.run_id / "spool" / started.session_id
    with log_write_locked(daemon.paths.log_file):
        if moment == "before its ready line":
            kill_before_ready_line(daemon, spool)
        agent_pid, child_pid = pids_of(pid_dir, started.session_id)
        holder_pid = parent_of(agent_pid)
        wait_until(
            lambda: ready_line_written(holder_pid) or not process_running(holder_pid),
            what="the holder to hand orcad its ready line",
        )
        daemon.kill()
    before, _ = replay_file(daemon.paths.log_file)
    assert before.sessions[started.session_id].status == "created"  # the window
    assert all(process_running(p) for p in (agent_pid, child_pid, holder_pid))

    daemon.start()
    session = wait_until(
        lambda: next((s for s in daemon.status(started.run_id).sessions if s.pid), None),
        what="the restarted orcad to record the session's start",
    )
    assert (session.status, session.pid) == ("running", agent_pid)
    (pid_dir / "go").write_text("")
    run = daemon.wait_for_run(started.run_id)
    assert run.status == "completed", daemon.status(started.run_id).sessions
    assert output_of(daemon, started.run_id) == "".join(f"line {n}\n" for n in range(1, 6))
    events = events_of(daemon, started.run_id)
    starts = [e for e in events if e["type"] == "session_started"]
    assert [(e["pid"], e["holder_pid"]) for e in starts] == [(agent_pid, holder_pid)]
    [ended] = [e for e in events if e["type"] == "session_terminated"]
    assert (ended["status"], ended["cause"]) == ("completed", "agent")
    wait_until(
        lambda: not any(process_running(p) for p in (agent_pid, child_pid, holder_pid)),
        timeout=5,
        what=f"the agent {agent_pid}, its child {child_pid} and its holder {holder_pid} to go",
    )
    assert daemon.process is not None
    assert processes_with_env("ORCA_HOME", str(orca_home)) == [daemon.process.pid]


def kill_before_ready_line(daemon: DaemonProcess, spool: Path) -> None:
    """Freeze the session's holder as it starts (found by its program and its working directory,
    the session's spool), let orcad hand it its spec (orcad closes its end of the holder's stdin),
    kill orcad, and let the holder go on: its ready line meets a broken pipe."""
    assert daemon.process is not None
    orcad = daemon.process.pid
    deadline = time.monotonic() + 10
    frozen: list[int] = []
    while not frozen:  # its ready line comes some 20 ms after its start
        assert time.monotonic() < deadline, "orcad did not start the session's holder"
        for pid in holders_in(spool):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        # the fork that starts the holder proper exits at once (its parent reaps it at once):
        # what is frozen is what is left, and can be asked for its stdin
        frozen = [pid for pid in holders_in(spool) if process_exists(pid) and stdin_of(pid)]
        time.sleep(0.001)
    try:
        assert not any(ready_line_written(pid) for pid in frozen), "froze the holder too late"
        stdin = {stdin_of(pid) for pid in frozen} - {None}
        wait_until(
            lambda: not stdin & set(descriptors(orcad)), what="orcad to hand the holder its spec"
        )
        daemon.kill()
    finally:
        for pid in holders_in(spool):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def stdin_of(pid: int) -> str | None:
    """What a process's stdin is (`pipe:[inode]`), or None once it is gone (or going)."""
    try:
        return os.readlink(f"/proc/{pid}/fd/0")
    except OSError:
        return None


def holders_in(spool: Path) -> list[int]:
    """The holder processes working in `spool` (a session's)."""
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError):
            pid = int(entry)
            if os.readlink(f"/proc/{pid}/cwd") != str(spool):
                continue
            if b"holder.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def descriptors(pid: int) -> list[str]:
    """What a process's file descriptors point at (`pipe:[inode]`, paths, ...)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


def pids_of(pid_dir: Path, session_id: str) -> tuple[int, int]:
    """The pids the window agent wrote: its own and its child's."""
    pid_file = pid_dir / f"{session_id}.pid"
    wait_until(
        lambda: pid_file.exists() and pid_file.read_text().strip().isdigit(),
        timeout=10,
        what="the agent to write its pid",
    )
    return int(pid_file.read_text()), int((pid_dir / f"{session_id}.child").read_text())


@contextlib.contextmanager
def log_write_locked(log_file: Path) -> Iterator[None]:
    """Hold SQLite's write lock on orcad's log: nothing commits meanwhile."""
    connection = sqlite3.connect(log_file, timeout=10, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def ready_line_written(holder_pid: int) -> bool:
    """The holder has written its ready line (or failed to, orcad being gone): then it points
    its stdout at /dev/null."""
    try:
        return os.readlink(f"/proc/{holder_pid}/fd/1") == os.devnull
    except OSError:
        return False
