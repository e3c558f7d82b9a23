"""Live event subscriptions: catch-up from the log, then events as they commit, never a gap.

Each subscriber has a queue bounded in events and bytes, filled on commit. A subscriber that falls
further behind than its queue holds, that leaves a push unread for a quarter of its lease (a
stuck reader), or that goes silent for its lease gets `SubscriptionOverflowed` with the last
position it was sent; its subscription ends and it must subscribe again from there (catch-up reads
the log, so nothing is skipped).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import anyio
import anyio.abc

from orca_client.wire import (
    PAGE_BYTES,
    DaemonMessage,
    EventsPushed,
    SubscriptionOverflowed,
    WireError,
)
from orca_daemon.log.records import StoredEvent
from orca_daemon.log.store import EventStore

log = logging.getLogger(__name__)

PAGE_EVENTS = 500
LEASE_SECONDS = 60.0
MAX_SUBSCRIPTIONS = 256
MAX_PEER_SUBSCRIPTIONS = 16
"""Subscriptions one connection may hold at once."""
QUEUE_BYTES = 16 << 20
"""Bytes of events a subscriber may fall behind (besides `subscriber_queue_events`)."""
STALL_FRACTION = 0.25
"""A push its peer leaves unread for this fraction of the lease ends the subscription."""


class Delivery(Enum):
    SENT = "sent"
    GONE = "gone"
    """The peer disconnected, or holds too much unread already: nothing was sent."""
    STUCK = "stuck"
    """The peer's queue stayed full for the whole patience: the message was withdrawn."""


class Outlet(Protocol):
    """Where subscription messages go: the socket."""

    async def send(self, identity: bytes, message: DaemonMessage, patience: float) -> Delivery:
        """Send in order with everything else for the peer, waiting up to `patience` seconds
        while its queue is full."""
        ...

    def post(self, identity: bytes, message: DaemonMessage) -> bool:
        """Send or queue a message for the peer without waiting; False if it was dropped."""
        ...


@dataclass(eq=False)
class Subscription:
    id: str
    identity: bytes
    after: int
    stream: str | None
    capacity: int
    queue: deque[StoredEvent] = field(default_factory=deque)
    queued_bytes: int = 0
    overflowed: bool = False
    delivered: int = 0
    """The last position sent to the subscriber (`after` until the first push)."""
    last_heard: float = field(default_factory=time.monotonic)
    """When the peer last sent a request or took a push (monotonic seconds)."""
    closed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    delivery: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    """Cancelled when the subscription ends, so a push that waits never outlives it."""

    def __post_init__(self) -> None:
        self.delivered = self.after

    def offer(self, events: list[StoredEvent]) -> None:
        if self.closed or self.overflowed:
            return
        wanted = events if self.stream is None else [e for e in events if e.stream == self.stream]
        if not wanted:
            return
        size = sum(e.size() for e in wanted)
        if len(self.queue) + len(wanted) > self.capacity or self.queued_bytes + size > QUEUE_BYTES:
            self.overflowed = True
            self.queue.clear()
            self.queued_bytes = 0
        else:
            self.queue.extend(wanted)
            self.queued_bytes += size
        self.wake.set()

    def take(self, limit: int, max_bytes: int) -> list[StoredEvent]:
        """Up to `limit` queued events within `max_bytes` (at least one if any are queued)."""
        items: list[StoredEvent] = []
        size = 0
        while self.queue and len(items) < limit:
            size += self.queue[0].size()
            if items and size > max_bytes:
                break
            items.append(self.queue.popleft())
        self.queued_bytes = max(0, self.queued_bytes - sum(e.size() for e in items))
        return items


