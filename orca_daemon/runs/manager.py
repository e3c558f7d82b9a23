"""Runs and their sessions: create, drive, cancel, reconcile after a restart, stop on shutdown.

Every status decision is made here, under the run's lock, from the projected state, and recorded
as events; terminal statuses are checked before anything is appended, so they never change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from orca_client.events import (
    AgentLookup,
    AgentSessionIdentified,
    Event,
    OrchestrationFinished,
    OutputAppended,
    QuestionAnswered,
    QuestionAsked,
    QuestionCleared,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionStarted,
    SessionTerminated,
    TaskStatusChanged,
    UsageRecorded,
    WorktreeCreated,
    run_stream,
)
from orca_client.wire import (
    TERMINAL_STATUSES,
    Answer,
    AnswerResult,
    CancelResult,
    PendingQuestion,
    RunInfo,
    RunStarted,
    RunStatus,
    SessionInfo,
    StartRun,
    TerminalStatus,
    WireError,
    WorktreeInfo,
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
from orca_daemon.log.records import AppendMode, LogUnavailable, StoredEvent, StoreError
from orca_daemon.log.store import EventStore
from orca_daemon.runs.questions import resolve_answers, split_secrets
from orca_daemon.sessions.process import (
    PumpSettings,
    SessionOutcome,
    SessionProcess,
    SessionSpec,
    StreamName,
)
from orca_daemon.sessions.procs import (
    process_start_ticks,
    process_table,
    processes_of_sessions,
    stop_group,
)
from orca_daemon.sessions.worktrees import WorktreeError, create_worktree
from orca_daemon.state.projection import State

if TYPE_CHECKING:
    from orca_daemon.orchestration.parents import RepoTarget

log = logging.getLogger(__name__)

RESTARTED_REASON = "orcad restarted while the session was running"
RESTARTABLE_ROLES = frozenset({"orchestrator", "task"})
REACT_RETRY_SECONDS = (1.0, 5.0, 30.0)
"""When carrying on a run's orchestration fails (the log could not be written, say): wait, and
try again; after the last, the next orcad carries on at start-up."""
"""Sessions orcad decided on by itself: started on restart when an earlier orcad recorded them
but died before starting them."""
STOPPED_REASON = "orcad stopped while the session was running"
MAX_TITLE_CHARS = 200
MAX_OUTPUT_IN_FLIGHT = 8
"""Output chunks a session may have queued for the log before its pump waits for them."""
STOP_RECORD_SECONDS = 10.0
"""On shutdown, how long orcad waits to record the stopped sessions' ends (the log may be full);
what is not recorded by then, the next orcad reconciles."""


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


@dataclass
class _QueuedOutput:
    """An output chunk on its way to the log, and the earlier loss its append reports."""

    future: asyncio.Future[list[StoredEvent]]
    stream: StreamName
    text: str
    reported: dict[StreamName, int]


class _Recorder:
    """Turns one session's facts into events on its run's stream.

    Output is dropped while the log cannot be written; what was lost (bytes per stream) is
    recorded as an `orca` output line as soon as the log can be written again (`report_loss`),
    and at the latest before the session's end."""

    def __init__(self, manager: RunManager, spec: SessionSpec) -> None:
        self._manager = manager
        self._spec = spec
        self._in_flight: deque[_QueuedOutput] = deque()
        self._lost: dict[StreamName, int] = {}
        self._lost_reason = ""
        self._settling = False

    async def started(self, pid: int, process_start_ticks: int | None) -> None:
        spec = self._spec
        run = self._manager.state.runs[spec.run_id]
        await self._manager.record_if_live(
            spec.run_id,
            spec.session_id,
            [SessionStarted(spec.run_id, spec.session_id, pid, process_start_ticks)],
            # The first session moves a queued run on; a later one (a plan task, a worker or an
            # orchestrator that starts late) leaves a waiting or reviewing run as it is.
            run_status="running" if run.status == "queued" else None,
        )

    async def output(self, stream: StreamName, text: str) -> None:
        """Queue the chunk without waiting for its commit (the log keeps queue order), so the
        pump goes on reading; wait only when too many chunks are in flight."""
        spec = self._spec
        events: list[Event] = []
        reported: dict[StreamName, int] = {}
        if self._lost and self._manager.store.unwritable() is None:
            reported, self._lost = self._lost, {}
            events.append(self._loss_note(reported))
        events.append(OutputAppended(spec.run_id, spec.session_id, stream, text))
        try:
            future = self._manager.append_nowait(spec.run_id, events, mode="drop")
        except LogUnavailable as exc:
            self._count_lost(stream, text, reported, exc)
        except StoreError:
            log.exception("session %s: output could not be queued", spec.session_id)
        else:
            self._in_flight.append(_QueuedOutput(future, stream, text, reported))
        while len(self._in_flight) > MAX_OUTPUT_IN_FLIGHT:
            await self._settle_one()

    async def settle(self) -> None:
        """Wait until every queued output chunk is written or dropped; then record what was
        dropped (this waits for the log, so it comes before the session's end)."""
        self._settling = True
        while self._in_flight:
            await self._settle_one()
        if self._lost:
            lost, self._lost = self._lost, {}
            await self._manager.append(self._spec.run_id, [self._loss_note(lost)])

    def report_loss(self) -> None:
        """The log can be written again: queue the note of what was dropped now (an idle
        session may print nothing more for a long time)."""
        if self._settling:
            return  # `settle` records it
        for queued in [q for q in self._in_flight if q.future.done()]:
            self._in_flight.remove(queued)
            self._account(queued)
        if not self._lost:
            return
        reported, self._lost = self._lost, {}
        try:
            future = self._manager.append_nowait(
                self._spec.run_id, [self._loss_note(reported)], mode="drop"
            )
        except LogUnavailable as exc:  # full again already
            self._count_lost("orca", "", reported, exc)
        else:
            self._in_flight.append(_QueuedOutput(future, "orca", "", reported))

    async def _settle_one(self) -> None:
        queued = self._in_flight.popleft()
        await asyncio.wait([queued.future])
        self._account(queued)

    def _account(self, queued: _QueuedOutput) -> None:
        """A chunk whose append has ended: if it was dropped, it is still to report."""
        error = None if queued.future.cancelled() else queued.future.exception()
        if isinstance(error, LogUnavailable):
            self._count_lost(queued.stream, queued.text, queued.reported, error)
        elif error is not None:
            log.error(
                "session %s: output could not be written", self._spec.session_id, exc_info=error
            )

    def _count_lost(
        self, stream: StreamName, text: str, reported: dict[StreamName, int], exc: LogUnavailable
    ) -> None:
        """A dropped append: its chunk, and the loss it was to report, are still to report."""
        for name, size in [*reported.items(), (stream, len(text.encode()))]:
            if size:
                self._lost[name] = self._lost.get(name, 0) + size
        self._lost_reason = exc.reason

    def _loss_note(self, lost: dict[StreamName, int]) -> OutputAppended:
        spec = self._spec
        amounts = " and ".join(f"{size} bytes of {name}" for name, size in lost.items())
        text = (
            f"orcad: {amounts} were not recorded because the log could not be "
            f"written ({self._lost_reason})\n"
        )
        return OutputAppended(spec.run_id, spec.session_id, "orca", text)

    async def question_asked(self, asked: QuestionsAsked) -> None:
        await self._manager.record_question(self._spec, asked)

    async def question_withdrawn(self, withdrawn: QuestionsWithdrawn) -> None:
        await self._manager.clear_question(self._spec, withdrawn.request_id, withdrawn.reason)

    async def phase(self, changed: PhaseChanged) -> None:
        await self._manager.change_phase(self._spec, changed.phase)

    async def usage(self, usage: Usage) -> None:
        spec = self._spec
        await self._manager.append(
            spec.run_id,
            [
                UsageRecorded(
                    spec.run_id,
                    spec.session_id,
                    usage.data,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cost_usd,
                )
            ],
        )

    async def identified(self, identified: Identified) -> None:
        spec = self._spec
        event = AgentSessionIdentified(spec.run_id, spec.session_id, identified.agent_session_id)
        await self._manager.append(spec.run_id, [event])


