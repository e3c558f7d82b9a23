"""Load, log replay and checks for kill -9 tests: tests/test_durability.py and bench/chaos.py.

Several threads start runs of tests/fakes/dur_agent.py (numbered lines of output) as fast as
orcad acknowledges them; orcad is killed and started again while their agents run on in their
holders. The checks compare what orcad serves with a fresh replay of its SQLite log and with
what clients were told before a kill, follow each session in flight at a kill (re-attached, or
ended by its own agent), compare each session's recorded output with what its agent printed, and
look for processes of ended sessions.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from conftest import DaemonProcess, events_of, wait_until

from orca_client.client import Client, DaemonUnavailable, OrcaClientError
from orca_client.events import LOST_REASON, RESTARTED_REASON, STOPPED_REASON
from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo, StatusResult
from orca_client.wire import EventRecord, ReadEvents, RunStarted, StartRun, Status
from orca_daemon.log.records import StoredEvent
from orca_daemon.runs.rules import run_status_after
from orca_daemon.state.projection import State, apply, replay
from support.processes import processes_with_env
from support.snapshots import read_log

THREADS = 4
MIN_ACKS_PER_ROUND = 10
LONG_SLEEP = 60.0
CLIENT_TIMEOUT = 5.0
"""How long a load thread waits for orcad before it counts as unavailable (a violation before
a kill). 2 s failed once in the whole suite with two test workers on two cores: chaos load plus
another worker's test left orcad's loop a moment longer than that, with nothing lost."""
AGENT = Path(__file__).resolve().parents[1] / "fakes" / "dur_agent.py"
ORPHAN_WAIT = 5.0
"""How long the processes of an ended session may take to go."""
ORCAD_REASONS = (RESTARTED_REASON, LOST_REASON, STOPPED_REASON)
"""Why sessions end that orcad ended, not their agent."""


def dur_agent(*args: str) -> list[str]:
    return [sys.executable, str(AGENT), *args]


def read_file(log_file: Path | str, upto: int | None = None) -> list[StoredEvent]:
    """The events of the log (up to position `upto`): the SQLite file, through a read-only
    connection, or the PostgreSQL database at a URL."""
    return read_log(log_file, upto)


def replay_file(log_file: Path | str, upto: int | None = None) -> tuple[State, list[StoredEvent]]:
    """A fresh projection of the log (see `read_file`), and its events."""
    events = read_file(log_file, upto)
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


def status_pages(daemon: DaemonProcess) -> list[StatusResult]:
    """The whole status (ended runs too), page by page: each page is orcad's view at its own
    `head_position` (under load it appends between pages)."""
    with daemon.client(timeout=CLIENT_TIMEOUT) as client:
        pages: list[StatusResult] = [client.request(Status(ended=None))]
        while (cursor := pages[-1].next_cursor) is not None:
            pages.append(client.request(Status(ended=None, cursor=cursor)))
    return pages


def whole_status(pages: list[StatusResult]) -> StatusResult:
    """The pages together, at the last page's head (runs of these loads fit a page each)."""
    return StatusResult(
        runs=[run for page in pages for run in page.runs],
        sessions=[session for page in pages for session in page.sessions],
        head_position=pages[-1].head_position,
        ended_not_shown=0,
        next_cursor=None,
    )


def page_differences(
    pages: list[StatusResult], log_file: Path | str
) -> tuple[list[str], State, list[StoredEvent]]:
    """Where a page differs from the log folded up to that page's head, and the runs that the
    log has at the last page's head but no page shows; with that fold and its events (the log
    is read and folded once, the pages checked on the way: their heads only grow)."""
    events = read_file(log_file, upto=pages[-1].head_position)
    problems = []
    state, folded = State(), 0
    for page in pages:
        while folded < len(events) and events[folded].position <= page.head_position:
            apply(state, events[folded])
            folded += 1
        for run in page.runs:
            if state.runs.get(run.run_id) != run:
                problems.append(f"run {run.run_id}: {run} in status, {state.runs.get(run.run_id)}")
        for session in page.sessions:
            if state.sessions.get(session.session_id) != session:
                replayed = state.sessions.get(session.session_id)
                problems.append(f"session {session.session_id}: {session}, {replayed}")
    listed = {run.run_id for page in pages for run in page.runs}
    problems += [f"run {run_id} is on no page" for run_id in state.runs if run_id not in listed]
    return problems, state, events


