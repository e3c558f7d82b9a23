"""The event log: SQLite through aiosqlite, one writer task that group-commits, reads, a live tail.

Every event has a global `position` and a `version` within its stream; `(stream, version)` is
unique, which gives optimistic concurrency. `append` returns only after its transaction is durable.

When the log cannot be written (disk full, I/O error, locked by another connection), the writer
enters an outage: appends that must be recorded wait and are retried with backoff until they are;
output is dropped (its caller counts it and records the loss later); a client's request is refused
with `LogUnavailable`. An append whose caller stops waiting for it (is cancelled) is withdrawn: it
is never written later.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import aiosqlite
import anyio
import msgspec

from orca_client.events import (
    SCHEMA_VERSION,
    AnyEvent,
    Event,
    decode_event,
    encode_event,
    event_type,
)
from orca_client.wire import EventRecord

log = logging.getLogger(__name__)

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
MAX_APPENDS_PER_BATCH = 2000
RING_BYTES = 16 << 20
WAL_CHECKPOINT_PAGES = 4000
"""Checkpoint the WAL at about 16 MB rather than SQLite's 4 MB: fewer, larger checkpoints."""


RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0
"""While the log cannot be written, the writer tries again after 0.05 s, doubling up to 2 s."""
CLOSE_RETRY_SECONDS = 10.0
"""After `stop_accepting`, how long the writer keeps retrying appends that wait for the log."""
OUTAGE_LOG_QUIET_SECONDS = 60.0
"""An outage that begins this soon after the last one that was logged is not logged again."""
PROBE_TRACKING = "orcad.log_probe"
"""The tracking row the writer updates to find out whether the log can be written again."""
TEST_PAGE_LIMIT_VARIABLE = "ORCA_TEST_LOG_PAGE_LIMIT_FILE"
"""Tests only: a file holding a page count for SQLite's `max_page_count`, read before each write,
so that a test can make the log full (SQLITE_FULL) and give the space back."""

AppendMode = Literal["wait", "drop", "refuse"]
"""What an append does while the log cannot be written: `wait` until it is written (facts that
must be recorded), `drop` (output: raises or fails with `LogUnavailable`, the caller counts what
was lost), `refuse` (a client's request: raises or fails with `LogUnavailable`). The writer
retries the waiting appends (or, with none, probes) until a write succeeds."""


class StoreError(Exception):
    """The log could not take an append (store closed, or a failure it does not retry)."""


class ConcurrencyError(StoreError):
    """An append expected a stream version that another append already took."""


class LogUnavailable(StoreError):
    """The log cannot be written now (disk full, I/O error); `reason` says what and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the log cannot be written: {reason}")
        self.reason = reason


def unwritable_reason(exc: BaseException, path: Path) -> str | None:
    """What keeps the log at `path` from being written, when `exc` is that kind of failure (a full
    disk, an I/O error, a read-only file system, another connection holding it locked past the
    busy timeout, no memory): all worth retrying; None for any other error."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            return f"disk full at {path}"
        if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return f"{path} is locked by another connection ({exc})"
        if primary == sqlite3.SQLITE_NOMEM:
            return f"out of memory writing {path} ({exc})"
        if primary == sqlite3.SQLITE_IOERR:
            return f"I/O error at {path} ({exc})"
        if primary == sqlite3.SQLITE_READONLY:
            return f"{path} is read-only ({exc})"
        if primary == sqlite3.SQLITE_CANTOPEN:
            return f"cannot open {path} ({exc})"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full at {path}"
        if exc.errno in (errno.EIO, errno.EROFS):
            return f"I/O error at {path} ({exc.strerror})"
    return None


@dataclass
class _Outage:
    """The log cannot be written: since when, why, and when the writer tries again."""

    reason: str
    began: float
    next_attempt: float
    delay: float = RETRY_FIRST_SECONDS
    attempts: int = 1
    dropped: int = 0
    logged: bool = False


