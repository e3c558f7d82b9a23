"""The reactor: follows the log and has each run's orchestration decided again after every
change that can matter to it.

Every committed event marks its run dirty (and the run's parent, whose children it watches); one
worker per dirty run calls `react(run_id)`, so reactions to one run never overlap, and changes
that come while a run's reaction runs are coalesced into one more pass. A reaction that fails is
retried with capped backoff until it succeeds or the run ends: never dropped silently. Reactions
read the state and append events; they never call each other.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from orca_daemon.log.records import StoredEvent
from orca_daemon.state.projection import State

log = logging.getLogger(__name__)

RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Backoff between failed attempts at a run's reaction; the last one repeats."""
RELAYED_TYPES = frozenset({"cancel_requested", "answer_requested"})
"""Requests relayed to the run's owner: its reaction carries them out, whatever the run's kind."""
DECISION_TYPES = frozenset(
    {"run_created", "run_status_changed", "session_terminated", "task_status_changed"}
    | RELAYED_TYPES
)
"""Events after which a run's orchestration may decide something new; the others (output,
usage, questions, a session's creation or start...) mark nothing."""

React = Callable[[str], Awaitable[None]]


class Reactor:
    """Runs `react(run_id)` for each run the log changed: one worker per run, coalesced."""

    def __init__(
        self,
        state: State,
        react: React,
        retry_seconds: tuple[float, ...] = RETRY_SECONDS,
        acts_for: Callable[[str], bool] = lambda run_id: True,
    ) -> None:
        self._state = state
        self._react = react
        self._acts_for = acts_for
        """Whether this daemon decides for a run (with a shared log, the runs it owns)."""
        self._retry = retry_seconds
        self._tg: anyio.abc.TaskGroup | None = None
        self._working: set[str] = set()
        self._again: set[str] = set()
        self._early: set[str] = set()
        """Runs marked before the reactor ran (start-up): reacted to once it does."""
        self._stopped = False

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own the workers until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            for run_id in sorted(self._early):
                self.mark(run_id)
            self._early.clear()
            await anyio.sleep_forever()

    def stop(self) -> None:
        """Shutdown: no new reaction starts (those running finish or are cancelled)."""
        self._stopped = True

    def on_commit(self, events: list[StoredEvent]) -> None:
        """A store listener: mark the runs these events may move on (a child's status change
        moves its parent). A single run has nothing to decide until its own status changes."""
        for stored in events:
            if stored.type not in DECISION_TYPES or not stored.stream.startswith("run-"):
                continue
            run = self._state.runs.get(stored.stream[len("run-") :])
            if run is None:
                continue
            status_changed = stored.type == "run_status_changed"
            if run.kind != "single" or status_changed or stored.type in RELAYED_TYPES:
                self.mark(run.run_id)
            if status_changed and run.parent_run_id is not None:
                self.mark(run.parent_run_id)

    def mark(self, run_id: str) -> None:
        """Have the run's reaction run (again) soon (if this daemon decides for it)."""
        if self._stopped or not self._acts_for(run_id):
            return
        if self._tg is None:
            self._early.add(run_id)
        elif run_id in self._working:
            self._again.add(run_id)
        else:
            self._working.add(run_id)
            self._tg.start_soon(self._work, run_id)

    async def _work(self, run_id: str) -> None:
        failures = 0
        try:
            while not self._stopped:
                self._again.discard(run_id)
                try:
                    await self._react(run_id)
                except Exception:
                    delay = self._retry[min(failures, len(self._retry) - 1)]
                    failures += 1
                    log.exception(
                        "run %s: carrying on its orchestration failed (attempt %d); "
                        "trying again in %gs",
                        run_id,
                        failures,
                        delay,
                    )
                    await anyio.sleep(delay)
                    continue
                if failures:
                    log.info(
                        "run %s: its orchestration carried on after %d failures", run_id, failures
                    )
                    failures = 0
                if run_id not in self._again:
                    return
        finally:
            self._working.discard(run_id)
            self._again.discard(run_id)