@dataclass(frozen=True)
class Start:
    """A session's recorded start: its agent's and its holder's (pid, start ticks)."""

    agent: tuple[int, int | None]
    holder: tuple[int, int | None] | None

    def processes(self) -> list[tuple[int, int | None]]:
        return [self.agent] if self.holder is None else [self.agent, self.holder]


@dataclass
class Facts:
    """What the log says of each session, by session id."""

    stdout: dict[str, str] = field(default_factory=dict)
    """Its recorded stdout, joined."""
    starts: dict[str, list[Start]] = field(default_factory=dict)
    causes: dict[str, str | None] = field(default_factory=dict)
    """Why it ended, for programs (`SessionTerminated.cause`)."""


def facts_of(events: Iterable[StoredEvent]) -> Facts:
    facts = Facts()
    for stored in events:
        if stored.type not in ("output_appended", "session_started", "session_terminated"):
            continue
        body: dict[str, Any] = msgspec.json.decode(stored.data)
        session_id = body["session_id"]
        if stored.type == "output_appended" and body["stream"] == "stdout":
            facts.stdout[session_id] = facts.stdout.get(session_id, "") + body["text"]
        elif stored.type == "session_started":
            holder = body.get("holder_pid")
            start = Start(
                (body["pid"], body.get("process_start_ticks")),
                None if holder is None else (holder, body.get("holder_start_ticks")),
            )
            facts.starts.setdefault(session_id, []).append(start)
        elif stored.type == "session_terminated":
            facts.causes[session_id] = body.get("cause")
    return facts


def expected_stdout(session: SessionInfo) -> str | None:
    """All that a session's dur_agent prints on stdout (its result line is no output); None
    for another agent."""
    command = session.command
    if str(AGENT) not in command:
        return None
    lines = int(command[command.index("--lines") + 1]) if "--lines" in command else 0
    sid = session.session_id
    return "".join(
        f"json line {n} of {sid}\n" if n % 2 else f"plain line {n} of {sid}\n" for n in range(lines)
    )


@dataclass
class Carried:
    """What became of the sessions in flight at a kill, as the restarted orcad first shows."""

    reattached: int = 0
    """Live again with the same agent."""
    ended: int = 0
    """Ended by their agent (while orcad was away, or since)."""
    started: int = 0
    """Recorded but not started at the kill (or their start not yet recorded)."""

    def add(self, other: Carried) -> None:
        self.reattached += other.reattached
        self.ended += other.ended
        self.started += other.started


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
    pages = status_pages(daemon)
    problems, _, events = page_differences(pages, daemon.log_source)
    assert not problems, "\n".join(problems[:20])
    assert [e.position for e in events] == list(range(1, pages[-1].head_position + 1))


def check_after_restart(
    daemon: DaemonProcess,
    before: State,
    before_events: list[StoredEvent],
    snapshot: StatusResult | None,
    acked: list[tuple[RunStarted, str]],
) -> Carried:
    """Every check after a restart; orcad appends meanwhile (the sessions it re-attached to run
    on), so each comparison is made at one log position. Returns what became of the sessions
    in flight at the kill."""
    records, head = read_all_events(daemon)
    pages = status_pages(daemon)
    status = whole_status(pages)
    runs, sessions = as_maps(status.runs, status.sessions)
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

    # The daemon's projection equals a fresh replay of the file up to the position it reports,
    # and ReadEvents equals the file.
    problems, state, events = page_differences(pages, daemon.log_source)
    assert not problems, "\n".join(problems[:20])
    assert status.head_position == state.position >= head
    assert [(e.position, e.stream, e.version, e.data) for e in events[:head]] == [
        (r.position, r.stream, r.version, bytes(r.event)) for r in records
    ]

    # The log before the restart is a prefix of the log after it.
    assert [e.data for e in events[: len(before_events)]] == [e.data for e in before_events]

    check_terminal_unchanged(before, snapshot, runs, sessions)
    facts = facts_of(events)
    for session in sessions.values():
        starts = facts.starts.get(session.session_id, [])
        assert len(starts) <= 1, f"session {session.session_id} started {len(starts)} times"
        if session.status in TERMINAL_STATUSES:
            check_ended_by_agent(session, facts.causes.get(session.session_id))
    problems = output_problems(sessions.values(), facts)
    assert not problems, "\n".join(problems)
    return check_in_flight(daemon, before, sessions, facts)


