"""Run and session status as a fold over the log: `apply(state, event) -> state`. No I/O.

Replay at start-up and live updates use the same `apply`. Terminal statuses are absorbing:
once a run or session is completed, failed or cancelled, no later event changes its status.
Texts that agents and clients write (summaries, reasons, questions, prompts) are kept to
`VIEW_TEXT_CHARS` each, with a marker saying how much more the log holds.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from orca_client.events import (
    AgentSessionIdentified,
    AnswerRequested,
    AnyEvent,
    CancelRequested,
    EndCause,
    HookFinished,
    HookStarted,
    NotificationFailed,
    NotificationSent,
    NotificationTriggered,
    OrchestrationFinished,
    OrchestratorTriggered,
    OutputAppended,
    OutputRead,
    QuestionAnswered,
    QuestionAsked,
    QuestionCleared,
    RelayedRequest,
    RelayedRequestSettled,
    RunAdopted,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionStarted,
    SessionTerminated,
    TaskStatusChanged,
    UsageRecorded,
    VerifyFinished,
    WorktreeCreated,
    WorktreeRemoved,
    cause_of,
)
from orca_client.plan import PlanGraph
from orca_client.view_text import bounded, bounded_or_none
from orca_client.views import (
    TERMINAL_STATUSES,
    PendingQuestion,
    Question,
    QuestionOption,
    RunInfo,
    SessionInfo,
    TaskInfo,
    WorktreeInfo,
)
from orca_daemon.log.records import StoredEvent
from orca_daemon.state.tables import RunTable, SessionTable

replace = msgspec.structs.replace

_Number = TypeVar("_Number", int, float)
LAST_LINE_CHARS = 200
"""The most of a session's last output line a view keeps (`SessionInfo.last_output_line`)."""


@dataclass
class PlanProgress:
    """Where a live plan run's tasks stand, kept up to date event by event by `apply`, so that
    what runs next is known at a cost that depends on what changed, not on the plan's size."""

    graph: PlanGraph
    waiting: list[int]
    """Per task (by place in the plan): how many of its dependencies are not done yet."""
    ready: set[int]
    """Pending tasks with nothing left to wait for."""
    in_progress: set[int] = field(default_factory=set)
    _ready_heap: list[int] = field(default_factory=list)
    """`ready` in plan order (a heap; entries no longer ready are dropped when met)."""

    @classmethod
    def start(cls, graph: PlanGraph) -> PlanProgress:
        waiting = [len(deps) for deps in graph.depends_on]
        ready = [place for place, count in enumerate(waiting) if not count]
        return cls(graph, waiting, set(ready), _ready_heap=ready)  # ascending: a heap already

    @classmethod
    def resume(cls, graph: PlanGraph, statuses: list[str]) -> PlanProgress:
        """Where a plan stands whose tasks have `statuses` (by place): what `start` and every
        `moved` since would have made of it."""
        waiting = [sum(statuses[dep] != "done" for dep in deps) for deps in graph.depends_on]
        ready = [
            place
            for place, status in enumerate(statuses)
            if status == "pending" and not waiting[place]
        ]
        in_progress = {place for place, status in enumerate(statuses) if status == "in_progress"}
        return cls(graph, waiting, set(ready), in_progress, _ready_heap=ready)

    def first_ready(self, count: int) -> list[int]:
        """Up to `count` ready tasks, first in plan order first."""
        heap = self._ready_heap
        found: list[int] = []
        while heap and len(found) < count:
            place = heapq.heappop(heap)
            if place in self.ready and (not found or found[-1] != place):
                found.append(place)
        for place in found:
            heapq.heappush(heap, place)
        return found

    def moved(self, place: int, old: str, new: str, tasks: list[TaskInfo]) -> None:
        """Task `place` went from `old` to `new` (`tasks` already shows the new status)."""
        self.ready.discard(place)
        self.in_progress.discard(place)
        if new == "in_progress":
            self.in_progress.add(place)
        elif new == "pending" and not self.waiting[place]:
            self._make_ready(place)
        elif new == "done":
            for dependant in self.graph.dependants[place]:
                self.waiting[dependant] -= 1
                if not self.waiting[dependant] and tasks[dependant].status == "pending":
                    self._make_ready(dependant)

    def _make_ready(self, place: int) -> None:
        if place not in self.ready:
            self.ready.add(place)
            heapq.heappush(self._ready_heap, place)