ClientContext = AgentLookup
"""Where the requesting client finds agent CLIs (its PATH and binary overrides)."""


@dataclass
class NewSession:
    """A session about to be recorded: `created(run_id)` is its `SessionCreated`."""

    session_id: str
    agent: str
    command: list[str]
    cwd: str
    prompt: str | None
    role: str = "worker"
    debug_run_id: str | None = None
    task_id: str | None = None
    attempt: int = 1
    worktree: bool = False

    def created(self, run_id: str) -> SessionCreated:
        return SessionCreated(
            run_id,
            self.session_id,
            agent=self.agent,
            command=self.command,
            cwd=self.cwd,
            role=self.role,
            prompt=self.prompt,
            debug_run_id=self.debug_run_id,
            task_id=self.task_id,
            attempt=self.attempt,
            worktree=self.worktree,
        )


@dataclass(frozen=True)
class SessionEnding:
    """A session's end, about to be recorded."""

    session_id: str
    status: TerminalStatus
    reason: str
    exit_code: int | None = None
    summary: str | None = None


@dataclass
class Prepared:
    """A launch worked out before the session is recorded, or why there is none."""

    launch: Launch | None
    error: str | None = None
    command: list[str] = field(default_factory=list)


class RunManager:
    """Owns every live session process; the only place that decides run and session status.

    Fan-outs, parent runs and plans are driven by their coordinators (`fanout`, `parents`,
    `plans`), which this manager calls after each change and which use its primitives.
    """

    def __init__(
        self,
        store: EventStore,
        state: State,
        task_group: anyio.abc.TaskGroup,
        settings: PumpSettings,
        cancel_grace: float,
        config: Config,
        runs_dir: Path | None = None,
    ) -> None:
        from orca_daemon.orchestration.fanout import FanOutCoordinator
        from orca_daemon.orchestration.parents import ParentCoordinator
        from orca_daemon.orchestration.plans import PlanCoordinator

        self.config = config
        self.store = store
        self.state = state
        self._tg = task_group
        self._settings = settings
        self._grace = cancel_grace
        self.runs_dir = runs_dir or Path(os.environ.get("TMPDIR", "/tmp")) / "orca-runs"
        """Each run's folder (`RUNS_DIR/RUN_ID`): a fan-out's synthesis, worktrees."""
        self._locks: dict[str, asyncio.Lock] = {}
        self._processes: dict[str, SessionProcess] = {}
        self._drivers: set[asyncio.Event] = set()
        self._done: dict[str, asyncio.Event] = {}
        """Set when a session's driver has finished (its process exited, its output written)."""
        self._starting: set[asyncio.Event] = set()
        self._recorders: set[_Recorder] = set()
        self._stopped_by_orcad: set[str] = set()
        """Sessions whose process orcad's shutdown signalled: they end as stopped by orcad,
        whatever their agent did on the signal."""
        self._clients: dict[str, ClientContext] = {}
        self._react_failures: dict[str, int] = {}
        self.heartbeats: dict[str, float] = {}
        """When each live session's process was last seen alive."""
        self.accepting = True
        self.fanout = FanOutCoordinator(self)
        self.parents = ParentCoordinator(self)
        self.plans = PlanCoordinator(self)
        store.add_writable_listener(self._log_writable_again)

    def _log_writable_again(self) -> None:
        for recorder in list(self._recorders):
            recorder.report_loss()

    # ------------------------------------------------------------------ requests

    async def start_run(self, request: StartRun) -> RunStarted:
        """Record a new run with one session and start its process (or, for several
        repositories, a parent run with one child run per repository)."""
        async with self.starting():
            targets = self.parents.resolve_targets(request)
            if targets is not None and len(targets) > 1:
                return await self.parents.start(request, targets)
            return await self._start_run(request, targets[0] if targets else None)

    @contextlib.asynccontextmanager
    async def starting(self) -> AsyncIterator[None]:
        """Held while a request creates a run, so that shutdown waits for it to be recorded."""
        if not self.accepting:
            raise WireError("shutting_down", "orcad is shutting down; no new runs")
        starting = asyncio.Event()
        self._starting.add(starting)
        try:
            yield
        finally:
            starting.set()
            self._starting.discard(starting)

    async def _start_run(self, request: StartRun, target: RepoTarget | None) -> RunStarted:
        cwd = _validate_cwd(target.path if target is not None else request.cwd)
        agent = request.agent or "command"
        client = client_context(request)
        resume = self._conversation_of(request.follow_up, agent) if request.agent else None
        if request.agent is None and request.follow_up is not None:
            raise WireError("bad_request", "a follow-up continues an agent: give --agent")
        launch = await self.prepare_launch(
            request.agent, request.command, request.prompt, cwd, client, resume
        )
        run_id = new_run_id()
        default_title = f"{agent}: {request.prompt}" if request.agent else " ".join(launch.command)
        title = (request.title or default_title)[:MAX_TITLE_CHARS]
        new = NewSession(
            f"{run_id}.1",
            agent,
            launch.command,
            cwd,
            request.prompt,
            worktree=self.wants_worktree(request.agent, request.worktree),
        )
        created = RunCreated(
            run_id,
            title=title,
            cwd=cwd,
            prompt=request.prompt,
            repo=target.repo if target is not None else None,
        )
        stored = await self.store.append(
            run_stream(run_id), [created, new.created(run_id)], expected_version=0, mode="refuse"
        )
        self._clients[run_id] = client
        self.begin_session(run_id, new.session_id, Prepared(launch))
        return RunStarted(run_id=run_id, session_id=new.session_id, position=stored[-1].position)

    async def prepare_launch(
        self,
        agent: str | None,
        command: Sequence[str],
        prompt: str | None,
        cwd: str,
        client: ClientContext,
        resume: str | None = None,
    ) -> Launch:
        """What to run: `command` (a command agent), or the configured `agent` (its binary is
        found off the event loop). Raises `WireError` with what is wrong."""
        if agent is None or (agent == "command" and command):
            return command_launch(_validate_command(list(command)))
        if command:
            raise WireError("bad_request", "give either a command or an agent, not both")
        if not prompt:
            raise WireError("bad_request", f"agent {agent!r} needs a prompt")
        try:
            settings = self.config.agent(agent, Path(cwd))
        except ConfigError as exc:
            raise WireError("bad_request", str(exc)) from None
        context = LaunchContext(
            cwd=cwd,
            search_path=client.search_path or os.environ.get("PATH", ""),
            codex_path=client.codex_path or os.environ.get("ORCA_CODEX_PATH"),
            claude_path=client.claude_path or os.environ.get("ORCA_CLAUDE_PATH"),
            resume=resume,
        )
        try:
            return await anyio.to_thread.run_sync(plan_launch, settings, context)
        except BinaryNotFound as exc:
            raise WireError("bad_request", str(exc)) from None

    async def prepare(
        self, run_id: str, agent: str, prompt: str | None, cwd: str, command: Sequence[str] = ()
    ) -> Prepared:
        """A launch for a session decided by orcad itself (an orchestrator, a plan task): a
        failure is kept to be recorded as the session's end, not raised."""
        client = self.client_of(run_id)
        try:
            launch = await self.prepare_launch(
                None if agent == "command" else agent, command, prompt, cwd, client
            )
        except WireError as exc:
            return Prepared(None, exc.message, list(command))
        return Prepared(launch, None, launch.command)

    def remember_client(self, run_id: str, client: ClientContext) -> None:
        self._clients[run_id] = client

    @property
    def cancel_grace(self) -> float:
        """Seconds between SIGTERM and SIGKILL when a session is stopped."""
        return self._grace

    def client_of(self, run_id: str) -> ClientContext:
        """The client lookup a run was started with (a child run: its parent's), from memory
        or, after a restart, from the run's `RunCreated`."""
        known = self._clients.get(run_id)
        if known is not None:
            return known
        created = self.state.created.get(run_id)
        if created is not None and created.agent_lookup is not None:
            return created.agent_lookup
        parent = self.state.runs[run_id].parent_run_id if run_id in self.state.runs else None
        return self.client_of(parent) if parent is not None else ClientContext()

    def spawn(self, func: Callable[..., Awaitable[None]], *args: object) -> None:
        """Run `func(*args)` in the daemon's task group; an error is logged, not raised."""

        async def guarded() -> None:
            try:
                await func(*args)
            except Exception:
                log.exception("background work %s failed", getattr(func, "__name__", func))

        self._tg.start_soon(guarded)

    def process_of(self, session_id: str) -> SessionProcess | None:
        return self._processes.get(session_id)

    def wants_worktree(self, agent: str | None, requested: bool | None) -> bool:
        """A request's explicit choice, else the agent's `worktree` setting, else no."""
        if requested is not None:
            return requested
        if agent is None:
            return False
        configured = self.config.global_agent(agent)
        return bool(configured is not None and configured.worktree)

    def begin_session(self, run_id: str, session_id: str, prepared: Prepared) -> None:
        """Start a recorded session's process (or record why it cannot start)."""
        run = self.state.runs[run_id]
        session = self.state.sessions[session_id]
        if prepared.launch is None:
            reason = f"could not start: {prepared.error}"
            self._tg.start_soon(self._finish_quietly, run_id, session_id, reason)
            return
        spec = SessionSpec(
            run_id,
            session_id,
            prepared.launch.command,
            session.cwd,
            self.state.prompts.get(session.session_id),
            {**prepared.launch.env, **session_env(run, session)},
        )
        done = asyncio.Event()
        self._drivers.add(done)
        self._done[session_id] = done
        self._tg.start_soon(self._drive, spec, prepared.launch.translator, done)

    async def _finish_quietly(self, run_id: str, session_id: str, reason: str) -> None:
        try:
            await self.finish_session(run_id, session_id, "failed", reason)
        except StoreError:
            log.exception("session %s: could not record its end", session_id)

    def _conversation_of(self, run_id: str | None, agent: str) -> str | None:
        """The agent's own conversation id from an earlier run, to continue it."""
        if run_id is None:
            return None
        run = self.state.runs.get(run_id)
        if run is None:
            raise WireError("not_found", f"no run with id {run_id!r} to follow up")
        for session_id in reversed(run.session_ids):
            session = self.state.sessions[session_id]
            if session.agent == agent and session.agent_session_id:
                return session.agent_session_id
        raise WireError("invalid_state", f"run {run_id} has no {agent} conversation to continue")

    async def cancel(
        self, run_id: str, reason: str | None, session_id: str | None = None
    ) -> CancelResult:
        """End a run cancelled, durably, then stop its processes (SIGTERM, then SIGKILL). A
        parent's live children are cancelled first. With `session_id`, only that session."""
        run = self.state.runs.get(run_id)
        if run is None:
            raise WireError("not_found", f"no run with id {run_id!r}")
        reason = reason or "cancelled by a client"
        if session_id is not None:
            return await self._cancel_session(run, session_id, reason)
        async with self.lock(run_id):
            run = self.state.runs[run_id]
            if run.status in TERMINAL_STATUSES:
                return CancelResult(run_id=run_id, status=run.status, already_terminal=True)
            live = self._live_sessions(run_id)
            events: list[Event] = [
                SessionTerminated(run_id, s.session_id, "cancelled", reason) for s in live
            ]
            events.extend(
                TaskStatusChanged(run_id, task.task_id, "cancelled", reason)
                for task in run.tasks
                if task.status in ("pending", "in_progress")
            )
            events.append(RunStatusChanged(run_id, "cancelled", reason))
            await self.append(run_id, events)
        self._stop_processes([s.session_id for s in live], reason)
        for child_id in self.state.runs[run_id].child_run_ids:  # the parent ended first: no
            await self.cancel(child_id, f"its parent run was cancelled: {reason}")  # new child
        self.after_change(run_id)
        return CancelResult(run_id=run_id, status="cancelled", already_terminal=False)

    async def _cancel_session(self, run: RunInfo, session_id: str, reason: str) -> CancelResult:
        session = self.state.sessions.get(session_id)
        if session is None or session.run_id != run.run_id:
            valid = ", ".join(run.session_ids) or "none"
            raise WireError(
                "not_found",
                f"run {run.run_id} has no session {session_id!r}; its sessions: {valid}",
            )
        ended = await self.cancel_sessions(run.run_id, [session_id], reason)
        status = self.state.runs[run.run_id].status
        return CancelResult(run_id=run.run_id, status=status, already_terminal=not ended)

    async def cancel_sessions(self, run_id: str, session_ids: list[str], reason: str) -> list[str]:
        """Cancel these sessions of a run (the live ones); returns those it ended."""
        ended = []
        for session_id in session_ids:
            if await self.finish_session(run_id, session_id, "cancelled", reason):
                ended.append(session_id)
        self._stop_processes(ended, reason)
        return ended

    def _stop_processes(self, session_ids: list[str], reason: str) -> None:
        for session_id in session_ids:
            process = self._processes.get(session_id)
            if process is not None:
                self._tg.start_soon(process.cancel, reason, self._grace)

    async def answer(self, request: Answer) -> AnswerResult:
        """Record the answer to a pending question request, then hand it to the agent.

        Nothing reaches the agent unless the answer names exactly the pending ids; secret
        answers are delivered but never recorded. The reply lines are queued for the agent's
        stdin, never waited for: `delivered` says whether they are in its pipe yet.
        """
        run_id = request.run_id
        async with self.lock(run_id):
            run = self.state.runs[run_id]
            if run.status in TERMINAL_STATUSES:
                raise WireError(
                    "invalid_state", f"run {run_id} has ended ({run.status}); nothing to answer"
                )
            pending = self._pending_request(run_id, request.request_id)
            answers = resolve_answers(pending.questions, request.text, request.answers)
            process = self._processes.get(pending.session_id)
            if process is not None and not process.accepts_input():
                raise WireError(
                    "invalid_state",
                    f"the agent has not read what orcad already sent it; nothing was recorded: "
                    f"answer {pending.request_id} again once it reads its input",
                )
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
            status = self.state.runs[run_id].status
        delivered = await process.deliver(reply)
        return AnswerResult(run_id, pending.session_id, pending.request_id, status, delivered)

    async def record_question(self, spec: SessionSpec, asked: QuestionsAsked) -> None:
        """The agent asked: record the request and put the run in `waiting_for_answer`."""
        event = QuestionAsked(spec.run_id, spec.session_id, asked.request_id, asked.questions)
        await self.record_if_live(spec.run_id, spec.session_id, [event], "waiting_for_answer")

    async def change_phase(self, spec: SessionSpec, phase: RunStatus) -> None:
        """The agent moved to another phase; a waiting or ended run keeps its status."""
        async with self.lock(spec.run_id):
            session = self.state.sessions.get(spec.session_id)
            run = self.state.runs[spec.run_id]
            if session is None or session.status in TERMINAL_STATUSES:
                return
            if run.status in TERMINAL_STATUSES or run.status in ("waiting_for_answer", phase):
                return
            await self.append(spec.run_id, [RunStatusChanged(spec.run_id, phase)])

    async def clear_question(self, spec: SessionSpec, request_id: str, reason: str) -> None:
        """The agent withdrew its question: clear it; the run resumes if nothing else waits."""
        async with self.lock(spec.run_id):
            session = self.state.sessions.get(spec.session_id)
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

    async def append(
        self,
        run_id: str,
        events: list[Event],
        expected_version: int | None = None,
        mode: AppendMode = "wait",
    ) -> list[StoredEvent]:
        return await self.store.append(run_stream(run_id), events, expected_version, mode)

    def append_nowait(
        self, run_id: str, events: list[Event], mode: AppendMode = "wait"
    ) -> asyncio.Future[list[StoredEvent]]:
        return self.store.append_nowait(run_stream(run_id), events, mode)

    async def record_if_live(
        self, run_id: str, session_id: str, events: list[Event], run_status: RunStatus | None
    ) -> None:
        """Append `events` unless the session is already terminal; then move the run along."""
        async with self.lock(run_id):
            session = self.state.sessions.get(session_id)
            if session is None or session.status in TERMINAL_STATUSES:
                return
            run = self.state.runs[run_id]
            if (
                run_status is not None
                and run.status != run_status
                and run.status not in TERMINAL_STATUSES
            ):
                events = [*events, RunStatusChanged(run_id, run_status)]
            await self.append(run_id, events)

    async def finish_session(
        self,
        run_id: str,
        session_id: str,
        status: TerminalStatus,
        reason: str,
        exit_code: int | None = None,
        summary: str | None = None,
    ) -> bool:
        """Record a session's end (unless it already ended) and what follows for its run;
        False when it had already ended."""
        async with self.lock(run_id):
            session = self.state.sessions.get(session_id)
            if session is None or session.status in TERMINAL_STATUSES:
                return False
            ending = SessionEnding(session_id, status, reason, exit_code, summary)
            await self.append(run_id, self._ending_events(run_id, [ending]))
        self.heartbeats.pop(session_id, None)
        self.after_change(run_id)
        return True

    def _ending_events(self, run_id: str, endings: Sequence[SessionEnding]) -> list[Event]:
        """The events for these sessions' ends (in order) and what they mean for their run. A
        single run ends with its last session; a fan-out ends with its orchestrator; a waiting
        run resumes when no session waits any more; a plan's coordinator decides after the fact."""
        run = self.state.runs[run_id]
        statuses = {s.session_id: s.status for s in self._run_sessions(run_id)}
        run_ended = run.status in TERMINAL_STATUSES
        events: list[Event] = []
        for end in endings:
            events.append(
                SessionTerminated(
                    run_id, end.session_id, end.status, end.reason, end.exit_code, end.summary
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
                for s in self._run_sessions(run_id)
                if s.pending is not None and statuses[s.session_id] not in TERMINAL_STATUSES
            ]
            if not still_waiting:
                events.append(RunStatusChanged(run_id, run.paused_status or "running"))
        return events

    def after_change(self, run_id: str) -> None:
        """Let the coordinators react to a run's change (in the background, each decision
        made again from the log under the run's lock, so reacting twice is harmless)."""
        if self.accepting:
            self._tg.start_soon(self._react, run_id)

    async def _react(self, run_id: str) -> None:
        try:
            run = self.state.runs[run_id]
            if run.kind == "fanout" and run.status not in TERMINAL_STATUSES:
                await self.fanout.trigger_when_ready(run_id)
            elif run.kind == "plan" and run.status not in TERMINAL_STATUSES:
                await self.plans.advance(run_id)
            elif run.kind == "parent" and run.status not in TERMINAL_STATUSES:
                await self.parents.advance(run_id)
            run = self.state.runs[run_id]
            if run.status in TERMINAL_STATUSES:
                self._clients.pop(run_id, None)
                if run.parent_run_id is not None:
                    await self.parents.advance(run.parent_run_id)
        except Exception:
            tries = self._react_failures[run_id] = self._react_failures.get(run_id, 0) + 1
            if tries > len(REACT_RETRY_SECONDS):
                self._react_failures.pop(run_id, None)  # a later change tries afresh
                log.exception(
                    "run %s: could not carry on its orchestration; retried on restart", run_id
                )
                return
            delay = REACT_RETRY_SECONDS[tries - 1]
            log.exception(
                "run %s: could not carry on its orchestration; again in %gs", run_id, delay
            )
            await anyio.sleep(delay)
            self.after_change(run_id)
        else:
            self._react_failures.pop(run_id, None)

    # ------------------------------------------------------------------ driving

    async def _drive(self, spec: SessionSpec, translator: Translator, done: asyncio.Event) -> None:
        recorder = _Recorder(self, spec)
        process: SessionProcess | None = None
        try:
            if not self.accepting:  # shutting down: the session never starts
                await self._not_started(spec)
                return
            placed = await self._in_worktree(spec)
            if placed is None:
                return
            spec = placed
            # Nothing awaits from here until the process is registered, so a cancel or a stop
            # that came while the worktree was made is seen now, and a later one finds it.
            if self.state.sessions[spec.session_id].status in TERMINAL_STATUSES:
                return
            if not self.accepting:
                await self._not_started(spec)
                return
            recorder = _Recorder(self, spec)
            self._recorders.add(recorder)
            process = SessionProcess(spec, translator, recorder, self._settings)
            self._processes[spec.session_id] = process
            outcome = await process.run()
            await recorder.settle()
            if not self.accepting and self.restartable(self.state.sessions[spec.session_id]):
                await process.wait_stopped()  # the stop came before its start was recorded:
                return  # the next orcad starts it
            status, reason = outcome_status(outcome)
            if spec.session_id in self._stopped_by_orcad:  # not what its agent did on SIGTERM
                status, reason = "failed", STOPPED_REASON
            summary = outcome.result.summary if outcome.result is not None else None
            await self.finish_session(
                spec.run_id, spec.session_id, status, reason, outcome.exit_code, summary
            )
            await process.wait_stopped()
        except Exception:
            log.exception("session %s failed inside orcad", spec.session_id)
            if process is not None:
                process.stop(self._grace)
            try:
                await self.finish_session(
                    spec.run_id, spec.session_id, "failed", "internal error in orcad"
                )
            except Exception:
                log.exception("session %s: could not record its end", spec.session_id)
        finally:
            self._recorders.discard(recorder)
            self._stopped_by_orcad.discard(spec.session_id)
            self._processes.pop(spec.session_id, None)
            self.heartbeats.pop(spec.session_id, None)
            done.set()
            self._drivers.discard(done)
            self._done.pop(spec.session_id, None)

    async def _not_started(self, spec: SessionSpec) -> None:
        """orcad stops before the session's process started: one that orcad decided on itself
        is left recorded, for the next orcad to start; any other ends failed."""
        session = self.state.sessions[spec.session_id]
        if not self.restartable(session):
            await self.finish_session(spec.run_id, spec.session_id, "failed", STOPPED_REASON)

    def restartable(self, session: SessionInfo) -> bool:
        """A session that never started and that orcad itself decided on (an orchestrator, a
        plan task, a child run's): the next orcad starts it rather than failing it."""
        if session.status != "created":
            return False
        run = self.state.runs[session.run_id]
        if run.parent_run_id is not None:  # a child run's, unless its parent has ended
            return self.state.runs[run.parent_run_id].status not in TERMINAL_STATUSES
        return session.role in RESTARTABLE_ROLES

    def _parent_ended(self, session: SessionInfo) -> bool:
        parent = self.state.runs[session.run_id].parent_run_id
        return parent is not None and self.state.runs[parent].status in TERMINAL_STATUSES

    async def wait_stopped(self, session_ids: Sequence[str], limit: float) -> None:
        """Wait (up to `limit` seconds) until these sessions' processes have exited and all
        their output is in the log."""
        with anyio.move_on_after(limit):
            for session_id in session_ids:
                done = self._done.get(session_id)
                if done is not None:
                    await done.wait()

    async def _in_worktree(self, spec: SessionSpec) -> SessionSpec | None:
        """The spec to run: in its own git worktree when the session asks for one (created and
        recorded first); None when that failed (the session is ended failed)."""
        session = self.state.sessions[spec.session_id]
        if not session.in_worktree:
            return spec
        if session.worktree is not None:  # created before a restart
            return dataclasses.replace(spec, cwd=_inside(session.worktree, spec.cwd))
        root = self.runs_dir
        try:
            bases = self.plans.worktree_bases(session)  # a plan task builds on its dependencies
            tree = await anyio.to_thread.run_sync(
                create_worktree, spec.cwd, root, spec.run_id, spec.session_id, bases
            )
        except (WorktreeError, OSError) as exc:
            await self.finish_session(
                spec.run_id, spec.session_id, "failed", f"could not create its worktree: {exc}"
            )
            return None
        event = WorktreeCreated(spec.run_id, spec.session_id, tree.repo, tree.path, tree.branch)
        await self.append(spec.run_id, [event])  # even if the session ended: `clean` needs it
        return dataclasses.replace(spec, cwd=tree.cwd)

    async def reconcile(self) -> None:
        """End sessions that the log shows in flight from an earlier daemon, and stop every
        process an earlier daemon left behind: by recorded pid (checked against its start
        time), and by the ORCA_SESSION_ID in its environment — which also finds agents whose pid
        never reached the log, and those of sessions recorded as ended just before a crash.

        A session orcad itself decided on (an orchestrator, a plan task) that never started is
        started now. Then every live fan-out, plan and parent run carries on from its log."""
        live = self.state.live_sessions()
        groups = {s.pid for s in live if s.pid is not None and _is_same_process(s)}
        found = processes_of_sessions(set(self.state.sessions))
        for session_id, pids in found.items():
            for pid in pids:
                with contextlib.suppress(OSError):
                    groups.add(os.getpgid(pid))
            log.warning("stopping orphaned processes %s of session %s", pids, session_id)
        groups.discard(os.getpgrp())
        async with anyio.create_task_group() as group:
            for pgid in groups:
                group.start_soon(stop_group, pgid, self._grace)
        unstarted = [s for s in live if self.restartable(s) and s.session_id not in found]
        for session in live:
            if session in unstarted and self.plans.superseded(session):
                await self.finish_session(
                    session.run_id, session.session_id, "cancelled", "replaced by a retry"
                )
            elif session not in unstarted and self._parent_ended(session):
                await self.finish_session(
                    session.run_id, session.session_id, "cancelled", "its parent run has ended"
                )
            elif session not in unstarted:
                await self.finish_session(
                    session.run_id, session.session_id, "failed", RESTARTED_REASON
                )
        unstarted = [s for s in unstarted if not self.plans.superseded(s)]
        for session in unstarted:
            log.info("starting session %s, which an earlier orcad recorded", session.session_id)
            recorded = session.command if session.agent == "command" else ()
            prepared = await self.prepare(
                session.run_id,
                session.agent,
                self.state.prompts.get(session.session_id),
                session.cwd,
                recorded,
            )
            self.begin_session(session.run_id, session.session_id, prepared)
        for run in list(self.state.runs.values()):
            if run.status not in TERMINAL_STATUSES and run.kind != "single":
                self.after_change(run.run_id)  # in the background: start-up does not wait
        self._check_worktrees()

    def _check_worktrees(self) -> None:
        """Say which recorded worktrees (not removed with `orca clean`) no longer exist."""
        for session in self.state.sessions.values():
            tree = session.worktree
            if tree is not None and not tree.removed and not os.path.isdir(tree.path):
                log.warning(
                    "worktree %s of session %s (branch %s) no longer exists",
                    tree.path,
                    session.session_id,
                    tree.branch,
                )

    async def heartbeat(self) -> None:
        """Every `orchestration.heartbeat_seconds` (as configured now: a reload changes it),
        note which live sessions' processes are still alive, and what they have started (it is
        stopped with them)."""
        while True:
            now = time.time()
            processes = list(self._processes.items())
            table = await anyio.to_thread.run_sync(process_table) if processes else {}
            for session_id, process in processes:
                if process.alive():
                    self.heartbeats[session_id] = now
                    process.note_descendants(table)
            await anyio.sleep(self.config.orchestration.heartbeat_seconds)

    async def shutdown(self) -> None:
        """Stop accepting runs; signal every session's processes at once; record every live
        session's end in one transaction; wait for the sessions' tasks."""
        self.accepting = False  # from now on no session's process starts
        processes = list(self._processes.items())
        for session_id, process in processes:
            if process.pid is None or process.alive():  # (not one that had ended by itself)
                self._stopped_by_orcad.add(session_id)
            process.stop(self._grace)
        log.info("stopping: signalled the processes of %d sessions", len(processes))
        with anyio.move_on_after(STOP_RECORD_SECONDS) as waited:
            for starting in list(self._starting):  # runs being created now end stopped too
                await starting.wait()
            await self._record_stopped()
        if waited.cancelled_caught:
            log.error(
                "could not record the stopped sessions' ends within %gs; the next orcad will",
                STOP_RECORD_SECONDS,
            )
        with anyio.move_on_after(self._grace + STOP_RECORD_SECONDS) as waited:
            for done in list(self._drivers):
                await done.wait()
        if waited.cancelled_caught:
            log.error("sessions still recording after their processes were stopped: cancelled")

    async def _record_stopped(self) -> None:
        """End every live session (but those the next orcad starts) `failed`, in one append:
        under every such run's lock (taken in order), so nothing else ends them meanwhile."""
        run_ids = sorted({s.run_id for s in self.state.live_sessions() if not self.restartable(s)})
        async with contextlib.AsyncExitStack() as locks:
            for run_id in run_ids:
                await locks.enter_async_context(self.lock(run_id))
            appends: list[tuple[str, Sequence[Event]]] = []
            for run_id in run_ids:
                endings = [
                    SessionEnding(s.session_id, "failed", STOPPED_REASON)
                    for s in self._live_sessions(run_id)
                    if not self.restartable(s)
                ]
                if endings:
                    appends.append((run_stream(run_id), self._ending_events(run_id, endings)))
            if appends:
                await self.store.append_together(appends)
                ended = sum(
                    isinstance(e, SessionTerminated) for _, events in appends for e in events
                )
                log.info("stopping: recorded the end of %d sessions in one transaction", ended)

    # ------------------------------------------------------------------ helpers

    def _pending_request(self, run_id: str, request_id: str | None) -> PendingQuestion:
        pending = [s.pending for s in self._live_sessions(run_id) if s.pending is not None]
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
                for child in self.state.runs[run_id].child_run_ids
                if self.state.runs[child].status == "waiting_for_answer"
            ]
            hint = f"; its child run {waiting[0]} is: orca answer {waiting[0]}" if waiting else ""
            raise WireError("invalid_state", f"run {run_id} is not waiting for an answer{hint}")
        if len(pending) > 1:
            ids = ", ".join(f"{p.request_id} (session {p.session_id})" for p in pending)
            raise WireError(
                "bad_request",
                f"several sessions of run {run_id} are waiting: pick one by its request id "
                f"with --request: {ids}",
            )
        return pending[0]

    def _resume_events(self, run_id: str, resolved_session: str) -> list[Event]:
        """A waiting run goes back to the phase it was in once no session waits any more."""
        run = self.state.runs[run_id]
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

    def lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    def _run_sessions(self, run_id: str) -> list[SessionInfo]:
        run = self.state.runs[run_id]
        return [self.state.sessions[sid] for sid in run.session_ids]

    def _live_sessions(self, run_id: str) -> list[SessionInfo]:
        return [s for s in self._run_sessions(run_id) if s.status not in TERMINAL_STATUSES]


