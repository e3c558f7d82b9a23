"""The appenders' side of the writer: the queue of appends, waiting for them, withdrawing them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import anyio

from orca_client.events import Event
from orca_daemon.log.outage import Outages
from orca_daemon.log.pending import PendingAppend
from orca_daemon.log.records import AppendMode, StoredEvent, StoreError

MAX_APPENDS_PER_BATCH = 2000


class AppendQueue:
    """Appends in the order they were queued, until the writer takes them in batches."""

    def __init__(self, outages: Outages) -> None:
        self._outages = outages
        self._pending: list[PendingAppend] = []
        self._wake = asyncio.Event()
        self.closing = False
        """No more appends are taken (`close`)."""

    # ------------------------------------------------------------------ appenders

    async def append(
        self,
        stream: str,
        events: Sequence[Event],
        expected_version: int | None = None,
        mode: AppendMode = "wait",
        adopting: tuple[str, int] | None = None,
    ) -> list[StoredEvent]:
        """Queue one append and wait until it is written (see `EventStore.append`)."""
        pending = PendingAppend(stream, events, expected_version, mode=mode, adopting=adopting)
        return await self._enqueue(pending)

    async def append_together(
        self, appends: Sequence[tuple[str, Sequence[Event]]]
    ) -> list[list[StoredEvent]]:
        """Queue appends to be written in one transaction (all or none); waits for the log."""
        pendings = [
            PendingAppend(stream, events, None, joined=index > 0)
            for index, (stream, events) in enumerate(appends)
        ]
        if self.closing:
            raise StoreError("the event store is closed")
        if not pendings:
            return []
        self._pending.extend(pendings)
        self._wake.set()
        return await self._outcome(pendings)

    async def append_tracked(
        self, stream: str, events: Sequence[Event], tracking: tuple[str, int]
    ) -> list[StoredEvent]:
        """Queue an append with a tracking row for the same transaction, and wait for it."""
        return await self._enqueue(PendingAppend(stream, events, None, tracking))

    def append_nowait(
        self, stream: str, events: Sequence[Event], mode: AppendMode = "wait"
    ) -> asyncio.Future[list[StoredEvent]]:
        """Queue an append now and return its future (see `EventStore.append_nowait`)."""
        pending = PendingAppend(stream, events, None, mode=mode)
        future = self._submit(pending)
        future.add_done_callback(lambda done: self._cancelled(pending, done))
        return future

    async def _enqueue(self, pending: PendingAppend) -> list[StoredEvent]:
        self._submit(pending)
        [stored] = await self._outcome([pending])
        return stored

    async def _outcome(self, pendings: list[PendingAppend]) -> list[list[StoredEvent]]:
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

    def _withdraw(self, pendings: Sequence[PendingAppend]) -> None:
        """Take queued appends out of the queue, for good."""
        withdrawn = {id(p) for p in pendings}
        self._pending[:] = [p for p in self._pending if id(p) not in withdrawn]
        for pending in pendings:
            pending.future.cancel()

    def _submit(self, pending: PendingAppend) -> asyncio.Future[list[StoredEvent]]:
        if self.closing:
            raise StoreError("the event store is closed")
        if not pending.events and pending.tracking is None:
            pending.future.set_result([])
            return pending.future
        if pending.mode != "wait":
            refusal = self._outages.unwritable()
            if refusal is not None:
                if pending.mode == "drop":
                    self._outages.count_dropped(1)
                raise refusal
        self._pending.append(pending)
        self._wake.set()
        return pending.future

    def _cancelled(self, pending: PendingAppend, future: asyncio.Future[list[StoredEvent]]) -> None:
        """An `append_nowait` caller cancelled the future: a queued append is withdrawn."""
        if future.cancelled() and not pending.writing:
            self._withdraw([pending])

    # ------------------------------------------------------------------ the writer

    def __bool__(self) -> bool:
        """Some append is queued."""
        return bool(self._pending)

    async def wait(self) -> None:
        """Wait until an append was queued (or `close` was called) since the last wait."""
        await self._wake.wait()
        self._wake.clear()

    def take_batch(self) -> list[PendingAppend]:
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

    def put_back(self, retry: list[PendingAppend]) -> None:
        """Appends to try again before any queued after them."""
        self._pending[:0] = retry

    def take_all(self) -> list[PendingAppend]:
        """Empty the queue, returning what it held."""
        left, self._pending = self._pending, []
        return left

    def close(self) -> None:
        """Refuse new appends, and wake the writer to finish the queued ones."""
        self.closing = True
        self._wake.set()
