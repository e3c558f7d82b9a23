"""Parent runs: one child run per repository, in parallel (up to a limit) or in sequence.

Which repositories: the ones named, else the feature's, else the project's, else every enabled
one (`[[repos]]` in config.toml); none is an error before anything starts. A child is started by
appending its `RunCreated` to its own new stream (expected version 0), so it starts once however
often the parent is advanced. The parent ends once its children have: completed if all of them
completed, failed otherwise; cancelling it cancels its live children.
"""

from __future__ import annotations

import contextlib
import logging
import os

from orca_client.events import (
    ChildrenSpec,
    ChildTarget,
    RunCreated,
    RunStatusChanged,
)
from orca_client.views import TERMINAL_STATUSES, RunInfo
from orca_client.wire import RunStarted, StartRun, WireError
from orca_daemon.config import RepoSettings
from orca_daemon.log.records import AppendMode, ConcurrencyError, LogUnavailable
from orca_daemon.orchestration.effects import RunEffects
from orca_daemon.orchestration.parent_rules import ParentStep, decide_children
from orca_daemon.orchestration.underway import Underway
from orca_daemon.runs.launcher import (
    MAX_TITLE_CHARS,
    NewSession,
    Prepared,
    client_context,
    new_run_id,
    validate_cwd,
)
from orca_daemon.runs.lifecycle import parent_cancelled
from orca_daemon.runs.starts import RepoTarget

DECIDE_ATTEMPTS = 20
"""Decisions made again when the parent changed meanwhile, before the reactor retries."""


class ConflictingChanges(Exception):
    """A run kept changing while a decision about it was being recorded."""


log = logging.getLogger(__name__)


def resolve_repositories(
    repos: list[RepoSettings],
    *,
    names: list[str],
    project: str | None,
    feature: str | None,
) -> list[RepoSettings]:
    """The repositories a run works in: named ones, else the feature's, else the project's,
    else every enabled one. Raises `ValueError` saying what to do when there are none."""
    if names:
        by_name = {repo.name: repo for repo in repos}
        unknown = [name for name in names if name not in by_name]
        if unknown:
            known = ", ".join(sorted(by_name)) or "none"
            raise ValueError(
                f"no repository named {unknown[0]!r} in config.toml (configured: {known})"
            )
        return [by_name[name] for name in dict.fromkeys(names)]
    enabled = [repo for repo in repos if repo.enabled]
    if feature is not None:
        found = [repo for repo in enabled if feature in repo.features]
        if found:
            return found
    if project is not None:
        found = [repo for repo in enabled if project in repo.projects]
        if found:
            return found
    if enabled:
        return enabled
    scope = f" for project {project}" if project is not None else ""
    scope += f" (feature {feature})" if feature is not None else ""
    raise ValueError(
        f"no repositories configured{scope}: pass --repo or add [[repos]] to config.toml"
    )


