"""Runs and their sessions: create, drive, cancel, reconcile after a restart, stop on shutdown.

Every status decision is made here, under the run's lock, from the projected state, and recorded
as events; terminal statuses are checked before anything is appended, so they never change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.abc

from orca_client.wire import (
    TERMINAL_STATUSES,
    Answer,
    AnswerResult,
    CancelResult,
    PendingQuestion,
    RunStarted,
    RunStatus,
    SessionInfo,
    StartRun,
    TerminalStatus,
    WireError,
)
from orca_daemon.agents.base import (
    Identified,
    PhaseChanged,
    QuestionsAsked,
    QuestionsWithdrawn,
    Translator,
    Usage,
)
from orca_daemon.agents.binaries import BinaryNotFound
from orca_daemon.agents.registry import Launch, LaunchContext, command_launch, plan_launch
from orca_daemon.config import Config, ConfigError
from orca_daemon.events import (
    AgentSessionIdentified,
    Event,
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
    run_stream,
)
from orca_daemon.projection import State
from orca_daemon.questions import resolve_answers, split_secrets
from orca_daemon.sessions import (
    PumpSettings,
    SessionOutcome,
    SessionProcess,
    SessionSpec,
    StreamName,
    process_start_ticks,
    processes_of_sessions,
    stop_group,
)
from orca_daemon.store import EventStore, StoredEvent, StoreError

log = logging.getLogger(__name__)

RESTARTED_REASON = "orcad restarted while the session was running"
STOPPED_REASON = "orcad stopped while the session was running"
MAX_TITLE_CHARS = 200
MAX_OUTPUT_IN_FLIGHT = 8
"""Output chunks a session may have queued for the log before its pump waits for them."""


def new_run_id() -> str:
    return secrets.token_hex(6)


def outcome_status(outcome: SessionOutcome) -> tuple[TerminalStatus, str]:
    """A session's terminal status: the agent's result line if it gave one, else its exit."""
    if outcome.spawn_error is not None:
        return "failed", outcome.spawn_error
    if outcome.result is not None:
        if outcome.result.outcome == "done":
            return "completed", "the agent reported done"
        return "failed", outcome.result.error or "the agent reported failure"
    code = outcome.exit_code
    if code == 0:
        return "completed", "exited with status 0 without a result line"
    if code is not None and code < 0:
        return "failed", f"killed by {signal.Signals(-code).name} without a result line"
    return "failed", f"exited with status {code} without a result line"


def run_status_after(session_statuses: Sequence[str]) -> RunStatus | None:
    """The run's terminal status once every session is terminal, else None."""
    if any(status not in TERMINAL_STATUSES for status in session_statuses):
        return None
    if all(status == "completed" for status in session_statuses):
        return "completed"
    if "failed" in session_statuses:
        return "failed"
    return "cancelled"


class _Recorder:
    """Turns one session's facts into events on its run's stream."""

    def __init__(self, manager: RunManager, spec: SessionSpec) -> None:
        self._manager = manager
        self._spec = spec
        self._in_flight: deque[asyncio.Future[list[StoredEvent]]] = deque()

    async def started(self, pid: int, process_start_ticks: int | None) -> None:
        spec = self._spec
        await self._manager.record_if_live(
            spec.run_id,
            spec.session_id,
            [SessionStarted(spec.run_id, spec.session_id, pid, process_start_ticks)],
            run_status="running",
        )

    async def output(self, stream: StreamName, text: str) -> None:
        """Queue the chunk without waiting for its commit (the log keeps queue order), so the
        pump goes on reading; wait only when too many chunks are in flight."""
        spec = self._spec
        event = OutputAppended(spec.run_id, spec.session_id, stream, text)
        try:
            self._in_flight.append(self._manager.append_nowait(spec.run_id, [event]))
        except StoreError:
            log.exception("session %s: output could not be queued", spec.session_id)
        while len(self._in_flight) > MAX_OUTPUT_IN_FLIGHT:
            await self._settle_one()

    async def settle(self) -> None:
        """Wait until every queued output chunk is written (or has failed, which is logged)."""
        while self._in_flight:
            await self._settle_one()

    async def _settle_one(self) -> None:
        try:
            await self._in_flight.popleft()
        except StoreError:
            log.exception("session %s: output could not be written", self._spec.session_id)

    async def question_asked(self, asked: QuestionsAsked) -> None:
        await self._manager.record_question(self._spec, asked)

    async def question_withdrawn(self, withdrawn: QuestionsWithdrawn) -> None:
        await self._manager.clear_question(self._spec, withdrawn.request_id, withdrawn.reason)

    async def phase(self, changed: PhaseChanged) -> None:
        await self._manager.change_phase(self._spec, changed.phase)

    async def usage(self, usage: Usage) -> None:
        spec = self._spec
        await self._manager.append(
            spec.run_id, [UsageRecorded(spec.run_id, spec.session_id, usage.data)]
        )

    async def identified(self, identified: Identified) -> None:
        spec = self._spec
        event = AgentSessionIdentified(spec.run_id, spec.session_id, identified.agent_session_id)
        await self._manager.append(spec.run_id, [event])


