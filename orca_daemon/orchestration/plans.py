"""Plan runs: a task graph run to the end, each task in its own session.

Ready tasks (every dependency done) start in parallel up to a limit. A task is done when its
agent reported success and every `verify` command, run here by orcad, exited 0; otherwise it is
tried again up to `max_retries` times, then fails and (by default) cancels its dependants. Each
task's prompt carries what the run learned (plan_prompt.py). Task status is projected from
`TaskStatusChanged` events; the rules are pure functions of the state (plan_rules.py); every
decision is recorded at the run's version it was made from, launches prepared outside any lock.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orca_client.events import Event, PlanSpec, RunCreated, RunStatusChanged, TaskStatusChanged
from orca_client.plan import Plan, PlanError, validate_plan
from orca_client.views import TERMINAL_STATUSES, RunInfo
from orca_client.wire import RunStarted, StartPlan, TaskRetried, WireError
from orca_daemon.config import ConfigError
from orca_daemon.orchestration.effects import RunEffects
from orca_daemon.orchestration.parents import DECIDE_ATTEMPTS, ConflictingChanges
from orca_daemon.orchestration.plan_prompt import build_task_prompt
from orca_daemon.orchestration.plan_rules import plan_ending, plan_spec, ready_to_start, settle
from orca_daemon.orchestration.plan_verify import PlanVerifier
from orca_daemon.orchestration.underway import Underway
from orca_daemon.runs.launcher import (
    MAX_TITLE_CHARS,
    NewSession,
    Prepared,
    client_context,
    new_run_id,
    validate_cwd,
)

log = logging.getLogger(__name__)


@dataclass
class _TaskStart:
    """A ready task's next attempt, prepared before it is recorded."""

    place: int
    session: NewSession
    prepared: Prepared