def check_terminal_unchanged(
    before: State,
    snapshot: StatusResult | None,
    runs: dict[str, RunInfo],
    sessions: dict[str, SessionInfo],
) -> None:
    """What the log (or a client) showed terminal before the kill is still exactly that, and
    every run's status follows from its sessions'."""
    for session_id, was in before.sessions.items():
        if was.status in TERMINAL_STATUSES:
            assert sessions[session_id] == was, f"terminal session {session_id} changed"
    for run_id, was_run in before.runs.items():
        if was_run.status in TERMINAL_STATUSES:
            assert runs[run_id] == was_run, f"terminal run {run_id} changed across the restart"
    if snapshot is not None:
        for run in snapshot.runs:
            if run.status in TERMINAL_STATUSES:
                assert runs[run.run_id] == run
        for session in snapshot.sessions:
            if session.status in TERMINAL_STATUSES:
                assert sessions[session.session_id] == session
    for run in runs.values():
        statuses = [sessions[s].status for s in run.session_ids]
        assert statuses, f"run {run.run_id} has no sessions"
        if all(s in TERMINAL_STATUSES for s in statuses):
            assert run.status == run_status_after(statuses), f"{run.run_id}: {run} {statuses}"
        else:
            assert run.status not in TERMINAL_STATUSES, f"{run.run_id}: {run} {statuses}"


def check_ended_by_agent(session: SessionInfo, cause: str | None) -> None:
    """The session ended because its agent did: not lost, not ended by a restart or a stop."""
    assert cause == "agent" and session.reason not in ORCAD_REASONS, (
        f"session {session.session_id} ended {session.status} ({session.reason!r}, cause "
        f"{cause}), not by its agent"
    )


def check_in_flight(
    daemon: DaemonProcess, before: State, sessions: dict[str, SessionInfo], facts: Facts
) -> Carried:
    """Each session in flight at the kill is live again with the same agent, its process
    still running (or ends by its agent soon after), or has ended by its agent's own end."""
    carried = Carried()
    for was in before.live_sessions():
        session_id = was.session_id
        now = sessions[session_id]
        if was.pid is None:
            carried.started += 1  # recorded, not started: the restarted orcad started it
        elif now.status in TERMINAL_STATUSES:
            carried.ended += 1  # while orcad was away, or since it re-attached (checked above)
        else:
            assert now.pid == was.pid, f"in-flight session {session_id}: {was.pid} -> {now}"
            carried.reattached += 1
        if now.status not in TERMINAL_STATUSES and now.pid is not None:
            check_running_or_ends(daemon, now, facts.starts[session_id][0].agent)
    return carried


def check_running_or_ends(
    daemon: DaemonProcess, session: SessionInfo, agent: tuple[int, int | None]
) -> None:
    """A live session's agent runs; or, gone since the status was read, the session ends by
    its agent's end within a few seconds."""
    if process_running(*agent):
        return

    def ended() -> tuple[SessionInfo, str | None] | None:
        now = daemon.status(session.run_id).sessions
        found = next(s for s in now if s.session_id == session.session_id)
        if found.status not in TERMINAL_STATUSES:
            return None
        causes = [
            e.get("cause")
            for e in events_of(daemon, session.run_id)
            if e["type"] == "session_terminated" and e["session_id"] == session.session_id
        ]
        return found, causes[0]

    what = f"session {session.session_id} (its agent {agent[0]} is gone) to end"
    check_ended_by_agent(*wait_until(ended, what, timeout=ORPHAN_WAIT))


