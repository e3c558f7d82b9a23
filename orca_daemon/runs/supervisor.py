"""Owns every live session process: starts a recorded session's process (in its worktree, if it
asks for one) in a holder of its own, re-attaches to one an earlier orcad left running, records
its end through the lifecycle, and stops the process of a session that became terminal while it
ran — by following the log, not by being told. When orcad stops, it lets go of them (`detach_all`):
their holders keep them running for the next orcad."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import anyio.lowlevel

from orca_client.events import STOPPED_REASON, SessionTerminated, WorktreeCreated
from orca_client.views import TERMINAL_STATUSES, WorktreeInfo
from orca_daemon.agents.base import Translator
from orca_daemon.limits import no_room_for_a_session
from orca_daemon.log.records import StoredEvent, StoreError
from orca_daemon.runs.admission import Admission
from orca_daemon.runs.launcher import Prepared, session_env
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.recorder import Recorder
from orca_daemon.runs.rules import outcome_status, restartable, worktree_bases
from orca_daemon.runs.run_log import RunLog
from orca_daemon.sessions.held import HolderPlaces
from orca_daemon.sessions.link import AgentLink
from orca_daemon.sessions.output import OutputClock
from orca_daemon.sessions.process import (
    PumpSettings,
    Resumption,
    SessionProcess,
    SessionSpec,
    remove_places_quietly,
)
from orca_daemon.sessions.procs import (
    ProcessTable,
    process_table,
    running_since,
    scan_in_thread,
    stop_group,
)
from orca_daemon.sessions.worktrees import WorktreeError, create_worktree

log = logging.getLogger(__name__)

HEARTBEAT_BATCH = 100
"""Sessions the heartbeat looks at between two turns of the loop (1,000 at once held it 6 ms)."""


class Supervisor:
    """Session processes: started in its task group (`run`), stopped when their session ends."""

    def __init__(
        self,
        runs: RunLog,
        lifecycle: Lifecycle,
        admission: Admission,
        settings: PumpSettings,
        cancel_grace: float,
        runs_dir: Path,
        runtime_dir: Path,
        heartbeat_seconds: Callable[[], float],
    ) -> None:
        self._runs = runs
        self._lifecycle = lifecycle
        self._admission = admission
        self._settings = settings
        self.cancel_grace = cancel_grace
        """Seconds between SIGTERM and SIGKILL when a session is stopped."""
        self.runs_dir = runs_dir
        self.runtime_dir = runtime_dir
        self._heartbeat_seconds = heartbeat_seconds
        self._tg: anyio.abc.TaskGroup | None = None
        self._output_clock = OutputClock.for_delay(settings.output_flush_seconds)
        """Sends every session's due output together."""
        self._processes: dict[str, SessionProcess] = {}
        self._done: dict[str, anyio.Event] = {}
        """Per session being driven: set once its process exited and its output is written."""
        self._recorders: set[Recorder] = set()
        self._stopped_by_orcad: set[str] = set()
        """Sessions whose process orcad's shutdown signalled: they end as stopped by orcad,
        whatever their agent did on the signal."""
        self.heartbeats: dict[str, float] = {}
        """When each live session's process was last seen alive."""
        self.detached: dict[str, str] = {}
        """Live sessions whose holder is alive but not attached to (why): `reattach_later`."""
        self._detached_processes: dict[str, tuple[tuple[int, int | None] | None, ...]] = {}
        """Their agent's and holder's (pid, start ticks), as the log had them when orcad could
        not attach (the log forgets them once the session ends)."""
        runs.store.add_listener(self.on_commit)
        runs.store.add_writable_listener(self._log_writable_again)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own the sessions' tasks (and the heartbeat) until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._output_clock.run)
            task_status.started()
            await self._heartbeat()

    def process_of(self, session_id: str) -> SessionProcess | None:
        return self._processes.get(session_id)

    def places_of(self, run_id: str, session_id: str) -> HolderPlaces:
        """Where the session's holder keeps its socket and its spool."""
        return HolderPlaces.of(self.runtime_dir, self.runs_dir, run_id, session_id)

    def reattach_later(
        self, session_id: str, why: str, attempt: Callable[[], Awaitable[str | None]]
    ) -> None:
        """A live session whose holder could not be attached to now: call `attempt` once per
        heartbeat until it returns None (attached, or settled otherwise) rather than a new
        why; meanwhile `detached` says why (status shows it)."""
        assert self._tg is not None, "the supervisor runs"
        state = self._runs.state
        pid = state.sessions[session_id].pid
        agent = None if pid is None else (pid, state.start_ticks.get(session_id))
        self._detached_processes[session_id] = (agent, state.holders.get(session_id))
        self.detached[session_id] = why
        self._tg.start_soon(self._reattach, session_id, attempt)

    async def _reattach(
        self, session_id: str, attempt: Callable[[], Awaitable[str | None]]
    ) -> None:
        try:
            while True:
                await anyio.sleep(self._heartbeat_seconds())
                if not self._admission.accepting:  # orcad stops: the next one tries
                    return
                try:
                    why = await attempt()
                except Exception:  # (the log refused the session's end, say): not fatal
                    log.exception("session %s: re-attaching to its holder failed", session_id)
                    why = "re-attaching failed inside orcad (see its log); it tries again"
                if why is None:
                    return
                self.detached[session_id] = why
        finally:
            self.detached.pop(session_id, None)
            self._detached_processes.pop(session_id, None)

    def resume_session(
        self, run_id: str, session_id: str, agent: AgentLink, translator: Translator
    ) -> None:
        """Carry on a session an earlier orcad left running in its holder (`agent`, attached
        where the log says its output was read to)."""
        assert self._tg is not None, "the supervisor runs"
        state = self._runs.state
        run, session = state.runs[run_id], state.sessions[session_id]
        cwd = session.cwd
        if session.worktree is not None:
            cwd = _inside(session.worktree, cwd)
        spec = SessionSpec(
            run_id,
            session_id,
            session.command,
            cwd,
            state.prompts.get(session_id),
            session_env(run, session),
        )
        offsets = state.read_offsets.get(session_id, {})
        pending = session.pending.request_id if session.pending is not None else None
        resume = Resumption(
            agent,
            offsets.get("stdout", 0),
            offsets.get("stderr", 0),
            pending,
            started_recorded=session.status != "created",
        )
        self._done[session_id] = anyio.Event()
        self._tg.start_soon(self._drive, spec, translator, resume)

    def detach_all(self) -> int:
        """orcad stops: let go of every session's agent (its holder keeps it running, and the
        next orcad re-attaches); returns how many were running."""
        processes = list(self._processes.values())
        for process in processes:
            process.detach()
        return len(processes)

    def begin_session(
        self,
        run_id: str,
        session_id: str,
        prepared: Prepared,
        prompt: str | None = None,
        note: str | None = None,
        admitted: bool = False,
    ) -> None:
        """Start a recorded session's process (or record why it cannot start); `prompt`, when
        given, instead of the session's own (an agent told it was interrupted), and `note`
        said in its log when it starts. `admitted`: the caller found room for it a moment ago
        (`Admission.starting`), so it is not refused now for the descriptors that other
        sessions' launches hold for a moment (a client was told its run started)."""
        assert self._tg is not None, "the supervisor runs"
        state = self._runs.state
        run, session = state.runs[run_id], state.sessions[session_id]
        if prepared.launch is None:
            error = prepared.error
        else:
            error = None if admitted else no_room_for_a_session()
        if prepared.launch is None or error is not None:
            reason = f"could not start: {error}"
            self._tg.start_soon(self._finish_quietly, run_id, session_id, reason)
            return
        spec = SessionSpec(
            run_id,
            session_id,
            prepared.launch.command,
            session.cwd,
            prompt if prompt is not None else state.prompts.get(session_id),
            {**prepared.launch.env, **session_env(run, session)},
            note,
        )
        self._done[session_id] = anyio.Event()
        self._tg.start_soon(self._drive, spec, prepared.launch.translator, None)

    def on_commit(self, events: list[StoredEvent]) -> None:
        """A session that ended while its process runs (cancelled, say): stop the process,
        telling its agent why in its protocol first."""
        if not self._admission.accepting:
            return  # shutting down: every process has been signalled already
        for stored in events:
            if stored.type != "session_terminated":
                continue
            ended = stored.decode()
            assert isinstance(ended, SessionTerminated)
            self.heartbeats.pop(ended.session_id, None)
            process = self._processes.get(ended.session_id)
            if process is not None and (process.pid is None or process.alive()):
                assert self._tg is not None
                self._tg.start_soon(process.cancel, ended.reason, self.cancel_grace)

    def signal_all(self) -> int:
        """Shutdown: signal every session's processes at once (those not re-attached yet, by
        their recorded pids); returns how many."""
        assert self._tg is not None, "the supervisor runs"
        processes = list(self._processes.items())
        for session_id, process in processes:
            if process.pid is None or process.alive():  # (not one that had ended by itself)
                self._stopped_by_orcad.add(session_id)
            process.stop(self.cancel_grace)
        for session_id in list(self.detached):
            self._tg.start_soon(self.stop_detached, session_id)
        return len(processes) + len(self.detached)

    async def stop_detached(self, session_id: str) -> None:
        """Stop the agent of a session orcad is not attached to (by the pid and start time the
        log had), then its holder (likewise: the agent dies with it), and remove its files.
        Shielded (a stop that ends sessions waits for it), at most the cancel grace."""
        agent, holder = self._detached_processes.get(session_id, (None, None))
        run_id = self._runs.state.sessions[session_id].run_id
        with anyio.CancelScope(shield=True):
            if agent is not None and agent[1] is not None and running_since(agent[0]) == agent[1]:
                await stop_group(agent[0], self.cancel_grace)
            if holder is not None and running_since(holder[0]) == holder[1]:
                with contextlib.suppress(OSError):
                    os.kill(holder[0], signal.SIGKILL)
            places = self.places_of(run_id, session_id)
            await anyio.to_thread.run_sync(remove_places_quietly, places)

    async def wait_stopped(self, session_ids: list[str], limit: float) -> None:
        """Wait (up to `limit` seconds) until these sessions' processes have exited and all
        their output is in the log."""
        with anyio.move_on_after(limit):
            for session_id in session_ids:
                done = self._done.get(session_id)
                if done is not None:
                    await done.wait()

    async def wait_all_stopped(self, limit: float) -> bool:
        """Wait (up to `limit` seconds) for every session's task; False if some still run."""
        with anyio.move_on_after(limit):
            for done in list(self._done.values()):
                await done.wait()
            return True
        return False

    async def _heartbeat(self) -> None:
        """Every `orchestration.heartbeat_seconds` (as configured now: a reload changes it),
        note which live sessions' processes are still alive, and what they have started (it is
        stopped with them)."""
        while True:
            now = time.time()
            processes = list(self._processes.items())
            table = await scan_in_thread(process_table) if processes else ProcessTable()
            for index, (session_id, process) in enumerate(processes, 1):
                if self._processes.get(session_id) is process and process.alive(table):
                    self.heartbeats[session_id] = now
                    process.note_descendants(table)
                if index % HEARTBEAT_BATCH == 0:
                    await anyio.lowlevel.checkpoint()  # other work (a request) goes between
            await anyio.sleep(self._heartbeat_seconds())

    def _log_writable_again(self) -> None:
        for recorder in list(self._recorders):
            recorder.report_loss()

    async def _finish_quietly(self, run_id: str, session_id: str, reason: str) -> None:
        try:
            await self._lifecycle.finish_session(
                run_id, session_id, "failed", reason, "spawn_failed"
            )
        except StoreError:
            log.exception("session %s: could not record its end", session_id)

    async def _drive(
        self, spec: SessionSpec, translator: Translator, resume: Resumption | None
    ) -> None:
        state = self._runs.state
        recorder: Recorder | None = None
        process: SessionProcess | None = None
        try:
            if resume is None:
                if not self._admission.accepting:  # shutting down: the session never starts
                    await self._not_started(spec)
                    return
                placed = await self._in_worktree(spec)
                if placed is None:
                    return
                spec = placed
                # Nothing awaits from here until the process is registered, so a cancel or a
                # stop that came while the worktree was made is seen now, and a later one
                # finds it.
                if state.sessions[spec.session_id].status in TERMINAL_STATUSES:
                    return
                if not self._admission.accepting:
                    await self._not_started(spec)
                    return
            recorder = Recorder(self._runs, spec)
            self._recorders.add(recorder)
            places = self.places_of(spec.run_id, spec.session_id)
            process = SessionProcess(
                spec, translator, recorder, self._settings, places, self._output_clock
            )
            self._processes[spec.session_id] = process
            outcome = await process.run(resume)
            await recorder.settle()
            if outcome.detached:
                return  # its holder keeps it running; the next orcad carries on
            if not self._admission.accepting and restartable(
                state, state.sessions[spec.session_id]
            ):
                await process.wait_stopped()  # the stop came before its start was recorded:
                return  # the next orcad starts it
            status, reason, cause = outcome_status(outcome)
            if spec.session_id in self._stopped_by_orcad:  # not what its agent did on SIGTERM
                status, reason, cause = "failed", STOPPED_REASON, "orcad_stopped"
            summary = outcome.result.summary if outcome.result is not None else None
            await self._lifecycle.finish_session(
                spec.run_id, spec.session_id, status, reason, cause, outcome.exit_code, summary
            )
            await process.wait_stopped()
            await process.release()
        except Exception:
            log.exception("session %s failed inside orcad", spec.session_id)
            if process is not None:
                process.stop(self.cancel_grace)
            try:
                await self._lifecycle.finish_session(
                    spec.run_id, spec.session_id, "failed", "internal error in orcad", "internal"
                )
            except Exception:
                log.exception("session %s: could not record its end", spec.session_id)
            if process is not None:
                await process.release()
        finally:
            if recorder is not None:
                self._recorders.discard(recorder)
            self._stopped_by_orcad.discard(spec.session_id)
            self._processes.pop(spec.session_id, None)
            self.heartbeats.pop(spec.session_id, None)
            done = self._done.pop(spec.session_id, None)
            if done is not None:
                done.set()

    async def _not_started(self, spec: SessionSpec) -> None:
        """orcad stops before the session's process started: one that orcad decided on itself
        is left recorded, for the next orcad to start; any other ends failed."""
        state = self._runs.state
        if not restartable(state, state.sessions[spec.session_id]):
            await self._lifecycle.finish_session(
                spec.run_id, spec.session_id, "failed", STOPPED_REASON, "orcad_stopped"
            )

    async def _in_worktree(self, spec: SessionSpec) -> SessionSpec | None:
        """The spec to run: in its own git worktree when the session asks for one (created and
        recorded first); None when that failed (the session is ended failed)."""
        session = self._runs.state.sessions[spec.session_id]
        if not session.in_worktree:
            return spec
        if session.worktree is not None:  # created before a restart
            return dataclasses.replace(spec, cwd=_inside(session.worktree, spec.cwd))
        try:
            bases = worktree_bases(self._runs.state, session)  # a plan task builds on its deps
            tree = await anyio.to_thread.run_sync(
                create_worktree, spec.cwd, self.runs_dir, spec.run_id, spec.session_id, bases
            )
        except (WorktreeError, OSError) as exc:
            await self._lifecycle.finish_session(
                spec.run_id,
                spec.session_id,
                "failed",
                f"could not create its worktree: {exc}",
                "spawn_failed",
            )
            return None
        event = WorktreeCreated(spec.run_id, spec.session_id, tree.repo, tree.path, tree.branch)
        await self._runs.append(spec.run_id, [event])  # even if the session ended: `clean`
        return dataclasses.replace(spec, cwd=tree.cwd)


def _inside(tree: WorktreeInfo, cwd: str) -> str:
    """Where in the worktree `cwd` (a directory of its repository) is."""
    return str(Path(tree.path) / Path(cwd).resolve().relative_to(Path(tree.repo).resolve()))