class Subscriptions:
    """Every open subscription, fed by the store's commit listener and sent by one task each."""

    def __init__(
        self,
        store: EventStore,
        outlet: Outlet,
        capacity: int,
        lease: float = LEASE_SECONDS,
    ) -> None:
        self._lease = lease
        self._store = store
        self._outlet = outlet
        self._tg: anyio.abc.TaskGroup | None = None
        self._capacity = capacity
        self._subs: dict[str, Subscription] = {}
        store.add_listener(self._on_commit)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Own every subscription's delivery (and the lease check) until cancelled."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await self._expire_silent()

    def open(self, identity: bytes, after: int, stream: str | None) -> Subscription:
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise WireError(
                "busy",
                f"orcad has {MAX_SUBSCRIPTIONS} subscriptions open, its most; try again later",
            )
        held = sum(1 for sub in self._subs.values() if sub.identity == identity)
        if held >= MAX_PEER_SUBSCRIPTIONS:
            raise WireError(
                "busy",
                f"this connection has {held} subscriptions open, the most one may hold "
                f"({MAX_PEER_SUBSCRIPTIONS}); unsubscribe from one first",
            )
        sub = Subscription(secrets.token_hex(8), identity, after, stream, self._capacity)
        self._subs[sub.id] = sub
        return sub

    def start(self, subscription_id: str) -> None:
        """Begin delivering (call once the subscribe reply is sent or queued, so it goes first)."""
        sub = self._subs.get(subscription_id)
        if sub is not None:
            assert self._tg is not None, "subscriptions run"
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

    def is_open(self, identity: bytes, subscription_id: str) -> bool:
        """This peer's subscription is open (not ended by it, a lease or an overflow)."""
        sub = self._subs.get(subscription_id)
        return sub is not None and sub.identity == identity and not sub.closed

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
                self._give_up(sub, "its peer went silent")

    def close_all(self) -> None:
        for sub in list(self._subs.values()):
            self._end(sub)

    def __len__(self) -> int:
        return len(self._subs)

    def _end(self, sub: Subscription) -> None:
        sub.closed = True
        sub.queue.clear()
        sub.queued_bytes = 0
        sub.delivery.cancel()
        sub.wake.set()
        self._subs.pop(sub.id, None)

    def _give_up(self, sub: Subscription, why: str) -> None:
        """End a subscription and tell its peer where to resume (if it ever reads again)."""
        if sub.closed:
            return
        log.info("subscription %s: %s; ending it at position %d", sub.id, why, sub.delivered)
        self._end(sub)
        self._outlet.post(sub.identity, SubscriptionOverflowed(sub.id, sub.delivered))

    def _on_commit(self, events: list[StoredEvent]) -> None:
        for sub in self._subs.values():
            sub.offer(events)

    async def _deliver(self, sub: Subscription) -> None:
        try:
            with sub.delivery:
                if await self._catch_up(sub):
                    await self._follow(sub)
        except Exception:
            log.exception("subscription %s failed", sub.id)
        finally:
            self._end(sub)

    async def _catch_up(self, sub: Subscription) -> bool:
        while not sub.closed and not sub.overflowed:
            page = await self._store.read_all(
                after=sub.delivered, limit=PAGE_EVENTS, stream=sub.stream, max_bytes=PAGE_BYTES
            )
            if not page:
                return True
            if not await self._push(sub, page):
                return False
        if sub.overflowed:
            self._give_up(sub, "it fell too far behind")
        return False

    async def _follow(self, sub: Subscription) -> None:
        while not sub.closed:
            if sub.overflowed:
                self._give_up(sub, "it fell too far behind")
                return
            batch = [e for e in sub.take(PAGE_EVENTS, PAGE_BYTES) if e.position > sub.delivered]
            if batch:
                if not await self._push(sub, batch):
                    return
            elif not sub.queue:
                sub.wake.clear()
                if not sub.queue and not sub.overflowed and not sub.closed:
                    await sub.wake.wait()

    async def _push(self, sub: Subscription, events: list[StoredEvent]) -> bool:
        """Send one page; False when the subscription is over (its peer gone or stuck)."""
        message = EventsPushed(sub.id, [e.to_record() for e in events])
        delivery = await self._outlet.send(sub.identity, message, self._lease * STALL_FRACTION)
        if delivery is Delivery.SENT:
            sub.delivered = events[-1].position
            sub.last_heard = time.monotonic()
            return True
        if delivery is Delivery.STUCK:
            self._give_up(sub, "its peer has not read what it was sent")
        else:
            self._end(sub)
        return False
