"""What a plan run does next: pure functions of the projected state, so each rule is tested as
"given these events, these decisions".

An in-progress task whose session ended is settled: done (or verified first), retried while it
has retries left, interrupted (orcad stopped or restarted under it: not counted), or given up (its
dependants cancelled with it, by default). The run ends once no task runs and none can start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from orca_client.events import Event, PlanSpec, RunStatusChanged, TaskStatusChanged
from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo, TaskInfo
from orca_daemon.state.projection import State

INTERRUPTED_CAUSES = frozenset({"orcad_stopped", "orcad_restarted"})
"""How a session ends when orcad stops or restarts under it: its attempt does not count."""


@dataclass
class Settled:
    """Events for tasks whose session ended, and tasks whose work orcad verifies first."""

    events: list[Event] = field(default_factory=list)
    verify: list[int] = field(default_factory=list)


def plan_spec(state: State, run_id: str) -> PlanSpec:
    spec = state.created[run_id].plan
    assert spec is not None, f"run {run_id} is a live plan run"
    return spec


def settle(state: State, run_id: str, verifying: Callable[[str, int], bool]) -> Settled:
    """Settle every in-progress task whose session ended (`verifying(task_id, attempt)`: its
    verify commands run now; it is left alone)."""
    run = state.runs[run_id]
    spec = plan_spec(state, run_id)
    settled = Settled()
    for place in sorted(state.plans[run_id].in_progress):
        task = run.tasks[place]
        session = state.sessions.get(task.session_id or "")
        if session is None or session.status not in TERMINAL_STATUSES:
            continue
        if verifying(task.task_id, task.attempt):
            continue
        if session.status == "completed":
            if spec.plan.tasks[place].verify or has_worktree(session):  # verify, commit first
                settled.verify.append(place)
                continue
            settled.events.append(
                TaskStatusChanged(
                    run_id, task.task_id, "done", "the agent reported done", summary=session.summary
                )
            )
        elif session.status == "cancelled":
            why = f"its session was cancelled: {session.reason}"
            settled.events += give_up(state, run, task, "cancelled", why)
        elif state.causes.get(session.session_id) in INTERRUPTED_CAUSES:
            settled.events.append(
                TaskStatusChanged(
                    run_id,
                    task.task_id,
                    "pending",
                    f"attempt {task.attempt} was interrupted ({session.reason}); it runs again",
                    interrupted=True,
                )
            )
        else:
            why = f"attempt {task.attempt} failed: {session.reason}"
            settled.events += failed_attempt(state, run, task, why)
    return settled


def failed_attempt(state: State, run: RunInfo, task: TaskInfo, why: str) -> list[Event]:
    """Tried again while retries are left (interrupted attempts do not count); else given up."""
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
    return give_up(state, run, task, "failed", why)


def give_up(
    state: State, run: RunInfo, task: TaskInfo, status: Literal["failed", "cancelled"], why: str
) -> list[Event]:
    """The task ends for good; by default, its dependants are cancelled with it."""
    events: list[Event] = [TaskStatusChanged(run.run_id, task.task_id, status, why)]
    if plan_spec(state, run.run_id).cancel_dependants:
        graph = state.plans[run.run_id].graph
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


def ready_to_start(state: State, run_id: str) -> list[int]:
    """The tasks to start now: ready ones, first in plan order, as many as there is room for."""
    progress = state.plans[run_id]
    return progress.first_ready(plan_spec(state, run_id).max_parallel - len(progress.in_progress))


def plan_ending(state: State, run_id: str) -> RunStatusChanged | None:
    """The run's end once no task runs and none can start."""
    run = state.runs[run_id]
    progress = state.plans[run_id]
    if progress.in_progress or progress.ready:
        return None
    if all(t.status == "done" for t in run.tasks):
        return RunStatusChanged(run_id, "completed", f"all {len(run.tasks)} tasks done")
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
    return RunStatusChanged(run_id, "failed", "tasks " + "; ".join(parts))


def has_worktree(session: SessionInfo) -> bool:
    return session.worktree is not None and not session.worktree.removed


def _some(task_ids: list[str], shown: int = 20) -> str:
    """Task ids for a reason: the first `shown`, then how many more."""
    if len(task_ids) <= shown:
        return ", ".join(task_ids)
    return f"{', '.join(task_ids[:shown])} and {len(task_ids) - shown} more"
