"""The status rules of runs and sessions: pure functions of the projected state.

What a session's end means for its run (a single run ends with its last session, a fan-out with
its orchestrator; a waiting run resumes once no session waits), which question an answer is for,
and which sessions the next orcad starts rather than fails. Nothing here reads a clock, a process
or the log; the callers append what these functions return.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass

from orca_client.events import (
    EndCause,
    Event,
    OrchestrationFinished,
    RunStatusChanged,
    SessionTerminated,
)
from orca_client.views import (
    TERMINAL_STATUSES,
    PendingQuestion,
    RunStatus,
    SessionInfo,
    TerminalStatus,
)
from orca_client.wire import WireError
from orca_daemon.sessions.process import SessionOutcome
from orca_daemon.state.projection import State


@dataclass(frozen=True)
class SessionEnding:
    """A session's end, about to be recorded."""

    session_id: str
    status: TerminalStatus
    reason: str
    cause: EndCause
    exit_code: int | None = None
    summary: str | None = None


def outcome_status(outcome: SessionOutcome) -> tuple[TerminalStatus, str, EndCause]:
    """A session's terminal status: the agent's result line if it gave one, else its exit."""
    if outcome.spawn_error is not None:
        return "failed", outcome.spawn_error, "spawn_failed"
    if outcome.lost is not None and outcome.result is None:
        return "failed", outcome.lost, "internal"
    if outcome.result is not None:
        if outcome.result.outcome == "done":
            return "completed", "the agent reported done", "agent"
        return "failed", outcome.result.error or "the agent reported failure", "agent"
    code = outcome.exit_code
    if code == 0:
        return "completed", "exited with status 0 without a result line", "agent"
    if code is not None and code < 0:
        return "failed", f"killed by {signal.Signals(-code).name} without a result line", "agent"
    return "failed", f"exited with status {code} without a result line", "agent"


def run_status_after(session_statuses: Sequence[str]) -> RunStatus | None:
    """The run's terminal status once every session is terminal, else None."""
    if any(status not in TERMINAL_STATUSES for status in session_statuses):
        return None
    if all(status == "completed" for status in session_statuses):
        return "completed"
    if "failed" in session_statuses:
        return "failed"
    return "cancelled"


def run_sessions(state: State, run_id: str) -> list[SessionInfo]:
    return [state.sessions[sid] for sid in state.runs[run_id].session_ids]


def live_sessions(state: State, run_id: str) -> list[SessionInfo]:
    return [s for s in run_sessions(state, run_id) if s.status not in TERMINAL_STATUSES]


def ending_events(state: State, run_id: str, endings: Sequence[SessionEnding]) -> list[Event]:
    """The events for these sessions' ends (in order) and what they mean for their run. A
    single run ends with its last session; a fan-out ends with its orchestrator; a waiting
    run resumes when no session waits any more; plans and parents decide after the fact."""
    run = state.runs[run_id]
    statuses = {s.session_id: s.status for s in run_sessions(state, run_id)}
    run_ended = run.status in TERMINAL_STATUSES
    events: list[Event] = []
    for end in endings:
        events.append(
            SessionTerminated(
                run_id,
                end.session_id,
                end.status,
                end.reason,
                end.exit_code,
                end.summary,
                end.cause,
            )
        )
        statuses[end.session_id] = end.status
        if run_ended:
            continue
        if run.kind == "fanout" and end.session_id == run.orchestrator_session_id:
            finished = OrchestrationFinished(
                run_id,
                run.debug_run_id or run_id,
                end.session_id,
                end.status,
                run.task_file or "",
                end.summary,
            )
            events += [finished, RunStatusChanged(run_id, end.status, end.reason)]
            run_ended = True
        elif run.kind == "single":
            run_status = run_status_after(list(statuses.values()))
            if run_status is not None:
                events.append(RunStatusChanged(run_id, run_status, end.reason))
                run_ended = True
    if not run_ended and run.status == "waiting_for_answer":
        still_waiting = [
            s
            for s in run_sessions(state, run_id)
            if s.pending is not None and statuses[s.session_id] not in TERMINAL_STATUSES
        ]
        if not still_waiting:
            events.append(RunStatusChanged(run_id, run.paused_status or "running"))
    return events


