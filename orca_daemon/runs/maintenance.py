"""`orca doctor` and `orca clean`: what a run's sessions are doing, and removing its worktrees."""

from __future__ import annotations

import math
import shlex
import time

import anyio

from orca_client.events import OutputAppended, WorktreeRemoved, run_stream
from orca_client.views import TERMINAL_STATUSES, DoctorResult, SessionHealth
from orca_client.wire import CleanResult, WireError
from orca_daemon.runs.run_log import RunLog
from orca_daemon.runs.supervisor import Supervisor
from orca_daemon.sessions.worktrees import WorktreeError, remove_unrecorded, remove_worktree

TAIL_CHARS = 2000
READ_PAGE = 1000


async def doctor(
    runs: RunLog, supervisor: Supervisor, run_id: str, stuck_after: float | None, default: float
) -> DoctorResult:
    """Every live session of the run (and of its child runs): pid, whether its process is
    alive, its last heartbeat and activity, its output's tail, and how to retry it."""
    limit = stuck_after if stuck_after is not None else default
    if not (math.isfinite(limit) and limit > 0):
        raise WireError("bad_request", f"stuck_after must be a number greater than 0, got {limit}")
    run = runs.state.runs[run_id]
    run_ids = [run_id, *run.child_run_ids]
    now = time.time()
    health = []
    for rid in run_ids:
        member = runs.state.runs[rid]
        live = [
            runs.state.sessions[s]
            for s in member.session_ids
            if runs.state.sessions[s].status not in TERMINAL_STATUSES
        ]
        if not live:
            continue
        tails = await _output_tails(runs, rid, {s.session_id for s in live})
        for session in live:
            process = supervisor.process_of(session.session_id)
            alive = process is not None and process.alive()
            activity = session.last_activity_at or session.created_at
            idle = now - activity
            if session.status == "waiting_for_answer":
                stuck, why = False, "waiting for an answer (orca answer)"
            elif session.status == "created" and session.pid is None:
                # Not started yet: its worktree (or its process) is still being made.
                doing = (
                    "creating its worktree"
                    if session.in_worktree and session.worktree is None
                    else "starting"
                )
                stuck = idle > limit
                why = f"{doing} for {idle:.0f}s" + (f" (limit {limit:g}s)" if stuck else "")
            elif process is None or (session.pid is not None and not alive):
                stuck, why = True, "its process is not running"
            elif idle > limit:
                stuck, why = True, f"no activity for {idle:.0f}s (limit {limit:g}s)"
            else:
                stuck, why = False, f"active {idle:.0f}s ago"
            retry = None
            if session.task_id is not None:
                retry = f"orca plan retry {shlex.quote(rid)} {shlex.quote(session.task_id)}"
            health.append(
                SessionHealth(
                    session_id=session.session_id,
                    task_id=session.task_id,
                    status=session.status,
                    pid=session.pid,
                    alive=alive,
                    last_heartbeat=supervisor.heartbeats.get(session.session_id),
                    last_activity_at=session.last_activity_at,
                    stuck=stuck,
                    why=why,
                    output_tail=tails.get(session.session_id, ""),
                    retry_command=retry,
                )
            )
    health += _verifying(runs, run_id, now, limit)
    return DoctorResult(run_id=run_id, status=run.status, sessions=health, stuck_after=limit)


def _verifying(runs: RunLog, run_id: str, now: float, limit: float) -> list[SessionHealth]:
    """Plan tasks whose agent is done and whose verify commands orcad is running now."""
    run = runs.state.runs[run_id]
    if run.status in TERMINAL_STATUSES:
        return []
    found = []
    for task in run.tasks:
        session = runs.state.sessions.get(task.session_id or "")
        if task.status != "in_progress" or session is None or session.status != "completed":
            continue
        since = now - (session.ended_at or now)
        stuck = since > limit
        why = f"orcad has been running its verify commands for {since:.0f}s"
        found.append(
            SessionHealth(
                session_id=session.session_id,
                task_id=task.task_id,
                status="verifying",
                pid=None,
                alive=False,
                last_heartbeat=None,
                last_activity_at=session.ended_at,
                stuck=stuck,
                why=why + (f" (limit {limit:g}s)" if stuck else ""),
                output_tail="",
                retry_command=f"orca plan retry {shlex.quote(run_id)} {shlex.quote(task.task_id)}",
            )
        )
    return found


async def _output_tails(runs: RunLog, run_id: str, session_ids: set[str]) -> dict[str, str]:
    """The end of each session's output, read a page at a time (memory stays bounded)."""
    tails: dict[str, str] = {}
    after = 0
    while page := await runs.store.read_stream(
        run_stream(run_id), after, "output_appended", limit=READ_PAGE
    ):
        after = page[-1].version
        for stored in page:
            event = stored.decode()
            assert isinstance(event, OutputAppended)
            if event.session_id in session_ids:
                text = tails.get(event.session_id, "") + event.text[-TAIL_CHARS:]
                tails[event.session_id] = text[-TAIL_CHARS:]
    return tails


async def clean(runs: RunLog, supervisor: Supervisor, run_id: str) -> CleanResult:
    """Remove the worktrees of an ended run (and its child runs); branches are kept."""
    run = runs.state.runs[run_id]
    if run.status not in TERMINAL_STATUSES:
        raise WireError(
            "invalid_state",
            f"run {run_id} is {run.status}: cancel it (orca cancel {run_id}) or let it end first",
        )
    removed: list[str] = []
    gone: list[str] = []
    branches: list[str] = []
    members = [run_id, *run.child_run_ids]
    sessions = [s for rid in members for s in runs.state.runs[rid].session_ids]
    await supervisor.wait_stopped(
        sessions, supervisor.cancel_grace + 2.0
    )  # a cancelled agent may linger
    for rid in members:
        async with runs.lock(rid):  # two cleans at once: the second finds them removed
            for session_id in runs.state.runs[rid].session_ids:
                tree = runs.state.sessions[session_id].worktree
                if tree is None or tree.removed:
                    continue
                try:
                    existed = await anyio.to_thread.run_sync(remove_worktree, tree.repo, tree.path)
                except WorktreeError as exc:
                    raise WireError("internal", f"could not remove {tree.path}: {exc}") from None
                (removed if existed else gone).append(tree.path)
                branches.append(tree.branch)
                await runs.append(rid, [WorktreeRemoved(rid, session_id, tree.path)])
        # One made just before a crash, whose WorktreeCreated never reached the log.
        recorded = {
            tree.path
            for s in runs.state.runs[rid].session_ids
            if (tree := runs.state.sessions[s].worktree) is not None
        }
        folder = supervisor.runs_dir / rid
        try:
            unrecorded = await anyio.to_thread.run_sync(remove_unrecorded, folder, recorded)
        except WorktreeError as exc:
            raise WireError("internal", f"could not remove a worktree in {folder}: {exc}") from None
        removed += unrecorded
    return CleanResult(run_id=run_id, removed=removed, already_gone=gone, branches_kept=branches)
