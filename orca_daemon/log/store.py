"""The event log: SQLite through aiosqlite (the default), or PostgreSQL shared by several orcad
daemons; one writer task that group-commits, reads, a live tail.

Every event has a global `position` and a `version` within its stream; `(stream, version)` is
unique, which gives optimistic concurrency. `append` returns only after its transaction is durable.

When the log cannot be written (disk full, I/O error, locked by another connection), the writer
enters an outage: appends that must be recorded wait and are retried with backoff until they are;
output is dropped (its caller counts it and records the loss later); a client's request is refused
with `LogUnavailable`. An append whose caller stops waiting for it (is cancelled) is withdrawn: it
is never written later.

The parts: `appends` (the queue appenders wait on), `writer` (the group commit), `planning` (a
batch's positions and versions), `outage` (when the log cannot be written), `tail` (head, recent
events, commit listeners); `records` holds what they hand out. `backend` says what each database
provides: for SQLite, `schema` (the file), `transactions` and `reads`; for PostgreSQL,
`pg_schema` (the tables), `pg_transactions`, `pg_reads`, and `pg_follow`, which brings other
daemons' commits to the tail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from orca_client.events import Event, RunAdopted, run_stream
from orca_daemon.log.appends import AppendQueue
from orca_daemon.log.backend import Reads, Transactions
from orca_daemon.log.outage import Outages
from orca_daemon.log.reads import LogReader
from orca_daemon.log.records import AppendMode, CommitListener, LogUnavailable, StoredEvent
from orca_daemon.log.schema import Synchronous, connect
from orca_daemon.log.tail import Tail
from orca_daemon.log.transactions import SqliteTransactions
from orca_daemon.log.writer import LogWriter

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from orca_daemon.log.pg_follow import PgFollower
    from orca_daemon.log.pg_owners import DaemonLease

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DaemonIdentity:
    """Who opens a log several daemons share: its name, its state directory (with the host,
    what tells its own earlier process from another daemon of the same name) and how long its
    lease lasts without renewal."""

    name: str
    home: str
    lease_seconds: float


class EventStore:
    """Appends and reads events. Call `run_writer()` in a task group; appends wait for it."""

    def __init__(
        self,
        transactions: Transactions,
        reads: Reads,
        tail: Tail,
        follower: PgFollower | None = None,
        pool: AsyncConnectionPool | None = None,
        lease: DaemonLease | None = None,
    ) -> None:
        self._tail = tail
        self._outages = Outages()
        self._queue = AppendQueue(self._outages)
        self._transactions = transactions
        self._follower = follower
        self._pool = pool
        self._lease = lease
        self._lease_after_close: float | None = None
        publish = self._publish if follower is None else follower.publish_own
        self._writer = LogWriter(
            self._queue, transactions, self._outages, publish, lambda: tail.head
        )
        self._reads = reads

    @classmethod
    async def open(
        cls, path: Path, synchronous: Synchronous = "FULL", ring_size: int = 8192
    ) -> EventStore:
        """Open (creating if needed) the log at `path` in WAL mode."""
        writer, reader, head = await connect(path, synchronous)
        tail = Tail(head, ring_size)
        return cls(SqliteTransactions(writer, tail, path), LogReader(reader, tail), tail)

    @classmethod
    async def open_postgres(
        cls,
        url: str,
        ring_size: int = 8192,
        wait_seconds: float = 10.0,
        daemon: DaemonIdentity | None = None,
    ) -> EventStore:
        """Open the log in the PostgreSQL database at `url` (creating or migrating its tables),
        which other orcad daemons may share: what they commit reaches this one's tail too.
        As `daemon`, the store registers it (its lease, renewed while the writer runs) and
        appends to runs only for the runs it owns (pg_owners). Fails with `StoreError` when
        the server cannot be reached within `wait_seconds`, or the name is taken."""
        from orca_daemon.log.pg_follow import PgFollower
        from orca_daemon.log.pg_owners import DaemonLease, Fences, load_owned
        from orca_daemon.log.pg_reads import PgReads
        from orca_daemon.log.pg_schema import describe, open_pool
        from orca_daemon.log.pg_transactions import PgTransactions

        where = describe(url)
        pool = await open_pool(url, wait_seconds=wait_seconds)
        fences = lease = None
        try:
            tail = Tail(0, ring_size)
            reads = PgReads(pool, tail)
            if daemon is not None:
                lease = DaemonLease(pool, where, daemon.name, daemon.home, daemon.lease_seconds)
                await lease.register()
                async with pool.connection() as connection:
                    fences = Fences(daemon.name, await load_owned(connection, daemon.name))
            tail.head = await reads.head()
        except BaseException:
            await pool.close()
            raise
        follower = PgFollower(url, where, reads, tail)
        return cls(PgTransactions(pool, where, fences), reads, tail, follower, pool, lease)

    async def _publish(self, stored: list[StoredEvent]) -> None:
        self._tail.publish(stored)

    @property
    def head_position(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        return self._tail.head

    # ------------------------------------------------------------------ appending

    async def append(
        self,
        stream: str,
        events: Sequence[Event],
        expected_version: int | None = None,
        mode: AppendMode = "wait",
    ) -> list[StoredEvent]:
        """Append `events` to `stream` atomically and durably; returns them as stored.

        With `expected_version`, the stream must be at exactly that version (0: new stream),
        else `ConcurrencyError`. `mode` says what happens while the log cannot be written.
        """
        return await self._queue.append(stream, events, expected_version, mode)

    async def adopt(self, adopted: RunAdopted) -> list[StoredEvent]:
        """With a shared log: take the run over from `adopted.from_daemon`, whose lease has
        run out, at its generation before `adopted.generation`, appending `adopted` in the
        same transaction; `ConcurrencyError` if another daemon took it first or the owner
        renewed its lease meanwhile."""
        adopting = (adopted.from_daemon, adopted.generation - 1)
        return await self._queue.append(run_stream(adopted.run_id), [adopted], adopting=adopting)

    async def runs_to_adopt(self) -> list[tuple[str, str, int]]:
        """With a shared log: the runs whose owner's lease has run out (this daemon's aside),
        each with its owner and generation; none with a daemon's own log."""
        if self._lease is None:
            return []
        return await self._lease.expired_runs()

    @property
    def daemon(self) -> str | None:
        """The name this store appends as, with a shared log."""
        return None if self._lease is None else self._lease.daemon

    async def append_together(
        self, appends: Sequence[tuple[str, Sequence[Event]]]
    ) -> list[list[StoredEvent]]:
        """Append to several streams in one transaction (all or none); waits for the log."""
        return await self._queue.append_together(appends)

    async def append_tracked(
        self, stream: str, events: Sequence[Event], tracking: tuple[str, int]
    ) -> list[StoredEvent]:
        """Append `events` and record, in the same transaction, that reaction `tracking[0]`
        has handled the log up to position `tracking[1]` (see `read_tracking`)."""
        return await self._queue.append_tracked(stream, events, tracking)

    async def save_tracking(self, name: str, position: int) -> None:
        """Record that reaction `name` has handled the log up to `position`."""
        await self._queue.append_tracked("", [], (name, position))

    async def read_tracking(self, name: str) -> int | None:
        """The position reaction `name` last recorded, or None if it never did."""
        return await self._reads.read_tracking(name)

    def append_nowait(
        self, stream: str, events: Sequence[Event], mode: AppendMode = "wait"
    ) -> asyncio.Future[list[StoredEvent]]:
        """Queue an append now and return its future: appends are written in the order they
        were queued, so a caller may go on and await the future later. Cancelling the future
        while the append is queued withdraws it."""
        return self._queue.append_nowait(stream, events, mode)

    def add_writable_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from the writer, so it must not block) each time the log can be
        written again after an outage."""
        self._outages.add_writable_listener(listener)

    def unwritable(self) -> LogUnavailable | None:
        """Why the log cannot be written now (until the writer's next attempt succeeds), or None."""
        return self._outages.unwritable()

    async def run_writer(self) -> None:
        """The single writer: batches every waiting append into one transaction per round.

        Returns once `stop_accepting` (or `close`) was called and every queued append is done.
        With a log other daemons share, it also follows their commits meanwhile.
        """
        if self._follower is None:
            await self._writer.run()
            return
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._follower.run)
            await self._writer.run()
            tasks.cancel_scope.cancel()

    # ------------------------------------------------------------------ reading

    async def read_all(
        self,
        after: int = 0,
        limit: int = 1000,
        stream: str | None = None,
        max_bytes: int | None = None,
    ) -> list[StoredEvent]:
        """Committed events with position greater than `after`, oldest first (at most `limit`,
        and with `max_bytes` only as many as fit in it, at least one)."""
        return await self._reads.read_all(after, limit, stream, max_bytes)

    async def read_stream(
        self,
        stream: str,
        after_version: int = 0,
        event_type: str | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """The events of one stream after `after_version` (only those of `event_type`, when
        given; the first `limit` of them, when given), in order."""
        return await self._reads.read_stream(stream, after_version, event_type, limit)

    async def wait_for_commit_after(self, position: int) -> None:
        """Return once the head is past `position`."""
        await self._tail.wait_for_commit_after(position)

    def add_listener(self, listener: CommitListener) -> None:
        """Call `listener` with each committed batch, in position order, before appends return."""
        self._tail.add_listener(listener)

    def remove_listener(self, listener: CommitListener) -> None:
        self._tail.remove_listener(listener)

    # ------------------------------------------------------------------ closing

    async def renew_lease(self) -> None:
        """With a shared log: renew this daemon's lease until cancelled (call it from the
        start, in a task of its own); with a daemon's own log, return at once."""
        if self._lease is not None:
            await self._lease.renew_forever()

    def keep_lease_after_close(self, seconds: float) -> None:
        """With a shared log: at `close`, leave this daemon's lease to run out `seconds` later
        (until then no other daemon adopts its runs)."""
        self._lease_after_close = seconds

    async def close(self) -> None:
        """Let the writer finish every queued append, then close the database."""
        await self._writer.finish()
        await self._reads.close()
        await self._transactions.close()
        if self._lease is not None:
            try:
                if self._lease_after_close is not None:
                    await self._lease.release(self._lease_after_close)
            except Exception as exc:  # it runs out by itself
                log.warning("could not set this daemon's lease for after its stop: %s", exc)
            finally:
                await self._lease.close()
        if self._pool is not None:
            await self._pool.close()

    def stop_accepting(self) -> None:
        """Refuse new appends; the writer finishes what is queued and returns (during an
        outage, it keeps trying for `CLOSE_RETRY_SECONDS`)."""
        self._writer.stop_accepting()
