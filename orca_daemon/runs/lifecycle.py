"""The only writer of a session's end and of the run status it causes; and of a run's cancel.

Each end is decided under the run's lock from the projected state, so an ended session or run
never changes. Stopping the processes of sessions that ended is the supervisor's job: it follows
the log (see `Supervisor.on_commit`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

from orca_client.events import (
    STOPPED_REASON,
    EndCause,
    Event,
    QuestionCleared,
    RunStatusChanged,
    SessionTerminated,
    TaskStatusChanged,
    run_stream,
)
from orca_client.views import TERMINAL_STATUSES, RunInfo, TerminalStatus
from orca_client.wire import CancelResult, WireError
from orca_daemon.runs.rules import (
    SessionEnding,
    ending_events,
    live_sessions,
    restartable,
    resume_events,
)
from orca_daemon.runs.run_log import RunLog

log = logging.getLogger(__name__)


class Lifecycle:
    """Ends sessions and cancels runs, durably."""

    def __init__(self, runs: RunLog) -> None:
        self._runs = runs

    async def finish_session(
        self,
        run_id: str,
        session_id: str,
        status: TerminalStatus,
        reason: str,
        cause: EndCause,
        exit_code: int | None = None,
        summary: str | None = None,
    ) -> bool:
        """Record a session's end (unless it already ended) and what follows for its run;
        False when it had already ended, or (with a shared log) the run is another daemon's,
        which records its sessions' ends."""
        runs = self._runs
        async with runs.lock(run_id):
            session = runs.state.sessions.get(session_id)
            if session is None or session.status in TERMINAL_STATUSES:
                return False
            if not runs.acts_for(run_id):
                return False
            ending = SessionEnding(session_id, status, reason, cause, exit_code, summary)
            await runs.append(run_id, ending_events(runs.state, run_id, [ending]))
        return True

    async def clear_question(self, run_id: str, session_id: str, reason: str) -> None:
        """The session's pending question no longer waits (the agent that asked it is gone):
        clear it; the run resumes if nothing else waits."""
        runs = self._runs
        async with runs.lock(run_id):
            session = runs.state.sessions.get(session_id)
            if session is None or session.pending is None:
                return
            cleared = QuestionCleared(run_id, session_id, session.pending.request_id, reason)
            events = [cleared, *resume_events(runs.state, run_id, session_id)]
            await runs.append(run_id, events)

    async def cancel(
        self, run_id: str, reason: str | None, session_id: str | None = None
    ) -> CancelResult:
        """End a run cancelled, durably (its processes are then stopped). A parent's live
        children are cancelled after it. With `session_id`, only that session."""
        runs = self._runs
        run = runs.state.runs.get(run_id)
        if run is None:
            raise WireError("not_found", f"no run with id {run_id!r}")
        reason = reason or "cancelled by a client"
        if session_id is not None:
            return await self._cancel_session(run, session_id, reason)
        async with runs.lock(run_id):
            run = runs.state.runs[run_id]
            if run.status in TERMINAL_STATUSES:
                return CancelResult(run_id=run_id, status=run.status, already_terminal=True)
            events: list[Event] = [
                SessionTerminated(run_id, s.session_id, "cancelled", reason, cause="cancelled")
                for s in live_sessions(runs.state, run_id)
            ]
            events.extend(
                TaskStatusChanged(run_id, task.task_id, "cancelled", reason)
                for task in run.tasks
                if task.status in ("pending", "in_progress")
            )
            events.append(RunStatusChanged(run_id, "cancelled", reason))
            await runs.append(run_id, events)
        for child_id in runs.state.runs[run_id].child_run_ids:  # the parent ended first: no
            await self.cancel(child_id, parent_cancelled(reason))  # new child
        return CancelResult(run_id=run_id, status="cancelled", already_terminal=False)

    async def _cancel_session(self, run: RunInfo, session_id: str, reason: str) -> CancelResult:
        session = self._runs.state.sessions.get(session_id)
        if session is None or session.run_id != run.run_id:
            valid = ", ".join(run.session_ids) or "none"
            raise WireError(
                "not_found",
                f"run {run.run_id} has no session {session_id!r}; its sessions: {valid}",
            )
        ended = await self.cancel_sessions(run.run_id, [session_id], reason)
        status = self._runs.state.runs[run.run_id].status
        return CancelResult(run_id=run.run_id, status=status, already_terminal=not ended)

    async def cancel_sessions(self, run_id: str, session_ids: list[str], reason: str) -> list[str]:
        """Cancel these sessions of a run (the live ones); returns those it ended."""
        return [
            session_id
            for session_id in session_ids
            if await self.finish_session(run_id, session_id, "cancelled", reason, "cancelled")
        ]

    async def record_stopped(self) -> None:
        """End every live session (but those the next orcad starts) `failed`, in one append:
        under every such run's lock (taken in order), so nothing else ends them meanwhile."""
        runs, state = self._runs, self._runs.state
        run_ids = sorted(
            {
                s.run_id
                for s in state.live_sessions()
                if not restartable(state, s) and runs.acts_for(s.run_id)
            }
        )
        async with contextlib.AsyncExitStack() as locks:
            for run_id in run_ids:
                await locks.enter_async_context(runs.lock(run_id))
            appends: list[tuple[str, Sequence[Event]]] = []
            for run_id in run_ids:
                endings = [
                    SessionEnding(s.session_id, "failed", STOPPED_REASON, "orcad_stopped")
                    for s in live_sessions(state, run_id)
                    if not restartable(state, s)
                ]
                if endings:
                    appends.append((run_stream(run_id), ending_events(state, run_id, endings)))
            if appends:
                await runs.store.append_together(appends)
                ended = sum(
                    isinstance(e, SessionTerminated) for _, events in appends for e in events
                )
                log.info("stopping: recorded the end of %d sessions in one transaction", ended)


def parent_cancelled(reason: str | None) -> str:
    """Why a child run is cancelled with its parent."""
    return f"its parent run was cancelled: {reason or 'cancelled by a client'}"
