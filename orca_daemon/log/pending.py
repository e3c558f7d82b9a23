"""An append waiting for the writer, and the helpers that settle or group such appends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from orca_client.events import Event
from orca_daemon.log.records import AppendMode, StoredEvent


@dataclass
class PendingAppend:
    stream: str
    events: Sequence[Event]
    expected_version: int | None
    tracking: tuple[str, int] | None = None
    mode: AppendMode = "wait"
    joined: bool = False
    """Written in the same transaction as the append queued just before it."""
    adopting: tuple[str, int] | None = None
    """With a shared log: this append takes its run over from the daemon named here, whose
    lease has run out, at the generation named (see `pg_owners`)."""
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


def fail(batch: list[PendingAppend], error: Exception) -> None:
    """Settle every append of `batch` not yet settled with `error`."""
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(error)


def joined_groups(batch: list[PendingAppend]) -> list[list[PendingAppend]]:
    """The batch cut into the appends that must share a transaction (most are alone)."""
    groups: list[list[PendingAppend]] = []
    for pending in batch:
        if pending.joined and groups:
            groups[-1].append(pending)
        else:
            groups.append([pending])
    return groups
