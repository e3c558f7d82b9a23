"""Taking over the runs of a daemon that died, with a log several daemons share.

Every third of a lease, each daemon looks for runs not ended whose owner's lease has run out
(the database's clock decides) and adopts them: `RunAdopted` is appended in the same
transaction that moves the run's owner row to this daemon with the next generation, so of
daemons racing for a run exactly one wins, and the one that lost the run can no longer write
for it. The adopter then carries the run on (`recovery.take_over`) and hands it to the reactor:
a fan-out's orchestrator, a plan's next tasks and a parent's children are decided here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.abc

from orca_client.events import RunAdopted
from orca_client.views import TERMINAL_STATUSES
from orca_daemon.log.records import ConcurrencyError, StoreError
from orca_daemon.log.store import EventStore
from orca_daemon.orchestration.hooks import TRACKING as HOOKS_TRACKING
from orca_daemon.orchestration.notifications import TRACKING as NOTIFICATIONS_TRACKING
from orca_daemon.orchestration.recovery import take_over
from orca_daemon.runs.admission import Admission
from orca_daemon.runs.launcher import Launcher
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.supervisor import Supervisor
from orca_daemon.state.projection import State

log = logging.getLogger(__name__)

REACTIONS = (HOOKS_TRACKING, NOTIFICATIONS_TRACKING)
"""The reactions that follow the log with a tracking row per daemon (`hooks@NAME`)."""


class Adopter:
    """Adopts the runs of daemons whose lease ran out, every `every` seconds."""

    def __init__(
        self,
        store: EventStore,
        state: State,
        lifecycle: Lifecycle,
        launcher: Launcher,
        supervisor: Supervisor,
        admission: Admission,
        carry_on: Callable[[str], None],
        every: float,
    ) -> None:
        self._store = store
        self._state = state
        self._lifecycle = lifecycle
        self._launcher = launcher
        self._supervisor = supervisor
        self._admission = admission
        self._carry_on = carry_on
        self._every = every
        self._unfinished: dict[str, RunAdopted] = {}
        """Runs adopted whose take-over failed: tried again at the next sweep."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Look for runs to adopt until cancelled."""
        task_status.started()
        while True:
            await anyio.sleep(self._every)
            try:
                await self.sweep()
            except (StoreError, OSError) as exc:  # the database is out of reach: next beat
                log.warning("could not look for runs to adopt: %s", exc)
            except Exception:  # nothing a run holds may end orcad: the next beat tries again
                log.exception("adopting runs failed")

    async def sweep(self) -> list[str]:
        """Adopt every run not ended whose owner's lease has run out; returns their ids."""
        me = self._store.daemon
        adopted: list[str] = []
        if me is None:
            return adopted
        for run_id, event in list(self._unfinished.items()):
            await self._take_over(run_id, event)
        for run_id, owner, generation in await self._store.runs_to_adopt():
            run = self._state.runs.get(run_id)
            if run is None or run.status in TERMINAL_STATUSES or not self._admission.accepting:
                continue  # (not followed yet: the next sweep; ended: nothing to carry on)
            tracked = {
                reaction: position
                for reaction in REACTIONS
                if (position := await self._store.read_tracking(f"{reaction}@{owner}")) is not None
            }
            event = RunAdopted(
                run_id, daemon=me, from_daemon=owner, generation=generation + 1, tracked=tracked
            )
            try:
                await self._store.adopt(event)
            except ConcurrencyError as exc:
                log.info("run %s: not adopted: %s", run_id, exc)
                continue
            log.warning(
                "adopted run %s from orcad %s, whose lease ran out (generation %d)",
                run_id,
                owner,
                generation + 1,
            )
            await self._take_over(run_id, event)
            adopted.append(run_id)
        return adopted

    async def _take_over(self, run_id: str, event: RunAdopted) -> None:
        """Carry on a run adopted (again, after a failure): a failure is logged, and the run
        tried again at the next sweep, not the other runs held up."""
        try:
            await take_over(
                self._state, self._lifecycle, self._launcher, self._supervisor, run_id, event
            )
        except Exception:
            log.exception(
                "run %s: taking it over failed; trying again in %.0f s", run_id, self._every
            )
            self._unfinished[run_id] = event
            return
        self._unfinished.pop(run_id, None)
        self._carry_on(run_id)
