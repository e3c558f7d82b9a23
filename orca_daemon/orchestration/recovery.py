"""Start-up after an earlier orcad, and the order of a shutdown.

Start-up: sessions the log shows in flight are ended (or, when orcad decided on them and they
never started, started now), processes an earlier daemon left behind are stopped, and every live
fan-out, plan and parent run is handed to the reactor to carry on from its log. Shutdown: no new
work, every process signalled at once, every live session's end recorded in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

import anyio

from orca_client.events import RESTARTED_REASON
from orca_client.views import TERMINAL_STATUSES, SessionInfo
from orca_daemon.runs.admission import Admission
from orca_daemon.runs.launcher import Launcher
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.rules import parent_ended, restartable, superseded
from orca_daemon.runs.supervisor import Supervisor
from orca_daemon.sessions.procs import process_start_ticks, processes_of_sessions, stop_group
from orca_daemon.state.projection import State

log = logging.getLogger(__name__)

STOP_RECORD_SECONDS = 10.0
"""On shutdown, how long orcad waits to record the stopped sessions' ends (the log may be full);
what is not recorded by then, the next orcad reconciles."""


async def reconcile(
    state: State,
    lifecycle: Lifecycle,
    launcher: Launcher,
    supervisor: Supervisor,
    carry_on: Callable[[str], None],
) -> None:
    """End sessions that the log shows in flight from an earlier daemon, and stop every
    process an earlier daemon left behind: by recorded pid (checked against its start time),
    and by the ORCA_SESSION_ID in its environment — which also finds agents whose pid never
    reached the log, and those of sessions recorded as ended just before a crash.

    A session orcad itself decided on (an orchestrator, a plan task) that never started is
    started now. Then every live fan-out, plan and parent run is handed to `carry_on`."""
    live = state.live_sessions()
    groups = {s.pid for s in live if s.pid is not None and _is_same_process(state, s)}
    found = processes_of_sessions(set(state.sessions))
    for session_id, pids in found.items():
        for pid in pids:
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        log.warning("stopping orphaned processes %s of session %s", pids, session_id)
    groups.discard(os.getpgrp())
    async with anyio.create_task_group() as group:
        for pgid in groups:
            group.start_soon(stop_group, pgid, supervisor.cancel_grace)
    unstarted = [s for s in live if restartable(state, s) and s.session_id not in found]
    for session in live:
        run_id, session_id = session.run_id, session.session_id
        if session in unstarted and superseded(state, session):
            await lifecycle.finish_session(
                run_id, session_id, "cancelled", "replaced by a retry", "cancelled"
            )
        elif session not in unstarted and parent_ended(state, session):
            await lifecycle.finish_session(
                run_id, session_id, "cancelled", "its parent run has ended", "cancelled"
            )
        elif session not in unstarted:
            await lifecycle.finish_session(
                run_id, session_id, "failed", RESTARTED_REASON, "orcad_restarted"
            )
    for session in [s for s in unstarted if not superseded(state, s)]:
        log.info("starting session %s, which an earlier orcad recorded", session.session_id)
        recorded = session.command if session.agent == "command" else ()
        prepared = await launcher.prepare(
            session.run_id,
            session.agent,
            state.prompts.get(session.session_id),
            session.cwd,
            recorded,
        )
        supervisor.begin_session(session.run_id, session.session_id, prepared)
    for run in list(state.runs.values()):
        if run.status not in TERMINAL_STATUSES and run.kind != "single":
            carry_on(run.run_id)  # in the background: start-up does not wait
    _check_worktrees(state)


async def shutdown(
    admission: Admission,
    stop_reacting: Callable[[], None],
    supervisor: Supervisor,
    lifecycle: Lifecycle,
) -> None:
    """Stop accepting runs and reacting; signal every session's processes at once; record
    every live session's end in one transaction; wait for the sessions' tasks."""
    admission.close()  # from now on no session's process starts
    stop_reacting()
    signalled = supervisor.signal_all()
    log.info("stopping: signalled the processes of %d sessions", signalled)
    with anyio.move_on_after(STOP_RECORD_SECONDS) as waited:
        await admission.wait_started()  # runs being created now end stopped too
        await lifecycle.record_stopped()
    if waited.cancelled_caught:
        log.error(
            "could not record the stopped sessions' ends within %gs; the next orcad will",
            STOP_RECORD_SECONDS,
        )
    if not await supervisor.wait_all_stopped(supervisor.cancel_grace + STOP_RECORD_SECONDS):
        log.error("sessions still recording after their processes were stopped: cancelled")


def _is_same_process(state: State, session: SessionInfo) -> bool:
    """True when the pid still names the process the session started (not a reused pid)."""
    assert session.pid is not None
    current = process_start_ticks(session.pid)
    return current is not None and current == state.start_ticks.get(session.session_id)


def _check_worktrees(state: State) -> None:
    """Say which recorded worktrees (not removed with `orca clean`) no longer exist."""
    for session in state.sessions.values():
        tree = session.worktree
        if tree is not None and not tree.removed and not os.path.isdir(tree.path):
            log.warning(
                "worktree %s of session %s (branch %s) no longer exists",
                tree.path,
                session.session_id,
                tree.branch,
            )
