"""Plan runs: a task graph run to the end, each task in its own session.

Ready tasks (every dependency done) start in parallel up to a limit. A task is done when its
agent reported success and every `verify` command, run here by orcad, exited 0; otherwise it is
tried again up to `max_retries` times, then fails and (by default) cancels its dependants. Each
task's prompt carries what the run learned: the summaries of the tasks it depends on and the
answers given to questions earlier in the run. Task status is projected from
`TaskStatusChanged` events; every decision is made under the run's lock from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio

from orca_client.events import (
    Event,
    PlanSpec,
    RunCreated,
    RunStatusChanged,
    TaskStatusChanged,
    VerifyFinished,
    run_stream,
)
from orca_client.plan import Plan, PlanError, PlanGraph, PlanTask, validate_plan
from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo, TaskInfo
from orca_client.wire import RunStarted, StartPlan, TaskRetried, WireError
from orca_daemon.config import ConfigError
from orca_daemon.limits import restore_inherited_limit
from orca_daemon.runs.manager import RESTARTED_REASON, STOPPED_REASON
from orca_daemon.sessions.procs import child_env
from orca_daemon.sessions.worktrees import WorktreeError, commit_all
from orca_daemon.state.projection import PlanProgress

if TYPE_CHECKING:
    from orca_daemon.runs.manager import RunManager

log = logging.getLogger(__name__)

VERIFY_TAIL_CHARS = 2000
INTERRUPTED = frozenset({RESTARTED_REASON, STOPPED_REASON})
"""How a session ends when orcad stops or restarts under it: its attempt does not count."""
SUMMARY_CHARS = 4000
CONTEXT_CHARS = 20_000
"""Earlier tasks' summaries in a task's prompt, at most (its direct dependencies' always)."""
WANTED_POLL_SECONDS = 0.1
"""How often a running verify command checks that its attempt is still wanted."""


class PlanCoordinator:
    """Starts plan runs and moves their tasks along after every change."""

    def __init__(self, runs: RunManager) -> None:
        self._runs = runs
        self._verifying: set[tuple[str, str, int]] = set()
        self._failed_verify: dict[tuple[str, str], tuple[str, str]] = {}
        """(run, task) -> (command, output tail) of the verify that failed the attempt before a
        retry, for the retry's prompt (kept only until that retry starts)."""

    async def start(self, request: StartPlan) -> RunStarted:
        from orca_daemon.runs.manager import (
            MAX_TITLE_CHARS,
            _validate_cwd,
            client_context,
            new_run_id,
        )

        runs = self._runs
        async with runs.starting():
            cwd = _validate_cwd(request.cwd)
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
            stored = await runs.store.append(
                run_stream(run_id), [created], expected_version=0, mode="refuse"
            )
            runs.remember_client(run_id, client_context(request))
        await self.advance(run_id)
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

    # ------------------------------------------------------------------ moving along

    async def advance(self, run_id: str) -> None:
        """Settle attempts that ended, start ready tasks, end the run when nothing is left."""
        runs = self._runs
        async with runs.lock(run_id):
            run = runs.state.runs[run_id]
            if run.status in TERMINAL_STATUSES or not runs.accepting:
                return
            events: list[Event] = []
            for place in sorted(self._progress(run_id).in_progress):
                events += self._settle(run, run.tasks[place])
            if events:
                await runs.append(run_id, events)
                run = runs.state.runs[run_id]
            await self._start_ready(run)
            run = runs.state.runs[run_id]
            ending = self._ending(run)
            if ending is not None:
                await runs.append(run_id, [ending])
        if ending is not None:
            runs.after_change(run_id)

    def _settle(self, run: RunInfo, task: TaskInfo) -> list[Event]:
        """Events for an in-progress task whose session ended (none while it runs or is being
        verified)."""
        runs = self._runs
        session = runs.state.sessions.get(task.session_id or "")
        if session is None or session.status not in TERMINAL_STATUSES:
            return []
        key = (run.run_id, task.task_id, task.attempt)
        if key in self._verifying:
            return []
        plan_task = self._task(run.run_id, task.task_id)
        if session.status == "completed":
            if plan_task.verify or _has_worktree(session):  # verify, commit: off the lock
                self._verifying.add(key)
                runs.spawn(self._verify, run.run_id, plan_task, task.attempt, session)
                return []
            return [
                TaskStatusChanged(
                    run.run_id,
                    task.task_id,
                    "done",
                    "the agent reported done",
                    summary=session.summary,
                )
            ]
        if session.status == "cancelled":
            return self._give_up(
                run, task, "cancelled", f"its session was cancelled: {session.reason}"
            )
        if session.reason in INTERRUPTED:  # not the task's fault: it runs again, uncounted
            return [
                TaskStatusChanged(
                    run.run_id,
                    task.task_id,
                    "pending",
                    f"attempt {task.attempt} was interrupted ({session.reason}); it runs again",
                    interrupted=True,
                )
            ]
        return self._failed_attempt(run, task, f"attempt {task.attempt} failed: {session.reason}")

    def _failed_attempt(self, run: RunInfo, task: TaskInfo, why: str) -> list[Event]:
        counted = task.attempt - task.interrupted
        if counted <= task.max_retries:
            return [
                TaskStatusChanged(
                    run.run_id,
                    task.task_id,
                    "pending",
                    f"{why}; retrying ({task.max_retries - counted + 1} retries left)",
                )
            ]
        return self._give_up(run, task, "failed", why)

    def _give_up(
        self, run: RunInfo, task: TaskInfo, status: Literal["failed", "cancelled"], why: str
    ) -> list[Event]:
        """The task ends for good; by default, its dependants are cancelled with it."""
        events: list[Event] = [TaskStatusChanged(run.run_id, task.task_id, status, why)]
        if self._spec(run.run_id).cancel_dependants:
            graph = self._progress(run.run_id).graph
            for place in graph.dependants_of(graph.index[task.task_id]):
                if run.tasks[place].status in ("pending", "in_progress"):
                    events.append(
                        TaskStatusChanged(
                            run.run_id,
                            graph.ids[place],
                            "cancelled",
                            f"it depends on task {task.task_id}, which {status}",
                        )
                    )
        return events

    async def _start_ready(self, run: RunInfo) -> None:
        from orca_daemon.runs.manager import NewSession

        runs = self._runs
        spec = self._spec(run.run_id)
        progress = self._progress(run.run_id)
        ready = progress.first_ready(spec.max_parallel - len(progress.in_progress))
        if not ready:
            return
        if run.status == "queued":
            await runs.append(run.run_id, [RunStatusChanged(run.run_id, "running")])
        attempts = {place: run.tasks[place].attempt for place in ready}
        for place in ready:
            plan_task = spec.plan.tasks[place]
            task_id = plan_task.id
            attempt = attempts[place] + 1
            agent = plan_task.agent or spec.agent or "command"
            failed_before = self._previous_attempt(run, place, task_id) if attempt > 1 else None
            prompt = self.task_prompt(run, plan_task, spec, failed_before)
            prepared = await runs.prepare(run.run_id, agent, prompt, run.cwd)
            session = NewSession(
                f"{run.run_id}.{task_id}.{attempt}",
                agent,
                prepared.command,
                run.cwd,
                prompt,
                role="task",
                task_id=task_id,
                attempt=attempt,
                worktree=bool(spec.worktree),
            )
            started = TaskStatusChanged(
                run.run_id,
                task_id,
                "in_progress",
                f"attempt {attempt}",
                attempt=attempt,
                session_id=session.session_id,
            )
            await runs.append(run.run_id, [session.created(run.run_id), started])
            runs.begin_session(run.run_id, session.session_id, prepared)

    def _ending(self, run: RunInfo) -> RunStatusChanged | None:
        """The run's end once no task runs and none can start."""
        progress = self._progress(run.run_id)
        if progress.in_progress or progress.ready:
            return None
        if all(t.status == "done" for t in run.tasks):
            return RunStatusChanged(run.run_id, "completed", f"all {len(run.tasks)} tasks done")
        failed = [t.task_id for t in run.tasks if t.status == "failed"]
        cancelled = [t.task_id for t in run.tasks if t.status == "cancelled"]
        blocked = [t.task_id for t in run.tasks if t.status == "pending"]
        parts = []
        if failed:
            parts.append(f"failed: {_some(failed)}")
        if cancelled:
            parts.append(f"cancelled: {_some(cancelled)}")
        if blocked:
            parts.append(f"never started (a dependency did not finish): {_some(blocked)}")
        return RunStatusChanged(run.run_id, "failed", "tasks " + "; ".join(parts))

    # ------------------------------------------------------------------ verify

    async def _verify(
        self, run_id: str, task: PlanTask, attempt: int, session: SessionInfo
    ) -> None:
        """Run the task's verify commands in order, where its agent worked (its worktree, if
        it had one); the first failure fails the attempt. The commands carry the session's id
        in their environment, so a restarted orcad finds and stops any left behind."""
        runs = self._runs
        key = (run_id, task.id, attempt)
        created = runs.state.created.get(run_id)
        if created is None or created.plan is None:  # the run ended meanwhile
            self._verifying.discard(key)
            return
        timeout = created.plan.verify_timeout_seconds
        place = runs.state.task_index[run_id][task.id]
        cwd = _worked_in(session)
        env = {
            "ORCA_RUN_ID": run_id,
            "ORCA_SESSION_ID": session.session_id,
            "ORCA_TASK_ID": task.id,
            "ORCA_TASK_ATTEMPT": str(attempt),
        }

        def wanted() -> bool:
            """Still the attempt in progress (not retried, the run not ended)."""
            run = runs.state.runs[run_id]
            info = run.tasks[place]
            return (
                key in self._verifying
                and run.status not in TERMINAL_STATUSES
                and (info.status, info.attempt) == ("in_progress", attempt)
            )

        try:
            failure = None
            done = _verified(len(task.verify))
            failed_verify: tuple[str, str] | None = None
            if _has_worktree(session) and wanted():  # before verify, which may leave files
                assert session.worktree is not None
                message = f"orca: task {task.id} of run {run_id} (attempt {attempt})"
                try:
                    commit = await anyio.to_thread.run_sync(
                        commit_all, session.worktree.path, message
                    )
                except WorktreeError as exc:
                    failure = f"its work could not be committed: {exc}"
                else:
                    if commit is not None:  # its dependants' worktrees start from this
                        done += f"; its work is commit {commit[:12]} on {session.worktree.branch}"
            for command in task.verify if failure is None else []:
                try:
                    verdict = await run_verify(command, cwd, timeout, env, wanted)
                except Exception as exc:  # whatever keeps it from running fails the attempt
                    log.exception("task %s: verify command %r could not run", task.id, command)
                    verdict = False, None, f"could not run it: {exc}"
                if verdict is None:
                    return  # nobody waits for this attempt any more; its command was stopped
                ok, code, tail = verdict
                await runs.append(
                    run_id, [VerifyFinished(run_id, task.id, attempt, command, ok, code, tail)]
                )
                if not ok:
                    why = tail if code is None and tail else _exit_text(code, timeout)
                    failure = f"verify command failed ({why}): {command}"
                    failed_verify = (command, tail)
                    break
            async with runs.lock(run_id):
                run = runs.state.runs[run_id]
                info = run.tasks[place]
                if run.status in TERMINAL_STATUSES or info.status != "in_progress":
                    return
                if info.attempt != attempt:
                    return
                if failure is None:  # the session ended before verify began: its summary is final
                    events: list[Event] = [
                        TaskStatusChanged(
                            run_id,
                            task.id,
                            "done",
                            done,
                            summary=session.summary,
                        )
                    ]
                else:
                    events = self._failed_attempt(run, info, f"attempt {attempt}: {failure}")
                await runs.append(run_id, events)
                retried = any(
                    isinstance(event, TaskStatusChanged) and event.status == "pending"
                    for event in events
                )
                if retried and failed_verify is not None:
                    self._failed_verify[(run_id, task.id)] = failed_verify
        finally:
            self._verifying.discard(key)
            runs.after_change(run_id)

    # ------------------------------------------------------------------ retry

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
        async with runs.lock(run_id):
            run = runs.state.runs[run_id]
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
            self._verifying.discard((run_id, task_id, task.attempt))
            await runs.append(
                run_id,
                [TaskStatusChanged(run_id, task_id, "pending", "a client asked to retry it")],
            )
        if old_session is not None:
            await runs.cancel_sessions(run_id, [old_session], "replaced by a retry")
        await self.advance(run_id)
        attempt = runs.state.runs[run_id].tasks[place].attempt
        return TaskRetried(run_id=run_id, task_id=task_id, attempt=attempt)

    # ------------------------------------------------------------------ prompts

    def task_prompt(
        self,
        run: RunInfo,
        task: PlanTask,
        spec: PlanSpec,
        failed_before: tuple[str, tuple[str, str] | None] | None = None,
    ) -> str:
        learned = self._runs.state.run_answers.get(run.run_id, [])
        graph = self._progress(run.run_id).graph
        return build_task_prompt(run, task, spec, learned, graph, failed_before)

    def _previous_attempt(
        self, run: RunInfo, place: int, task_id: str
    ) -> tuple[str, tuple[str, str] | None]:
        """Why the task's last attempt ended (with its agent's summary) and the verify command
        that failed it, if one did."""
        task = run.tasks[place]
        reason = task.reason or "(no reason recorded)"
        session = self._runs.state.sessions.get(task.session_id or "")
        if session is not None and session.summary:
            reason += f"; its summary: {session.summary}"
        return reason, self._failed_verify.pop((run.run_id, task_id), None)

    def worktree_bases(self, session: SessionInfo) -> list[str]:
        """Where a plan task's worktree starts: the branches of the tasks it depends on (each
        holds their work, committed when they were done), so that it builds on them."""
        created = self._runs.state.created.get(session.run_id)
        if session.task_id is None or created is None or created.plan is None:
            return []
        tasks = self._runs.state.runs[session.run_id].tasks
        index = self._runs.state.task_index[session.run_id]
        task = created.plan.plan.tasks[index[session.task_id]]
        bases = []
        for dep in task.depends_on:
            done = self._runs.state.sessions.get(tasks[index[dep]].session_id or "")
            if done is not None and _has_worktree(done):
                assert done.worktree is not None
                bases.append(done.worktree.branch)
        return bases

    def superseded(self, session: SessionInfo) -> bool:
        """A task session that its task no longer waits for (a retry replaced it)."""
        if session.task_id is None:
            return False
        run = self._runs.state.runs[session.run_id]
        place = self._runs.state.task_index.get(session.run_id, {}).get(session.task_id)
        task = None if place is None else run.tasks[place]
        return task is None or task.status != "in_progress" or task.session_id != session.session_id

    def _spec(self, run_id: str) -> PlanSpec:
        spec = self._runs.state.created[run_id].plan
        assert spec is not None
        return spec

    def _task(self, run_id: str, task_id: str) -> PlanTask:
        return self._spec(run_id).plan.tasks[self._runs.state.task_index[run_id][task_id]]

    def _progress(self, run_id: str) -> PlanProgress:
        return self._runs.state.plans[run_id]


def build_task_prompt(
    run: RunInfo,
    task: PlanTask,
    spec: PlanSpec,
    learned: list[tuple[str, str]],
    graph: PlanGraph | None = None,
    failed_before: tuple[str, tuple[str, str] | None] | None = None,
) -> str:
    """The task's prompt with what the run learned: answers given earlier in the run, and
    the summaries of the tasks it depends on (directly or not). `graph`: the plan's, if built.
    `failed_before`, for a retry: why the previous attempt failed and, when a verify command
    failed it, that command and the end of its output."""
    lines = [task.prompt]
    if task.acceptance:
        lines += ["", "Acceptance criteria:", *(f"- {item}" for item in task.acceptance)]
    if task.verify:
        lines += [
            "",
            "After you report done, orcad runs these commands; the task is done only if "
            "every one exits 0:",
            *(f"- {command}" for command in task.verify),
        ]
    lines += ["", f'This is task {task.id} of the plan "{spec.plan.title}" (run {run.run_id}).']
    graph = graph or PlanGraph(spec.plan.tasks)
    found: dict[int, str] = {}
    room = CONTEXT_CHARS
    ancestors = graph.ancestors_of(graph.index[task.id])  # the nearest first
    for place in ancestors:
        info = run.tasks[place]
        summary = (info.summary or "(no summary reported)")[:SUMMARY_CHARS]
        line = f"- {info.task_id} ({info.title}): {summary}"
        if found and len(line) > room:  # direct dependencies come first and always fit
            break
        found[place] = line
        room -= len(line)
    if found:
        lines += ["", "What the tasks it builds on found:"]
        lines += [found[place] for place in sorted(found)]
        left_out = len(ancestors) - len(found)
        if left_out:
            lines.append(f"({left_out} earlier tasks left out, to keep this prompt short)")
    if learned:
        lines += ["", "Answers given earlier in this run:"]
        lines += [f"- Q: {question}\n  A: {answer}" for question, answer in learned]
    if failed_before is not None:
        lines += _previous_attempt(*failed_before)
    return "\n".join(lines)


def _previous_attempt(reason: str, failed_verify: tuple[str, str] | None) -> list[str]:
    """What a retry is told of the attempt before it."""
    lines = [
        "",
        f"This is a new attempt at this task; the previous one ended: {reason[:SUMMARY_CHARS]}",
    ]
    if failed_verify is not None:
        command, tail = failed_verify
        fence = "`" * max(3, _longest_backtick_run(tail) + 1)
        lines += [f"The end of the output of `{command}`:", fence, tail.rstrip("\n"), fence]
    return lines


def _longest_backtick_run(text: str) -> int:
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return longest


def _some(task_ids: list[str], shown: int = 20) -> str:
    """Task ids for a reason: the first `shown`, then how many more."""
    if len(task_ids) <= shown:
        return ", ".join(task_ids)
    return f"{', '.join(task_ids[:shown])} and {len(task_ids) - shown} more"


def _verified(count: int) -> str:
    if not count:
        return "the agent reported done"
    return f"done; {count} verify command{'' if count == 1 else 's'} passed"


def _has_worktree(session: SessionInfo) -> bool:
    return session.worktree is not None and not session.worktree.removed


def _exit_text(code: int | None, timeout: float) -> str:
    if code is None:
        return f"timed out after {timeout:g}s"
    return f"exit status {code}"


def _worked_in(session: SessionInfo) -> str:
    """Where the session's agent ran: its cwd, or the same place in its worktree."""
    tree = session.worktree
    if tree is None:
        return session.cwd
    try:
        inside = Path(session.cwd).resolve().relative_to(Path(tree.repo).resolve())
    except ValueError:
        return tree.path
    return str(Path(tree.path) / inside)


async def run_verify(
    command: str,
    cwd: str,
    limit: float,
    env: dict[str, str],
    wanted: Callable[[], bool] = lambda: True,
) -> tuple[bool, int | None, str] | None:
    """Run one verify command with `/bin/sh -c` in its own process group; (passed, exit status
    or None on a timeout, output tail). None when `wanted()` turned false while it ran: the
    command was stopped."""
    try:
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=child_env(env),
            start_new_session=True,
            preexec_fn=restore_inherited_limit,
        )
    except OSError as exc:
        return False, None, f"could not start: {exc}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    output = asyncio.ensure_future(process.communicate())
    try:
        while not output.done():
            remaining = deadline - loop.time()
            if remaining <= 0 or not wanted():
                break
            await asyncio.wait({output}, timeout=min(WANTED_POLL_SECONDS, remaining))
    except asyncio.CancelledError:
        output.cancel()
        _kill_group(process.pid)
        raise
    if not output.done():
        output.cancel()
        _kill_group(process.pid)
        await process.wait()
        return None if not wanted() else (False, None, "")
    tail = output.result()[0].decode("utf-8", "replace")[-VERIFY_TAIL_CHARS:]
    return process.returncode == 0, process.returncode, tail


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
