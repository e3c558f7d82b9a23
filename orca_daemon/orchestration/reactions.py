"""What the reactor does for one run: the coordinator of its kind decides what comes next; an
ended run is forgotten (and a cancelled parent leaves no child running)."""

from __future__ import annotations

import os
from pathlib import Path

from orca_client.views import TERMINAL_STATUSES
from orca_daemon.orchestration.effects import RunEffects
from orca_daemon.orchestration.fanout import FanOutCoordinator
from orca_daemon.orchestration.parents import ParentCoordinator
from orca_daemon.orchestration.plans import PlanCoordinator
from orca_daemon.orchestration.relayed import RelayedRequests
from orca_daemon.runs.launcher import Launcher

TEST_FAULTS_VARIABLE = "ORCA_TEST_REACTION_FAULTS_FILE"
"""Tests only: a file holding how many reactions fail before one may succeed (read, and counted
down, before each reaction), so that a test can show a failing reaction is retried."""


class InjectedFault(Exception):
    """A reaction failed on purpose (`TEST_FAULTS_VARIABLE`)."""


class Reactions:
    """`react(run_id)`: one pass of a run's orchestration, decided from the log."""

    def __init__(
        self,
        runs: RunEffects,
        launcher: Launcher,
        fanout: FanOutCoordinator,
        plans: PlanCoordinator,
        parents: ParentCoordinator,
        relayed: RelayedRequests | None = None,
    ) -> None:
        self._runs = runs
        self._relayed = relayed
        """With a shared log: the requests other daemons relayed for this daemon's runs."""
        self._launcher = launcher
        self._fanout = fanout
        self._plans = plans
        self._parents = parents

    async def react(self, run_id: str) -> None:
        _injected_fault()
        run = self._runs.state.runs.get(run_id)
        if run is None:
            return
        if self._relayed is not None and self._runs.accepting:
            await self._relayed.settle(run_id)
            run = self._runs.state.runs[run_id]
        if run.status not in TERMINAL_STATUSES and self._runs.accepting:
            if run.kind == "fanout":
                await self._fanout.trigger_when_ready(run_id)
            elif run.kind == "plan":
                await self._plans.advance(run_id)
            elif run.kind == "parent":
                await self._parents.advance(run_id)
            run = self._runs.state.runs[run_id]
        if run.status in TERMINAL_STATUSES:
            self._launcher.forget_client(run_id)
            if run.kind == "plan":
                self._plans.ended(run_id)
            if run.kind == "parent" and self._runs.accepting:
                await self._parents.cancel_live_children(run_id)


def _injected_fault() -> None:
    faults_file = os.environ.get(TEST_FAULTS_VARIABLE)
    if not faults_file:
        return
    path = Path(faults_file)
    try:
        left = int(path.read_text())
    except (OSError, ValueError):
        return
    if left > 0:
        path.write_text(f"{left - 1}\n")
        raise InjectedFault(f"injected reaction failure ({left - 1} more to come)")
