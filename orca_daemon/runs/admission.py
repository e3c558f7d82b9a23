"""Whether orcad takes new work: runs are admitted until shutdown begins (and while descriptors
are left for their sessions), and shutdown waits for the requests that are recording a run now."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio

from orca_client.wire import WireError
from orca_daemon.limits import no_room_for_a_session


class Admission:
    """Open until `close()`; `starting()` holds a run's creation open against shutdown."""

    def __init__(self) -> None:
        self.accepting = True
        self._starting = 0
        self._idle = anyio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def starting(self) -> AsyncIterator[None]:
        """Held while a request creates a run, so that shutdown waits for it to be recorded."""
        if not self.accepting:
            raise WireError("shutting_down", "orcad is shutting down; no new runs")
        full = no_room_for_a_session()
        if full is not None:
            raise WireError("busy", f"no new run: {full}")
        if self._starting == 0:
            self._idle = anyio.Event()
        self._starting += 1
        try:
            yield
        finally:
            self._starting -= 1
            if self._starting == 0:
                self._idle.set()

    def close(self) -> None:
        """No new run, no new session process, no new orchestration decision from now on."""
        self.accepting = False

    async def wait_started(self) -> None:
        """Return once no request is creating a run."""
        await self._idle.wait()
