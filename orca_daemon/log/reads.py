"""Reading the log: committed events in position order, one stream's events, tracking positions.

Each read is one trip to a worker thread, which runs its queries on a read-only SQLite
connection and returns the whole page: a page of a big run costs one thread hand-off, not one
per query, fetch and cursor close (about 0.4 ms each through an aiosqlite connection, which made
a 64 MB `orca logs` spend twice as long in hand-offs as in SQLite).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

from orca_daemon.log.records import StoredEvent, first_page
from orca_daemon.log.schema import COLUMNS, row_to_event
from orca_daemon.log.tail import Tail

T = TypeVar("T")

BY_POSITION = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
STREAM_BY_POSITION = (
    f"SELECT {COLUMNS} FROM events WHERE stream = ? AND position > ? ORDER BY version LIMIT ?"
)
STREAM_BY_VERSION = (
    f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version > ? ORDER BY version LIMIT ?"
)


def _within(events: list[StoredEvent], max_bytes: int | None) -> list[StoredEvent]:
    return events if max_bytes is None else first_page(events, max_bytes)


class LogReader:
    """Reads through the read-only connection; never shows an event past the committed head."""

    def __init__(self, connection: sqlite3.Connection, tail: Tail) -> None:
        self._connection = connection
        self._tail = tail
        self._one_at_a_time = anyio.CapacityLimiter(1)  # one worker thread waits for it
        self._using = threading.Lock()  # the connection's guard, even if a waiter is cancelled

    async def _in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def guarded() -> T:
            with self._using:
                return work(self._connection)

        return await anyio.to_thread.run_sync(guarded, limiter=self._one_at_a_time)

    async def read_all(
        self,
        after: int = 0,
        limit: int = 1000,
        stream: str | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        """Committed events with position greater than `after`, oldest first: at most `limit`,
        and with `max_bytes`, no more than fit in it (`StoredEvent.size`; always at least one),
        so a page of large events never reads more rows than it returns."""
        limit = max(0, limit)
        if stream is None:
            recent = self._tail.recent(after, limit)
            if recent is not None:
                return _within(recent, max_bytes)
        head = self._tail.head

        def read(connection: sqlite3.Connection) -> list[StoredEvent]:
            query: str
            args: tuple[object, ...]
            if stream is None:
                query, args = BY_POSITION, (after, limit)
            else:
                query, args = _stream_query(connection, stream, after, limit)
            return _page(connection.execute(query, args), head, max_bytes)

        return await self._in_thread(read)

    async def read_stream(
        self,
        stream: str,
        after_version: int = 0,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """The events of one stream after `after_version` (only those of `event_type`, when
        given; the first `limit` of them, when given), in order."""
        query = f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version > ?"
        args: tuple[object, ...] = (stream, after_version)
        if event_type is not None:
            query += " AND type = ?"
            args += (event_type,)
        query += " ORDER BY version"
        if limit is not None:
            query += " LIMIT ?"
            args += (limit,)

        def read(connection: sqlite3.Connection) -> list[StoredEvent]:
            return [row_to_event(row) for row in connection.execute(query, args)]

        return await self._in_thread(read)

    async def read_tracking(self, name: str) -> int | None:
        """The position reaction `name` last recorded, or None if it never did."""

        def read(connection: sqlite3.Connection) -> int | None:
            row = connection.execute(
                "SELECT position FROM tracking WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else int(row[0])

        return await self._in_thread(read)

    async def close(self) -> None:
        await self._in_thread(sqlite3.Connection.close)


def _stream_query(
    connection: sqlite3.Connection, stream: str, after: int, limit: int
) -> tuple[str, tuple[object, ...]]:
    """One stream's events after position `after`. Within a stream, version order is position
    order, and the (stream, version) key is the index: when `after` is an event of this stream
    (a reader paging through it), the read seeks to the version after it instead of scanning
    the stream from its start for positions past `after`."""
    if after > 0:
        found = connection.execute(
            "SELECT stream, version FROM events WHERE position = ?", (after,)
        ).fetchone()
        if found is not None and found[0] == stream:
            return STREAM_BY_VERSION, (stream, int(found[1]), limit)
    return STREAM_BY_POSITION, (stream, after, limit)


def _page(cursor: sqlite3.Cursor, head: int, max_bytes: int | None) -> list[StoredEvent]:
    """The rows up to the committed `head`, within `max_bytes` (at least one): rows are taken
    one at a time, so no row past the page is read."""
    events: list[StoredEvent] = []
    total = 0
    try:
        for row in cursor:
            event = row_to_event(row)
            total += event.size()
            if event.position > head or (max_bytes is not None and total > max_bytes and events):
                break
            events.append(event)
    finally:
        cursor.close()
    return events
