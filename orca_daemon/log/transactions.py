"""One transaction of the writer on the SQLite log: a batch of appends planned, then written."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import aiosqlite

from orca_daemon.log.backend import WriteConflict
from orca_daemon.log.outage import unwritable_reason
from orca_daemon.log.pending import PendingAppend
from orca_daemon.log.planning import Accepted, Row, plan
from orca_daemon.log.records import StoredEvent
from orca_daemon.log.schema import HEAD, INSERT, TRACK
from orca_daemon.log.tail import Tail

log = logging.getLogger(__name__)

TEST_PAGE_LIMIT_VARIABLE = "ORCA_TEST_LOG_PAGE_LIMIT_FILE"
"""Tests only: a file holding a page count for SQLite's `max_page_count`, read before each write,
so that a test can make the log full (SQLITE_FULL) and give the space back."""


class SqliteTransactions:
    """Plans a batch (the next positions after the head, each stream's next versions, checked
    against expected versions) and writes its rows in one transaction on the writing connection.
    orcad is the log file's only writer, so the head and the versions are kept in memory."""

    def __init__(self, writer: aiosqlite.Connection, tail: Tail, path: Path) -> None:
        self._writer = writer
        self._tail = tail
        self._path = path
        self._versions: dict[str, int] = {}
        self._page_limit_file = os.environ.get(TEST_PAGE_LIMIT_VARIABLE)
        self._page_limit: int | None = None

    async def commit(self, batch: list[PendingAppend]) -> tuple[Accepted, list[StoredEvent], bool]:
        """See `backend.Transactions.commit`."""
        await self.load_versions({p.stream for p in batch if p.events})
        accepted, rows, stored = plan(batch, self._tail.head, self._versions)
        tracking = [p.tracking for p, _ in accepted if p.tracking is not None]
        if not rows and not tracking:
            return accepted, stored, False
        try:
            await self.write(rows, tracking)
        except aiosqlite.IntegrityError as exc:
            raise WriteConflict(str(exc)) from exc
        return accepted, stored, True

    async def probe(self, tracking: tuple[str, int]) -> None:
        await self.write([], [tracking])

    def unwritable_reason(self, exc: BaseException) -> str | None:
        return unwritable_reason(exc, self._path)

    async def write(self, rows: list[Row], tracking: list[tuple[str, int]]) -> None:
        """Insert `rows` and upsert `tracking` in one transaction, and commit it (rolled back
        if anything fails)."""
        if self._page_limit_file is not None:
            await self._apply_test_page_limit(self._page_limit_file)
        try:
            if rows:
                await self._writer.executemany(INSERT, rows)
            if tracking:
                await self._writer.executemany(TRACK, tracking)
            await self._writer.commit()
        except BaseException:
            if self._writer.in_transaction:
                try:
                    await self._writer.rollback()
                except Exception as exc:  # the write's own error is the one to report
                    log.debug("rollback failed: %s", exc)
            raise

    async def _apply_test_page_limit(self, limit_file: str) -> None:
        """Tests only (`ORCA_TEST_LOG_PAGE_LIMIT_FILE`): apply the page limit the file holds."""
        limit = _read_page_limit(limit_file)
        if limit != self._page_limit:
            await self._writer.execute(f"PRAGMA max_page_count={limit}")
            self._page_limit = limit

    async def load_versions(self, streams: set[str]) -> None:
        """Learn the current version of each of `streams` not known yet."""
        missing = [s for s in streams if s not in self._versions]
        if not missing:
            return
        marks = ",".join("?" * len(missing))
        query = f"SELECT stream, MAX(version) FROM events WHERE stream IN ({marks}) GROUP BY stream"
        async with self._writer.execute(query, missing) as cursor:
            found = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        for stream in missing:
            self._versions[stream] = found.get(stream, 0)

    def forget_versions(self) -> None:
        """A write failed: the versions it planned are not the streams' versions."""
        self._versions.clear()

    async def reset_head(self) -> None:
        """Re-read the head after a failed write; leaves it as it was if even that fails."""
        try:
            async with self._writer.execute(HEAD) as cursor:
                row = await cursor.fetchone()
        except Exception:
            log.exception("could not re-read the log's head position")
            return
        self._tail.head = int(row[0]) if row else 0

    async def close(self) -> None:
        await self._writer.close()


def _read_page_limit(limit_file: str) -> int:
    """The page count in a test's limit file; no file or an empty one: SQLite's maximum."""
    try:
        with open(limit_file) as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        text = ""
    return int(text) if text else 2**32 - 2