@dataclass
class State:
    """Every run and session as projected so far, and the log position reached.

    The values are immutable Structs; `apply` swaps in new ones, so a view handed to a client
    never changes under it. One exception: a plan run's `tasks` list is updated in place (one
    task's change must not copy 10,000 tasks); views handed out copy what they show of it.
    """

    position: int = 0
    runs: RunTable = field(default_factory=RunTable)
    """Every run, in the order created (those ended for good are kept packed: `tables`)."""
    sessions: SessionTable = field(init=False)
    """Every session (`runs.sessions`)."""
    hooks_running: dict[tuple[str, int], HookStarted] = field(default_factory=dict)
    """Hooks started and not yet finished, by (hook name, trigger position)."""
    notifications_due: dict[tuple[int, str], tuple[NotificationTriggered, float]] = field(
        default_factory=dict
    )
    """Notifications triggered and neither sent nor given up, by (trigger position, channel),
    with when each was triggered."""
    run_versions: dict[str, int] = field(default_factory=dict)
    """Each run's stream version: what an append expecting nothing new since must name."""
    prompts: dict[str, str] = field(default_factory=dict)
    """The prompts of live sessions (to start them again after a restart)."""
    task_index: dict[str, dict[str, int]] = field(default_factory=dict)
    """Each plan run's tasks by id: their place in `RunInfo.tasks`."""
    plans: dict[str, PlanProgress] = field(default_factory=dict)
    """Each live plan run's graph and where its tasks stand."""
    created: dict[str, RunCreated] = field(default_factory=dict)
    """How each live fan-out, parent and plan run was set up (its `RunCreated`)."""
    run_answers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Each run's answered questions as (question, answer), secret ones left out: what the run
    has learned, handed to its later sessions."""
    start_ticks: dict[str, int] = field(default_factory=dict)
    """Each live session's process start time (Linux clock ticks): tells a reused pid apart."""
    read_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per live session, how far into each stream's spool orcad has read (recorded output)."""
    holders: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    """Each live session's holder (pid, start ticks), when it has one."""
    causes: dict[str, EndCause] = field(default_factory=dict)
    """Why each ended session of a live plan run ended (its task's next step depends on it)."""
    adopted_at: dict[str, int] = field(default_factory=dict)
    """With a shared log: the position of each adopted run's latest `RunAdopted`. The run's
    events before it were its earlier owner's to react to (or the adoption's catch-up's)."""
    relayed: dict[str, RelayedRequest] = field(default_factory=dict)
    """Requests relayed through the log to the daemon that owns their run (a shared log),
    by request id, until it records that it settled them."""
    open_lines: dict[str, str] = field(default_factory=dict)
    """Per live session, the end of the line its output has begun and not yet ended (at most
    `LAST_LINE_CHARS`): the next output continues it."""

    def __post_init__(self) -> None:
        self.sessions = self.runs.sessions

    def live_sessions(self) -> list[SessionInfo]:
        """Sessions that have not reached a terminal status."""
        return [s for s in self.sessions.unpacked() if s.status not in TERMINAL_STATUSES]


