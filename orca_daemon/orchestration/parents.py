"""Parent runs: one child run per repository, in parallel (up to a limit) or in sequence.

Which repositories: the ones named, else the feature's, else the project's, else every enabled
one (`[[repos]]` in config.toml); none is an error before anything starts. A child is started by
appending its `RunCreated` to its own new stream (expected version 0), so it starts once however
often the parent is advanced. The parent ends once its children have: completed if all of them
completed, failed otherwise; cancelling it cancels its live children.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orca_client.events import (
    ChildrenSpec,
    ChildTarget,
    RunCreated,
    RunStatusChanged,
    run_stream,
)
from orca_client.wire import TERMINAL_STATUSES, RunInfo, RunStarted, StartRun, WireError
from orca_daemon.config import RepoSettings
from orca_daemon.log.records import AppendMode, ConcurrencyError, LogUnavailable

if TYPE_CHECKING:
    from orca_daemon.runs.manager import RunManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepoTarget:
    repo: str
    path: str


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

    def __init__(self, runs: RunManager) -> None:
        self._runs = runs

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
        from orca_daemon.runs.manager import (
            MAX_TITLE_CHARS,
            _validate_cwd,
            client_context,
            new_run_id,
        )

        runs = self._runs
        cwd = _validate_cwd(request.cwd)
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
        stored = await runs.store.append(
            run_stream(run_id), [created], expected_version=0, mode="refuse"
        )
        runs.remember_client(run_id, client)
        try:  # within the client's request: nothing waits for the log
            await self.advance(run_id, mode="refuse")
        except LogUnavailable:  # the parent is recorded: its children start once it can be
            runs.after_change(run_id)
        return RunStarted(
            run_id=run_id,
            session_id=None,
            position=stored[-1].position,
            child_run_ids=list(runs.state.runs[run_id].child_run_ids),
        )

    async def advance(self, parent_id: str, mode: AppendMode = "wait") -> None:
        """Start the children there is room for; end the parent once nothing more will run.
        `mode`: what its appends do while the log cannot be written."""
        runs = self._runs
        async with runs.lock(parent_id):
            parent = runs.state.runs[parent_id]
            if parent.status in TERMINAL_STATUSES or not runs.accepting:
                return
            spec = runs.state.created[parent_id].children
            assert spec is not None
            children = [runs.state.runs[c] for c in parent.child_run_ids]
            live = [c for c in children if c.status not in TERMINAL_STATUSES]
            failed = [c for c in children if c.status in ("failed", "cancelled")]
            halted = spec.mode == "sequential" and bool(failed) and not spec.continue_on_failure
            start_from = len(children)
            if halted:
                count = 0
            elif spec.mode == "parallel":
                count = spec.max_parallel - len(live)
            else:
                count = 0 if live else 1
            to_start = list(range(start_from, min(len(spec.targets), start_from + count)))
            if not to_start and not live:
                await runs.append(parent_id, [self._ending(parent, children, spec)], mode=mode)
                runs.after_change(parent_id)
                return
            if to_start and parent.status == "queued":
                await runs.append(parent_id, [RunStatusChanged(parent_id, "running")], mode=mode)
            for index in to_start:
                await self._start_child(parent, spec, index, mode)

    def _ending(
        self, parent: RunInfo, children: list[RunInfo], spec: ChildrenSpec
    ) -> RunStatusChanged:
        not_started = len(spec.targets) - len(children)
        bad = [c for c in children if c.status != "completed"]
        if not bad and not not_started:
            return RunStatusChanged(
                parent.run_id, "completed", f"all {len(children)} child runs completed"
            )
        named = ", ".join(f"{c.run_id} ({c.repo}: {c.status})" for c in bad)
        reason = f"child runs that did not complete: {named}"
        if not_started:
            reason += f"; {not_started} not started (sequential, stopped at the first failure)"
        return RunStatusChanged(parent.run_id, "failed", reason)

    async def _start_child(
        self, parent: RunInfo, spec: ChildrenSpec, index: int, mode: AppendMode
    ) -> None:
        from orca_daemon.runs.manager import MAX_TITLE_CHARS, NewSession

        runs = self._runs
        target = spec.targets[index]
        child_id = f"{parent.run_id}-{index + 1}"
        agent = spec.agent or "command"
        prompt = runs.state.created[parent.run_id].prompt  # whole: the view's is cut
        prepared = await runs.prepare(parent.run_id, agent, prompt, target.path, spec.command)
        session = NewSession(
            f"{child_id}.1",
            agent,
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
            await runs.store.append(
                run_stream(child_id),
                [created, session.created(child_id)],
                expected_version=0,
                mode=mode,
            )
        except ConcurrencyError:
            return  # started already (by an earlier orcad, say)
        runs.remember_client(child_id, runs.client_of(parent.run_id))
        runs.begin_session(child_id, session.session_id, prepared)
