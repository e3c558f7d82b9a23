"""What the writer and the store need from a database: the two stores (SQLite, PostgreSQL)
each provide these, and the queue, the writer, the outages and the tail are the same for both."""

from __future__ import annotations

from typing import Protocol

from orca_daemon.log.pending import PendingAppend
from orca_daemon.log.planning import Accepted
from orca_daemon.log.records import StoredEvent


class WriteConflict(Exception):
    """Another writer took a position or a stream version that this batch planned."""


class Transactions(Protocol):
    """The writer's side: one batch of appends written in one transaction."""

    async def commit(self, batch: list[PendingAppend]) -> tuple[Accepted, list[StoredEvent], bool]:
        """Write the batch in one transaction: the appends accepted with their events as
        stored, every event stored, and whether anything was written. An append whose expected
        version is stale fails alone (`ConcurrencyError`); raises `WriteConflict` when another
        writer took a place this batch planned, and whatever the database raised otherwise
        (nothing written)."""
        ...

    async def probe(self, tracking: tuple[str, int]) -> None:
        """Write one tracking row: can the log be written?"""
        ...

    def forget_versions(self) -> None:
        """A write failed: forget the stream versions it may have planned."""
        ...

    async def reset_head(self) -> None:
        """Re-read the head after a write failed for a reason other than an outage."""
        ...

    def unwritable_reason(self, exc: BaseException) -> str | None:
        """What keeps the log from being written when `exc` is a failure worth retrying (a full
        disk, a lost connection); None for any other error."""
        ...

    async def close(self) -> None: ...


class Reads(Protocol):
    """The readers' side: committed events, never past the head the tail has published."""

    async def read_all(
        self, after: int, limit: int, stream: str | None, max_bytes: int | None
    ) -> list[StoredEvent]: ...

    async def read_stream(
        self, stream: str, after_version: int, event_type: str | None, limit: int | None
    ) -> list[StoredEvent]: ...

    async def read_tracking(self, name: str) -> int | None: ...

    async def close(self) -> None: ...
