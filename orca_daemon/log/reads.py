"""Reading the log: committed events in position order, one stream's events, tracking positions."""

from __future__ import annotations

import aiosqlite

from orca_daemon.log.records import StoredEvent
from orca_daemon.log.schema import COLUMNS, row_to_event
from orca_daemon.log.tail import Tail


class LogReader:
    """Reads through the read-only connection; never shows an event past the committed head."""

    def __init__(self, reader: aiosqlite.Connection, tail: Tail) -> None:
        self._reader = reader
        self._tail = tail

    async def read_all(
        self, after: int = 0, limit: int = 1000, stream: str | None = None
    ) -> list[StoredEvent]:
        """Committed events with position greater than `after`, oldest first."""
        limit = max(0, limit)
        if stream is None:
            recent = self._tail.recent(after, limit)
            if recent is not None:
                return recent
            query = f"SELECT {COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
            args: tuple[object, ...] = (after, limit)
        else:
            # Within a stream, version order is position order: the (stream, version) key serves.
            query = (
                f"SELECT {COLUMNS} FROM events WHERE stream = ? AND position > ?"
                " ORDER BY version LIMIT ?"
            )
            args = (stream, after, limit)
        async with self._reader.execute(query, args) as cursor:
            rows = await cursor.fetchall()
        return [row_to_event(row) for row in rows if int(row[0]) <= self._tail.head]

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