def output_problems(
    sessions: Iterable[SessionInfo], facts: Facts, complete: bool = False
) -> list[str]:
    """Sessions whose recorded stdout is not what their agent printed, once and in order: all
    of it for a session its agent ended (and, when `complete`, for every session), a beginning
    of it for one still running."""
    problems = []
    for session in sessions:
        expected = expected_stdout(session)
        if expected is None:
            continue
        recorded = facts.stdout.get(session.session_id, "")
        whole = complete or (
            session.status in TERMINAL_STATUSES and facts.causes.get(session.session_id) == "agent"
        )
        if recorded != expected if whole else not expected.startswith(recorded):
            problems.append(
                f"session {session.session_id} ({session.status}) recorded {recorded!r}, its "
                f"agent printed {expected!r}"
            )
    return problems


def leftovers_of_ended(daemon: DaemonProcess, wait: float = ORPHAN_WAIT) -> list[int]:
    """The agents and holders of sessions the log shows ended (by the pid and start time their
    start recorded) that still run `wait` seconds later."""
    status = whole_status(status_pages(daemon))
    facts = facts_of(read_file(daemon.log_source, upto=status.head_position))
    processes = {
        process
        for session in status.sessions
        if session.status in TERMINAL_STATUSES
        for start in facts.starts.get(session.session_id, [])
        for process in start.processes()
    }
    deadline = time.monotonic() + wait
    while True:
        left = sorted(pid for pid, ticks in processes if process_running(pid, ticks))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def wait_for_all_output(daemon: DaemonProcess, timeout: float = 30.0) -> None:
    """Until every session has ended or recorded all its agent prints (the long ones print it
    all before they sleep): a line lost across the kills never comes."""
    missing: list[str] = []

    def complete() -> bool:
        status = whole_status(status_pages(daemon))
        facts = facts_of(read_file(daemon.log_source, upto=status.head_position))
        live = [s for s in status.sessions if s.status not in TERMINAL_STATUSES]
        missing[:] = output_problems(live, facts, complete=True)
        return not missing

    deadline = time.monotonic() + timeout
    while not complete():
        assert time.monotonic() < deadline, "output never recorded:\n" + "\n".join(missing)
        time.sleep(0.2)


def stop_ending_sessions(daemon: DaemonProcess) -> list[str]:
    """Stop orcad, ending the sessions that still run; say what is wrong afterwards: a session
    not ended by its agent (but those the stop ended), output not all recorded once in order,
    a holder's files, or a process of its home left behind."""
    live = {
        s.session_id
        for s in whole_status(status_pages(daemon)).sessions
        if s.status not in TERMINAL_STATUSES
    }
    problems = []
    if daemon.stop_ending_sessions() != 0:
        problems.append(f"orcad's stop failed:\n{daemon.output()[-2000:]}")
    state, events = replay_file(daemon.log_source)
    facts = facts_of(events)
    for session in state.sessions.values():
        cause = facts.causes.get(session.session_id)
        stopped = session.session_id in live and session.reason == STOPPED_REASON
        if cause != "orcad_stopped" or not stopped:
            try:
                check_ended_by_agent(session, cause)
            except AssertionError as error:
                problems.append(str(error))
    problems += output_problems(state.sessions.values(), facts, complete=True)
    holders = daemon.paths.runtime_dir / "holders"
    if holders.exists() and list(holders.iterdir()):
        problems.append(f"holders' files left: {sorted(p.name for p in holders.iterdir())}")
    home = str(daemon.home)
    deadline = time.monotonic() + ORPHAN_WAIT
    while (left := processes_with_env("ORCA_HOME", home)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        problems.append(f"processes {left} of {home} outlived orcad's stop")
    return problems


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
