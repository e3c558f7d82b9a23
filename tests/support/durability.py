"""Load, log replay and checks for kill -9 tests: tests/test_durability.py and bench/chaos.py.

Several threads start runs of tests/fakes/dur_agent.py as fast as orcad acknowledges them; the
checks compare what orcad serves with a fresh replay of its SQLite log and with what clients
were told before a kill.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from conftest import DaemonProcess

from orca_client.client import Client, DaemonUnavailable, OrcaClientError
from orca_client.events import RESTARTED_REASON
from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo, StatusResult
from orca_client.wire import EventRecord, ReadEvents, RunStarted, StartRun
from orca_daemon.log.records import StoredEvent
from orca_daemon.log.schema import COLUMNS
from orca_daemon.runs.rules import run_status_after
from orca_daemon.state.projection import State, replay

THREADS = 4
MIN_ACKS_PER_ROUND = 10
LONG_SLEEP = 60.0
CLIENT_TIMEOUT = 2.0
AGENT = Path(__file__).resolve().parents[1] / "fakes" / "dur_agent.py"


def dur_agent(*args: str) -> list[str]:
    return [sys.executable, str(AGENT), *args]


def replay_file(log_file: Path, upto: int | None = None) -> tuple[State, list[StoredEvent]]:
    """A fresh projection of the SQLite log, read through a read-only connection."""
    connection = sqlite3.connect(f"file:{log_file}?mode=ro", uri=True)
    try:
        query = f"SELECT {COLUMNS} FROM events ORDER BY position"
        rows = connection.execute(query).fetchall()
    finally:
        connection.close()
    events = [
        StoredEvent(int(p), str(s), int(v), str(t), int(sv), float(at), bytes(d))
        for p, s, v, t, sv, at, d in rows
        if upto is None or int(p) <= upto
    ]
    return replay(events), events


def process_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of a process, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[19])


def process_running(pid: int, start_ticks: int | None = None) -> bool:
    """True while `pid` (started at `start_ticks`, if given) exists and is not a zombie.


    Orphans are re-parented to an init that may never reap them, so a zombie counts as gone;
    `os.kill(pid, 0)` must fail or the process must be a zombie.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    state = process_state(pid)
    if state is None:
        return False
    letter, ticks = state
    if start_ticks is not None and ticks != start_ticks:
        return False  # the pid was reused by an unrelated process
    return letter not in ("Z", "X")


def read_all_events(daemon: DaemonProcess) -> tuple[list[EventRecord], int]:
    """Every event via ReadEvents, paging to the head; returns them and the head position."""
    events: list[EventRecord] = []
    with daemon.client() as client:
        after = 0
        while True:
            page = client.request(ReadEvents(after=after, limit=10_000))
            events.extend(page.events)
            if not page.events:
                return events, page.head_position
            after = page.events[-1].position


def as_maps(
    runs: list[RunInfo], sessions: list[SessionInfo]
) -> tuple[dict[str, RunInfo], dict[str, SessionInfo]]:
    return {r.run_id: r for r in runs}, {s.session_id: s for s in sessions}


def session_starts(events: list[StoredEvent]) -> dict[str, tuple[int, int | None]]:
    """session id -> (pid, process start ticks) from the SessionStarted events in the log."""
    starts: dict[str, tuple[int, int | None]] = {}
    for stored in events:
        if stored.type == "session_started":
            body = msgspec.json.decode(stored.data)
            starts[body["session_id"]] = (body["pid"], body.get("process_start_ticks"))
    return starts


