"""Live event subscriptions: catch-up from the log, then events as they commit, never a gap.

Each subscriber has a bounded queue filled on commit. A subscriber that falls further behind than
the queue holds gets `SubscriptionOverflowed` with the last position it was sent, and must
subscribe again from there (catch-up reads the log, so nothing is skipped).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum

import anyio.abc

from orca_client.wire import (
    PAGE_BYTES,
    DaemonMessage,
    EventsPushed,
    SubscriptionOverflowed,
    WireError,
)
from orca_daemon.store import EventStore, StoredEvent, first_page

log = logging.getLogger(__name__)

PAGE_EVENTS = 500
LEASE_SECONDS = 60.0
MAX_SUBSCRIPTIONS = 1024


class Delivery(Enum):
    SENT = "sent"
    GONE = "gone"


Sender = Callable[[bytes, DaemonMessage], Awaitable[Delivery]]


@dataclass(eq=False)
class Subscription:
    id: str
    identity: bytes
    after: int
    stream: str | None
    capacity: int
    queue: deque[StoredEvent] = field(default_factory=deque)
    overflowed: bool = False
    last_heard: float = field(default_factory=time.monotonic)
    """When the peer last sent a request or took a push (monotonic seconds)."""
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, events: list[StoredEvent]) -> None:
        if self.closed or self.overflowed:
            return
        wanted = events if self.stream is None else [e for e in events if e.stream == self.stream]
        if not wanted:
            return
        if len(self.queue) + len(wanted) > self.capacity:
            self.overflowed = True
            self.queue.clear()
        else:
            self.queue.extend(wanted)
        self.wake.set()


class Subscriptions:
    """Every open subscription, fed by the store's commit listener and sent by one task each."""

    def __init__(
        self,
        store: EventStore,
        send: Sender,
        task_group: anyio.abc.TaskGroup,
        capacity: int,
        lease: float = LEASE_SECONDS,
    ) -> None:
        self._lease = lease
        self._store = store
        self._send = send
        self._tg = task_group
        self._capacity = capacity
        self._subs: dict[str, Subscription] = {}
        store.add_listener(self._on_commit)
        task_group.start_soon(self._expire_silent)

    def open(self, identity: bytes, after: int, stream: str | None) -> Subscription:
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise WireError(
                "invalid_state", f"too many subscriptions (at most {MAX_SUBSCRIPTIONS})"
            )
        sub = Subscription(secrets.token_hex(8), identity, after, stream, self._capacity)
        self._subs[sub.id] = sub
        return sub

    def start(self, subscription_id: str) -> None:
        """Begin delivering (call after the subscribe reply is sent, so it arrives first)."""
        sub = self._subs.get(subscription_id)
        if sub is not None:
            self._tg.start_soon(self._deliver, sub)

    def discard(self, subscription_id: str) -> None:
        """Forget a subscription whose reply never reached its subscriber."""
        sub = self._subs.get(subscription_id)
        if sub is not None:
            self._end(sub)

    def close(self, identity: bytes, subscription_id: str) -> None:
        sub = self._subs.get(subscription_id)
        if sub is None or sub.identity != identity:
            raise WireError("not_found", f"no subscription {subscription_id!r} on this connection")
        self._end(sub)

    def heard_from(self, identity: bytes) -> None:
        """A request came from this peer: its subscriptions are alive."""
        now = time.monotonic()
        for sub in self._subs.values():
            if sub.identity == identity:
                sub.last_heard = now

    async def _expire_silent(self) -> None:
        """End subscriptions whose peer went quiet: nothing sent to it, nothing heard from it,
        for the lease (a live client sends `hello` while it waits; a gone one cannot)."""
        while True:
            await asyncio.sleep(self._lease / 4)
            horizon = time.monotonic() - self._lease
            for sub in [s for s in self._subs.values() if s.last_heard < horizon]:
                log.info("subscription %s: its peer went silent; ending it", sub.id)
                self._end(sub)

    def close_all(self) -> None:
        for sub in list(self._subs.values()):
            self._end(sub)

    def __len__(self) -> int:
        return len(self._subs)

    def _end(self, sub: Subscription) -> None:
        sub.closed = True
        sub.wake.set()
        self._subs.pop(sub.id, None)

    def _on_commit(self, events: list[StoredEvent]) -> None:
        for sub in self._subs.values():
            sub.offer(events)

    async def _deliver(self, sub: Subscription) -> None:
        try:
            position = await self._catch_up(sub)
            if position is not None:
                await self._follow(sub, position)
        except Exception:
            log.exception("subscription %s failed", sub.id)
        finally:
            self._end(sub)

    async def _catch_up(self, sub: Subscription) -> int | None:
        position = sub.after
        while not sub.closed and not sub.overflowed:
            page = await self._store.read_all(after=position, limit=PAGE_EVENTS, stream=sub.stream)
            if not page:
                return position
            page = first_page(page, PAGE_BYTES)
            if not await self._push(sub, page):
                return None
            position = page[-1].position
        return position

    async def _follow(self, sub: Subscription, position: int) -> None:
        while not sub.closed:
            if sub.overflowed:
                await self._send(sub.identity, SubscriptionOverflowed(sub.id, position))
                return
            batch = [e for e in _drain(sub.queue, PAGE_EVENTS, PAGE_BYTES) if e.position > position]
            if batch:
                if not await self._push(sub, batch):
                    return
                position = batch[-1].position
            elif not sub.queue:
                sub.wake.clear()
                if not sub.queue and not sub.overflowed and not sub.closed:
                    await sub.wake.wait()

    async def _push(self, sub: Subscription, events: list[StoredEvent]) -> bool:
        message = EventsPushed(sub.id, [e.to_record() for e in events])
        sent = await self._send(sub.identity, message) is Delivery.SENT
        if sent:
            sub.last_heard = time.monotonic()
        return sent


def _drain(queue: deque[StoredEvent], limit: int, max_bytes: int) -> list[StoredEvent]:
    """Up to `limit` queued events within `max_bytes` (at least one if any are queued)."""
    items: list[StoredEvent] = []
    size = 0
    while queue and len(items) < limit:
        size += queue[0].size()
        if items and size > max_bytes:
            break
        items.append(queue.popleft())
    return items
