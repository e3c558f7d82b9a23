"""Stopping one session's agent: its process group on request (SIGTERM, then SIGKILL after a grace
period), and once it has ended, whatever it left running."""

from __future__ import annotations

import contextlib
import logging
import os

import anyio
import anyio.abc

from orca_daemon.sessions.procs import (
    ProcessTable,
    children_of,
    group_exists,
    pid_exited,
    process_start_ticks,
    process_table,
    running_since,
    scan_in_thread,
    session_processes,
    stop_group,
    stop_processes,
)

log = logging.getLogger(__name__)

LEFTOVER_GRACE_SECONDS = 2.0
"""How long what an agent left running gets between SIGTERM and SIGKILL."""


class Stopper:
    """Stops one session's agent and what it leaves behind.

    A stop runs as a task of the pump's task group, which waits for it (`attach` hands the
    group over while the pump runs). A stop asked for before that is kept and begins when the
    pump attaches (or the agent never starts). Once the pump has ended there is nothing left
    to stop: it waited for the agent's exit and ended what the agent left, or, when it failed
    or was cancelled, stopped all of it itself (`abandon`)."""

    def __init__(self, session_id: str) -> None:
        self._session_id = session_id
        self.requested: float | None = None
        """The grace period of the first stop asked for, once one was."""
        self._pid: int | None = None
        self._start_ticks: int | None = None
        self._exited = False
        self._tasks: anyio.abc.TaskGroup | None = None
        self._stopped: anyio.Event | None = None
        self._descendants: dict[int, int] = {}
        """The agent's descendants seen so far (pid -> start ticks), stopped with it."""
        self._holder: tuple[int, int | None] | None = None

    def attach(
        self,
        pid: int,
        start_ticks: int | None,
        tasks: anyio.abc.TaskGroup,
        holder: tuple[int, int | None] | None = None,
    ) -> None:
        """The pump runs the agent `pid` in `tasks`: stops begin there (one asked for already,
        now). The agent leads its own process group. `holder`: the pid and start ticks of the
        agent's parent, when it is a holder (`holder.py`, a subreaper)."""
        self._pid, self._start_ticks, self._tasks = pid, start_ticks, tasks
        self._holder = holder
        if self.requested is not None:
            self.stop(self.requested)

    def exited(self) -> None:
        """The agent has exited (its pid may name another process from now on)."""
        self._exited = True

    def detach(self) -> None:
        """The pump has ended."""
        self._tasks = None

    def stop(self, grace: float) -> None:
        """Begin stopping the process group: SIGTERM now, SIGKILL after `grace` seconds."""
        if self.requested is None:
            self.requested = grace
        pid, tasks = self._pid, self._tasks
        if pid is None or tasks is None or self._exited:
            return
        if self._stopped is None:
            self._stopped = anyio.Event()
            tasks.start_soon(self._stop, pid, grace)

    async def wait_stopped(self) -> None:
        """Return once a stop that began has ended (at the latest when the pump ends)."""
        if self._stopped is not None:
            await self._stopped.wait()

    async def _stop(self, pid: int, grace: float) -> None:
        try:
            await self.stop_now(pid, grace)
        finally:
            assert self._stopped is not None
            self._stopped.set()

    async def stop_now(self, pid: int, grace: float) -> None:
        """Stop the process group and wait for it (at most `grace` seconds, then SIGKILL)."""
        await self.track_descendants()  # while the agent lives, they are all below it
        await stop_group(pid, grace, lambda: pid_exited(pid, self._start_ticks))

    async def abandon(self, pid: int) -> None:
        """The pump failed or was cancelled: stop the agent and all it started, shielded from
        the cancel, so that nothing of the session stays running."""
        with anyio.CancelScope(shield=True):
            if not self._exited:
                log.info("session %s: its pump ended; stopping its agent", self._session_id)
                await self.stop_now(pid, LEFTOVER_GRACE_SECONDS)
            await self.end_leftovers(pid)

    def note_descendants(self, table: ProcessTable) -> None:
        """Remember the agent's descendants in `table` (a `process_table()`), and forget those
        that have ended. Those it remembers are stopped when the session ends, even after the
        agent's exit has re-parented them away from it."""
        known = {
            pid: ticks
            for pid, ticks in self._descendants.items()
            # (a table taken before the one that found it may miss it)
            if table.ticks(pid) == ticks or running_since(pid) == ticks
        }
        roots = set(known)
        if self._pid is not None and not self._exited:  # its pid is still its own
            roots.add(self._pid)
        found = table.descendants(roots) - roots
        self._descendants = {**known, **{pid: table.entries[pid][1] for pid in found}}

    async def track_descendants(self) -> None:
        self.note_descendants(await scan_in_thread(process_table))

    async def result_given(self) -> None:
        """The agent gave its result and may exit soon: remember what it started before that
        leaves it, unless it has a holder (all the agent leaves is re-parented to the holder,
        where `end_leftovers` finds it, and a scan per session's result is costly)."""
        if self._holder is None:
            await self.track_descendants()

    def _left_nothing(self, pgid: int) -> bool:
        """True when the exited agent surely left nothing running, told without a /proc scan
        (each reads a file of every process on the machine, and sessions end one after another).

        Its holder is a subreaper that leads its own session: whatever the agent started and
        left behind (what left its group or session, or cleared its environment, included) is
        re-parented to the holder by the time the exit of all the agent's threads is seen
        (`pid_exited`), and nothing outside the holder's tree joins that session or the
        agent's group. So when the holder's only child is the agent (a zombie until it is
        reaped), nothing is left. Anything else (no holder, the holder gone, more children)
        takes the scans."""
        if self._holder is None or not self._exited:
            return False
        children = children_of(*self._holder)
        if children is None or not children <= {pgid}:
            return False
        if not children:
            return True  # (the holder has reaped the agent)
        # Still the agent (a zombie, all its threads ended), not a process that took its pid?
        return self._start_ticks is not None and process_start_ticks(pgid) == self._start_ticks

    def _below_holder(self, table: ProcessTable, agent: int) -> dict[int, int]:
        """The processes below the agent's holder in `table` but the agent (pid -> start
        ticks): what the agent left, re-parented there as their parents exited."""
        if self._holder is None or table.ticks(self._holder[0]) != self._holder[1]:
            return {}
        below = table.descendants({self._holder[0]})
        if table.ticks(agent) == self._start_ticks:  # (a process that took its pid stays)
            below.discard(agent)
        return {pid: table.entries[pid][1] for pid in below}

    async def end_leftovers(self, pgid: int) -> None:
        """Stop what the agent left running: its process group, any process that carries this
        session's id in its environment (children that left the group included), every
        descendant of the agent seen while it ran (those that left its session too), and all
        below its holder but the agent (where the rest of what it left is re-parented)."""
        if self._left_nothing(pgid):
            return
        leftovers = {pgid} if group_exists(pgid) else set()
        found = await scan_in_thread(session_processes)
        for pid in found.get(self._session_id, []):
            with contextlib.suppress(OSError):
                leftovers.add(os.getpgid(pid))
        leftovers.discard(os.getpgrp())
        table = await scan_in_thread(process_table)
        self.note_descendants(table)  # and what those started since
        strays = {**self._descendants, **self._below_holder(table, pgid)}
        strays.pop(os.getpid(), None)
        if not (leftovers or strays):
            return
        log.info(
            "session %s: stopping leftover process groups %s and processes %s",
            self._session_id,
            sorted(leftovers),
            sorted(strays),
        )
        async with anyio.create_task_group() as stopping:
            stopping.start_soon(stop_processes, strays, LEFTOVER_GRACE_SECONDS)
            for group in leftovers:
                stopping.start_soon(stop_group, group, LEFTOVER_GRACE_SECONDS)
