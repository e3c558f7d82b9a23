"""One transaction of the writer on the PostgreSQL log, which several orcad daemons share.

Positions must commit in order, so that a reader tailing the log never passes a position that
fills in later: each transaction takes the events table in EXCLUSIVE mode (readers go on; other
writers wait), reads the head and the batch's stream versions under that lock, and gives its
events the positions after that head. The next writer's lock is granted only once this commit is
visible, so positions are dense and committed in order (as pyeventsourcing's recorder does).
"""

from __future__ import annotations

import logging
from typing import cast

import psycopg
import psycopg.errors
from psycopg_pool import AsyncConnectionPool

from orca_daemon.log.backend import WriteConflict
from orca_daemon.log.pending import PendingAppend
from orca_daemon.log.pg_owners import ADOPT, CLAIM, ENDED, OWNERS, Checked, Fences, Owners
from orca_daemon.log.pg_schema import NOTIFY_CHANNEL, TRACK
from orca_daemon.log.planning import Accepted, Row, plan
from orca_daemon.log.records import StoredEvent

log = logging.getLogger(__name__)

LOCK = "LOCK TABLE events IN EXCLUSIVE MODE"
HEAD_AND_VERSIONS = (
    "SELECT '', COALESCE(MAX(position), 0) FROM events"
    " UNION ALL"
    " SELECT s, (SELECT MAX(version) FROM events WHERE stream = s) FROM unnest(%s::text[]) s"
)
"""The head, and each stream's version: one backward step in the (stream, version) index per
stream (a MAX grouped over `stream = ANY(...)` reads every row of those streams)."""
INSERT = (
    "INSERT INTO events (position, stream, version, type, schema_version, recorded_at, data)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


class PgTransactions:
    """Writes each batch in one transaction under the events table's lock (see the module)."""

    def __init__(self, pool: AsyncConnectionPool, where: str, fences: Fences | None = None) -> None:
        self._pool = pool
        self._where = where
        self._fences = fences
        """With a daemon's name: every append to a run is checked against the run's owner."""
        self._committing: Accepted | None = None
        """The batch whose COMMIT is being sent (its rows all written in the transaction)."""
        self._in_doubt: tuple[Accepted, Checked] | None = None
        """A batch whose COMMIT got no answer: it may have committed (see `commit`)."""
        self._known_head: int | None = None
        """The head this writer's last commit left; None: unknown (a write failed)."""
        self._versions: dict[str, int] = {}
        """The stream versions as of `_known_head` (those this writer has seen)."""

    async def commit(self, batch: list[PendingAppend]) -> tuple[Accepted, list[StoredEvent], bool]:
        """See `backend.Transactions.commit`. A transaction whose COMMIT got no answer (the
        connection was lost) may have committed: the next commit looks for its events first,
        and the appends it finds written are not written again."""
        settled: Accepted = []
        if self._in_doubt is not None:
            settled = await self._settle_in_doubt(self._in_doubt)
            self._in_doubt = None
        done = {id(pending) for pending, _ in settled}
        rest = [pending for pending in batch if id(pending) not in done]
        accepted: Accepted = []
        checked = Checked([], [], {})
        stored: list[StoredEvent] = []
        rows: list[Row] = []
        tracking: list[tuple[str, int]] = []
        if rest:
            async with self._pool.connection() as connection:
                try:
                    # Pipelined: BEGIN, LOCK and the SELECT go in one round trip; the rows,
                    # the notification, the tracking rows and COMMIT in a second.
                    async with connection.pipeline(), connection.transaction():
                        await connection.execute(LOCK)
                        checked = await self._fenced(connection, rest)
                        rest = checked.allowed
                        head, versions = await self._head_and_versions(connection, rest)
                        accepted, rows, stored = plan(rest, head, versions)
                        tracking = [p.tracking for p, _ in accepted if p.tracking is not None]
                        await self._record_owners(connection, checked)
                        await self._write(connection, rows, tracking)
                        self._committing = accepted
                except psycopg.errors.UniqueViolation as exc:
                    self._known_head = None
                    raise WriteConflict(str(exc)) from exc
                except BaseException as exc:
                    self._known_head = None
                    lost = isinstance(exc, psycopg.OperationalError)
                    if lost and self._committing is not None and rows:
                        self._in_doubt = (self._committing, checked)
                    raise
                finally:
                    self._committing = None
            self._known_head = stored[-1].position if stored else head
            self._versions = versions
            if self._fences is not None:
                self._fences.committed(checked)
        return (
            settled + accepted,
            [e for _, events in settled for e in events] + stored,
            bool(settled or rows or tracking),
        )

    async def _head_and_versions(
        self, connection: psycopg.AsyncConnection[tuple[object, ...]], batch: list[PendingAppend]
    ) -> tuple[int, dict[str, int]]:
        """The head, and the version of each stream of the batch (under the lock). The versions
        this writer planned are kept: while the head is where its last commit left it, nobody
        else wrote, and only streams it has not seen are read."""
        streams = {p.stream for p in batch if p.events}
        if self._known_head is not None:
            unseen = sorted(streams - self._versions.keys())
            head, found = await self._read_versions(connection, unseen)
            if head == self._known_head:
                return head, {**self._versions, **found}
        head, found = await self._read_versions(connection, sorted(streams))
        return head, found

    async def _read_versions(
        self, connection: psycopg.AsyncConnection[tuple[object, ...]], streams: list[str]
    ) -> tuple[int, dict[str, int]]:
        cursor = await connection.execute(HEAD_AND_VERSIONS, (streams,))
        found = {str(s): cast(int, n) for s, n in await cursor.fetchall() if n is not None}
        return found.pop(""), found

    async def _fenced(
        self, connection: psycopg.AsyncConnection[tuple[object, ...]], batch: list[PendingAppend]
    ) -> Checked:
        """What of `batch` this daemon may write (see `Fences.check`); all of it, claiming
        and adopting nothing, without fences."""
        if self._fences is None:
            return Checked(batch, [], {})
        runs = self._fences.runs_of(batch)
        if not runs:
            return Checked(batch, [], {})
        cursor = await connection.execute(OWNERS, (runs,))
        owners: Owners = {
            cast(str, run): (cast(str, owner), cast(int, generation), bool(expired))
            for run, owner, generation, expired in await cursor.fetchall()
        }
        return self._fences.check(batch, owners)

    async def _record_owners(
        self, connection: psycopg.AsyncConnection[tuple[object, ...]], checked: Checked
    ) -> None:
        """In the batch's transaction: the runs it claims, and those it adopts."""
        if self._fences is None or not (checked.claims or checked.adoptions or checked.ended):
            return
        me = self._fences.daemon
        async with connection.cursor() as cursor:
            if checked.claims:
                await cursor.executemany(CLAIM, [(run, me) for run in checked.claims])
            if checked.adoptions:
                await cursor.executemany(
                    ADOPT, [(me, gen, run) for run, gen in checked.adoptions.items()]
                )
            if checked.ended:
                await cursor.execute(ENDED, (checked.ended,))

    async def _settle_in_doubt(self, in_doubt: tuple[Accepted, Checked]) -> Accepted:
        """The appends of a transaction whose COMMIT went unanswered, if it did commit (its
        last event is in the log, recorded at the same instant); else none. The runs it claimed
        or adopted are this daemon's then."""
        accepted, checked = in_doubt
        last = [events for _, events in accepted if events][-1][-1]
        async with self._pool.connection() as connection:
            cursor = await connection.execute(
                "SELECT 1 FROM events WHERE position = %s AND stream = %s AND version = %s"
                " AND recorded_at = %s",
                (last.position, last.stream, last.version, last.recorded_at),
            )
            written = await cursor.fetchone() is not None
        if not written:
            return []
        if self._fences is not None:
            self._fences.committed(checked)
        log.warning(
            "the log at %s did commit the transaction whose answer was lost (positions up to "
            "%d): it is not written again",
            self._where,
            last.position,
        )
        return [(pending, events) for pending, events in accepted if not pending.future.done()]

    async def _write(
        self,
        connection: psycopg.AsyncConnection[tuple[object, ...]],
        rows: list[Row],
        tracking: list[tuple[str, int]],
    ) -> None:
        if rows:
            async with connection.cursor() as cursor:
                await cursor.executemany(INSERT, rows)
            await connection.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, str(rows[-1][0])))
        if tracking:
            async with connection.cursor() as cursor:
                await cursor.executemany(TRACK, tracking)

    async def probe(self, tracking: tuple[str, int]) -> None:
        async with self._pool.connection() as connection:
            await connection.execute(TRACK, tracking)

    def forget_versions(self) -> None:
        """Nothing to forget: each transaction reads the versions under the lock."""

    async def reset_head(self) -> None:
        """Nothing to reset: each transaction reads the head under the lock."""

    def unwritable_reason(self, exc: BaseException) -> str | None:
        return unwritable_reason(exc, self._where)

    async def close(self) -> None:
        """The pool is closed by the store, which shares it with the readers."""


def unwritable_reason(exc: BaseException, where: str) -> str | None:
    """What keeps the log at `where` from being written when `exc` is worth retrying: the
    server out of reach or shutting down, out of space, read-only; None for any other error."""
    if isinstance(exc, psycopg.errors.DiskFull | psycopg.errors.OutOfMemory):
        return f"PostgreSQL at {where} is out of space ({_first_line(exc)})"
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        return f"the log at {where} stayed locked by another daemon's transaction for a minute"
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return f"PostgreSQL at {where} is read-only ({_first_line(exc)})"
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return f"cannot reach PostgreSQL at {where} ({_first_line(exc)})"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