def apply(state: State, stored: StoredEvent) -> State:
    """Fold one committed event into `state` and return it."""
    event = stored.decode()
    at = stored.recorded_at
    state.run_versions[event.run_id] = stored.version
    if type(event) is OutputAppended:  # most of a log: straight to its session
        _output(state, event, at)
    elif isinstance(event, RunCreated):
        if event.run_id not in state.runs:
            state.runs[event.run_id] = _new_run(event, at)
            if event.kind != "single":
                state.created[event.run_id] = event
            if event.plan is not None:
                graph = PlanGraph(event.plan.plan.tasks)
                state.task_index[event.run_id] = graph.index
                state.plans[event.run_id] = PlanProgress.start(graph)
            parent = state.runs.get(event.parent_run_id or "")
            if parent is not None:
                state.runs[parent.run_id] = replace(
                    parent, child_run_ids=[*parent.child_run_ids, event.run_id]
                )
    elif isinstance(event, CancelRequested | AnswerRequested):
        state.relayed[event.request_id] = event
    elif isinstance(event, RelayedRequestSettled):
        state.relayed.pop(event.request_id, None)
    elif isinstance(event, RunAdopted):
        run = state.runs.get(event.run_id)
        if run is not None:
            state.runs[run.run_id] = replace(run, owner=event.daemon)
            state.adopted_at[run.run_id] = stored.position
    elif isinstance(event, RunStatusChanged):
        run = state.runs.get(event.run_id)
        if run is not None and run.status not in TERMINAL_STATUSES:
            state.runs[run.run_id] = _change_run_status(run, event, at)
            if event.status in TERMINAL_STATUSES:  # nothing is decided for it any more
                state.created.pop(run.run_id, None)
                if state.plans.pop(run.run_id, None) is not None:
                    for session_id in run.session_ids:
                        state.causes.pop(session_id, None)
    elif isinstance(event, HookStarted):
        state.hooks_running[(event.hook, event.trigger_position)] = event
    elif isinstance(event, HookFinished):
        state.hooks_running.pop((event.hook, event.trigger_position), None)
    elif isinstance(event, NotificationTriggered):
        for channel in event.channels:
            state.notifications_due[(event.trigger_position, channel)] = (event, at)
    elif isinstance(event, NotificationSent | NotificationFailed):
        state.notifications_due.pop((event.trigger_position, event.channel), None)
    elif isinstance(event, OrchestratorTriggered):
        run = state.runs.get(event.run_id)
        if run is not None and run.orchestrator_session_id is None:
            state.runs[run.run_id] = replace(
                run, orchestrator_session_id=event.session_id, updated_at=at
            )
    elif isinstance(event, OrchestrationFinished):
        run = state.runs.get(event.run_id)
        if run is not None:
            result = bounded_or_none(event.summary, run.run_id)
            state.runs[run.run_id] = replace(run, result=result, updated_at=at)
    elif isinstance(event, TaskStatusChanged):
        run = state.runs.get(event.run_id)
        if run is not None:
            index = state.task_index.get(run.run_id, {}).get(event.task_id)
            if index is not None:
                old = run.tasks[index].status
                if _change_task(run, index, event):
                    state.runs[run.run_id] = replace(run, updated_at=at)
                    progress = state.plans.get(run.run_id)
                    if progress is not None:
                        progress.moved(index, old, event.status, run.tasks)
    elif isinstance(event, VerifyFinished):
        pass
    elif isinstance(event, SessionCreated):
        run = state.runs.get(event.run_id)
        if run is not None and event.session_id not in state.sessions:
            state.sessions[event.session_id] = _new_session(event, at)
            if event.prompt is not None:
                state.prompts[event.session_id] = event.prompt
            state.runs[run.run_id] = replace(
                run, session_ids=[*run.session_ids, event.session_id], updated_at=at
            )
    else:
        session = state.sessions.get(event.session_id)
        if session is not None:
            if isinstance(event, QuestionAnswered):
                _learn(state, session, event)
            elif isinstance(event, SessionStarted):
                if session.status not in TERMINAL_STATUSES and event.process_start_ticks:
                    state.start_ticks[event.session_id] = event.process_start_ticks
                state.read_offsets.pop(event.session_id, None)  # a new agent, a new spool
                if session.status not in TERMINAL_STATUSES and event.holder_pid is not None:
                    state.holders[event.session_id] = (event.holder_pid, event.holder_start_ticks)
            elif isinstance(event, OutputRead):
                _read_to(state, session, event.stream, event.offset)
            elif isinstance(event, SessionTerminated):
                state.prompts.pop(event.session_id, None)
                state.start_ticks.pop(event.session_id, None)
                state.read_offsets.pop(event.session_id, None)
                state.holders.pop(event.session_id, None)
                if event.run_id in state.plans:
                    state.causes[event.session_id] = cause_of(event)
                state.open_lines.pop(event.session_id, None)
            before = session
            session = evolve_session(session, event, at)
            state.sessions[session.session_id] = session
            if isinstance(event, UsageRecorded):
                _add_usage(state, before, session)
    state.runs.settle(event.run_id)
    state.position = stored.position
    return state