def client_context(request: object) -> ClientContext:
    """The client's agent lookup settings from a request that carries them."""
    return ClientContext(
        search_path=getattr(request, "search_path", None),
        codex_path=getattr(request, "codex_path", None),
        claude_path=getattr(request, "claude_path", None),
    )


def session_env(run: RunInfo, session: SessionInfo) -> dict[str, str]:
    """What orcad tells a session about its place in the run, as environment variables."""
    env: dict[str, str] = {}
    if session.debug_run_id is not None:
        env["ORCA_DEBUG_RUN_ID"] = session.debug_run_id
    if session.role == "orchestrator" and run.task_file is not None:
        env["ORCA_TASK_FILE"] = run.task_file
    if session.task_id is not None:
        env["ORCA_TASK_ID"] = session.task_id
        env["ORCA_TASK_ATTEMPT"] = str(session.attempt)
    if run.repo is not None:
        env["ORCA_REPO"] = run.repo
    return env


def _inside(tree: WorktreeInfo, cwd: str) -> str:
    """Where in the worktree `cwd` (a directory of its repository) is."""
    return str(Path(tree.path) / Path(cwd).resolve().relative_to(Path(tree.repo).resolve()))


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
    try:
        is_directory = cwd.is_dir()
    except OSError as exc:  # e.g. under a directory orcad may not enter
        raise WireError("bad_request", f"cwd {text!r} cannot be used: {exc.strerror}") from None
    if not is_directory:
        raise WireError("bad_request", f"cwd {text!r} is not a directory")
    if not os.access(cwd, os.X_OK):
        raise WireError("bad_request", f"cwd {text!r} is not accessible")
    return str(cwd)
