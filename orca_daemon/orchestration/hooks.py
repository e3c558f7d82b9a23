"""Hooks: commands run on events (`on_question`, `on_complete`, `on_error`, `on_task_complete`,
`on_task_fail`, `on_orchestrated`), each exactly once.

The runner follows the log like a subscriber. Before a hook runs, `HookStarted` is appended in
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
from collections import deque

import anyio.abc
import msgspec

from orca_client.events import (
    AnyEvent,
    HookFinished,
    HookStarted,
    OrchestrationFinished,
    QuestionAsked,
    RunStatusChanged,
    TaskStatusChanged,
    run_stream,
)
from orca_daemon.limits import restore_inherited_limit
from orca_daemon.log.records import StoredEvent, StoreError
from orca_daemon.log.store import EventStore
from orca_daemon.sessions.procs import child_env, stop_group
from orca_daemon.state.projection import State

log = logging.getLogger(__name__)

TRACKING = "hooks"
SAVE_INTERVAL_SECONDS = 2.0
RETRY_SECONDS = 1.0
OUTPUT_TAIL_CHARS = 2000
HOOK_RESTARTED_REASON = "orcad restarted while the hook ran"
HOOK_STOPPED_REASON = "orcad stopped while the hook ran"
TRIGGER_TYPES = frozenset(
    {"question_asked", "run_status_changed", "task_status_changed", "orchestration_finished"}
)


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
    ) -> None:
        self._store = store
        self._state = state
        self._commands = commands
        self._timeout = timeout
        self._tg: anyio.abc.TaskGroup | None = None
        self._queue: deque[StoredEvent] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._position = 0
        self._saved = 0
        self._running: dict[asyncio.Event, anyio.CancelScope] = {}
        """Hooks started and not finished: each one's completion event and cancel scope."""
        self._stopped = False

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
            tg.start_soon(self._follow)
            await self._save_periodically()

    async def _recover(self) -> None:
        """Record hooks an earlier daemon left running as failed; follow from where it was."""
        tracked = await self._store.read_tracking(TRACKING)
        if tracked is None:  # first start: hooks are for what happens from now on
            tracked = self._store.head_position
            await self._store.save_tracking(TRACKING, tracked)
        self._position = self._saved = tracked
        for started in list(self._state.hooks_running.values()):
            await self._finish(started, ok=False, reason=HOOK_RESTARTED_REASON)
        self._store.add_listener(self._on_commit)

    async def stop(self, grace: float) -> None:
        """Stop firing; give running hooks `grace` seconds; record how far the log was handled."""
        await self._catch_up_to(self._store.head_position, grace)  # e.g. runs the stop just ended
        self._stopped = True
        self._wake.set()
        self._store.remove_listener(self._on_commit)
        await self._wait_for_hooks(grace)
        for scope in self._running.values():  # still running after the grace period
            scope.cancel()
        await self._wait_for_hooks(grace)
        # Triggers not handled yet lie after this position: the next orcad fires them.
        try:
            await self._store.save_tracking(TRACKING, self._position)
        except StoreError:
            log.exception("could not record how far hooks have read the log")

    async def _catch_up_to(self, position: int, limit: float) -> None:
        with anyio.move_on_after(limit):
            while self._position < position:
                self._progress.clear()
                await self._progress.wait()

    async def _wait_for_hooks(self, limit: float) -> None:
        with anyio.move_on_after(limit):
            while self._running:
                await next(iter(self._running)).wait()

    def _on_commit(self, events: list[StoredEvent]) -> None:
        self._queue.extend(e for e in events if e.type in TRIGGER_TYPES)
        self._wake.set()

    async def _follow(self) -> None:
        while not self._stopped:
            page = await self._store.read_all(after=self._position, limit=500)
            if not page:
                break
            for stored in page:
                await self._handle_retrying(stored)
        while not self._stopped:
            while self._queue and not self._stopped:
                stored = self._queue.popleft()
                if stored.position > self._position:
                    await self._handle_retrying(stored)
            if not self._queue:  # every trigger up to the head has been handled
                self._position = max(self._position, self._store.head_position)
                self._progress.set()
            self._wake.clear()
            if not self._queue:
                await self._wake.wait()

    async def _handle_retrying(self, stored: StoredEvent) -> None:
        """Handle one event; while the log cannot be written, wait and try again (in order)."""
        while not self._stopped:
            try:
                await self._handle(stored)
                return
            except StoreError:
                log.exception("hook for position %d not started yet; retrying", stored.position)
                await asyncio.sleep(RETRY_SECONDS)

    async def _handle(self, stored: StoredEvent) -> None:
        if stored.type in TRIGGER_TYPES:
            event = stored.decode()
            hook = hook_for(event)
            command = self._commands.get(hook) if hook else None
            if hook is not None and command is not None:
                started = HookStarted(event.run_id, hook, stored.position, command)
                done, scope = asyncio.Event(), anyio.CancelScope()
                self._running[done] = scope  # before the append, so `stop` waits for it
                try:
                    await self._store.append_tracked(
                        run_stream(event.run_id), [started], (TRACKING, stored.position)
                    )
                except BaseException:
                    self._running.pop(done, None)
                    done.set()
                    raise
                self._saved = max(self._saved, stored.position)
                assert self._tg is not None, "the hook runner runs"
                self._tg.start_soon(self._run, started, stored, done, scope)
        self._position = stored.position

    async def _save_periodically(self) -> None:
        while not self._stopped:
            await asyncio.sleep(SAVE_INTERVAL_SECONDS)
            if self._position > self._saved:
                position = self._position
                try:
                    await self._store.save_tracking(TRACKING, position)
                except StoreError:
                    log.exception("could not record how far hooks have read the log; will retry")
                    continue
                self._saved = position

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