def _output(state: State, event: OutputAppended, at: float) -> None:
    """Output counts for its session; an agent's (not orcad's own notes) shows its last line."""
    session = state.sessions.get(event.session_id)
    if session is None:
        return
    shown = session.last_output_line
    if event.stream != "orca":
        shown = _last_line(state, session, event.text) or shown
        if event.offset is not None:
            _read_to(state, session, event.stream, event.offset)
    state.sessions[session.session_id] = replace(
        session,
        output_events=session.output_events + 1,
        last_activity_at=at,
        last_output_line=shown,
    )


def _read_to(state: State, session: SessionInfo, stream: str, offset: int) -> None:
    """A live session's `stream` has been read (and recorded) up to `offset` of its spool."""
    if session.status not in TERMINAL_STATUSES:
        offsets = state.read_offsets.setdefault(session.session_id, {})
        offsets[stream] = max(offsets.get(stream, 0), offset)


def _last_line(state: State, session: SessionInfo, text: str) -> str | None:
    """The last non-blank line of `session`'s output with `text`, None if `text` ends no such
    line; the unended end of `text` is kept (bounded) in `state.open_lines` while the session
    is live, for the next output. Lines are looked at from the end, until one shows something."""
    live = session.status not in TERMINAL_STATUSES
    output = state.open_lines.pop(session.session_id, "") + text
    end = len(output)
    start = output.rfind("\n") + 1
    if start < end and live:
        state.open_lines[session.session_id] = _line_end(output[start:])
    while True:
        line = output[start:end]
        if line.strip():  # after a carriage return, a line shows what was written last
            shown = next(part for part in reversed(line.split("\r")) if part.strip())
            return _line_end(shown)
        if not start:
            return None
        end = start - 1
        start = output.rfind("\n", 0, end) + 1


def _latest(reported: _Number | None, before: _Number | None) -> _Number | None:
    return before if reported is None else reported


def _add_usage(state: State, before: SessionInfo, after: SessionInfo) -> None:
    """Move the run's usage totals by what this session's totals moved."""
    run = state.runs.get(after.run_id)
    if run is None:
        return
    state.runs[run.run_id] = replace(
        run,
        input_tokens=_moved(run.input_tokens, before.input_tokens, after.input_tokens),
        output_tokens=_moved(run.output_tokens, before.output_tokens, after.output_tokens),
        cost_usd=_moved(run.cost_usd, before.cost_usd, after.cost_usd),
    )


def _moved(total: _Number | None, old: _Number | None, new: _Number | None) -> _Number | None:
    if new is None:
        return total
    return (total or 0) + new - (old or 0)


def _line_end(line: str) -> str:
    """`line`, or its last `LAST_LINE_CHARS` characters behind a `…`."""
    if len(line) <= LAST_LINE_CHARS:
        return line
    return "…" + line[-(LAST_LINE_CHARS - 1) :]


def _change_task(run: RunInfo, index: int, event: TaskStatusChanged) -> bool:
    """Task `index`'s new status, in place; False when it is done, failed or cancelled (it stays
    so)."""
    task = run.tasks[index]
    if task.status in ("done", "failed", "cancelled"):
        return False
    run.tasks[index] = replace(
        task,
        status=event.status,
        reason=bounded_or_none(event.reason, run.run_id),
        attempt=max(task.attempt, event.attempt),
        interrupted=task.interrupted + event.interrupted,
        session_id=event.session_id or task.session_id,
        summary=bounded(event.summary, run.run_id) if event.summary is not None else task.summary,
    )
    return True


def _learn(state: State, session: SessionInfo, event: QuestionAnswered) -> None:
    pending = session.pending
    if pending is None or pending.request_id != event.request_id:
        return
    learned = state.run_answers.setdefault(session.run_id, [])
    for question in pending.questions:
        answer = event.answers.get(question.id)
        if answer is not None and question.id not in event.redacted_ids:
            learned.append((question.question, "; ".join(answer)))


