"""Verifying a plan task whose agent reported done: its work is committed (in its worktree, for
its dependants to build on), then its `verify` commands run here, in order, where its agent
worked; the first failure fails the attempt. Each attempt's verification runs under a cancel
scope of its own, cancelled as soon as nobody waits for that attempt (retried, run ended)."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import anyio.abc

from orca_client.events import Event, TaskStatusChanged, VerifyFinished
from orca_client.plan import PlanTask
from orca_client.views import TERMINAL_STATUSES, SessionInfo
from orca_daemon.orchestration.effects import RunEffects
from orca_daemon.orchestration.plan_rules import failed_attempt, has_worktree, plan_spec
from orca_daemon.sessions.commands import CommandResult, run_command
from orca_daemon.sessions.worktrees import WorktreeError, commit_all

log = logging.getLogger(__name__)


Attempt = tuple[str, str, int]
"""(run id, task id, attempt)."""


class PlanVerifier:
    """Owns the verifications running now (started in its task group by `run`)."""

    def __init__(self, runs: RunEffects) -> None:
        self._runs = runs
        self._tg: anyio.abc.TaskGroup | None = None
        self._running: dict[Attempt, anyio.CancelScope] = {}
        self._failed_verify: dict[tuple[str, str], tuple[str, str]] = {}
        """(run, task) -> (command, output tail) of the verify that failed the attempt before a
        retry, for the retry's prompt (kept only until that retry starts)."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    def verifying(self, run_id: str, task_id: str, attempt: int) -> bool:
        return (run_id, task_id, attempt) in self._running

    def start(self, run_id: str, place: int) -> None:
        """Verify the in-progress attempt of the task at `place` (once)."""
        assert self._tg is not None, "the verifier runs"
        info = self._runs.state.runs[run_id].tasks[place]
        key = (run_id, info.task_id, info.attempt)
        session = self._runs.state.sessions.get(info.session_id or "")
        if key in self._running or session is None:
            return
        task = plan_spec(self._runs.state, run_id).plan.tasks[place]
        scope = self._running[key] = anyio.CancelScope()
        self._tg.start_soon(self._verify, key, task, session, scope)

    def stop_unwanted(self, run_id: str) -> None:
        """Cancel the verifications of this run that nobody waits for any more."""
        for key, scope in list(self._running.items()):
            if key[0] == run_id and not self._wanted(key):
                scope.cancel()

    def ended(self, run_id: str) -> None:
        """The run has ended: stop its verifications, forget what it kept for retries."""
        self.stop_unwanted(run_id)
        for key in [key for key in self._failed_verify if key[0] == run_id]:
            del self._failed_verify[key]

    def failed_verify(self, run_id: str, task_id: str) -> tuple[str, str] | None:
        return self._failed_verify.get((run_id, task_id))

    def forget(self, run_id: str, task_id: str) -> None:
        self._failed_verify.pop((run_id, task_id), None)

    def _wanted(self, key: Attempt) -> bool:
        """Still the attempt in progress (not retried, the run not ended)."""
        run_id, task_id, attempt = key
        run = self._runs.state.runs[run_id]
        place = self._runs.state.task_index.get(run_id, {}).get(task_id)
        if run.status in TERMINAL_STATUSES or place is None:
            return False
        info = run.tasks[place]
        return (info.status, info.attempt) == ("in_progress", attempt)

    async def _verify(
        self, key: Attempt, task: PlanTask, session: SessionInfo, scope: anyio.CancelScope
    ) -> None:
        """Never raises: what goes wrong here fails the attempt (a retry, if it has retries
        left), so the run carries on."""
        run_id = key[0]
        try:
            with scope:
                try:
                    outcome = await self._check(key, task, session)
                except Exception as exc:
                    log.exception("task %s: its verification failed inside orcad", task.id)
                    outcome = (f"it could not be verified: {type(exc).__name__}: {exc}", "", None)
                await self._record(key, session, *outcome)
        except Exception:
            log.exception("task %s: the outcome of its verification was not recorded", task.id)
        finally:
            self._running.pop(key, None)
            self._runs.reconsider(run_id)  # settle the attempt, whatever happened here

    async def _check(
        self, key: Attempt, task: PlanTask, session: SessionInfo
    ) -> tuple[str | None, str, tuple[str, str] | None]:
        """(why the attempt failed or None, what it did when done, the verify that failed)."""
        run_id, _, attempt = key
        runs = self._runs
        timeout = plan_spec(runs.state, run_id).verify_timeout_seconds
        done = _verified(len(task.verify))
        if has_worktree(session):  # before verify, which may leave files
            assert session.worktree is not None
            message = f"orca: task {task.id} of run {run_id} (attempt {attempt})"
            try:
                commit = await anyio.to_thread.run_sync(commit_all, session.worktree.path, message)
            except WorktreeError as exc:
                return f"its work could not be committed: {exc}", done, None
            if commit is not None:  # its dependants' worktrees start from this
                done += f"; its work is commit {commit[:12]} on {session.worktree.branch}"
        env = {
            "ORCA_RUN_ID": run_id,
            "ORCA_SESSION_ID": session.session_id,
            "ORCA_TASK_ID": task.id,
            "ORCA_TASK_ATTEMPT": str(attempt),
        }
        for command in task.verify:
            try:
                result = await run_command(command, _worked_in(session), timeout, env)
            except Exception as exc:  # whatever keeps it from running fails the attempt
                log.exception("task %s: verify command %r could not run", task.id, command)
                result = CommandResult(False, None, f"could not run it: {exc}")
            ok, code, tail = result.passed, result.exit_code, result.tail
            finished = VerifyFinished(run_id, task.id, attempt, command, ok, code, tail)
            await runs.append(run_id, [finished])
            if not ok:
                why = _failure_text(result, timeout)
                return f"verify command failed ({why}): {command}", done, (command, tail)
        return None, done, None

    async def _record(
        self,
        key: Attempt,
        session: SessionInfo,
        failure: str | None,
        done: str,
        failed_verify: tuple[str, str] | None,
    ) -> None:
        """The attempt's outcome, decided and recorded under the run's lock (unless nobody
        waits for the attempt any more)."""
        run_id, task_id, attempt = key
        runs = self._runs
        async with runs.lock(run_id):
            if not self._wanted(key):
                return
            run = runs.state.runs[run_id]
            info = run.tasks[runs.state.task_index[run_id][task_id]]
            if failure is None:  # the session ended before verify began: its summary is final
                events: list[Event] = [
                    TaskStatusChanged(run_id, task_id, "done", done, summary=session.summary)
                ]
            else:
                events = failed_attempt(runs.state, run, info, f"attempt {attempt}: {failure}")
            retried = any(
                isinstance(event, TaskStatusChanged) and event.status == "pending"
                for event in events
            )
            if retried and failed_verify is not None:  # for the retry's prompt
                self._failed_verify[(run_id, task_id)] = failed_verify
            await runs.append(run_id, events)


def _verified(count: int) -> str:
    if not count:
        return "the agent reported done"
    return f"done; {count} verify command{'' if count == 1 else 's'} passed"


def _failure_text(result: CommandResult, timeout: float) -> str:
    if result.timed_out:
        return f"timed out after {timeout:g}s"
    if result.exit_code is None:  # it could not start, or run
        return result.tail
    return f"exit status {result.exit_code}"


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
