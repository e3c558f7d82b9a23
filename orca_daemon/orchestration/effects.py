"""The one interface through which coordinators (fan-outs, plans, parents, maintenance) act on
runs: they read the projected state, decide, and append; sessions are started and cancelled
through it. Implemented by `orca_daemon.runs.world.RunWorld`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from orca_client.events import AgentLookup, Event
from orca_daemon.agents.registry import Launch
from orca_daemon.config import Config
from orca_daemon.log.records import AppendMode, StoredEvent
from orca_daemon.runs.launcher import Prepared
from orca_daemon.state.projection import State


class RunEffects(Protocol):
    """What a coordinator may read and do."""

    @property
    def state(self) -> State:
        """The projection (read only: it changes only by committed events)."""
        ...

    @property
    def config(self) -> Config:
        """The configuration as last reloaded."""
        ...

    @property
    def runs_dir(self) -> Path:
        """Each run's folder is `runs_dir / run_id` (a fan-out's synthesis, worktrees)."""
        ...

    @property
    def cancel_grace(self) -> float: ...

    @property
    def accepting(self) -> bool:
        """False once orcad stops: nothing new is decided or started."""
        ...

    def starting(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while a client's request records a new run (shutdown waits for it)."""
        ...

    def lock(self, run_id: str) -> asyncio.Lock:
        """The run's decision lock."""
        ...

    async def append(
        self,
        run_id: str,
        events: list[Event],
        expected_version: int | None = None,
        mode: AppendMode = "wait",
    ) -> list[StoredEvent]: ...

    async def create_run(
        self, run_id: str, events: list[Event], mode: AppendMode = "refuse"
    ) -> list[StoredEvent]:
        """Record a new run's first events (`ConcurrencyError` when it exists already)."""
        ...

    async def read_output(self, run_id: str, after: int, limit: int) -> list[StoredEvent]: ...

    async def prepare_launch(
        self,
        agent: str | None,
        command: Sequence[str],
        prompt: str | None,
        cwd: str,
        client: AgentLookup,
    ) -> Launch:
        """A client's launch: raises `WireError` saying what is wrong."""
        ...

    async def prepare(
        self, run_id: str, agent: str, prompt: str | None, cwd: str, command: Sequence[str] = ()
    ) -> Prepared:
        """A launch orcad decided on: a failure is kept, to record as the session's end."""
        ...

    def remember_client(self, run_id: str, client: AgentLookup) -> None: ...

    def client_of(self, run_id: str) -> AgentLookup: ...

    def wants_worktree(self, agent: str | None, requested: bool | None) -> bool: ...

    def begin_session(self, run_id: str, session_id: str, prepared: Prepared) -> None:
        """Start a recorded session's process (or record why it cannot start)."""
        ...

    async def cancel_sessions(self, run_id: str, session_ids: list[str], reason: str) -> list[str]:
        """End these live sessions cancelled (their processes are then stopped)."""
        ...

    async def cancel_run(self, run_id: str, reason: str) -> None:
        """End a live run cancelled, with its sessions and tasks."""
        ...

    async def wait_stopped(self, session_ids: list[str], limit: float) -> None:
        """Wait (bounded) until these sessions' processes exited and their output is written."""
        ...

    def reconsider(self, run_id: str) -> None:
        """Decide the run's orchestration again soon (nothing was appended to say so)."""
        ...
