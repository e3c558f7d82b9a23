"""The log's PostgreSQL tables: created and migrated by orcad, versioned, and safe for several
orcad daemons starting at once; the connection pool; and how a server is named without its
credentials."""

from __future__ import annotations

import contextlib
from typing import cast
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from orca_daemon.log.records import StoreError

MIGRATIONS: tuple[str, ...] = (
    # 1: the events, their (stream, version) key, the reactions' tracking rows, the daemons
    # with their leases, and each run's owner with its generation (pg_owners).
    """
    CREATE TABLE events (
        position bigint PRIMARY KEY,
        stream text NOT NULL,
        version integer NOT NULL,
        type text NOT NULL,
        schema_version integer NOT NULL,
        recorded_at double precision NOT NULL,
        data bytea NOT NULL,
        UNIQUE (stream, version)
    );
    CREATE TABLE tracking (
        name text PRIMARY KEY,
        position bigint NOT NULL
    );
    CREATE TABLE daemons (
        name text PRIMARY KEY,
        host text NOT NULL,
        home text NOT NULL,
        pid integer NOT NULL,
        started_at timestamptz NOT NULL,
        expires_at timestamptz NOT NULL
    );
    CREATE TABLE run_owners (
        run_id text PRIMARY KEY,
        owner text NOT NULL,
        generation bigint NOT NULL,
        ended boolean NOT NULL DEFAULT false
    );
    """,
)
LOG_SCHEMA_VERSION = len(MIGRATIONS)
"""The version of the tables this orcad writes: the number of migrations it knows."""
MIGRATION_LOCK = 0x6F726361  # "orca": a transaction-level advisory lock, one migrator at a time
NOTIFY_CHANNEL = "orca_log"
"""Each commit notifies this channel (its payload: the new head), a hint to the other daemons."""
COLUMNS = "position, stream, version, type, schema_version, recorded_at, data"
TRACK = (
    "INSERT INTO tracking (name, position) VALUES (%s, %s)"
    " ON CONFLICT (name) DO UPDATE SET position = GREATEST(tracking.position, excluded.position)"
)
APPLICATION_NAME = "orcad"
CONNECTION_SETTINGS: dict[str, str | int] = {
    "application_name": APPLICATION_NAME,
    # A host that freezes or sleeps is found out in under a minute, not after the kernel's
    # two hours: its connections (and the table lock one of them may hold) are dropped.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "options": "-c idle_in_transaction_session_timeout=30000 -c lock_timeout=60000",
}
"""Every connection orcad makes to the log. A transaction that waits more than a minute for the
events table's lock gives up (the writer retries it); one that stays idle half a minute (its
daemon froze) is ended by the server, which frees the lock for the others."""


def redacted(text: str, url: str) -> str:
    """`text` (an error's, say) with the password of `url` taken out, wherever it appears."""
    password: object = urlsplit(url).password if "://" in url else None
    with contextlib.suppress(psycopg.ProgrammingError):
        password = password or conninfo_to_dict(url).get("password")
    return text.replace(str(password), "***") if password else text


def describe(url: str) -> str:
    """The server and database of `url`, for messages: never its password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (the URL could not be read)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    user = f"{parts['user']}@" if parts.get("user") else ""
    database = parts.get("dbname") or ""
    return f"postgresql://{user}{host}:{port}/{database}"


async def migrate(connection: psycopg.AsyncConnection[tuple[object, ...]]) -> int:
    """Bring the tables to `LOG_SCHEMA_VERSION` (creating them in an empty database); returns
    the version found. Daemons starting together take turns; a log written by a newer orcad
    is refused rather than changed."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await connection.execute("CREATE TABLE IF NOT EXISTS log_schema (version integer NOT NULL)")
        cursor = await connection.execute("SELECT version FROM log_schema")
        row = await cursor.fetchone()
        found = 0 if row is None else cast(int, row[0])
        if found > LOG_SCHEMA_VERSION:
            raise StoreError(
                f"the log's tables are at version {found}, newer than this orcad knows "
                f"({LOG_SCHEMA_VERSION}): upgrade orcad"
            )
        for migration in MIGRATIONS[found:]:
            await connection.execute(migration.encode())
        if row is None:
            await connection.execute(
                "INSERT INTO log_schema (version) VALUES (%s)", (LOG_SCHEMA_VERSION,)
            )
        elif found < LOG_SCHEMA_VERSION:
            await connection.execute("UPDATE log_schema SET version = %s", (LOG_SCHEMA_VERSION,))
    return found


async def open_pool(url: str, max_size: int = 6, wait_seconds: float = 10.0) -> AsyncConnectionPool:
    """A pool of connections to `url` (autocommit: each write opens its own transaction),
    opened, with the tables migrated. Fails with `StoreError` naming the server (not the
    password) when it cannot be reached, or when the URL cannot be read."""
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        why = redacted(str(exc).strip(), url)
        raise StoreError(
            f"the log's URL cannot be read ({why}); it should look like "
            "postgresql://user@host:port/database"
        ) from None
    pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        timeout=wait_seconds,
        kwargs={"autocommit": True, **CONNECTION_SETTINGS},
        name="orca-log",
    )
    try:
        await pool.open(wait=True, timeout=wait_seconds)
        async with pool.connection() as connection:
            await migrate(connection)
    except BaseException as exc:
        await pool.close()
        if isinstance(exc, psycopg.Error | TimeoutError):  # PoolTimeout is a psycopg.Error
            reason = redacted(str(exc), url)
            raise StoreError(f"cannot open the log at {describe(url)}: {reason}") from None
        raise
    return pool