class ParentCoordinator:
    """Starts parent runs, their children as room allows, and ends them with their children."""

    def __init__(self, runs: RunEffects) -> None:
        self._runs = runs
        self._starting = Underway(runs.reconsider)
        """Parent runs whose first children a client's request is starting now."""

    def resolve_targets(self, request: StartRun) -> list[RepoTarget] | None:
        """Where a run request works: None for its own cwd (no repositories asked for)."""
        if not (request.repos or request.project or request.feature or request.mode == "plan"):
            return None
        try:
            found = resolve_repositories(
                self._runs.config.repos,
                names=request.repos,
                project=request.project,
                feature=request.feature,
            )
        except ValueError as exc:
            raise WireError("bad_request", str(exc)) from None
        targets = []
        for repo in found:
            path = os.path.expanduser(repo.path)
            if not os.path.isdir(path):
                raise WireError("bad_request", f"repository {repo.name}: {path} is not a directory")
            targets.append(RepoTarget(repo.name, path))
        return targets

    async def start(self, request: StartRun, targets: list[RepoTarget]) -> RunStarted:
        runs = self._runs
        cwd = validate_cwd(request.cwd)
        client = client_context(request)
        if request.follow_up is not None:
            raise WireError("bad_request", "a follow-up continues one run: give one repository")
        for target in targets:  # every child must be able to start before any does
            await runs.prepare_launch(
                request.agent, request.command, request.prompt, target.path, client
            )
        limit = request.max_parallel
        if limit is None:
            limit = runs.config.orchestration.max_parallel_children
        if limit < 1:
            raise WireError("bad_request", "max_parallel must be at least 1")
        run_id = new_run_id()
        what = request.prompt or " ".join(request.command)
        title = (request.title or f"{len(targets)} repositories: {what}")[:MAX_TITLE_CHARS]
        spec = ChildrenSpec(
            mode=request.orchestration_mode,
            targets=[ChildTarget(t.repo, t.path) for t in targets],
            max_parallel=limit,
            continue_on_failure=request.continue_on_failure,
            agent=request.agent,
            command=list(request.command),
            worktree=runs.wants_worktree(request.agent, request.worktree),
        )
        created = RunCreated(
            run_id,
            title=title,
            cwd=cwd,
            kind="parent",
            prompt=request.prompt,
            children=spec,
            agent_lookup=client,
        )
        with self._starting.request(run_id):  # the reactor carries on after it
            stored = await runs.create_run(run_id, [created])
            runs.remember_client(run_id, client)
            # Within the client's request nothing waits for the log: when it cannot be
            # written, the parent is recorded and the reactor starts its children once it can.
            with contextlib.suppress(LogUnavailable):
                await self._advance(run_id, mode="refuse")
        return RunStarted(
            run_id=run_id,
            session_id=None,
            position=stored[-1].position,
            child_run_ids=list(runs.state.runs[run_id].child_run_ids),
        )

    async def advance(self, parent_id: str) -> None:
        """The reactor's pass: start the children there is room for; end the parent once
        nothing more will run (unless a client's request is starting the parent now)."""
        if parent_id not in self._starting:
            await self._advance(parent_id)

    async def _advance(self, parent_id: str, mode: AppendMode = "wait") -> None:
        """Decided from the state; launches prepared outside the run's lock, the decision
        recorded under it if it still holds. `mode`: what appends do while the log cannot be
        written."""
        runs = self._runs
        for _ in range(DECIDE_ATTEMPTS):
            step = self._step(parent_id)
            if step is None:
                return
            spec = runs.state.created[parent_id].children
            assert spec is not None
            prompt = runs.state.created[parent_id].prompt  # whole: the view's is cut
            agent = spec.agent or "command"
            prepared = [
                await runs.prepare(parent_id, agent, prompt, spec.targets[i].path, spec.command)
                for i in step.start
            ]
            async with runs.lock(parent_id):
                if self._step(parent_id) != step:
                    continue  # a child ended, or the parent was cancelled: decide again
                if step.ending is not None:
                    await runs.append(parent_id, [step.ending], mode=mode)
                    return
                if step.running:
                    running = RunStatusChanged(parent_id, "running")
                    await runs.append(parent_id, [running], mode=mode)
                parent = runs.state.runs[parent_id]
                for index, launch in zip(step.start, prepared, strict=True):
                    await self._start_child(parent, spec, index, launch, mode)
            return
        raise ConflictingChanges(f"parent run {parent_id} kept changing while it was advanced")

    def _step(self, parent_id: str) -> ParentStep | None:
        """What the parent does next; None once it has ended (or orcad stops)."""
        runs = self._runs
        parent = runs.state.runs[parent_id]
        if parent.status in TERMINAL_STATUSES or not runs.accepting:
            return None
        spec = runs.state.created[parent_id].children
        assert spec is not None
        return decide_children(parent, [runs.state.runs[c] for c in parent.child_run_ids], spec)

    async def cancel_live_children(self, parent_id: str) -> None:
        """A parent that ended cancelled leaves no child running (a crash between the parent's
        cancel and its children's is repaired here)."""
        runs = self._runs
        parent = runs.state.runs[parent_id]
        if parent.status != "cancelled":
            return
        for child_id in parent.child_run_ids:
            if runs.state.runs[child_id].status not in TERMINAL_STATUSES:
                await runs.cancel_run(child_id, parent_cancelled(parent.reason))

    async def _start_child(
        self, parent: RunInfo, spec: ChildrenSpec, index: int, prepared: Prepared, mode: AppendMode
    ) -> None:
        runs = self._runs
        target = spec.targets[index]
        child_id = f"{parent.run_id}-{index + 1}"
        prompt = runs.state.created[parent.run_id].prompt
        session = NewSession(
            f"{child_id}.1",
            spec.agent or "command",
            prepared.command,
            target.path,
            prompt,
            worktree=spec.worktree,
        )
        created = RunCreated(
            child_id,
            title=f"{target.repo}: {parent.title}"[:MAX_TITLE_CHARS],
            cwd=target.path,
            parent_run_id=parent.run_id,
            prompt=prompt,
            repo=target.repo,
        )
        try:
            await runs.create_run(child_id, [created, session.created(child_id)], mode)
        except ConcurrencyError:
            return  # started already (by an earlier orcad, say)
        runs.remember_client(child_id, runs.client_of(parent.run_id))
        runs.begin_session(child_id, session.session_id, prepared)
