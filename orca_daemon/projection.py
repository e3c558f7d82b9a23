"""Run and session status as a fold over the log: `apply(state, event) -> state`. No I/O.

Replay at start-up and live updates use the same `apply`. Terminal statuses are absorbing:
once a run or session is completed, failed or cancelled, no later event changes its status.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from orca_client.wire import TERMINAL_STATUSES, PendingQuestion, RunInfo, SessionInfo
from orca_daemon.events import (
    AgentSessionIdentified,
    AnyEvent,
    HookFinished,
    HookStarted,
    OutputAppended,
    QuestionAnswered,
    QuestionAsked,
    QuestionCleared,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionStarted,
    SessionTerminated,
    UsageRecorded,
)
from orca_daemon.store import StoredEvent

replace = msgspec.structs.replace


@dataclass
class State:
    """Every run and session as projected so far, and the log position reached.

    The values are immutable Structs; `apply` swaps in new ones, so a view handed to a client
    never changes under it.
    """

    position: int = 0
    runs: dict[str, RunInfo] = field(default_factory=dict)
    sessions: dict[str, SessionInfo] = field(default_factory=dict)
    hooks_running: dict[tuple[str, int], HookStarted] = field(default_factory=dict)
    """Hooks started and not yet finished, by (hook name, trigger position)."""

    def live_sessions(self) -> list[SessionInfo]:
        """Sessions that have not reached a terminal status."""
        return [s for s in self.sessions.values() if s.status not in TERMINAL_STATUSES]


def apply(state: State, stored: StoredEvent) -> State:
    """Fold one committed event into `state` and return it."""
    event = stored.decode()
    at = stored.recorded_at
    if isinstance(event, RunCreated):
        state.runs.setdefault(event.run_id, _new_run(event, at))
    elif isinstance(event, RunStatusChanged):
        run = state.runs.get(event.run_id)
        if run is not None and run.status not in TERMINAL_STATUSES:
            state.runs[run.run_id] = _change_run_status(run, event, at)
    elif isinstance(event, HookStarted):
        state.hooks_running[(event.hook, event.trigger_position)] = event
    elif isinstance(event, HookFinished):
        state.hooks_running.pop((event.hook, event.trigger_position), None)
    elif isinstance(event, SessionCreated):
        run = state.runs.get(event.run_id)
        if run is not None and event.session_id not in state.sessions:
            state.sessions[event.session_id] = _new_session(event, at)
            state.runs[run.run_id] = replace(
                run, session_ids=[*run.session_ids, event.session_id], updated_at=at
            )
    else:
        session = state.sessions.get(event.session_id)
        if session is not None:
            state.sessions[session.session_id] = evolve_session(session, event, at)
    state.position = stored.position
    return state


def _change_run_status(run: RunInfo, event: RunStatusChanged, at: float) -> RunInfo:
    """A new status; entering `waiting_for_answer` remembers the phase to return to."""
    paused = run.paused_status
    if event.status == "waiting_for_answer":
        paused = run.status if run.status != "waiting_for_answer" else paused
    else:
        paused = None
    return replace(
        run, status=event.status, reason=event.reason, updated_at=at, paused_status=paused
    )


def evolve_session(session: SessionInfo, event: AnyEvent, at: float) -> SessionInfo:
    """The pure per-session fold; a terminal session keeps its status whatever comes next."""
    terminal = session.status in TERMINAL_STATUSES
    if isinstance(event, OutputAppended):
        return replace(session, output_events=session.output_events + 1)
    if isinstance(event, UsageRecorded):
        return replace(session, usage=event.data)
    if isinstance(event, AgentSessionIdentified):
        return replace(session, agent_session_id=event.agent_session_id)
    if terminal:
        return session
    if isinstance(event, SessionStarted):
        return replace(
            session,
            status="running",
            pid=event.pid,
            process_start_ticks=event.process_start_ticks,
            started_at=at,
        )
    if isinstance(event, QuestionAsked):
        pending = PendingQuestion(event.request_id, session.session_id, event.questions, at)
        return replace(session, status="waiting_for_answer", pending=pending)
    if isinstance(event, QuestionAnswered | QuestionCleared):
        if session.pending is None or session.pending.request_id != event.request_id:
            return session
        return replace(session, status="running", pending=None)
    if isinstance(event, SessionTerminated):
        return replace(
            session,
            status=event.status,
            reason=event.reason,
            exit_code=event.exit_code,
            summary=event.summary,
            ended_at=at,
            pending=None,
        )
    return session


def replay(events: list[StoredEvent], state: State | None = None) -> State:
    """Fold `events` in order into `state` (a fresh one by default)."""
    state = State() if state is None else state
    for stored in events:
        apply(state, stored)
    return state


def _new_run(event: RunCreated, at: float) -> RunInfo:
    return RunInfo(
        run_id=event.run_id,
        title=event.title,
        status="queued",
        cwd=event.cwd,
        created_at=at,
        updated_at=at,
        parent_run_id=event.parent_run_id,
    )


def _new_session(event: SessionCreated, at: float) -> SessionInfo:
    return SessionInfo(
        session_id=event.session_id,
        run_id=event.run_id,
        agent=event.agent,
        role=event.role,
        status="created",
        command=event.command,
        cwd=event.cwd,
        created_at=at,
        debug_run_id=event.debug_run_id,
    )