def _change_run_status(run: RunInfo, event: RunStatusChanged, at: float) -> RunInfo:
    """A new status; entering `waiting_for_answer` remembers the phase to return to."""
    paused = run.paused_status
    if event.status == "waiting_for_answer":
        paused = run.status if run.status != "waiting_for_answer" else paused
    else:
        paused = None
    reason = bounded_or_none(event.reason, run.run_id)
    return replace(run, status=event.status, reason=reason, updated_at=at, paused_status=paused)


def evolve_session(session: SessionInfo, event: AnyEvent, at: float) -> SessionInfo:
    """The pure per-session fold (output: `_output`); a terminal session keeps its status
    whatever comes next."""
    terminal = session.status in TERMINAL_STATUSES
    if isinstance(event, WorktreeCreated):
        worktree = WorktreeInfo(repo=event.repo, path=event.path, branch=event.branch)
        return replace(session, worktree=worktree)
    if isinstance(event, WorktreeRemoved):
        if session.worktree is None:
            return session
        return replace(session, worktree=replace(session.worktree, removed=True))
    if isinstance(event, UsageRecorded):
        return replace(
            session,
            usage=event.data,
            input_tokens=_latest(event.input_tokens, session.input_tokens),
            output_tokens=_latest(event.output_tokens, session.output_tokens),
            cost_usd=_latest(event.cost_usd, session.cost_usd),
        )
    if isinstance(event, AgentSessionIdentified):
        return replace(session, agent_session_id=event.agent_session_id)
    if terminal:
        return session
    if isinstance(event, SessionStarted):
        return replace(
            session,
            status="running",
            pid=event.pid,
            command=session.command if event.command is None else event.command,
            started_at=at,
            last_activity_at=at,
        )
    if isinstance(event, QuestionAsked):
        questions = [_bounded_question(q, session.run_id) for q in event.questions]
        pending = PendingQuestion(event.request_id, session.session_id, questions, at)
        return replace(session, status="waiting_for_answer", pending=pending, last_activity_at=at)
    if isinstance(event, QuestionAnswered | QuestionCleared):
        if session.pending is None or session.pending.request_id != event.request_id:
            return session
        return replace(session, status="running", pending=None, last_activity_at=at)
    if isinstance(event, SessionTerminated):
        return replace(
            session,
            status=event.status,
            reason=bounded(event.reason, session.run_id),
            exit_code=event.exit_code,
            summary=bounded_or_none(event.summary, session.run_id),
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


def _bounded_question(question: Question, run_id: str) -> Question:
    """A question as a view shows it (its id whole: answers must name it)."""
    options = question.options
    if options is not None:
        options = [
            QuestionOption(bounded(o.label, run_id), bounded(o.description, run_id))
            for o in options
        ]
    return replace(
        question,
        question=bounded(question.question, run_id),
        header=bounded(question.header, run_id),
        options=options,
    )


def _new_run(event: RunCreated, at: float) -> RunInfo:
    tasks = []
    if event.plan is not None:
        tasks = [
            TaskInfo(
                task_id=task.id,
                title=bounded(task.title or task.id, event.run_id),
                status="pending",
                depends_on=task.depends_on,
                max_retries=task.max_retries,
            )
            for task in event.plan.plan.tasks
        ]
    return RunInfo(
        run_id=event.run_id,
        title=bounded(event.title, event.run_id),
        status="queued",
        cwd=event.cwd,
        created_at=at,
        updated_at=at,
        parent_run_id=event.parent_run_id,
        kind=event.kind,
        prompt=bounded_or_none(event.prompt, event.run_id),
        debug_run_id=event.run_id if event.fanout is not None else None,
        task_file=event.fanout.task_file if event.fanout is not None else None,
        orchestration_mode=event.children.mode if event.children is not None else None,
        repo=event.repo,
        tasks=tasks,
        owner=event.daemon,
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
        task_id=event.task_id,
        attempt=event.attempt,
        in_worktree=event.worktree,
    )
