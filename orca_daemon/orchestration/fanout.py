"""Fan-outs: several workers on one prompt, then exactly one orchestrator that synthesizes.

The orchestrator is decided by an `OrchestratorTriggered` event appended at the run stream's
expected version, with the orchestrator's `SessionCreated` in the same transaction: of two
triggers that race (two clients, a client and orcad, two daemons on one log), the second append
loses and finds the first one's orchestrator. A daemon killed before the trigger triggers on
restart; one killed after it, before the orchestrator started, starts it on restart.
"""

from __future__ import annotations

import copy
import logging
from collections import deque
from pathlib import Path

from orca_client.events import (
    AgentLookup,
    FanOutSpec,
    OrchestratorTriggered,
    OutputAppended,
    RunCreated,
    RunStatusChanged,
)
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import OrchestrateResult, RunStarted, StartDebug, WireError
from orca_daemon.agents.registry import Launch
from orca_daemon.log.records import ConcurrencyError
from orca_daemon.orchestration.effects import RunEffects
from orca_daemon.orchestration.orchestrator_prompt import WorkerReport, build_orchestrator_prompt
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

MAX_WORKERS = 256
TRIGGER_ATTEMPTS = 20
READ_PAGE = 1000
"""Output events read at a time while building the orchestrator's prompt."""
STOP_WAIT_SECONDS = 2.0
"""Beyond the cancel grace period: how long the orchestrator waits for cancelled workers'
processes to exit and their output to be written."""
SYNTHESIS_NAME = "synthesis.md"


