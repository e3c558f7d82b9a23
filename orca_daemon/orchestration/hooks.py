"""Hooks: commands run on events (`on_question`, `on_complete`, `on_error`, `on_task_complete`,
`on_task_fail`, `on_orchestrated`), each exactly once.

The runner follows the log (`log_follower`). Before a hook runs, `HookStarted` is appended in
the same transaction as the runner's tracking position, so a restarted daemon neither repeats
a hook (its `HookStarted` is in the log) nor skips one (tracking stops before its trigger). A hook
that a crash interrupted is recorded as failed, not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable

import anyio.abc
import msgspec

from orca_client.events import (
    AnyEvent,
    HookFinished,
    HookStarted,
    OrchestrationFinished,
    QuestionAsked,
    RunAdopted,
    RunStatusChanged,
    TaskStatusChanged,
    run_stream,
)
from orca_daemon.limits import restore_inherited_limit
from orca_daemon.log.records import StoredEvent
from orca_daemon.log.store import EventStore
from orca_daemon.orchestration.handover import (
    adopted_here,
    handled_here,
    missed_before_adoption,
)
from orca_daemon.orchestration.log_follower import LogFollower
from orca_daemon.sessions.procs import child_env, stop_group
from orca_daemon.state.projection import State

log = logging.getLogger(__name__)

TRACKING = "hooks"
OUTPUT_TAIL_CHARS = 2000
HOOK_RESTARTED_REASON = "orcad restarted while the hook ran"
HOOK_STOPPED_REASON = "orcad stopped while the hook ran"
TRIGGER_TYPES = frozenset(
    {"question_asked", "run_status_changed", "task_status_changed", "orchestration_finished"}
)
FOLLOWED_TYPES = TRIGGER_TYPES | {"run_adopted"}
"""What the runner follows: the triggers, and adoptions (to catch up an earlier owner's)."""


def hook_for(event: AnyEvent) -> str | None:
    """Which hook an event triggers, if any."""
    if isinstance(event, QuestionAsked):
        return "on_question"
    if isinstance(event, RunStatusChanged):
        return {"completed": "on_complete", "failed": "on_error"}.get(event.status)
    if isinstance(event, TaskStatusChanged):
        return {"done": "on_task_complete", "failed": "on_task_fail"}.get(event.status)
    if isinstance(event, OrchestrationFinished):
        return "on_orchestrated"
    return None


class HookRunner:
    """Fires configured hooks for committed events, in log order, exactly once each."""

    def __init__(
        self,
        store: EventStore,
        state: State,
        commands: dict[str, list[str]],
        timeout: float,
        acts_for: Callable[[str], bool] = lambda run_id: True,
        tracking: str = TRACKING,
    ) -> None:
        self._store = store
        self._state = state
        self._commands = commands
        self._timeout = timeout
        self._acts_for = acts_for
        """Whether this daemon fires the run's hooks (with a shared log, the runs it owns)."""
        self._tracking = tracking
        """Its tracking name: with a shared log, each daemon's own (`tracking_name`)."""
        self._tg: anyio.abc.TaskGroup | None = None
        self._follower = LogFollower(store, tracking, FOLLOWED_TYPES, self._handle)
        self._running: dict[asyncio.Event, anyio.CancelScope] = {}
        """Hooks started and not finished: each one's completion event and cancel scope."""

    def reconfigure(self, commands: dict[str, list[str]], timeout: float) -> None:
        """Use these hooks for every event handled from now on (hooks running go on)."""
        self._commands = commands
        self._timeout = timeout

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Recover from an earlier daemon, then follow the log and own the hooks it starts
        until cancelled (after `stop`)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self._recover()
            task_status.started()
            tg.start_soon(self._follower.follow)
            await self._follower.save_periodically()

    async def _recover(self) -> None:
        """Record hooks an earlier daemon left running as failed; follow from where it was."""
        for started in list(self._state.hooks_running.values()):
            if not self._acts_for(started.run_id):
                continue
            await self._finish(started, ok=False, reason=HOOK_RESTARTED_REASON)
        await self._follower.start()

    async def stop(self, grace: float) -> None:
        """Stop firing; give running hooks `grace` seconds; record how far the log was handled."""
        await self._follower.catch_up(grace)  # e.g. runs the stop just ended
        self._follower.stop()
        await self._wait_for_hooks(grace)
        for scope in self._running.values():  # still running after the grace period
            scope.cancel()
        await self._wait_for_hooks(grace)
        # Triggers not handled yet lie after this position: the next orcad fires them.
        await self._follower.save()

    async def _wait_for_hooks(self, limit: float) -> None:
        with anyio.move_on_after(limit):
            while self._running:
                await next(iter(self._running)).wait()

    async def _handle(self, stored: StoredEvent) -> None:
        if stored.type == "run_adopted":
            if adopted_here(self._state, self._acts_for, stored):
                await self._catch_up(stored)
            return
        event = stored.decode()
        if handled_here(self._state, self._acts_for, event.run_id, stored.position):
            await self._fire(stored)

    async def _catch_up(self, adopted: StoredEvent) -> None:
        """This daemon adopted the run: fire the hooks its earlier owner had not fired; those
        it was running when it lost the run are recorded as failed."""
        adoption = adopted.decode()
        assert isinstance(adoption, RunAdopted)
        for started in list(self._state.hooks_running.values()):
            if started.run_id == adoption.run_id:
                reason = f"orcad {adoption.from_daemon}, which ran the hook, lost the run"
                await self._finish(started, ok=False, reason=reason)
        missed = await missed_before_adoption(self._store, adopted, TRACKING, TRIGGER_TYPES)
        if not missed:
            return
        stream = adopted.stream
        fired = {
            hook.trigger_position
            for stored in await self._store.read_stream(stream, event_type="hook_started")
            if isinstance(hook := stored.decode(), HookStarted)
        }
        for stored in missed:
            if stored.position not in fired:
                await self._fire(stored)

    async def _fire(self, stored: StoredEvent) -> None:
        """Start the hook `stored` triggers, if one is configured: recorded, then run."""
        event = stored.decode()
        hook = hook_for(event)
        command = self._commands.get(hook) if hook else None
        if hook is None or command is None:
            return
        started = HookStarted(event.run_id, hook, stored.position, command)
        done, scope = asyncio.Event(), anyio.CancelScope()
        self._running[done] = scope  # before the append, so `stop` waits for it
        try:
            await self._store.append_tracked(
                run_stream(event.run_id), [started], (self._tracking, stored.position)
            )
        except BaseException:
            self._running.pop(done, None)
            done.set()
            raise
        self._follower.saved(stored.position)
        assert self._tg is not None, "the hook runner runs"
        self._tg.start_soon(self._run, started, stored, done, scope)

    async def _run(
        self,
        started: HookStarted,
        trigger: StoredEvent,
        done: asyncio.Event,
        scope: anyio.CancelScope,
    ) -> None:
        try:
            outcome = None
            with scope:
                outcome = await self._execute(started, trigger)
            if outcome is None:  # `stop` gave up waiting for it
                await self._finish(started, ok=False, reason=HOOK_STOPPED_REASON)
            else:
                await self._finish(started, *outcome)
        except Exception:
            log.exception("hook %s failed inside orcad", started.hook)
        finally:
            done.set()
            self._running.pop(done, None)

    async def _execute(
        self, started: HookStarted, trigger: StoredEvent
    ) -> tuple[bool, str, int | None, str]:
        payload = msgspec.json.encode({"hook": started.hook, "record": trigger.to_record()})
        env = child_env(ORCA_HOOK=started.hook, ORCA_RUN_ID=started.run_id)
        try:
            process = await asyncio.create_subprocess_exec(
                *started.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=restore_inherited_limit,
            )
        except OSError as exc:
            return False, f"could not start the hook: {exc}", None, ""
        try:
            output, _ = await asyncio.wait_for(process.communicate(payload), self._timeout)
        except TimeoutError:
            await stop_group(process.pid, 1.0, process.wait)
            return False, f"timed out after {self._timeout:g}s", process.returncode, ""
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        tail = output.decode("utf-8", "replace")[-OUTPUT_TAIL_CHARS:]
        if process.returncode == 0:
            return True, "exited with status 0", 0, tail
        return False, f"exited with status {process.returncode}", process.returncode, tail

    async def _finish(
        self,
        started: HookStarted,
        ok: bool,
        reason: str,
        exit_code: int | None = None,
        tail: str = "",
    ) -> None:
        finished = HookFinished(
            started.run_id, started.hook, started.trigger_position, ok, reason, exit_code, tail
        )
        if not ok:
            log.warning(
                "hook %s for position %d failed: %s", started.hook, started.trigger_position, reason
            )
        await self._store.append(run_stream(started.run_id), [finished])