class PlanCoordinator:
    """Starts plan runs and moves their tasks along after every change."""

    def __init__(self, runs: RunEffects, verifier: PlanVerifier) -> None:
        self._runs = runs
        self._verifier = verifier
        self._starting = Underway(runs.reconsider)
        """Plan runs whose first tasks a client's request is starting now."""

    async def start(self, request: StartPlan) -> RunStarted:
        runs = self._runs
        with contextlib.ExitStack() as underway:  # the reactor carries on after it
            async with runs.starting():
                cwd = validate_cwd(request.cwd)
                try:
                    validate_plan(request.plan)
                except PlanError as exc:
                    raise WireError("bad_request", f"invalid plan: {exc}") from None
                self._check_agents(request.plan, request.agent, cwd)
                limit = request.max_parallel
                if limit is None:
                    limit = runs.config.orchestration.max_parallel_tasks
                if limit < 1:
                    raise WireError("bad_request", "max_parallel must be at least 1")
                run_id = new_run_id()
                spec = PlanSpec(
                    plan=request.plan,
                    max_parallel=limit,
                    cancel_dependants=request.cancel_dependants,
                    agent=request.agent,
                    worktree=self._worktree_mode(request),
                    verify_timeout_seconds=runs.config.orchestration.verify_timeout_seconds,
                )
                title = (request.title or f"plan: {request.plan.title}")[:MAX_TITLE_CHARS]
                created = RunCreated(
                    run_id,
                    title=title,
                    cwd=cwd,
                    kind="plan",
                    plan=spec,
                    agent_lookup=client_context(request),
                )
                underway.enter_context(self._starting.request(run_id))
                stored = await runs.create_run(run_id, [created])
                runs.remember_client(run_id, client_context(request))
            await self._advance(run_id)
        return RunStarted(run_id=run_id, session_id=None, position=stored[-1].position)

    def _worktree_mode(self, request: StartPlan) -> bool:
        """Worktrees for every task or for none (a task in the main checkout would not see its
        dependencies' branches, nor they its work): the request's choice, else worktrees when
        any task's agent is configured with `worktree = true`."""
        if request.worktree is not None:
            return request.worktree
        agents = {task.agent or request.agent for task in request.plan.tasks}
        return any(self._runs.wants_worktree(agent, None) for agent in agents if agent)

    def _check_agents(self, plan: Plan, default: str | None, cwd: str) -> None:
        """Each agent the plan names is configured (looked up once, for its first task)."""
        first_task: dict[str | None, str] = {}
        for task in plan.tasks:
            first_task.setdefault(task.agent or default, task.id)
        for agent, task_id in first_task.items():
            if agent is None:
                raise WireError(
                    "bad_request",
                    f"task {task_id} names no agent: give it one, or a default with --agent",
                )
            try:
                self._runs.config.agent(agent, Path(cwd))
            except ConfigError as exc:
                raise WireError("bad_request", f"task {task_id}: {exc}") from None

    async def advance(self, run_id: str) -> None:
        """The reactor's pass (unless a client's request is moving the run along now)."""
        if run_id not in self._starting:
            await self._advance(run_id)

    def ended(self, run_id: str) -> None:
        """The run has ended: its verify commands stop."""
        self._verifier.ended(run_id)

    async def _advance(self, run_id: str) -> None:
        """Settle attempts that ended, start ready tasks, end the run when nothing is left.

        Each decision is made and recorded under the run's lock (the lock every writer of the
        run takes), except for preparing the ready tasks' launches, which probes binaries: that
        happens outside it, and the start is recorded only if the same tasks are still ready."""
        runs = self._runs
        self._verifier.stop_unwanted(run_id)
        for _ in range(DECIDE_ATTEMPTS):
            async with runs.lock(run_id):
                if not self._live(run_id):
                    return
                settled = settle(runs.state, run_id, self._verifying(run_id))
                for place in settled.verify:
                    self._verifier.start(run_id, place)
                if settled.events:
                    await runs.append(run_id, settled.events)
                ready = ready_to_start(runs.state, run_id)
                if not ready:
                    ending = plan_ending(runs.state, run_id)
                    if ending is not None:
                        await runs.append(run_id, [ending])
                    return
            starts = await self._prepare_ready(run_id, ready)  # outside the lock
            async with runs.lock(run_id):
                if not self._live(run_id):
                    return
                run = runs.state.runs[run_id]
                if ready_to_start(runs.state, run_id) != ready or any(
                    run.tasks[start.place].attempt + 1 != start.session.attempt for start in starts
                ):
                    continue  # the run changed meanwhile: decide again
                await runs.append(run_id, self._start_events(run, starts))
            for start in starts:
                self._verifier.forget(run_id, run.tasks[start.place].task_id)
                runs.begin_session(run_id, start.session.session_id, start.prepared)
        raise ConflictingChanges(f"plan run {run_id} kept changing while it was advanced")

    def _live(self, run_id: str) -> bool:
        return self._runs.accepting and run_id in self._runs.state.plans

    def _verifying(self, run_id: str) -> Callable[[str, int], bool]:
        return lambda task_id, attempt: self._verifier.verifying(run_id, task_id, attempt)

    async def _prepare_ready(self, run_id: str, ready: list[int]) -> list[_TaskStart]:
        """The next attempts of these ready tasks, launches prepared (binaries probed)."""
        runs = self._runs
        starts = []
        for place in ready:
            if run_id not in runs.state.plans:  # ended meanwhile
                return []
            run = runs.state.runs[run_id]
            spec = plan_spec(runs.state, run_id)
            plan_task = spec.plan.tasks[place]
            attempt = run.tasks[place].attempt + 1
            agent = plan_task.agent or spec.agent or "command"
            failed_before = self._previous_attempt(run, place) if attempt > 1 else None
            learned = runs.state.run_answers.get(run_id, [])
            graph = runs.state.plans[run_id].graph
            prompt = build_task_prompt(run, plan_task, spec, learned, graph, failed_before)
            prepared = await runs.prepare(run_id, agent, prompt, run.cwd)
            session = NewSession(
                f"{run_id}.{plan_task.id}.{attempt}",
                agent,
                prepared.command,
                run.cwd,
                prompt,
                role="task",
                task_id=plan_task.id,
                attempt=attempt,
                worktree=bool(spec.worktree),
            )
            starts.append(_TaskStart(place, session, prepared))
        return starts

    def _start_events(self, run: RunInfo, starts: list[_TaskStart]) -> list[Event]:
        events: list[Event] = []
        if run.status == "queued":
            events.append(RunStatusChanged(run.run_id, "running"))
        for start in starts:
            session = start.session
            events += [
                session.created(run.run_id),
                TaskStatusChanged(
                    run.run_id,
                    run.tasks[start.place].task_id,
                    "in_progress",
                    f"attempt {session.attempt}",
                    attempt=session.attempt,
                    session_id=session.session_id,
                ),
            ]
        return events

    def _previous_attempt(self, run: RunInfo, place: int) -> tuple[str, tuple[str, str] | None]:
        """Why the task's last attempt ended (with its agent's summary) and the verify command
        that failed it, if one did."""
        task = run.tasks[place]
        reason = task.reason or "(no reason recorded)"
        session = self._runs.state.sessions.get(task.session_id or "")
        if session is not None and session.summary:
            reason += f"; its summary: {session.summary}"
        return reason, self._verifier.failed_verify(run.run_id, task.task_id)

    async def retry(self, run_id: str, task_id: str) -> TaskRetried:
        """A new attempt at an in-progress task (a stuck one, say): its session is cancelled."""
        runs = self._runs
        run = runs.state.runs[run_id]
        if run.kind != "plan":
            raise WireError("invalid_state", f"run {run_id} is not a plan run")
        if run.status in TERMINAL_STATUSES:
            raise WireError(
                "invalid_state",
                f"run {run_id} has ended ({run.status}); an ended run never changes: run the "
                "plan again with orca plan run",
            )
        with self._starting.request(run_id):  # the reactor leaves the run to this request
            return await self._retry(run_id, task_id)

    async def _retry(self, run_id: str, task_id: str) -> TaskRetried:
        runs = self._runs
        async with runs.lock(run_id):
            run = runs.state.runs[run_id]
            if run.status in TERMINAL_STATUSES:
                raise WireError("invalid_state", f"run {run_id} has ended ({run.status})")
            place = runs.state.task_index[run_id].get(task_id)
            if place is None:
                raise WireError("not_found", f"run {run_id} has no task {task_id!r}")
            task = run.tasks[place]
            if task.status != "in_progress":
                raise WireError(
                    "invalid_state",
                    f"task {task_id} is {task.status}: only a task in progress can be retried "
                    "(a failed or cancelled task has ended for good)",
                )
            old_session = task.session_id
            await runs.append(
                run_id,
                [TaskStatusChanged(run_id, task_id, "pending", "a client asked to retry it")],
            )
        if old_session is not None:
            await runs.cancel_sessions(run_id, [old_session], "replaced by a retry")
        await self._advance(run_id)
        attempt = runs.state.runs[run_id].tasks[place].attempt
        return TaskRetried(run_id=run_id, task_id=task_id, attempt=attempt)