@dataclass
class Load:
    """Several threads, each with its own Client, starting runs until told to stop."""

    daemon: DaemonProcess
    pid_dir: Path
    seed: int
    acked: list[tuple[RunStarted, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    killed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def command(self, kind: str, rng: random.Random) -> list[str]:
        base = [*dur_agent(), "--pid-dir", str(self.pid_dir)]
        lines = str(rng.randint(1, 30))
        if kind == "quick":
            return [*base, "--lines", lines]
        if kind == "fails":
            return [*base, "--lines", lines, "--outcome", "failed", "--exit", "1"]
        if kind == "no_result":
            return [*base, "--lines", lines, "--outcome", "none", "--exit", "3"]
        if kind == "medium":
            return [*base, "--lines", lines, "--sleep", f"{rng.uniform(0.05, 0.8):.3f}"]
        assert kind == "long"
        return [*base, "--lines", "3", "--sleep", str(LONG_SLEEP)]

    def worker(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        kinds = ["quick", "quick", "fails", "no_result", "medium", "medium", "long"]
        first = True
        with Client(self.daemon.paths, timeout=CLIENT_TIMEOUT) as client:
            while not self.stop.is_set():
                kind = "long" if first else rng.choice(kinds)
                first = False
                request = StartRun(
                    command=self.command(kind, rng), cwd=str(self.pid_dir), title=kind
                )
                try:
                    started: RunStarted = client.request(request)
                except DaemonUnavailable as exc:
                    if not self.killed.is_set():
                        with self.lock:
                            self.errors.append(f"thread {index}: unavailable before kill: {exc}")
                    return
                except OrcaClientError as exc:
                    with self.lock:
                        self.errors.append(f"thread {index}: {type(exc).__name__}: {exc}")
                    return
                with self.lock:
                    self.acked.append((started, kind))
                # Pace the load so the agents' interpreters do not starve the daemon.
                time.sleep(rng.uniform(0.0, 0.06))

    def start(self) -> None:
        for index in range(THREADS):
            thread = threading.Thread(target=self.worker, args=(index,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(CLIENT_TIMEOUT + 5)
            assert not thread.is_alive(), "a load thread did not finish"


def check_live_projection_matches_log(daemon: DaemonProcess) -> None:
    """While under load: Status equals a replay of the log up to the head Status reports."""
    status = daemon.status()
    state, events = replay_file(daemon.paths.log_file, upto=status.head_position)
    assert [e.position for e in events] == list(range(1, status.head_position + 1))
    runs, sessions = as_maps(status.runs, status.sessions)
    assert runs == state.runs
    assert sessions == state.sessions


def check_after_restart(
    daemon: DaemonProcess,
    before: State,
    before_events: list[StoredEvent],
    snapshot: StatusResult | None,
    acked: list[tuple[RunStarted, str]],
) -> None:
    status = daemon.status()
    runs, sessions = as_maps(status.runs, status.sessions)
    records, head = read_all_events(daemon)
    by_position = {record.position: record for record in records}

    # Every acknowledged run exists, and its acknowledged position is durable and readable.
    assert [r.position for r in records] == list(range(1, head + 1))
    for started, kind in acked:
        assert started.run_id in runs, f"acknowledged {kind} run {started.run_id} was lost"
        assert started.session_id in runs[started.run_id].session_ids
        assert started.position <= head
        record = by_position[started.position]
        body = msgspec.json.decode(record.event)
        assert record.stream == f"run-{started.run_id}"
        assert body["type"] == "session_created"
        assert body["session_id"] == started.session_id

    # The daemon's projection equals a fresh replay of the file, and ReadEvents equals the file.
    state, events = replay_file(daemon.paths.log_file)
    assert status.head_position == state.position == head
    assert runs == state.runs
    assert sessions == state.sessions
    assert [(e.position, e.stream, e.version, e.data) for e in events] == [
        (r.position, r.stream, r.version, bytes(r.event)) for r in records
    ]

    # The log before the restart is a prefix of the log after it.
    assert [e.data for e in events[: len(before_events)]] == [e.data for e in before_events]

    # In-flight sessions end failed with the restart reason; terminal ones are unchanged.
    for session_id, was in before.sessions.items():
        now = sessions[session_id]
        if was.status in TERMINAL_STATUSES:
            assert now == was, f"terminal session {session_id} changed across the restart"
        else:
            assert now.status == "failed", f"in-flight session {session_id}: {now}"
            assert now.reason == RESTARTED_REASON
            assert now.ended_at is not None
    for run_id, was_run in before.runs.items():
        if was_run.status in TERMINAL_STATUSES:
            assert runs[run_id] == was_run, f"terminal run {run_id} changed across the restart"

    # What clients were told was terminal before the kill is still exactly that.
    if snapshot is not None:
        for run in snapshot.runs:
            if run.status in TERMINAL_STATUSES:
                assert runs[run.run_id] == run
        for session in snapshot.sessions:
            if session.status in TERMINAL_STATUSES:
                assert sessions[session.session_id] == session

    # No run is left non-terminal once its sessions are; its status follows from theirs.
    for run in runs.values():
        statuses = [sessions[s].status for s in run.session_ids]
        assert statuses, f"run {run.run_id} has no sessions"
        assert all(s in TERMINAL_STATUSES for s in statuses), f"{run.run_id}: {statuses}"
        assert run.status == run_status_after(statuses), f"{run.run_id}: {run} {statuses}"


def kill_leftover_agents(pid_dir: Path) -> None:
    """SIGKILL agents (ours, by pid file) that are still running, so none outlive the test."""
    for pid_file in pid_dir.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if process_running(pid) and (str(AGENT).encode() in cmdline or b"sleep" in cmdline):
            os.kill(pid, signal.SIGKILL)
