"""A client's single run: one session, in the client's cwd or one repository."""

from __future__ import annotations

from dataclasses import dataclass

from orca_client.events import RunCreated
from orca_client.wire import RunStarted, StartRun, WireError
from orca_daemon.runs.launcher import (
    MAX_TITLE_CHARS,
    Launcher,
    NewSession,
    Prepared,
    client_context,
    new_run_id,
    validate_cwd,
)
from orca_daemon.runs.run_log import RunLog
from orca_daemon.runs.supervisor import Supervisor


@dataclass(frozen=True)
class RepoTarget:
    """A repository a run works in (`[[repos]]` in config.toml)."""

    repo: str
    path: str


async def start_single(
    runs: RunLog,
    launcher: Launcher,
    supervisor: Supervisor,
    request: StartRun,
    target: RepoTarget | None,
) -> RunStarted:
    """Record a new run with one session and start its process. The caller holds
    `Admission.starting()`."""
    cwd = validate_cwd(target.path if target is not None else request.cwd)
    agent = request.agent or "command"
    client = client_context(request)
    resume = conversation_of(runs, request.follow_up, agent) if request.agent else None
    if request.agent is None and request.follow_up is not None:
        raise WireError("bad_request", "a follow-up continues an agent: give --agent")
    launch = await launcher.prepare_launch(
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
        worktree=launcher.wants_worktree(request.agent, request.worktree),
    )
    created = RunCreated(
        run_id,
        title=title,
        cwd=cwd,
        prompt=request.prompt,
        repo=target.repo if target is not None else None,
    )
    stored = await runs.create(run_id, [created, new.created(run_id)])
    launcher.remember_client(run_id, client)
    supervisor.begin_session(run_id, new.session_id, Prepared(launch), admitted=True)
    return RunStarted(run_id=run_id, session_id=new.session_id, position=stored[-1].position)


def conversation_of(runs: RunLog, run_id: str | None, agent: str) -> str | None:
    """The agent's own conversation id from an earlier run, to continue it."""
    if run_id is None:
        return None
    run = runs.state.runs.get(run_id)
    if run is None:
        raise WireError("not_found", f"no run with id {run_id!r} to follow up")
    for session_id in reversed(run.session_ids):
        session = runs.state.sessions[session_id]
        if session.agent == agent and session.agent_session_id:
            return session.agent_session_id
    raise WireError("invalid_state", f"run {run_id} has no {agent} conversation to continue")
