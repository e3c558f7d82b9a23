"""Reading the PostgreSQL log: committed events in position order, one stream's events, tracking
positions. Readers see no event past the head this daemon has published (the tail's), so a reply
never runs ahead of the state it is read beside; `read_committed` reads past it, for catching
the tail up with what other daemons committed."""

from __future__ import annotations

from typing import cast

from psycopg_pool import AsyncConnectionPool

from orca_daemon.log.pg_schema import COLUMNS
from orca_daemon.log.records import StoredEvent, first_page
from orca_daemon.log.tail import Tail

SIZE = "octet_length(data) + octet_length(stream) + 64"
"""`StoredEvent.size` in SQL."""
PAGE = (
    f"SELECT {COLUMNS} FROM ("
    f" SELECT {COLUMNS}, row_number() OVER w AS n, SUM({SIZE}) OVER w AS total"
    " FROM events WHERE {where} WINDOW w AS (ORDER BY {order})"
    " ORDER BY {order} LIMIT %(limit)s"
    ") page WHERE n = 1 OR total <= %(max_bytes)s ORDER BY {order}"
)
"""A page: the first `limit` rows, cut as `first_page` cuts (within `max_bytes`, at least one),
in the server, so rows past the page are never sent."""


def _page(where: str, order: str) -> str:
    return PAGE.format(where=where, order=order)


BY_POSITION = _page("position > %(after)s AND position <= %(upto)s", "position")
STREAM_BY_POSITION = _page(
    "stream = %(stream)s AND position > %(after)s AND position <= %(upto)s", "version"
)
STREAM_BY_VERSION = _page(
    "stream = %(stream)s AND version > %(version)s AND position <= %(upto)s", "version"
)
NO_BOUND = 2**62


def row_to_event(row: tuple[object, ...]) -> StoredEvent:
    """The event a row of `COLUMNS` holds."""
    position, stream, version, type_, schema_version, recorded_at, data = row
    return StoredEvent(
        cast(int, position),
        cast(str, stream),
        cast(int, version),
        cast(str, type_),
        cast(int, schema_version),
        cast(float, recorded_at),
        bytes(cast(bytes, data)),
    )


class PgReads:
    """Reads through the pool; never shows an event past the tail's head but in
    `read_committed`."""

    def __init__(self, pool: AsyncConnectionPool, tail: Tail) -> None:
        self._pool = pool
        self._tail = tail

    async def _fetch(self, query: str, args: dict[str, object]) -> list[StoredEvent]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(query.encode(), args)
            return [row_to_event(row) for row in await cursor.fetchall()]

    async def read_all(
        self, after: int, limit: int, stream: str | None, max_bytes: int | None
    ) -> list[StoredEvent]:
        """See `EventStore.read_all`."""
        limit = max(0, limit)
        if limit == 0:
            return []
        if stream is None:
            recent = self._tail.recent(after, limit)
            if recent is not None:
                return recent if max_bytes is None else first_page(recent, max_bytes)
            return await self.read_committed(after, limit, max_bytes, self._tail.head)
        args: dict[str, object] = {
            "stream": stream,
            "after": after,
            "limit": limit,
            "max_bytes": NO_BOUND if max_bytes is None else max_bytes,
            "upto": self._tail.head,
        }
        async with self._pool.connection() as connection:
            query = STREAM_BY_POSITION
            if after > 0:
                cursor = await connection.execute(
                    "SELECT stream, version FROM events WHERE position = %s", (after,)
                )
                found = await cursor.fetchone()
                if found is not None and found[0] == stream:
                    query, args["version"] = STREAM_BY_VERSION, found[1]
            cursor = await connection.execute(query.encode(), args)
            return [row_to_event(row) for row in await cursor.fetchall()]

    async def read_committed(
        self, after: int, limit: int, max_bytes: int | None, upto: int = NO_BOUND
    ) -> list[StoredEvent]:
        """Events committed after position `after` and up to `upto`, oldest first: at most
        `limit`, within `max_bytes` (at least one)."""
        args: dict[str, object] = {
            "after": after,
            "upto": upto,
            "limit": max(0, limit),
            "max_bytes": NO_BOUND if max_bytes is None else max_bytes,
        }
        return await self._fetch(BY_POSITION, args)

    async def read_stream(
        self, stream: str, after_version: int, event_type: str | None, limit: int | None
    ) -> list[StoredEvent]:
        """See `EventStore.read_stream`."""
        query = f"SELECT {COLUMNS} FROM events WHERE stream = %(stream)s AND version > %(after)s"
        query += " AND position <= %(upto)s"
        args: dict[str, object] = {
            "stream": stream,
            "after": after_version,
            "upto": self._tail.head,
        }
        if event_type is not None:
            query += " AND type = %(type)s"
            args["type"] = event_type
        query += " ORDER BY version"
        if limit is not None:
            query += " LIMIT %(limit)s"
            args["limit"] = limit
        return await self._fetch(query, args)

    async def read_tracking(self, name: str) -> int | None:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT position FROM tracking WHERE name = %s", (name,)
            )
            row = await cursor.fetchone()
        return None if row is None else cast(int, row[0])

    async def head(self) -> int:
        """The position of the last event committed by any daemon."""
        async with self._pool.connection() as connection:
            cursor = await connection.execute("SELECT COALESCE(MAX(position), 0) FROM events")
            row = await cursor.fetchone()
        return 0 if row is None else cast(int, row[0])

    async def close(self) -> None:
        """The pool is closed by the store."""