class StoredEvent(msgspec.Struct, frozen=True):
    """An event as the log holds it: its place, its type tag and its JSON body."""

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    recorded_at: float
    data: bytes

    def size(self) -> int:
        return len(self.data) + len(self.stream) + 64

    def decode(self) -> AnyEvent:
        return decode_event(self.data)

    def to_record(self) -> EventRecord:
        return EventRecord(
            position=self.position,
            stream=self.stream,
            version=self.version,
            recorded_at=self.recorded_at,
            schema_version=self.schema_version,
            event=msgspec.Raw(self.data),
        )


CommitListener = Callable[[list[StoredEvent]], None]


def first_page(events: list[StoredEvent], max_bytes: int) -> list[StoredEvent]:
    """The longest prefix of `events` within `max_bytes` (always at least one event)."""
    total = 0
    for index, event in enumerate(events):
        total += event.size()
        if total > max_bytes and index > 0:
            return events[:index]
    return events


@dataclass
class _PendingAppend:
    stream: str
    events: Sequence[Event]
    expected_version: int | None
    tracking: tuple[str, int] | None = None
    mode: AppendMode = "wait"
    joined: bool = False
    """Written in the same transaction as the append queued just before it."""
    future: asyncio.Future[list[StoredEvent]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    writing: bool = False
    """In the transaction the writer is attempting now (not in the queue)."""
    abandoned: bool = False
    """Its caller stopped waiting while it was being written: not to be tried again."""

    def still_wanted(self) -> bool:
        """A waiting append is retried unless it failed or its caller stopped waiting for it."""
        return self.mode == "wait" and not self.abandoned and not self.future.done()


class EventStore:
    """Appends and reads events. Call `run_writer()` in a task group; appends wait for it."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        head: int,
        ring_size: int,
        path: Path,
    ) -> None:
        self._writer = writer
        self._path = path
        self._outage: _Outage | None = None
        self._last_logged_outage = -OUTAGE_LOG_QUIET_SECONDS
        self._close_deadline: float | None = None
        self._page_limit_file = os.environ.get(TEST_PAGE_LIMIT_VARIABLE)
        self._page_limit: int | None = None
        self._reader = reader
        self._head = head
        self._versions: dict[str, int] = {}
        self._pending: list[_PendingAppend] = []
        self._writing: list[_PendingAppend] = []
        """The batch being written now (failed, too, if the writer stops in the middle)."""
        self._writable_listeners: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._writer_running = False
        self._writer_done = asyncio.Event()
        self._ring: deque[StoredEvent] = deque()
        self._ring_size = ring_size
        self._ring_bytes = 0
        """Recent events kept in memory for subscribers, bounded in count and in bytes."""
        self._listeners: list[CommitListener] = []
        self._committed = asyncio.Event()

    @classmethod
    async def open(
        cls, path: Path, synchronous: Synchronous = "FULL", ring_size: int = 8192
    ) -> EventStore:
        """Open (creating if needed) the log at `path` in WAL mode."""
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
            async with writer.execute("SELECT COALESCE(MAX(position), 0) FROM events") as cursor:
                row = await cursor.fetchone()
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            await writer.close()
            raise
        await reader.execute("PRAGMA query_only=1")
        head = int(row[0]) if row else 0
        return cls(writer, reader, head, ring_size, path)

    @property
    def head_position(self) -> int:
        """The position of the last committed event (0 for an empty log)."""
        return self._head

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
        return await self._enqueue(_PendingAppend(stream, events, expected_version, mode=mode))

    async def append_together(
        self, appends: Sequence[tuple[str, Sequence[Event]]]
    ) -> list[list[StoredEvent]]:
        """Append to several streams in one transaction (all or none); waits for the log."""
        pendings = [
            _PendingAppend(stream, events, None, joined=index > 0)
            for index, (stream, events) in enumerate(appends)
        ]
        if self._closing:
            raise StoreError("the event store is closed")
        if not pendings:
            return []
        self._pending.extend(pendings)
        self._wake.set()
        return await self._outcome(pendings)

    async def append_tracked(
        self, stream: str, events: Sequence[Event], tracking: tuple[str, int]
    ) -> list[StoredEvent]:
        """Append `events` and record, in the same transaction, that reaction `tracking[0]`
        has handled the log up to position `tracking[1]` (see `read_tracking`)."""
        return await self._enqueue(_PendingAppend(stream, events, None, tracking))

    async def save_tracking(self, name: str, position: int) -> None:
        """Record that reaction `name` has handled the log up to `position`."""
        await self._enqueue(_PendingAppend("", [], None, (name, position)))

    async def read_tracking(self, name: str) -> int | None:
        """The position reaction `name` last recorded, or None if it never did."""
        async with self._reader.execute(
            "SELECT position FROM tracking WHERE name = ?", (name,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else int(row[0])

    def append_nowait(
        self, stream: str, events: Sequence[Event], mode: AppendMode = "wait"
    ) -> asyncio.Future[list[StoredEvent]]:
        """Queue an append now and return its future: appends are written in the order they
        were queued, so a caller may go on and await the future later. Cancelling the future
        while the append is queued withdraws it."""
        pending = _PendingAppend(stream, events, None, mode=mode)
        future = self._submit(pending)
        future.add_done_callback(lambda done: self._cancelled(pending, done))
        return future

    def add_writable_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener` (from the writer, so it must not block) each time the log can be
        written again after an outage."""
        self._writable_listeners.append(listener)

    def unwritable(self) -> LogUnavailable | None:
        """Why the log cannot be written now (until the writer's next attempt succeeds), or None."""
        return None if self._outage is None else LogUnavailable(self._outage.reason)

    async def _enqueue(self, pending: _PendingAppend) -> list[StoredEvent]:
        self._submit(pending)
        [stored] = await self._outcome([pending])
        return stored

    async def _outcome(self, pendings: list[_PendingAppend]) -> list[list[StoredEvent]]:
        """Wait for these appends (written together, or not at all) and return them as stored.

        A caller cancelled meanwhile withdraws them, so that it knows they are not written:
        queued, they leave the queue; in the transaction being attempted, the caller waits for
        that attempt to end (whatever it is holding, a run's lock, say, covers it) and a failed
        attempt is not tried again."""
        futures = [p.future for p in pendings]
        try:
            await asyncio.wait(futures)
        except asyncio.CancelledError:
            if any(p.writing for p in pendings):
                for pending in pendings:
                    pending.abandoned = True
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(futures)
            else:
                self._withdraw(pendings)
            for future in futures:  # retrieved: nobody else will
                if future.done() and not future.cancelled():
                    future.exception()
            raise
        for future in futures:  # every failure retrieved, the first one raised
            future.exception()
        return [future.result() for future in futures]

    def _withdraw(self, pendings: Sequence[_PendingAppend]) -> None:
        """Take queued appends out of the queue, for good."""
        withdrawn = {id(p) for p in pendings}
        self._pending[:] = [p for p in self._pending if id(p) not in withdrawn]
        for pending in pendings:
            pending.future.cancel()

    def _submit(self, pending: _PendingAppend) -> asyncio.Future[list[StoredEvent]]:
        if self._closing:
            raise StoreError("the event store is closed")
        if not pending.events and pending.tracking is None:
            pending.future.set_result([])
            return pending.future
        if pending.mode != "wait":
            refusal = self.unwritable()
            if refusal is not None:
                if self._outage is not None and pending.mode == "drop":
                    self._outage.dropped += 1
                raise refusal
        self._pending.append(pending)
        self._wake.set()
        return pending.future

    def _cancelled(
        self, pending: _PendingAppend, future: asyncio.Future[list[StoredEvent]]
    ) -> None:
        """An `append_nowait` caller cancelled the future: a queued append is withdrawn."""
        if future.cancelled() and not pending.writing:
            self._withdraw([pending])

    async def run_writer(self) -> None:
        """The single writer: batches every waiting append into one transaction per round.

        Returns once `stop_accepting` (or `close`) was called and every queued append is done.
        """
        self._writer_running = True
        try:
            while True:
                if self._outage is None:
                    await self._wake.wait()
                    self._wake.clear()
                elif (self._closing and not self._pending) or not await self._wait_for_retry():
                    return
                if self._outage is not None and not self._pending:
                    if self._closing:
                        return
                    await self._probe()
                    continue
                while self._pending:
                    if self._outage is not None and not await self._wait_for_retry():
                        return
                    self._writing = self._take_batch()
                    retry = await self._commit_batch(self._writing)
                    for written in self._writing:
                        written.writing = False
                    self._writing = []
                    self._pending[:0] = retry
                if self._closing:
                    return
        finally:
            left, self._pending = [*self._writing, *self._pending], []
            self._writing = []
            if self._outage is not None:
                self._give_up(left)
            _fail(left, StoreError("the event store stopped before this append was written"))
            self._writer_done.set()

    def _take_batch(self) -> list[_PendingAppend]:
        """The next appends to write together: up to the batch size, never splitting appends
        that must share a transaction."""
        end = min(MAX_APPENDS_PER_BATCH, len(self._pending))
        while end < len(self._pending) and self._pending[end].joined:
            end += 1
        batch = self._pending[:end]
        del self._pending[:end]
        for pending in batch:
            pending.writing = True
        return batch

    async def _wait_for_retry(self) -> bool:
        """During an outage: sleep until the next attempt is due. False when orcad is stopping
        and has retried for long enough (the waiting appends then fail)."""
        outage = self._outage
        assert outage is not None
        now = time.monotonic()
        if self._close_deadline is not None and now >= self._close_deadline:
            return False
        wake_at = outage.next_attempt
        if self._close_deadline is not None:
            wake_at = min(wake_at, self._close_deadline)
        await asyncio.sleep(max(0.0, wake_at - now))
        return True

    async def _probe(self) -> None:
        """During an outage with nothing waiting: write a little (a tracking row) to find out
        whether the log can be written again."""
        assert self._outage is not None
        try:
            await self._write([], [(PROBE_TRACKING, self._head)])
        except Exception as exc:
            self._outage_continues(unwritable_reason(exc, self._path) or self._outage.reason, [])
        else:
            self._outage_ended()

    def _give_up(self, pending: list[_PendingAppend]) -> None:
        assert self._outage is not None
        if pending:
            log.error(
                "orcad is stopping and the log still cannot be written (%s): %d appends were "
                "not recorded; the next orcad reconciles the sessions they were about",
                self._outage.reason,
                len(pending),
            )
        _fail(pending, LogUnavailable(self._outage.reason))

    async def _commit_batch(self, batch: list[_PendingAppend]) -> list[_PendingAppend]:
        """Write one batch; returns the appends to try again (the log could not be written)."""
        written = False
        try:
            await self._load_versions({p.stream for p in batch if p.events})
            accepted, rows, stored = self._plan(batch)
            tracking = [p.tracking for p in accepted_pending(accepted) if p.tracking is not None]
            if rows or tracking:
                await self._write(rows, tracking)
                written = True
        except aiosqlite.IntegrityError:
            # Only possible if something else wrote to the log: re-read, and write each append
            # on its own (those made together, together).
            self._versions.clear()
            await self._reset_head()
            groups = _joined_groups(batch)
            if len(groups) == 1:
                _fail(batch, ConcurrencyError(f"stream {batch[0].stream} was changed concurrently"))
                return []
            for index, group in enumerate(groups):
                if all(p.future.done() for p in group):
                    continue
                retry = await self._commit_batch(group)
                if self._outage is not None:  # keep the rest for later, in order
                    rest = [p for later in groups[index + 1 :] for p in later]
                    return retry + self._hold(rest, self._outage.reason)
            return []
        except Exception as exc:
            self._versions.clear()
            reason = unwritable_reason(exc, self._path)
            if reason is None:
                log.exception("append failed")
                _fail(batch, StoreError(f"the event log could not be written: {exc}"))
                await self._reset_head()
                return []
            return self._outage_continues(reason, batch)
        self._publish(stored)
        for pending, events in accepted:
            if not pending.future.done():
                pending.future.set_result(events)
        if written:
            self._outage_ended()
        return []

    def _outage_continues(self, reason: str, batch: list[_PendingAppend]) -> list[_PendingAppend]:
        """The log cannot be written: begin (and log, once) or extend the outage; fail what need
        not wait; returns what waits, to be tried again after the backoff."""
        now = time.monotonic()
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(reason, now, now + RETRY_FIRST_SECONDS)
            if now - self._last_logged_outage >= OUTAGE_LOG_QUIET_SECONDS:
                outage.logged = True
                self._last_logged_outage = now
                log.error(
                    "the log cannot be written: %s; retrying until it can: sessions' ends, "
                    "questions and status changes wait, output is dropped (and the loss "
                    "recorded), clients' requests are refused",
                    reason,
                )
        else:
            outage.reason = reason
            outage.attempts += 1
            outage.delay = min(outage.delay * 2, RETRY_MAX_SECONDS)
            outage.next_attempt = now + outage.delay
        log.debug("the log cannot be written (attempt %d): %s", outage.attempts, reason)
        return self._hold(batch, reason)

    def _hold(self, batch: list[_PendingAppend], reason: str) -> list[_PendingAppend]:
        """Fail the appends that do not wait for the log (or whose caller no longer waits);
        returns those that do."""
        not_waiting = [p for p in batch if p.mode != "wait" or p.abandoned]
        if self._outage is not None:
            self._outage.dropped += sum(1 for p in not_waiting if p.mode == "drop")
        _fail(not_waiting, LogUnavailable(reason))
        return [p for p in batch if p.still_wanted()]

    def _outage_ended(self) -> None:
        outage, self._outage = self._outage, None
        if outage is None:
            return
        if outage.logged:
            log.warning(
                "the log can be written again, after %.1f s and %d attempts; %d output appends "
                "were dropped meanwhile",
                time.monotonic() - outage.began,
                outage.attempts,
                outage.dropped,
            )
        for listener in list(self._writable_listeners):
            try:
                listener()
            except Exception:
                log.exception("writable listener %r failed", listener)

    def _plan(
        self, batch: list[_PendingAppend]
    ) -> tuple[
        list[tuple[_PendingAppend, list[StoredEvent]]], list[tuple[object, ...]], list[StoredEvent]
    ]:
        accepted: list[tuple[_PendingAppend, list[StoredEvent]]] = []
        rows: list[tuple[object, ...]] = []
        stored: list[StoredEvent] = []
        now = time.time()
        position = self._head
        for pending in batch:
            current = self._versions.get(pending.stream, 0)
            expected = pending.expected_version
            if expected is not None and expected != current:
                if pending.future.done():
                    continue
                pending.future.set_exception(
                    ConcurrencyError(
                        f"stream {pending.stream} is at version {current}, "
                        f"but the append expected version {expected}"
                    )
                )
                continue
            events: list[StoredEvent] = []
            for event in pending.events:
                position += 1
                current += 1
                record = StoredEvent(
                    position,
                    pending.stream,
                    current,
                    event_type(event),
                    SCHEMA_VERSION,
                    now,
                    encode_event(event),
                )
                events.append(record)
                rows.append(
                    (
                        position,
                        record.stream,
                        current,
                        record.type,
                        SCHEMA_VERSION,
                        now,
                        record.data,
                    )
                )
            self._versions[pending.stream] = current
            accepted.append((pending, events))
            stored.extend(events)
        return accepted, rows, stored

    async def _write(self, rows: list[tuple[object, ...]], tracking: list[tuple[str, int]]) -> None:
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

    async def _load_versions(self, streams: set[str]) -> None:
        missing = [s for s in streams if s not in self._versions]
        if not missing:
            return
        marks = ",".join("?" * len(missing))
        query = f"SELECT stream, MAX(version) FROM events WHERE stream IN ({marks}) GROUP BY stream"
        async with self._writer.execute(query, missing) as cursor:
            found = {str(row[0]): int(row[1]) for row in await cursor.fetchall()}
        for stream in missing:
            self._versions[stream] = found.get(stream, 0)

    async def _reset_head(self) -> None:
        """Re-read the head after a failed write; leaves it as it was if even that fails."""
        try:
            async with self._writer.execute(
                "SELECT COALESCE(MAX(position), 0) FROM events"
            ) as cursor:
                row = await cursor.fetchone()
        except Exception:
            log.exception("could not re-read the log's head position")
            return
        self._head = int(row[0]) if row else 0

    def _publish(self, stored: list[StoredEvent]) -> None:
        if not stored:
            return
        self._head = stored[-1].position
        self._ring.extend(stored)
        self._ring_bytes += sum(len(e.data) for e in stored)
        while len(self._ring) > 1 and (
            self._ring_bytes > RING_BYTES or len(self._ring) > self._ring_size
        ):
            self._ring_bytes -= len(self._ring.popleft().data)
        for listener in list(self._listeners):
            try:
                listener(stored)
            except Exception:
                log.exception("commit listener %r failed", listener)
        self._committed.set()
        self._committed = asyncio.Event()

    # ------------------------------------------------------------------ reading

    async def read_all(
        self, after: int = 0, limit: int = 1000, stream: str | None = None
    ) -> list[StoredEvent]:
        """Committed events with position greater than `after`, oldest first."""
        limit = max(0, limit)
        if stream is None and self._ring and after >= self._ring[0].position - 1:
            start = after - self._ring[0].position + 1
            return [self._ring[i] for i in range(start, min(len(self._ring), start + limit))]
        if stream is None:
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
        return [_row_to_event(row) for row in rows if int(row[0]) <= self._head]

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
        return [_row_to_event(row) for row in rows]

    async def wait_for_commit_after(self, position: int) -> None:
        """Return once the head is past `position`."""
        while self._head <= position:
            await self._committed.wait()

    def add_listener(self, listener: CommitListener) -> None:
        """Call `listener` with each committed batch, in position order, before appends return."""
        self._listeners.append(listener)

    def remove_listener(self, listener: CommitListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Let the writer finish every queued append, then close the database."""
        self.stop_accepting()
        if self._writer_running:
            await self._writer_done.wait()
        else:
            pending, self._pending = self._pending, []
            _fail(pending, StoreError("the event store was closed before this append was written"))
        await self._reader.close()
        await self._writer.close()

    def stop_accepting(self) -> None:
        """Refuse new appends; the writer finishes what is queued and returns (during an
        outage, it keeps trying for `CLOSE_RETRY_SECONDS`)."""
        if self._close_deadline is None:
            self._close_deadline = time.monotonic() + CLOSE_RETRY_SECONDS
        self._closing = True
        self._wake.set()


def accepted_pending(
    accepted: list[tuple[_PendingAppend, list[StoredEvent]]],
) -> list[_PendingAppend]:
    return [pending for pending, _ in accepted]


def _read_page_limit(limit_file: str) -> int:
    """The page count in a test's limit file; no file or an empty one: SQLite's maximum."""
    try:
        with open(limit_file) as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        text = ""
    return int(text) if text else 2**32 - 2


def _joined_groups(batch: list[_PendingAppend]) -> list[list[_PendingAppend]]:
    """The batch cut into the appends that must share a transaction (most are alone)."""
    groups: list[list[_PendingAppend]] = []
    for pending in batch:
        if pending.joined and groups:
            groups[-1].append(pending)
        else:
            groups.append([pending])
    return groups


def _fail(batch: list[_PendingAppend], error: Exception) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)


def _row_to_event(row: aiosqlite.Row | tuple[object, ...]) -> StoredEvent:
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