class RunManager:
    """Owns every live session process; the only place that decides run and session status."""

    def __init__(
        self,
        store: EventStore,
        state: State,
        task_group: anyio.abc.TaskGroup,
        settings: PumpSettings,
        cancel_grace: float,
        config: Config,
    ) -> None:
        self._config = config
        self._store = store
        self._state = state
        self._tg = task_group
        self._settings = settings
        self._grace = cancel_grace
        self._locks: dict[str, asyncio.Lock] = {}
        self._processes: dict[str, SessionProcess] = {}
        self._drivers: set[asyncio.Event] = set()
        self._starting: set[asyncio.Event] = set()
        self._accepting = True

    # ------------------------------------------------------------------ requests

    async def start_run(self, request: StartRun) -> RunStarted:
        """Record a new run with one session and start its process."""
        if not self._accepting:
            raise WireError("shutting_down", "orcad is shutting down; no new runs")
        starting = asyncio.Event()
        self._starting.add(starting)
        try:
            return await self._start_run(request)
        finally:
            starting.set()
            self._starting.discard(starting)

    async def _start_run(self, request: StartRun) -> RunStarted:
        cwd = _validate_cwd(request.cwd)
        agent = request.agent or "command"
        launch = await self._launch(request, cwd)
        command = launch.command
        run_id = new_run_id()
        session_id = f"{run_id}.1"
        default_title = f"{agent}: {request.prompt}" if request.agent else " ".join(command)
        title = (request.title or default_title)[:MAX_TITLE_CHARS]
        stored = await self._store.append(
            run_stream(run_id),
            [
                RunCreated(run_id, title=title, cwd=cwd),
                SessionCreated(
                    run_id,
                    session_id,
                    agent=agent,
                    command=command,
                    cwd=cwd,
                    prompt=request.prompt,
                ),
            ],
            expected_version=0,
        )
        spec = SessionSpec(run_id, session_id, command, cwd, request.prompt, launch.env)
        done = asyncio.Event()
        self._drivers.add(done)
        self._tg.start_soon(self._drive, spec, launch.translator, done)
        return RunStarted(run_id=run_id, session_id=session_id, position=stored[-1].position)

    async def _launch(self, request: StartRun, cwd: str) -> Launch:
        """What to run: the request's command, or its configured agent (binary found off-loop)."""
        if request.agent is None:
            if request.follow_up is not None:
                raise WireError("bad_request", "a follow-up continues an agent: give --agent")
            return command_launch(_validate_command(request.command))
        if request.command:
            raise WireError("bad_request", "give either a command or an agent, not both")
        if not request.prompt:
            raise WireError("bad_request", f"agent {request.agent!r} needs a prompt")
        try:
            settings = self._config.agent(request.agent, Path(cwd))
        except ConfigError as exc:
            raise WireError("bad_request", str(exc)) from None
        context = LaunchContext(
            cwd=cwd,
            search_path=request.search_path or os.environ.get("PATH", ""),
            codex_path=request.codex_path or os.environ.get("ORCA_CODEX_PATH"),
            claude_path=request.claude_path or os.environ.get("ORCA_CLAUDE_PATH"),
            resume=self._conversation_of(request.follow_up, request.agent),
        )
        try:
            return await anyio.to_thread.run_sync(plan_launch, settings, context)
        except BinaryNotFound as exc:
            raise WireError("bad_request", str(exc)) from None

    def _conversation_of(self, run_id: str | None, agent: str) -> str | None:
        """The agent's own conversation id from an earlier run, to continue it."""
        if run_id is None:
            return None
        run = self._state.runs.get(run_id)
        if run is None:
            raise WireError("not_found", f"no run with id {run_id!r} to follow up")
        for session_id in reversed(run.session_ids):
            session = self._state.sessions[session_id]
            if session.agent == agent and session.agent_session_id:
                return session.agent_session_id
        raise WireError("invalid_state", f"run {run_id} has no {agent} conversation to continue")

    async def cancel(self, run_id: str, reason: str | None) -> CancelResult:
        """End a run cancelled, durably, then stop its processes (SIGTERM, then SIGKILL)."""
        run = self._state.runs.get(run_id)
        if run is None:
            raise WireError("not_found", f"no run with id {run_id!r}")
        reason = reason or "cancelled by a client"
        async with self._lock(run_id):
            run = self._state.runs[run_id]
            if run.status in TERMINAL_STATUSES:
                return CancelResult(run_id=run_id, status=run.status, already_terminal=True)
            live = self._live_sessions(run_id)
            events: list[Event] = [
                SessionTerminated(run_id, s.session_id, "cancelled", reason) for s in live
            ]
            events.append(RunStatusChanged(run_id, "cancelled", reason))
            await self.append(run_id, events)
        for session in live:
            process = self._processes.get(session.session_id)
            if process is not None:
                self._tg.start_soon(process.cancel, reason, self._grace)
        return CancelResult(run_id=run_id, status="cancelled", already_terminal=False)

    async def answer(self, request: Answer) -> AnswerResult:
        """Record the answer to a pending question request, then hand it to the agent.

        Nothing reaches the agent unless the answer names exactly the pending ids; secret
        answers are delivered but never recorded.
        """
        run_id = request.run_id
        async with self._lock(run_id):
            run = self._state.runs[run_id]
            if run.status in TERMINAL_STATUSES:
                raise WireError(
                    "invalid_state", f"run {run_id} has ended ({run.status}); nothing to answer"
                )
            pending = self._pending_request(run_id, request.request_id)
            answers = resolve_answers(pending.questions, request.text, request.answers)
            process = self._processes.get(pending.session_id)
            reply = process.take_answer(pending.request_id, answers) if process else None
            if process is None or reply is None:
                raise WireError(
                    "invalid_state",
                    f"the agent no longer waits for request {pending.request_id}; nothing was sent",
                )
            kept, redacted = split_secrets(pending.questions, answers)
            events: list[Event] = [
                QuestionAnswered(
                    run_id,
                    pending.session_id,
                    pending.request_id,
                    answered_by=request.answered_by[:MAX_TITLE_CHARS],
                    answers=kept,
                    redacted_ids=redacted,
                )
            ]
            events.extend(self._resume_events(run_id, resolved_session=pending.session_id))
            await self.append(run_id, events)
            status = self._state.runs[run_id].status
        await process.deliver(reply)
        return AnswerResult(run_id, pending.session_id, pending.request_id, status)

    async def record_question(self, spec: SessionSpec, asked: QuestionsAsked) -> None:
        """The agent asked: record the request and put the run in `waiting_for_answer`."""
        event = QuestionAsked(spec.run_id, spec.session_id, asked.request_id, asked.questions)
        await self.record_if_live(spec.run_id, spec.session_id, [event], "waiting_for_answer")

    async def change_phase(self, spec: SessionSpec, phase: RunStatus) -> None:
        """The agent moved to another phase; a waiting or ended run keeps its status."""
        async with self._lock(spec.run_id):
            session = self._state.sessions.get(spec.session_id)
            run = self._state.runs[spec.run_id]
            if session is None or session.status in TERMINAL_STATUSES:
                return
            if run.status in TERMINAL_STATUSES or run.status in ("waiting_for_answer", phase):
                return
            await self.append(spec.run_id, [RunStatusChanged(spec.run_id, phase)])

    async def clear_question(self, spec: SessionSpec, request_id: str, reason: str) -> None:
        """The agent withdrew its question: clear it; the run resumes if nothing else waits."""
        async with self._lock(spec.run_id):
            session = self._state.sessions.get(spec.session_id)
            if (
                session is None
                or session.pending is None
                or session.pending.request_id != request_id
            ):
                return
            events: list[Event] = [
                QuestionCleared(spec.run_id, spec.session_id, request_id, reason)
            ]
            events.extend(self._resume_events(spec.run_id, resolved_session=spec.session_id))
            await self.append(spec.run_id, events)

    # ------------------------------------------------------------------ recording

    async def append(self, run_id: str, events: list[Event]) -> list[StoredEvent]:
        return await self._store.append(run_stream(run_id), events)

    def append_nowait(self, run_id: str, events: list[Event]) -> asyncio.Future[list[StoredEvent]]:
        return self._store.append_nowait(run_stream(run_id), events)

    async def record_if_live(
        self, run_id: str, session_id: str, events: list[Event], run_status: RunStatus | None
    ) -> None:
        """Append `events` unless the session is already terminal; then move the run along."""
        async with self._lock(run_id):
            session = self._state.sessions.get(session_id)
            if session is None or session.status in TERMINAL_STATUSES:
                return
            run = self._state.runs[run_id]
            if (
                run_status is not None
                and run.status != run_status
                and run.status not in TERMINAL_STATUSES
            ):
                events = [*events, RunStatusChanged(run_id, run_status)]
            await self.append(run_id, events)

    async def _finish_session(
        self,
        run_id: str,
        session_id: str,
        status: TerminalStatus,
        reason: str,
        exit_code: int | None = None,
        summary: str | None = None,
    ) -> None:
        """Record a session's end (unless it already ended) and, when it was the last, the run's."""
        async with self._lock(run_id):
            session = self._state.sessions.get(session_id)
            if session is None or session.status in TERMINAL_STATUSES:
                return
            events: list[Event] = [
                SessionTerminated(run_id, session_id, status, reason, exit_code, summary)
            ]
            run_status = run_status_after(
                [
                    status if s.session_id == session_id else s.status
                    for s in self._run_sessions(run_id)
                ]
            )
            if self._state.runs[run_id].status in TERMINAL_STATUSES:
                pass
            elif run_status is not None:
                events.append(RunStatusChanged(run_id, run_status, reason))
            else:
                events.extend(self._resume_events(run_id, resolved_session=session_id))
            await self.append(run_id, events)

    # ------------------------------------------------------------------ driving

    async def _drive(self, spec: SessionSpec, translator: Translator, done: asyncio.Event) -> None:
        recorder = _Recorder(self, spec)
        process = SessionProcess(spec, translator, recorder, self._settings)
        self._processes[spec.session_id] = process
        try:
            if not self._accepting:  # shutting down: the session ends stopped, never started
                await self._finish_session(spec.run_id, spec.session_id, "failed", STOPPED_REASON)
                return
            outcome = await process.run()
            await recorder.settle()
            status, reason = outcome_status(outcome)
            summary = outcome.result.summary if outcome.result is not None else None
            await self._finish_session(
                spec.run_id, spec.session_id, status, reason, outcome.exit_code, summary
            )
            await process.wait_stopped()
        except Exception:
            log.exception("session %s failed inside orcad", spec.session_id)
            process.stop(self._grace)
            try:
                await self._finish_session(
                    spec.run_id, spec.session_id, "failed", "internal error in orcad"
                )
            except Exception:
                log.exception("session %s: could not record its end", spec.session_id)
        finally:
            self._processes.pop(spec.session_id, None)
            done.set()
            self._drivers.discard(done)

    async def reconcile(self) -> None:
        """End sessions that the log shows in flight from an earlier daemon, and stop every
        process an earlier daemon left behind: by recorded pid (checked against its start
        time), and by the ORCA_SESSION_ID in its environment — which also finds agents whose pid
        never reached the log, and those of sessions recorded as ended just before a crash."""
        live = self._state.live_sessions()
        groups = {s.pid for s in live if s.pid is not None and _is_same_process(s)}
        found = processes_of_sessions(set(self._state.sessions))
        for session_id, pids in found.items():
            for pid in pids:
                with contextlib.suppress(OSError):
                    groups.add(os.getpgid(pid))
            log.warning("stopping orphaned processes %s of session %s", pids, session_id)
        groups.discard(os.getpgrp())
        async with anyio.create_task_group() as group:
            for pgid in groups:
                group.start_soon(stop_group, pgid, self._grace)
        for session in live:
            await self._finish_session(
                session.run_id, session.session_id, "failed", RESTARTED_REASON
            )

    async def shutdown(self) -> None:
        """Stop accepting runs; end every live session with a recorded reason; stop processes."""
        self._accepting = False
        for starting in list(self._starting):  # runs being created now end stopped too
            await starting.wait()
        for session in self._state.live_sessions():
            await self._finish_session(session.run_id, session.session_id, "failed", STOPPED_REASON)
        for process in list(self._processes.values()):
            process.stop(self._grace)
        for done in list(self._drivers):
            await done.wait()

    # ------------------------------------------------------------------ helpers

    def _pending_request(self, run_id: str, request_id: str | None) -> PendingQuestion:
        pending = [s.pending for s in self._live_sessions(run_id) if s.pending is not None]
        if request_id is not None:
            pending = [p for p in pending if p.request_id == request_id]
            if not pending:
                raise WireError(
                    "invalid_state",
                    f"run {run_id} has no pending question request {request_id!r} "
                    "(it was answered or cleared, or never existed)",
                )
        if not pending:
            raise WireError("invalid_state", f"run {run_id} is not waiting for an answer")
        if len(pending) > 1:
            ids = ", ".join(f"{p.request_id} ({p.session_id})" for p in pending)
            raise WireError(
                "bad_request",
                f"several sessions of run {run_id} are waiting: pick one with --request: {ids}",
            )
        return pending[0]

    def _resume_events(self, run_id: str, resolved_session: str) -> list[Event]:
        """A waiting run goes back to the phase it was in once no session waits any more."""
        run = self._state.runs[run_id]
        if run.status != "waiting_for_answer":
            return []
        still_waiting = [
            s
            for s in self._live_sessions(run_id)
            if s.pending is not None and s.session_id != resolved_session
        ]
        if still_waiting:
            return []
        return [RunStatusChanged(run_id, run.paused_status or "running")]

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    def _run_sessions(self, run_id: str) -> list[SessionInfo]:
        run = self._state.runs[run_id]
        return [self._state.sessions[sid] for sid in run.session_ids]

    def _live_sessions(self, run_id: str) -> list[SessionInfo]:
        return [s for s in self._run_sessions(run_id) if s.status not in TERMINAL_STATUSES]


def _is_same_process(session: SessionInfo) -> bool:
    """True when the pid still names the process the session started (not a reused pid)."""
    assert session.pid is not None
    current = process_start_ticks(session.pid)
    return current is not None and current == session.process_start_ticks


def _validate_command(command: list[str]) -> list[str]:
    if not command or not command[0]:
        raise WireError("bad_request", "command must name a program to run (or give an agent)")
    if any("\0" in part for part in command):
        raise WireError("bad_request", "command arguments must not contain NUL bytes")
    return list(command)


def _validate_cwd(text: str) -> str:
    cwd = Path(text)
    if not cwd.is_absolute():
        raise WireError("bad_request", f"cwd must be an absolute path, got {text!r}")
    if not cwd.is_dir():
        raise WireError("bad_request", f"cwd {text!r} is not a directory")
    if not os.access(cwd, os.X_OK):
        raise WireError("bad_request", f"cwd {text!r} is not accessible")
    return str(cwd)
