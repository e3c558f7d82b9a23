"""Following the log from a tracked position: what hooks and notifications share.

A follower hands each committed event of some types to its handler, in log order, once. How far
it got is its *tracking position* in the log: a handler that records something appends it with
`append_tracked(..., (tracking, position))`, in the same transaction, so a restarted daemon
neither repeats nor skips it; for the events in between, the position is saved every few seconds
and at the stop. On the first start, the follower starts at the head: what happened before it
existed is not its business.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import anyio

from orca_daemon.log.records import StoredEvent, StoreError
from orca_daemon.log.store import EventStore

log = logging.getLogger(__name__)

SAVE_INTERVAL_SECONDS = 2.0
SAVE_AT_STOP_SECONDS = 5.0
RETRY_SECONDS = 1.0
"""While the log cannot be written: how long before the handler is called again."""
PAGE_EVENTS = 500


class LogFollower:
    """Calls `handle` for each committed event whose type is in `types`, in position order."""

    def __init__(
        self,
        store: EventStore,
        tracking: str,
        types: frozenset[str],
        handle: Callable[[StoredEvent], Awaitable[None]],
    ) -> None:
        self._store = store
        self._tracking = tracking
        self._types = types
        self._handle = handle
        self._queue: deque[StoredEvent] = deque()
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._stopped = False
        self.position = 0
        """Every event up to here has been handled."""
        self._saved = 0

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def start(self) -> None:
        """Read the tracking position (the head on a first start) and listen to commits."""
        tracked = await self._store.read_tracking(self._tracking)
        if tracked is None:
            tracked = self._store.head_position
            await self._store.save_tracking(self._tracking, tracked)
        self.position = self._saved = tracked
        self._store.add_listener(self._on_commit)

    def saved(self, position: int) -> None:
        """The handler recorded `position` as the tracking position (with `append_tracked`)."""
        self._saved = max(self._saved, position)

    async def follow(self) -> None:
        """Handle what the log holds after the position, then each commit, until `stop`."""
        while not self._stopped:
            page = await self._store.read_all(after=self.position, limit=PAGE_EVENTS)
            if not page:
                break
            for stored in page:
                await self._handle_retrying(stored)
        while not self._stopped:
            while self._queue and not self._stopped:
                stored = self._queue.popleft()
                if stored.position > self.position:
                    await self._handle_retrying(stored)
            if not self._queue:  # every event up to the head has been handled
                self.position = max(self.position, self._store.head_position)
                self._progress.set()
            self._wake.clear()
            if not self._queue:
                await self._wake.wait()

    async def save_periodically(self) -> None:
        """Save the tracking position every few seconds while it moves, until `stop`."""
        while not self._stopped:
            await asyncio.sleep(SAVE_INTERVAL_SECONDS)
            if self.position > self._saved:
                position = self.position
                try:
                    await self._store.save_tracking(self._tracking, position)
                except StoreError:
                    log.exception("could not record how far %s has read the log", self._tracking)
                    continue
                self._saved = position

    async def catch_up(self, limit: float) -> None:
        """Wait (at most `limit` seconds) until what the log holds now has been handled."""
        head = self._store.head_position
        with anyio.move_on_after(limit):
            while self.position < head:
                self._progress.clear()
                await self._progress.wait()

    def stop(self) -> None:
        """Handle nothing more; `follow` and `save_periodically` return."""
        self._stopped = True
        self._wake.set()
        self._store.remove_listener(self._on_commit)

    async def save(self) -> None:
        """Record how far the log was handled: what lies after it, the next orcad handles.
        While the log cannot be written this gives up after `SAVE_AT_STOP_SECONDS` (the append
        is withdrawn): the next orcad then goes over the events since the last position saved,
        which are handled already (a handler records its own position with what it did)."""
        try:
            with anyio.move_on_after(SAVE_AT_STOP_SECONDS) as waited:
                await self._store.save_tracking(self._tracking, self.position)
        except StoreError:
            log.exception("could not record how far %s has read the log", self._tracking)
            return
        if waited.cancelled_caught:
            log.warning(
                "could not record how far %s has read the log (it cannot be written)",
                self._tracking,
            )

    def _on_commit(self, events: list[StoredEvent]) -> None:
        self._queue.extend(e for e in events if e.type in self._types)
        self._wake.set()

    async def _handle_retrying(self, stored: StoredEvent) -> None:
        """Handle one event; while the log cannot be written, wait and try again (in order)."""
        while not self._stopped:
            try:
                if stored.type in self._types:
                    await self._handle(stored)
                self.position = stored.position
                return
            except StoreError:
                log.exception(
                    "%s: event at position %d not handled yet; retrying",
                    self._tracking,
                    stored.position,
                )
                await asyncio.sleep(RETRY_SECONDS)