class FanOutCoordinator:
    """Starts fan-outs and triggers each one's orchestrator exactly once."""

    def __init__(self, runs: RunEffects) -> None:
        self._runs = runs
        self._requested = Underway(runs.reconsider)
        """Runs a client's `orchestrate` is under way for."""

    async def start(self, request: StartDebug) -> RunStarted:
        runs = self._runs
        async with runs.starting():
            cwd = validate_cwd(request.cwd)
            if not request.agents:
                raise WireError("bad_request", "a fan-out needs at least one agent")
            if len(request.agents) > MAX_WORKERS:
                raise WireError(
                    "bad_request",
                    f"a fan-out has at most {MAX_WORKERS} workers, got {len(request.agents)}",
                )
            if not request.prompt.strip():
                raise WireError("bad_request", "a fan-out needs a prompt")
            settings = runs.config.orchestration
            orchestrator = request.orchestrator or settings.orchestrator
            client = client_context(request)
            launches: dict[str, Launch] = {}
            for agent in dict.fromkeys([*request.agents, orchestrator]):  # each checked once
                launches[agent] = await runs.prepare_launch(agent, [], request.prompt, cwd, client)
            own: list[Launch] = []  # a launch per worker: a translator holds one session's state
            for index, agent in enumerate(request.agents):
                first = request.agents.index(agent) == index
                own.append(
                    launches[agent]
                    if first
                    else await self._copy(launches[agent], agent, request.prompt, cwd, client)
                )
            run_id = new_run_id()
            task_file = self._task_file(request.task_file, run_id)
            title = (request.title or f"fan-out: {request.prompt}")[:MAX_TITLE_CHARS]
            workers = [
                NewSession(
                    f"{run_id}.{index}",
                    agent,
                    launches[agent].command,
                    cwd,
                    request.prompt,
                    debug_run_id=run_id,
                    worktree=runs.wants_worktree(agent, request.worktree),
                )
                for index, agent in enumerate(request.agents, start=1)
            ]
            spec = FanOutSpec(
                orchestrator=orchestrator,
                task_file=task_file,
                per_worker_chars=settings.per_worker_chars,
                total_chars=settings.total_chars,
                worktree=runs.wants_worktree(orchestrator, request.worktree),
            )
            created = RunCreated(
                run_id,
                title=title,
                cwd=cwd,
                kind="fanout",
                prompt=request.prompt,
                fanout=spec,
                agent_lookup=client,
            )
            # A client's request: told at once if the log cannot be written.
            stored = await runs.create_run(run_id, [created, *(w.created(run_id) for w in workers)])
            runs.remember_client(run_id, client)
            for worker, launch in zip(workers, own, strict=True):
                runs.begin_session(run_id, worker.session_id, Prepared(launch))
        return RunStarted(
            run_id=run_id,
            session_id=workers[0].session_id,
            position=stored[-1].position,
            session_ids=[w.session_id for w in workers],
            task_file=task_file,
        )

    async def _copy(
        self, launch: Launch, agent: str, prompt: str, cwd: str, client: AgentLookup
    ) -> Launch:
        """Another worker's launch of the same agent, with a translator of its own (a copy of
        the unused one; a new launch when that cannot be copied)."""
        try:
            translator = copy.deepcopy(launch.translator)
        except (TypeError, copy.Error):
            return await self._runs.prepare_launch(agent, [], prompt, cwd, client)
        return Launch(list(launch.command), translator, dict(launch.env))

    def _task_file(self, requested: str | None, run_id: str) -> str:
        """The synthesis file: the client's (absolute, in an existing directory), or one in the
        run's own folder, which is created private."""
        if requested is not None:
            path = Path(requested)
            if not path.is_absolute():
                raise WireError("bad_request", f"task file must be an absolute path: {requested}")
            try:
                if not path.parent.is_dir():
                    raise WireError(
                        "bad_request", f"task file's directory does not exist: {requested}"
                    )
                if path.is_dir():
                    raise WireError("bad_request", f"task file is a directory: {requested}")
            except OSError as exc:  # e.g. a directory orcad may not look in
                raise WireError("bad_request", f"task file {requested}: {exc.strerror}") from None
            return str(path)
        folder = self._runs.runs_dir / run_id
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise WireError("internal", f"cannot create the run's folder {folder}: {exc}") from None
        return str(folder / SYNTHESIS_NAME)

    async def trigger_when_ready(self, run_id: str) -> None:
        """orcad's own trigger: once every worker is terminal (and no client is triggering it
        now: the workers it cancels would otherwise hand the trigger to orcad)."""
        if run_id not in self._requested:
            await self._trigger(run_id, triggered_by="orcad", cancel_live=False)

    async def orchestrate(self, run_id: str, requested_by: str) -> OrchestrateResult:
        """A client's trigger: live workers are cancelled, then the orchestrator starts."""
        run = self._runs.state.runs[run_id]
        if run.kind != "fanout":
            raise WireError(
                "invalid_state", f"run {run_id} is not a fan-out (orca debug starts one)"
            )
        with self._requested.request(run_id):  # then orcad's own trigger, if this one did not
            result = await self._trigger(run_id, triggered_by=requested_by, cancel_live=True)
        if result is None:  # only while orcad stops: the next orcad triggers it
            raise WireError(
                "shutting_down", f"orcad is shutting down; run {run_id} is orchestrated on restart"
            )
        return result

    async def _trigger(
        self, run_id: str, *, triggered_by: str, cancel_live: bool
    ) -> OrchestrateResult | None:
        runs = self._runs
        cancelled: list[str] = []
        for _ in range(TRIGGER_ATTEMPTS):
            run = runs.state.runs[run_id]
            if run.orchestrator_session_id is not None:
                return OrchestrateResult(run_id, run.orchestrator_session_id, True, cancelled)
            if run.status in TERMINAL_STATUSES:
                if not cancel_live:
                    return None
                raise WireError(
                    "invalid_state",
                    f"run {run_id} has ended ({run.status}) without an orchestrator; an ended "
                    "run never changes",
                )
            workers = [runs.state.sessions[s] for s in run.session_ids]
            live = [w.session_id for w in workers if w.status not in TERMINAL_STATUSES]
            if live:
                if not cancel_live:
                    return None
                cancelled += await runs.cancel_sessions(
                    run_id, live, f"orchestration requested by {triggered_by}"
                )
                continue
            created = runs.state.created[run_id]  # kept while the run is live
            # Workers just cancelled may still be writing their last output: read it all.
            await runs.wait_stopped(run.session_ids, runs.cancel_grace + STOP_WAIT_SECONDS)
            if not runs.accepting:
                return None
            version = runs.state.run_versions[run_id]  # the prompt is of the run up to here
            prompt, truncated = await self._prompt(run_id, created)
            assert created.fanout is not None
            prepared = await runs.prepare(run_id, created.fanout.orchestrator, prompt, run.cwd)
            triggered = await self._append_trigger(
                run_id, version, prompt, truncated, prepared.command, triggered_by
            )
            if triggered is None:
                continue
            runs.begin_session(run_id, triggered, prepared)
            log.info("run %s: orchestrator %s started (%s)", run_id, triggered, triggered_by)
            return OrchestrateResult(run_id, triggered, False, cancelled)
        raise WireError("conflict", f"run {run_id} kept changing; try orca orchestrate again")

    async def _append_trigger(
        self,
        run_id: str,
        version: int,
        prompt: str,
        truncated: bool,
        command: list[str],
        triggered_by: str,
    ) -> str | None:
        """Record the trigger and the orchestrator session at `version`, the run's version
        that the prompt was built from; None when the run changed since (decide again)."""
        runs = self._runs
        async with runs.lock(run_id):
            run = runs.state.runs[run_id]
            workers = [runs.state.sessions[s] for s in run.session_ids]
            if run.orchestrator_session_id is not None or run.status in TERMINAL_STATUSES:
                return None
            if not runs.accepting:  # stopping: the next orcad triggers it
                return None
            if any(w.status not in TERMINAL_STATUSES for w in workers):
                return None
            spec = self._spec(run_id)
            session = NewSession(
                f"{run_id}.{len(workers) + 1}",
                spec.orchestrator,
                command,
                run.cwd,
                prompt,
                role="orchestrator",
                debug_run_id=run.debug_run_id,
                worktree=spec.worktree,
            )
            trigger = OrchestratorTriggered(
                run_id,
                debug_run_id=run.debug_run_id or run_id,
                session_id=session.session_id,
                triggered_by=triggered_by[:200],
                worker_statuses={w.session_id: w.status for w in workers},
                truncated=truncated,
            )
            events = [trigger, session.created(run_id), RunStatusChanged(run_id, "reviewing")]
            try:
                await runs.append(run_id, events, expected_version=version)
            except ConcurrencyError:
                return None
            return session.session_id

    def _spec(self, run_id: str) -> FanOutSpec:
        spec = self._runs.state.created[run_id].fanout
        assert spec is not None
        return spec

    async def _prompt(self, run_id: str, created: RunCreated) -> tuple[str, bool]:
        runs = self._runs
        run = runs.state.runs[run_id]
        spec = created.fanout
        assert spec is not None
        # Only each output's end can reach the prompt: keep that much of it, read page by page.
        tails: dict[str, deque[str]] = {s: deque() for s in run.session_ids}
        held = dict.fromkeys(run.session_ids, 0)
        lengths = dict.fromkeys(run.session_ids, 0)
        after = 0
        while page := await runs.read_output(run_id, after, READ_PAGE):
            after = page[-1].version
            for stored in page:
                event = stored.decode()
                assert isinstance(event, OutputAppended)
                tail = tails.get(event.session_id)
                if event.stream != "stdout" or tail is None:
                    continue
                tail.append(event.text)
                held[event.session_id] += len(event.text)
                lengths[event.session_id] += len(event.text)
                while held[event.session_id] - len(tail[0]) >= spec.per_worker_chars:
                    held[event.session_id] -= len(tail.popleft())
        reports = []
        for session_id in run.session_ids:
            session = runs.state.sessions[session_id]
            reports.append(
                WorkerReport(
                    session_id=session_id,
                    agent=session.agent,
                    status=session.status,
                    reason=session.reason,
                    summary=session.summary,
                    output="".join(tails[session_id]),
                    length=lengths[session_id],
                )
            )
        return build_orchestrator_prompt(
            debug_run_id=run.debug_run_id or run_id,
            task=created.prompt or "",
            task_file=spec.task_file,
            workers=reports,
            per_worker=spec.per_worker_chars,
            total=spec.total_chars,
        )