def resume_events(state: State, run_id: str, resolved_session: str) -> list[Event]:
    """A waiting run goes back to the phase it was in once no session waits any more."""
    run = state.runs[run_id]
    if run.status != "waiting_for_answer":
        return []
    still_waiting = [
        s
        for s in live_sessions(state, run_id)
        if s.pending is not None and s.session_id != resolved_session
    ]
    if still_waiting:
        return []
    return [RunStatusChanged(run_id, run.paused_status or "running")]


def pending_request(
    state: State, run_id: str, request_id: str | None, session_id: str | None = None
) -> PendingQuestion:
    """The question an answer to `run_id` is for; raises `WireError` saying why there is none
    (or which to pick when several sessions wait)."""
    pending = [s.pending for s in live_sessions(state, run_id) if s.pending is not None]
    if session_id is not None:
        pending = [p for p in pending if p.session_id == session_id]
        if not pending:
            raise WireError(
                "invalid_state",
                f"session {session_id} of run {run_id} has no pending request "
                "(it was answered or cleared, it ended, or it is not in this run)",
            )
    if request_id is not None:
        pending = [p for p in pending if p.request_id == request_id]
        if not pending:
            raise WireError(
                "invalid_state",
                f"run {run_id} has no pending request with request id {request_id!r} "
                "(it was answered or cleared, or never existed)",
            )
    if not pending:
        waiting = [
            child
            for child in state.runs[run_id].child_run_ids
            if state.runs[child].status == "waiting_for_answer"
        ]
        hint = f"; its child run {waiting[0]} is: orca answer {waiting[0]}" if waiting else ""
        raise WireError("invalid_state", f"run {run_id} is not waiting for an answer{hint}")
    if len(pending) > 1:
        ids = ", ".join(f"{p.session_id} (request {p.request_id})" for p in pending)
        raise WireError(
            "bad_request",
            f"several sessions of run {run_id} are waiting: pick one by its session "
            f"(session_id; orca answer --session): {ids}",
        )
    return pending[0]


def restartable(state: State, session: SessionInfo) -> bool:
    """A session that was recorded but never started (orcad stopped or died first): the next
    orcad starts it rather than failing it — a client was told of it, or orcad decided on it —
    unless its run (or a child run's parent) has ended."""
    run = state.runs[session.run_id]
    if session.status != "created" or run.status in TERMINAL_STATUSES:
        return False
    if run.parent_run_id is not None:
        return state.runs[run.parent_run_id].status not in TERMINAL_STATUSES
    return True


def parent_ended(state: State, session: SessionInfo) -> bool:
    parent = state.runs[session.run_id].parent_run_id
    return parent is not None and state.runs[parent].status in TERMINAL_STATUSES


def superseded(state: State, session: SessionInfo) -> bool:
    """A plan task's session that its task no longer waits for (a retry replaced it)."""
    if session.task_id is None:
        return False
    run = state.runs[session.run_id]
    place = state.task_index.get(session.run_id, {}).get(session.task_id)
    task = None if place is None else run.tasks[place]
    return task is None or task.status != "in_progress" or task.session_id != session.session_id


def worktree_bases(state: State, session: SessionInfo) -> list[str]:
    """Where a plan task's worktree starts: the branches of the tasks it depends on (each
    holds their work, committed when they were done), so that it builds on them."""
    created = state.created.get(session.run_id)
    if session.task_id is None or created is None or created.plan is None:
        return []
    tasks = state.runs[session.run_id].tasks
    index = state.task_index[session.run_id]
    task = created.plan.plan.tasks[index[session.task_id]]
    bases = []
    for dep in task.depends_on:
        done = state.sessions.get(tasks[index[dep]].session_id or "")
        if done is not None and done.worktree is not None and not done.worktree.removed:
            bases.append(done.worktree.branch)
    return bases
