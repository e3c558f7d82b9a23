"""The committed end of the log in memory: its head, the recent events, and who hears of commits."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from orca_daemon.log.records import CommitListener, StoredEvent

log = logging.getLogger(__name__)

RING_BYTES = 16 << 20


class Tail:
    """The head position, a ring of recent events (bounded in count and in bytes) for
    subscribers, and the listeners called with each committed batch."""

    def __init__(self, head: int, ring_size: int) -> None:
        self.head = head
        """The position of the last committed event (0 for an empty log)."""
        self._ring: deque[StoredEvent] = deque()
        self._ring_size = ring_size
        self._ring_bytes = 0
        self._listeners: list[CommitListener] = []
        self._committed = asyncio.Event()

    def publish(self, stored: list[StoredEvent]) -> None:
        """A batch was committed: move the head, keep it in the ring, tell the listeners.
        Events at or before the head were published already (by another path to the same
        commits, with a log several daemons share) and are left out."""
        if stored and stored[0].position <= self.head:
            stored = [event for event in stored if event.position > self.head]
        if not stored:
            return
        self.head = stored[-1].position
        self._ring.extend(stored)
        self._ring_bytes += sum(len(e.data) for e in stored)
        while len(self._ring) > 1 and (
            self._ring_bytes > RING_BYTES or len(self._ring) > self._ring_size
        ):
            self._ring_bytes -= len(self._ring.popleft().data)
        for listener in list(self._listeners):
            try:
                listener(stored)
            except Exception:
                log.exception("commit listener %r failed", listener)
        self._committed.set()
        self._committed = asyncio.Event()

    def recent(self, after: int, limit: int) -> list[StoredEvent] | None:
        """The first `limit` events after position `after` when the ring holds them all from
        there; None when the ring starts later (or is empty)."""
        ring = self._ring
        if not ring or after < ring[0].position - 1:
            return None
        start = after - ring[0].position + 1
        return [ring[i] for i in range(start, min(len(ring), start + limit))]

    async def wait_for_commit_after(self, position: int) -> None:
        """Return once the head is past `position`."""
        while self.head <= position:
            await self._committed.wait()

    def add_listener(self, listener: CommitListener) -> None:
        """Call `listener` with each committed batch, in position order, before appends return."""
        self._listeners.append(listener)

    def remove_listener(self, listener: CommitListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)
