"""The write path of runs: one decision lock per run, and appends to the run's stream.

A decision (is this session still live? has the run ended?) is read from the projected state and
recorded under the run's lock, so two decisions about one run never interleave; decisions made
outside the lock append at the stream version they were made from, and lose a race cleanly.
"""

from __future__ import annotations

import asyncio
import weakref

import msgspec

from orca_client.events import Event, RunCreated, RunStatusChanged, run_stream
from orca_client.views import TERMINAL_STATUSES, RunStatus
from orca_daemon.log.records import AppendMode, StoredEvent
from orca_daemon.log.store import EventStore
from orca_daemon.state.projection import State


class RunLog:
    """Appends to runs' streams, under per-run locks; reads the projected state."""

    def __init__(self, store: EventStore, state: State, daemon: str | None = None) -> None:
        self.store = store
        self.state = state
        self.daemon = daemon
        """With a log several daemons share: this daemon's name, which every run it creates
        records as its owner (`RunCreated.daemon`)."""
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        """A run's lock lives while someone holds or awaits it: memory does not grow by run."""

    def acts_for(self, run_id: str) -> bool:
        """Whether this daemon acts for the run: decides for it, runs its sessions, fires its
        hooks. With its own log, for every run; with a shared one, for the runs it owns."""
        if self.daemon is None:
            return True
        run = self.state.runs.get(run_id)
        return run is not None and run.owner == self.daemon

    def owner_of(self, run_id: str) -> str | None:
        """The daemon that acts for the run (None with a daemon's own log)."""
        run = self.state.runs.get(run_id)
        return None if run is None else run.owner

    def lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def append(
        self,
        run_id: str,
        events: list[Event],
        expected_version: int | None = None,
        mode: AppendMode = "wait",
    ) -> list[StoredEvent]:
        return await self.store.append(run_stream(run_id), events, expected_version, mode)

    def append_nowait(
        self, run_id: str, events: list[Event], mode: AppendMode = "wait"
    ) -> asyncio.Future[list[StoredEvent]]:
        return self.store.append_nowait(run_stream(run_id), events, mode)

    async def create(
        self, run_id: str, events: list[Event], mode: AppendMode = "refuse"
    ) -> list[StoredEvent]:
        """Record a new run: its stream must not exist yet (`ConcurrencyError` if it does).
        This daemon is its owner (with a shared log)."""
        if self.daemon is not None:
            events = [
                msgspec.structs.replace(e, daemon=self.daemon)
                if isinstance(e, RunCreated) and e.daemon is None
                else e
                for e in events
            ]
        return await self.store.append(run_stream(run_id), events, 0, mode)

    async def record_if_live(
        self, run_id: str, session_id: str, events: list[Event], run_status: RunStatus | None
    ) -> None:
        """Append `events` unless the session is already terminal; then move the run along."""
        async with self.lock(run_id):
            session = self.state.sessions.get(session_id)
            if session is None or session.status in TERMINAL_STATUSES:
                return
            run = self.state.runs[run_id]
            if (
                run_status is not None
                and run.status != run_status
                and run.status not in TERMINAL_STATUSES
            ):
                events = [*events, RunStatusChanged(run_id, run_status)]
            await self.append(run_id, events)
