"""The log's SQLite file: its tables, the statements that write them, and opening it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import aiosqlite
import anyio.to_thread

from orca_daemon.log.records import StoredEvent

Synchronous = Literal["FULL", "NORMAL", "EXTRA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE IF NOT EXISTS tracking (
    name TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
"""
TRACK = (
    "INSERT INTO tracking (name, position) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET position = MAX(position, excluded.position)"
)
INSERT = (
    "INSERT INTO events (position, stream, version, type, schema_version, recorded_at, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
COLUMNS = "position, stream, version, type, schema_version, recorded_at, data"
HEAD = "SELECT COALESCE(MAX(position), 0) FROM events"
WAL_CHECKPOINT_PAGES = 4000
"""Checkpoint the WAL at about 16 MB rather than SQLite's 4 MB: fewer, larger checkpoints."""


async def connect(
    path: Path, synchronous: Synchronous
) -> tuple[aiosqlite.Connection, sqlite3.Connection, int]:
    """Open (creating if needed) the log at `path` in WAL mode: its writing connection, a
    read-only one (see `open_reader`), and the position of its last event (0 for an empty
    log)."""
    # DEFERRED: the first INSERT opens the transaction, so a commit costs two trips to the
    # database thread (inserts, COMMIT) instead of three.
    writer = await aiosqlite.connect(path, isolation_level="DEFERRED")
    try:
        await writer.execute("PRAGMA journal_mode=WAL")
        await writer.execute(f"PRAGMA synchronous={synchronous}")
        await writer.execute("PRAGMA busy_timeout=5000")
        await writer.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        await writer.executescript(SCHEMA)
        await writer.execute("DROP INDEX IF EXISTS events_by_stream_position")  # pre-0.1 logs
        async with writer.execute(HEAD) as cursor:
            row = await cursor.fetchone()
        reader = await anyio.to_thread.run_sync(open_reader, path)
    except BaseException:
        await writer.close()
        raise
    head = int(row[0]) if row else 0
    return writer, reader, head


def open_reader(path: Path) -> sqlite3.Connection:
    """A read-only connection to the log, for one thread at a time but any thread: reads run
    whole pages on a worker thread (`LogReader`), one hand-off each."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        connection.execute("PRAGMA query_only=1")
    except BaseException:
        connection.close()
        raise
    return connection


def row_to_event(row: aiosqlite.Row | tuple[object, ...]) -> StoredEvent:
    """The event a row of `COLUMNS` holds."""
    position, stream, version, type_, schema_version, recorded_at, data = tuple(row)
    return StoredEvent(
        int(position),
        str(stream),
        int(version),
        str(type_),
        int(schema_version),
        float(recorded_at),
        bytes(data),
    )
