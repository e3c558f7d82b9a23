"""What orchestration may do to runs: the one implementation of `RunEffects`
(orca_daemon/orchestration/effects.py), over the run log, the launcher and the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

from orca_client.events import AgentLookup, Event, run_stream
from orca_daemon.agents.registry import Launch
from orca_daemon.config import Config
from orca_daemon.log.records import AppendMode, StoredEvent
from orca_daemon.runs.admission import Admission
from orca_daemon.runs.launcher import Launcher, Prepared
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.run_log import RunLog
from orca_daemon.runs.supervisor import Supervisor
from orca_daemon.state.projection import State


class RunWorld:
    """Runs as coordinators see them: the state to decide from, and what they may do."""

    def __init__(
        self,
        runs: RunLog,
        launcher: Launcher,
        supervisor: Supervisor,
        lifecycle: Lifecycle,
        admission: Admission,
    ) -> None:
        self._runs = runs
        self._launcher = launcher
        self._supervisor = supervisor
        self._lifecycle = lifecycle
        self._admission = admission
        self._reconsider: Callable[[str], None] = lambda run_id: None

    def follow_with(self, reconsider: Callable[[str], None]) -> None:
        """Where `reconsider` goes: the reactor's `mark`."""
        self._reconsider = reconsider

    def reconsider(self, run_id: str) -> None:
        self._reconsider(run_id)

    @property
    def state(self) -> State:
        return self._runs.state

    @property
    def config(self) -> Config:
        return self._launcher.config

    @property
    def runs_dir(self) -> Path:
        return self._supervisor.runs_dir

    @property
    def cancel_grace(self) -> float:
        return self._supervisor.cancel_grace

    @property
    def accepting(self) -> bool:
        return self._admission.accepting

    def starting(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._admission.starting()

    def lock(self, run_id: str) -> asyncio.Lock:
        return self._runs.lock(run_id)

    async def append(
        self,
        run_id: str,
        events: list[Event],
        expected_version: int | None = None,
        mode: AppendMode = "wait",
    ) -> list[StoredEvent]:
        return await self._runs.append(run_id, events, expected_version, mode)

    async def create_run(
        self, run_id: str, events: list[Event], mode: AppendMode = "refuse"
    ) -> list[StoredEvent]:
        return await self._runs.create(run_id, events, mode)

    async def read_output(self, run_id: str, after: int, limit: int) -> list[StoredEvent]:
        """A page of the run's output events after stream version `after`."""
        return await self._runs.store.read_stream(
            run_stream(run_id), after, "output_appended", limit=limit
        )

    async def prepare_launch(
        self,
        agent: str | None,
        command: Sequence[str],
        prompt: str | None,
        cwd: str,
        client: AgentLookup,
    ) -> Launch:
        return await self._launcher.prepare_launch(agent, command, prompt, cwd, client)

    async def prepare(
        self, run_id: str, agent: str, prompt: str | None, cwd: str, command: Sequence[str] = ()
    ) -> Prepared:
        return await self._launcher.prepare(run_id, agent, prompt, cwd, command)

    def remember_client(self, run_id: str, client: AgentLookup) -> None:
        self._launcher.remember_client(run_id, client)

    def client_of(self, run_id: str) -> AgentLookup:
        return self._launcher.client_of(run_id)

    def wants_worktree(self, agent: str | None, requested: bool | None) -> bool:
        return self._launcher.wants_worktree(agent, requested)

    def begin_session(self, run_id: str, session_id: str, prepared: Prepared) -> None:
        self._supervisor.begin_session(run_id, session_id, prepared)

    async def cancel_sessions(self, run_id: str, session_ids: list[str], reason: str) -> list[str]:
        return await self._lifecycle.cancel_sessions(run_id, session_ids, reason)

    async def cancel_run(self, run_id: str, reason: str) -> None:
        await self._lifecycle.cancel(run_id, reason)

    async def wait_stopped(self, session_ids: list[str], limit: float) -> None:
        await self._supervisor.wait_stopped(session_ids, limit)
