"""Following the PostgreSQL log: what other daemons commit reaches this daemon's tail (and so
its state, subscribers and reactions) in position order, together with its own commits.

A commit notifies `NOTIFY_CHANNEL`; the follower LISTENs on a connection of its own and, on a
notification or every `POLL_SECONDS` without one (notifications are lost while that connection
is down), reads what was committed past the tail's head and publishes it. The writer publishes
its own commits through `publish_own`, which first catches up with whatever other daemons
committed before them: listeners see every position once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from psycopg.conninfo import make_conninfo

from orca_daemon.log.pg_reads import PgReads
from orca_daemon.log.pg_schema import APPLICATION_NAME, CONNECTION_SETTINGS, NOTIFY_CHANNEL
from orca_daemon.log.records import StoredEvent
from orca_daemon.log.tail import Tail

log = logging.getLogger(__name__)

LISTEN_NAME = f"{APPLICATION_NAME}-listen"

POLL_SECONDS = 1.0
"""Without a notification, the follower looks for new commits this often."""
PAGE_EVENTS = 1000
PAGE_BYTES = 4 << 20
"""Catching up reads pages of at most this many events and bytes: memory stays bounded however
far behind the tail is."""
RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0


class PgFollower:
    """Publishes every committed event to the tail once, in position order (see the module)."""

    def __init__(self, url: str, where: str, reads: PgReads, tail: Tail) -> None:
        self._url = url
        self._where = where
        self._reads = reads
        self._tail = tail
        self._publishing = asyncio.Lock()
        self._woken = asyncio.Event()

    async def run(self) -> None:
        """Listen and poll until cancelled."""
        listening = asyncio.create_task(self._listen())
        wait = POLL_SECONDS
        retry = RETRY_FIRST_SECONDS
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), wait)
                self._woken.clear()
                try:
                    await self.catch_up()
                except psycopg.Error as exc:  # try again soon: a notification may not come
                    log.debug("could not read the log at %s: %s", self._where, exc)
                    wait, retry = retry, min(retry * 2, RETRY_MAX_SECONDS)
                else:
                    wait, retry = POLL_SECONDS, RETRY_FIRST_SECONDS
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)

    async def publish_own(self, stored: list[StoredEvent]) -> None:
        """The writer committed `stored`: publish it, each event after what other daemons
        committed before it (read again until it can be: it is committed, and must be
        published in order)."""
        async with self._publishing:
            start = 0
            while start < len(stored):
                end = start + 1
                while end < len(stored) and stored[end].position == stored[end - 1].position + 1:
                    end += 1
                await self._catch_up_before(stored[start].position)
                self._tail.publish(stored[start:end])
                start = end

    async def _catch_up_before(self, position: int) -> None:
        delay = RETRY_FIRST_SECONDS
        while self._tail.head < position - 1:
            try:
                await self._catch_up_to(position - 1)
            except psycopg.Error as exc:
                log.warning("catching up with the log at %s: %s; retrying", self._where, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def catch_up(self) -> None:
        """Publish whatever was committed past the tail's head."""
        async with self._publishing:
            await self._catch_up_to(None)

    async def _catch_up_to(self, upto: int | None) -> None:
        while upto is None or self._tail.head < upto:
            after = self._tail.head
            if upto is None:
                page = await self._reads.read_committed(after, PAGE_EVENTS, PAGE_BYTES)
            else:
                page = await self._reads.read_committed(after, PAGE_EVENTS, PAGE_BYTES, upto)
            if not page:
                return
            if page[0].position != after + 1:  # positions are dense: this is not our log
                raise psycopg.DataError(
                    f"the log at {self._where} has no event at position {after + 1} "
                    f"(the next is at {page[0].position})"
                )
            self._tail.publish(page)

    async def _listen(self) -> None:
        """Hold a LISTEN connection, reconnecting after a delay when it is lost; each
        notification wakes the follower."""
        delay = RETRY_FIRST_SECONDS
        while True:
            try:
                listening = make_conninfo(
                    self._url, **{**CONNECTION_SETTINGS, "application_name": LISTEN_NAME}
                )
                connection = await psycopg.AsyncConnection.connect(listening, autocommit=True)
                async with connection:
                    await connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    delay = RETRY_FIRST_SECONDS
                    self._woken.set()  # anything committed while not listening
                    async for notification in connection.notifies():
                        if _head_of(notification.payload) > self._tail.head:
                            self._woken.set()  # (not for this daemon's own commits)
            except psycopg.Error as exc:
                log.debug("listening to the log at %s: %s", self._where, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)


def _head_of(payload: str) -> int:
    """The head a commit's notification names (a payload that is not one: wake up anyway)."""
    try:
        return int(payload)
    except ValueError:
        return 2**62
