"""Notifications (`[notify]`): a run waiting for an answer, a run that completed or failed,
told on the desktop and to webhooks — exactly once per event and channel, across restarts.

The runner follows the log (`log_follower`), as the hook runner does. For each event that calls
for a notification (a question still waiting when the runner reads it; see `notify_text` for the
rest) it appends `NotificationTriggered` (what it says, the channels) in the same transaction as
how far it has read, so a trigger is never skipped nor triggered twice. Each channel's delivery
is a task of its own, retried with backoff (1 s doubling to 5 min) until delivered or
`give_up_after_seconds` after the trigger, then recorded: `NotificationSent` or
`NotificationFailed`. A delivery neither recorded is done again by the next orcad; that crash
window (delivered, not yet recorded) is the only way a channel gets one twice, with the same
idempotency key. Deliveries never hold up the follower, each other, or orcad's stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable

import anyio
import anyio.abc

from orca_client.events import (
    NotificationFailed,
    NotificationSent,
    NotificationTriggered,
    QuestionAsked,
    notification_key,
    run_stream,
)
from orca_daemon.config import NotifySettings
from orca_daemon.log.records import FencedAppend, StoredEvent, StoreError
from orca_daemon.log.store import EventStore
from orca_daemon.orchestration.handover import (
    adopted_here,
    handled_here,
    missed_before_adoption,
)
from orca_daemon.orchestration.log_follower import LogFollower
from orca_daemon.orchestration.notify_channels import (
    ChannelUnavailable,
    DeliveryError,
    notify_desktop,
    post_webhook,
)
from orca_daemon.orchestration.notify_text import notice_for
from orca_daemon.state.projection import State

log = logging.getLogger(__name__)

TRACKING = "notifications"
TRIGGER_TYPES = frozenset({"question_asked", "run_status_changed"})
RECORD_RETRY_SECONDS = 1.0
"""While the log cannot be written: how long before an outcome is appended again."""
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 300.0
ATTEMPTS_AT_ONCE = 8
"""Delivery attempts in flight at the same time, over every channel."""
NOT_CONFIGURED = "the channel is no longer configured"


class NotificationRunner:
    """Triggers notifications for committed events, in log order, and delivers them."""

    def __init__(
        self,
        store: EventStore,
        state: State,
        settings: NotifySettings,
        acts_for: Callable[[str], bool] = lambda run_id: True,
        tracking: str = TRACKING,
    ) -> None:
        self._store = store
        self._state = state
        self._settings = settings
        self._acts_for = acts_for
        """Whether this daemon tells of the run (with a shared log, the runs it owns)."""
        self._tracking = tracking
        self._tg: anyio.abc.TaskGroup | None = None
        self._follower = LogFollower(store, tracking, TRIGGER_TYPES | {"run_adopted"}, self._handle)
        self._stopping = asyncio.Event()
        self._delivering: set[tuple[int, str]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._attempts = anyio.CapacityLimiter(ATTEMPTS_AT_ONCE)
        self._unavailable_logged: set[str] = set()

    def reconfigure(self, settings: NotifySettings) -> None:
        """Use these settings from the next event on; deliveries under way use the channels'
        new settings from their next attempt."""
        self._settings = settings
        self._say_where()

    def _say_where(self) -> None:
        """Log where notifications go, and at once if the desktop cannot be told here."""
        if channels := list(self._settings.channels()):
            log.info("notifications go to: %s", ", ".join(channels))
        if self._settings.desktop and shutil.which("notify-send") is None:
            log.warning(
                "notifications: [notify] desktop = true, but notify-send is not on orcad's PATH "
                "(install libnotify-bin, or put its directory on the PATH orcad starts with); "
                "desktop notifications will be recorded as failed"
            )

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Deliver what an earlier orcad left undelivered, then follow the log and own every
        delivery until cancelled (after `stop`)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            self._say_where()
            for (_, channel), (triggered, at) in list(self._state.notifications_due.items()):
                if not self._acts_for(triggered.run_id):
                    continue
                self._start_delivery(triggered, channel, at)
            await self._follower.start()
            task_status.started()
            tg.start_soon(self._follower.follow)
            await self._follower.save_periodically()

    async def stop(self, grace: float) -> None:
        """Trigger what the log holds so far (within `grace`), stop following, give deliveries
        in flight `grace` seconds; what is left undelivered, the next orcad delivers."""
        await self._follower.catch_up(grace)
        self._stopping.set()
        self._follower.stop()
        with anyio.move_on_after(grace):
            await self._idle.wait()
        await self._follower.save()

    # ------------------------------------------------------------------ triggering

    async def _handle(self, stored: StoredEvent) -> None:
        if stored.type == "run_adopted":
            if adopted_here(self._state, self._acts_for, stored):
                await self._catch_up(stored)
            return
        if handled_here(self._state, self._acts_for, stored.stream[len("run-") :], stored.position):
            await self._trigger(stored)

    async def _catch_up(self, adopted: StoredEvent) -> None:
        """This daemon adopted the run: deliver what its earlier owner had triggered and not
        delivered, and trigger what it had not."""
        run_id = adopted.stream[len("run-") :]
        for (_, channel), (due, at) in list(self._state.notifications_due.items()):
            if due.run_id == run_id:
                self._start_delivery(due, channel, at)
        missed = await missed_before_adoption(self._store, adopted, TRACKING, TRIGGER_TYPES)
        if not missed:
            return
        triggered = {
            notification.trigger_position
            for stored in await self._store.read_stream(
                adopted.stream, event_type="notification_triggered"
            )
            if isinstance(notification := stored.decode(), NotificationTriggered)
        }
        for stored in missed:
            if stored.position not in triggered:
                await self._trigger(stored)

    async def _trigger(self, stored: StoredEvent) -> None:
        """Record the notification `stored` calls for, if any, and deliver it."""
        event = stored.decode()
        run = self._state.runs.get(event.run_id)
        notice = None
        if isinstance(event, QuestionAsked):
            waiting = self._waiting_requests(event.run_id)
            if waiting.get(event.session_id) == event.request_id:  # not answered or withdrawn
                notice = notice_for(event, run, len(waiting) - 1, home=os.environ.get("ORCA_HOME"))
        else:
            notice = notice_for(event, run, summary=self._last_summary(event.run_id))
        channels = list(self._settings.channels())
        if notice is not None and channels:
            triggered = NotificationTriggered(
                event.run_id,
                stored.position,
                notice.kind,
                notice.title,
                notice.summary,
                notice.text,
                channels,
                notice.answer_command,
                notice.request_id,
            )
            [recorded] = await self._store.append_tracked(
                run_stream(event.run_id), [triggered], (self._tracking, stored.position)
            )
            self._follower.saved(stored.position)
            for channel in channels:
                self._start_delivery(triggered, channel, recorded.recorded_at)

    def _last_summary(self, run_id: str) -> str | None:
        """What the run's last session (a fan-out's orchestrator, a plan's last task) said it
        did, if it said."""
        run = self._state.runs.get(run_id)
        sessions = [self._state.sessions.get(s) for s in run.session_ids] if run else []
        said = [s.summary for s in sessions if s is not None and s.summary]
        return said[-1] if said else None

    def _waiting_requests(self, run_id: str) -> dict[str, str]:
        """The question requests of a run that wait for an answer now, by session (each
        session numbers its requests on its own)."""
        run = self._state.runs.get(run_id)
        sessions = [self._state.sessions.get(s) for s in run.session_ids] if run else []
        return {
            s.session_id: s.pending.request_id
            for s in sessions
            if s is not None and s.pending is not None
        }

    # ------------------------------------------------------------------ delivering

    def _start_delivery(self, triggered: NotificationTriggered, channel: str, at: float) -> None:
        key = (triggered.trigger_position, channel)
        if key in self._delivering:
            return
        self._delivering.add(key)
        self._idle.clear()
        assert self._tg is not None, "the notification runner runs"
        self._tg.start_soon(self._deliver, triggered, channel, at)

    async def _deliver(self, triggered: NotificationTriggered, channel: str, at: float) -> None:
        """Deliver on one channel and record the outcome (unless orcad stops first)."""
        try:
            outcome = await self._attempt_until_done(triggered, channel, at)
            if outcome is not None:
                await self._record(outcome)
        except Exception:
            key = notification_key(triggered.trigger_position, channel)
            log.exception("notification %s failed inside orcad; the next orcad tries again", key)
        finally:
            self._delivering.discard((triggered.trigger_position, channel))
            if not self._delivering:
                self._idle.set()

    async def _attempt_until_done(
        self, triggered: NotificationTriggered, channel: str, at: float
    ) -> NotificationSent | NotificationFailed | None:
        """Attempt until delivered, unavailable or past the deadline; None if orcad stops
        first (the next orcad delivers it)."""
        key = notification_key(triggered.trigger_position, channel)
        position = triggered.trigger_position
        backoff = FIRST_BACKOFF_SECONDS
        attempts = 0
        while not self._stopping.is_set():
            attempts += 1
            try:
                async with self._attempts:
                    await self._attempt(triggered, channel)
                return NotificationSent(triggered.run_id, position, channel, attempts)
            except ChannelUnavailable as exc:
                if channel not in self._unavailable_logged:  # said once, not at every event
                    self._unavailable_logged.add(channel)
                    log.warning("notifications: %s is not available: %s", channel, exc.reason)
                return NotificationFailed(triggered.run_id, position, channel, attempts, exc.reason)
            except DeliveryError as exc:
                if time.time() + backoff > at + self._settings.give_up_after_seconds:
                    log.warning("notification %s given up: %s", key, exc.reason)
                    reason = f"{exc.reason} (gave up after {attempts} attempts)"
                    return NotificationFailed(triggered.run_id, position, channel, attempts, reason)
                log.warning(
                    "notification %s: attempt %d failed: %s; next in %gs",
                    key,
                    attempts,
                    exc.reason,
                    backoff,
                )
            with anyio.move_on_after(backoff):
                await self._stopping.wait()
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        return None

    async def _attempt(self, triggered: NotificationTriggered, channel: str) -> None:
        settings = self._settings
        channels = settings.channels()
        if channel not in channels:
            raise ChannelUnavailable(NOT_CONFIGURED)
        webhook = channels[channel]
        if webhook is None:
            await notify_desktop(triggered, settings.timeout_seconds)
        else:
            await post_webhook(webhook, triggered, settings.timeout_seconds)

    async def _record(self, outcome: NotificationSent | NotificationFailed) -> None:
        """Append the delivery's outcome; while the log cannot be written, try again."""
        while True:
            try:
                await self._store.append(run_stream(outcome.run_id), [outcome])
                return
            except FencedAppend as exc:  # the run is another daemon's now: it delivers it
                log.warning("notification outcome not recorded: %s", exc)
                return
            except StoreError:
                if self._stopping.is_set():
                    raise
                log.exception("notification outcome not recorded yet; retrying")
                await asyncio.sleep(RECORD_RETRY_SECONDS)
