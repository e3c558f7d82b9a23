"""Reading the log: committed events in position order, one stream's events, tracking positions."""

from __future__ import annotations

import aiosqlite

from orca_daemon.log.records import StoredEvent, first_page
from orca_daemon.log.schema import COLUMNS, row_to_event
from orca_daemon.log.tail import Tail

FETCH_ROWS = 16
"""Rows first taken from SQLite at a time while a byte-bounded page fills; each further trip
takes twice as many (up to `MAX_FETCH_ROWS`), so a page never reads more than about twice the
rows it returns, and a page of many small events takes few trips to the database thread."""
MAX_FETCH_ROWS = 2048


def _within(events: list[StoredEvent], max_bytes: int | None) -> list[StoredEvent]:
    return events if max_bytes is None else first_page(events, max_bytes)


class LogReader:
    """Reads through the read-only connection; never shows an event past the committed head."""

    def __init__(self, reader: aiosqlite.Connection, tail: Tail) -> None:
        self._reader = reader
        self._tail = tail

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
            query = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
            args: tuple[object, ...] = (after, limit)
        else:
            query, args = await self._stream_query(stream, after, limit)
        events: list[StoredEvent] = []
        total = 0
        fetch = FETCH_ROWS if max_bytes is not None else max(1, limit)
        async with self._reader.execute(query, args) as cursor:
            while rows := await cursor.fetchmany(fetch):
                fetch = min(2 * fetch, max(fetch, MAX_FETCH_ROWS))
                for row in rows:
                    event = row_to_event(row)
                    total += event.size()
                    past = max_bytes is not None and total > max_bytes and events
                    if past or event.position > self._tail.head:
                        return events
                    events.append(event)
        return events

    async def _stream_query(
        self, stream: str, after: int, limit: int
    ) -> tuple[str, tuple[object, ...]]:
        """One stream's events after position `after`. Within a stream, version order is
        position order, and the (stream, version) key is the index: when `after` is an event of
        this stream (a reader paging through it), the read seeks to the version after it
        instead of scanning the stream from its start for positions past `after`."""
        if after > 0:
            async with self._reader.execute(
                "SELECT stream, version FROM events WHERE position = ?", (after,)
            ) as cursor:
                found = await cursor.fetchone()
            if found is not None and found[0] == stream:
                query = (
                    f"SELECT {COLUMNS} FROM events WHERE stream = ? AND version > ?"
                    " ORDER BY version LIMIT ?"
                )
                return query, (stream, int(found[1]), limit)
        query = (
            f"SELECT {COLUMNS} FROM events WHERE stream = ? AND position > ?"
            " ORDER BY version LIMIT ?"
        )
        return query, (stream, after, limit)

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
        async with self._reader.execute(query, args) as cursor:
            rows = await cursor.fetchall()
        return [row_to_event(row) for row in rows]

    async def read_tracking(self, name: str) -> int | None:
        """The position reaction `name` last recorded, or None if it never did."""
        async with self._reader.execute(
            "SELECT position FROM tracking WHERE name = ?", (name,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else int(row[0])

    async def close(self) -> None:
        await self._reader.close()
