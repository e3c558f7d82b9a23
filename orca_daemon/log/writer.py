"""The single writer: group-commits the queued appends, and rides out the log's outages."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from orca_daemon.log.appends import AppendQueue
from orca_daemon.log.backend import Transactions, WriteConflict
from orca_daemon.log.outage import Outages
from orca_daemon.log.pending import PendingAppend, fail, joined_groups
from orca_daemon.log.records import ConcurrencyError, LogUnavailable, StoredEvent, StoreError

log = logging.getLogger(__name__)

CLOSE_RETRY_SECONDS = 10.0
"""After `stop_accepting`, how long the writer keeps retrying appends that wait for the log."""
PROBE_TRACKING = "orcad.log_probe"
"""The tracking row the writer updates to find out whether the log can be written again."""


class LogWriter:
    """Takes every queued append into one transaction per round; while the log cannot be
    written, retries what waits (or probes, with nothing waiting) after the outage's backoff."""

    def __init__(
        self,
        queue: AppendQueue,
        transactions: Transactions,
        outages: Outages,
        publish: Callable[[list[StoredEvent]], Awaitable[None]],
        head: Callable[[], int],
    ) -> None:
        self._queue = queue
        self._transactions = transactions
        self._outages = outages
        self._publish = publish
        """Hands committed events to the tail (after any that other writers committed first)."""
        self._head = head
        self._close_deadline: float | None = None
        self._writing: list[PendingAppend] = []
        """The batch being written now (failed, too, if the writer stops in the middle)."""
        self._running = False
        self._done = asyncio.Event()

    async def run(self) -> None:
        """Write until `stop_accepting` was called and every queued append is done."""
        self._running = True
        queue = self._queue
        try:
            while True:
                if self._outages.current is None:
                    await queue.wait()
                elif (queue.closing and not queue) or not await self._wait_for_retry():
                    return
                if self._outages.current is not None and not queue:
                    if queue.closing:
                        return
                    await self._probe()
                    continue
                while queue:
                    if self._outages.current is not None and not await self._wait_for_retry():
                        return
                    self._writing = queue.take_batch()
                    retry = await self._commit_batch(self._writing)
                    for written in self._writing:
                        written.writing = False
                    self._writing = []
                    queue.put_back(retry)
                if queue.closing:
                    return
        finally:
            left = [*self._writing, *queue.take_all()]
            self._writing = []
            if self._outages.current is not None:
                self._give_up(left)
            fail(left, StoreError("the event store stopped before this append was written"))
            self._done.set()

    def stop_accepting(self) -> None:
        """Refuse new appends; `run` finishes what is queued and returns (during an outage, it
        keeps trying for `CLOSE_RETRY_SECONDS`)."""
        if self._close_deadline is None:
            self._close_deadline = time.monotonic() + CLOSE_RETRY_SECONDS
        self._queue.close()

    async def finish(self) -> None:
        """Stop accepting, and wait for `run` to finish the queued appends (without it running,
        they fail)."""
        self.stop_accepting()
        if self._running:
            await self._done.wait()
        else:
            fail(
                self._queue.take_all(),
                StoreError("the event store was closed before this append was written"),
            )

    async def _wait_for_retry(self) -> bool:
        """During an outage: sleep until the next attempt is due. False when orcad is stopping
        and has retried for long enough (the waiting appends then fail)."""
        outage = self._outages.current
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
        outage = self._outages.current
        assert outage is not None
        try:
            await self._transactions.probe((PROBE_TRACKING, self._head()))
        except Exception as exc:
            reason = self._transactions.unwritable_reason(exc) or outage.reason
            self._outage_continues(reason, [])
        else:
            self._outages.write_succeeded()

    def _give_up(self, pending: list[PendingAppend]) -> None:
        outage = self._outages.current
        assert outage is not None
        if pending:
            log.error(
                "orcad is stopping and the log still cannot be written (%s): %d appends were "
                "not recorded; the next orcad reconciles the sessions they were about",
                outage.reason,
                len(pending),
            )
        fail(pending, LogUnavailable(outage.reason))

    async def _commit_batch(self, batch: list[PendingAppend]) -> list[PendingAppend]:
        """Write one batch; returns the appends to try again (the log could not be written)."""
        transactions = self._transactions
        try:
            accepted, stored, written = await transactions.commit(batch)
        except WriteConflict:
            # Only possible if something else wrote to the log: re-read, and write each append
            # on its own (those made together, together).
            transactions.forget_versions()
            await transactions.reset_head()
            groups = joined_groups(batch)
            if len(groups) == 1:
                fail(batch, ConcurrencyError(f"stream {batch[0].stream} was changed concurrently"))
                return []
            for index, group in enumerate(groups):
                if all(p.future.done() for p in group):
                    continue
                retry = await self._commit_batch(group)
                outage = self._outages.current
                if outage is not None:  # keep the rest for later, in order
                    rest = [p for later in groups[index + 1 :] for p in later]
                    return retry + self._hold(rest, outage.reason)
            return []
        except Exception as exc:
            transactions.forget_versions()
            reason = transactions.unwritable_reason(exc)
            if reason is None:
                log.exception("append failed")
                fail(batch, StoreError(f"the event log could not be written: {exc}"))
                await transactions.reset_head()
                return []
            return self._outage_continues(reason, batch)
        await self._publish(stored)
        for pending, events in accepted:
            if not pending.future.done():
                pending.future.set_result(events)
        if written:
            self._outages.write_succeeded()
        return []

    def _outage_continues(self, reason: str, batch: list[PendingAppend]) -> list[PendingAppend]:
        """The log cannot be written: begin or extend the outage; fail what need not wait;
        returns what waits, to be tried again after the backoff."""
        self._outages.write_failed(reason)
        return self._hold(batch, reason)

    def _hold(self, batch: list[PendingAppend], reason: str) -> list[PendingAppend]:
        """Fail the appends that do not wait for the log (or whose caller no longer waits);
        returns those that do."""
        not_waiting = [p for p in batch if p.mode != "wait" or p.abandoned]
        self._outages.count_dropped(sum(1 for p in not_waiting if p.mode == "drop"))
        fail(not_waiting, LogUnavailable(reason))
        return [p for p in batch if p.still_wanted()]
