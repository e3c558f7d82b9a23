"""A session's output on its way to the recorder: coalesced per stream into bounded chunks, which
go out when full, when flushed, or when due. One `OutputClock` sends the due chunks of every
session at once: a loop wake-up and a log commit carry many sessions' output, not one each."""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Literal

import anyio

from orca_daemon.sessions.coalesce import OutputCoalescer

StreamName = Literal["stdout", "stderr", "orca"]
"""`orca` carries orcad's own notes about a session (a malformed line it ignored, say)."""

log = logging.getLogger(__name__)

STREAMS: tuple[StreamName, ...] = ("stdout", "stderr", "orca")


class OutputClock:
    """Sends the chunks of many output buffers as they fall due, in groups: it ticks at most
    once every `gather` seconds, and each tick sends every chunk due before the next tick can
    come. A chunk goes out no later than its deadline, and no earlier than `gather` before.

    Every buffer it serves has the same delay, so deadlines come in the order they are
    scheduled: the clock sleeps until the first one without watching for earlier ones."""

    def __init__(self, gather: float) -> None:
        self.gather = gather
        self._due: list[tuple[float, int, OutputBuffer]] = []
        """A heap of (deadline, order, buffer); an entry whose chunk went out since is stale."""
        self._order = itertools.count()
        self._scheduled = anyio.Event()

    @classmethod
    def for_delay(cls, delay: float) -> OutputClock:
        """The clock for buffers whose chunks wait at most `delay` seconds: at most one tick per
        `delay`, each sending every chunk buffered (all are due within `delay`), so that one
        log commit carries what every session printed since the last. (Four ticks per `delay`
        cost orcad 40% more CPU a line with 400 sessions printing: a commit each.)"""
        return cls(delay)

    def schedule(self, deadline: float, buffer: OutputBuffer) -> None:
        """`buffer` holds a chunk due at `deadline`."""
        heapq.heappush(self._due, (deadline, next(self._order), buffer))
        if len(self._due) == 1:
            self._scheduled.set()

    def flush_due(self, horizon: float) -> None:
        """Send every chunk due by `horizon`."""
        due = self._due
        while due and due[0][0] <= horizon:
            buffer = heapq.heappop(due)[2]
            try:
                buffer.flush(force=False, now=horizon)
            except Exception:  # one session's trouble stops no other's output
                log.exception("could not send a session's output")

    async def run(self) -> None:
        """Send chunks as they fall due; runs until cancelled."""
        last_tick = -math.inf
        while True:
            if not self._due:
                await self._scheduled.wait()
                self._scheduled = anyio.Event()
                continue
            tick = max(self._due[0][0] - self.gather, last_tick + self.gather)
            wait = tick - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)
            last_tick = time.monotonic()
            self.flush_due(last_tick + self.gather)


class OutputBuffer:
    """The output of one session's three streams; chunks of one stream go out in order, and
    `write` takes them without waiting (the recorder queues them for the log)."""

    def __init__(
        self,
        write: Callable[[StreamName, str, int | None], None],
        chunk_chars: int,
        flush_seconds: float,
        clock: OutputClock,
    ) -> None:
        self._write = write
        self._coalescers: dict[StreamName, OutputCoalescer] = {
            name: OutputCoalescer(chunk_chars, flush_seconds) for name in STREAMS
        }
        self._clock = clock

    def add(self, stream: StreamName, text: str, at: int | None = None) -> None:
        """Buffer `text`, which ends at position `at` of the stream's spool; the chunks it fills
        go out now, the rest when due."""
        coalescer = self._coalescers[stream]
        for chunk, position in coalescer.add(text, time.monotonic(), at):
            self._write(stream, chunk, position)
        deadline = coalescer.deadline()
        if deadline is not None and coalescer.scheduled != deadline:
            coalescer.scheduled = deadline
            self._clock.schedule(deadline, self)

    def flush(self, force: bool = True, now: float | None = None) -> None:
        """Send what is due by `now` (`force`: everything buffered)."""
        if now is None:
            now = time.monotonic()
        for name, coalescer in self._coalescers.items():
            if force or coalescer.due(now):
                text, position = coalescer.take()
                if text:
                    self._write(name, text, position)
