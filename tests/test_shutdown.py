"""A stop that ends sessions (`orca daemon stop --cancel-sessions`) with many busy agents: every
agent is signalled at once, and every session's end is recorded in one transaction (not one
after another, each waiting behind the agents' output, before anything is signalled).

Timing is for `bench/bench_shutdown.py`; this test checks what happened and in what order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
from conftest import DaemonProcess, agent, process_exists, wait_until

from orca_client.events import RESTARTED_REASON, STOPPED_REASON
from orca_client.wire import RunStarted, Shutdown, StartRun
from orca_daemon.log.transactions import TEST_PAGE_LIMIT_VARIABLE

AGENTS = 40


def test_a_cancelling_stop_signals_every_busy_agent_and_records_their_ends_at_once(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    daemon = make_daemon().start()
    markers = orca_home.parent / "markers"
    markers.mkdir()
    command = agent("busy.py", str(markers), "0.005")
    with daemon.client() as client:
        runs: list[RunStarted] = [
            client.request(StartRun(command=command, cwd=str(markers))) for _ in range(AGENTS)
        ]

    def all_busy() -> list[int] | None:
        sessions = daemon.status().sessions
        pids = [s.pid for s in sessions if s.status == "running" and s.pid is not None]
        return pids if len(pids) == AGENTS else None

    pids: list[int] = wait_until(all_busy, what="every agent to be running", timeout=60)
    try:
        assert daemon.stop_ending_sessions(timeout=60) == 0
        assert [pid for pid in pids if process_exists(pid)] == []
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert sorted(int(p.stem) for p in markers.glob("*.term")) == sorted(pids)  # all SIGTERMed

    with contextlib.closing(sqlite3.connect(daemon.paths.log_file)) as db:
        rows = db.execute(
            "SELECT position, recorded_at, type, data FROM events"
            " WHERE type IN ('session_terminated', 'run_status_changed') ORDER BY position"
        ).fetchall()
    ends = [(p, at, t, msgspec.json.decode(d)) for p, at, t, d in rows]
    stopped = [e for e in ends if e[3].get("reason") == STOPPED_REASON]
    assert sorted(e[3]["run_id"] for e in stopped if e[2] == "session_terminated") == sorted(
        r.run_id for r in runs
    )
    assert len(stopped) == 2 * AGENTS  # each session's end and its run's
    positions = [e[0] for e in stopped]
    assert positions == list(range(positions[0], positions[0] + 2 * AGENTS)), (
        "the ends are not one block of the log"
    )
    assert len({e[1] for e in stopped}) == 1, "the ends were recorded in several transactions"

    daemon.start()
    after = daemon.status()
    assert {(s.status, s.reason) for s in after.sessions} == {("failed", STOPPED_REASON)}
    assert {r.status for r in after.runs} == {"failed"}
    assert RESTARTED_REASON not in daemon.output()


FULL_LOG_AGENTS = 30
"""Enough sessions that recording their ends needs new pages of the log, which it refuses."""
POLITE = ["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"]
"""An agent that exits 0 on SIGTERM (its sleep, in its process group, is signalled too)."""


def test_a_cancelling_stop_while_the_log_is_full_records_each_session_end_once(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path
) -> None:
    """The stopped sessions' ends cannot be recorded within orcad's limit; once the space is
    back, each session has exactly one end, and it says that orcad stopped it (not the exit 0
    its agent gave on SIGTERM)."""
    limit_file = orca_home.parent / "page-limit"
    daemon = make_daemon(extra_env={TEST_PAGE_LIMIT_VARIABLE: str(limit_file)}).start()
    with daemon.client() as client:
        runs: list[RunStarted] = [
            client.request(StartRun(command=POLITE, cwd=str(orca_home.parent)))
            for _ in range(FULL_LOG_AGENTS)
        ]

    def all_running() -> list[int] | None:
        pids = [s.pid for s in daemon.status().sessions if s.status == "running" and s.pid]
        return pids if len(pids) == FULL_LOG_AGENTS else None

    pids: list[int] = wait_until(all_running, what="every agent to be running", timeout=60)
    limit_file.write_text("1\n")
    with daemon.client() as client:
        client.request(Shutdown(cancel_sessions=True))
    wait_until(
        lambda: "could not record the stopped sessions' ends" in daemon.output(),
        what="orcad to give up recording the ends together",
        timeout=60,
    )
    assert [pid for pid in pids if process_exists(pid)] == []
    limit_file.unlink()
    assert daemon.stop(timeout=60) == 0

    with contextlib.closing(sqlite3.connect(daemon.paths.log_file)) as db:
        rows = db.execute(
            "SELECT type, data FROM events"
            " WHERE type IN ('session_terminated', 'run_status_changed') ORDER BY position"
        ).fetchall()
    ends = [(kind, msgspec.json.decode(data)) for kind, data in rows]
    sessions = [e for kind, e in ends if kind == "session_terminated"]
    assert sorted(e["run_id"] for e in sessions) == sorted(r.run_id for r in runs)  # one each
    assert {(e["status"], e["reason"]) for e in sessions} == {("failed", STOPPED_REASON)}
    terminal = [e for kind, e in ends if kind == "run_status_changed" and e["status"] == "failed"]
    assert sorted(e["run_id"] for e in terminal) == sorted(r.run_id for r in runs)
    assert "Traceback" not in daemon.output()
