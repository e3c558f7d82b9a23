"""A session's output on its way to the recorder: coalesced per stream into bounded chunks, which
go out when full, when due (the pump runs `flush_when_due`), or when flushed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

import anyio

from orca_daemon.sessions.coalesce import OutputCoalescer

StreamName = Literal["stdout", "stderr", "orca"]
"""`orca` carries orcad's own notes about a session (a malformed line it ignored, say)."""


class OutputBuffer:
    """The output of one session's three streams; chunks of one stream go out in order."""

    def __init__(
        self,
        write: Callable[[StreamName, str, int | None], Awaitable[None]],
        chunk_chars: int,
        flush_seconds: float,
    ) -> None:
        self._write = write
        self._coalescers: dict[StreamName, OutputCoalescer] = {
            name: OutputCoalescer(chunk_chars, flush_seconds)
            for name in ("stdout", "stderr", "orca")
        }
        self._buffered = asyncio.Event()
        self._lock = asyncio.Lock()  # keeps a stream's chunks in order against the flusher

    async def add(self, stream: StreamName, text: str, at: int | None = None) -> None:
        """Buffer `text`, which ends at position `at` of the stream's spool; the chunks it fills
        go out now."""
        async with self._lock:
            for chunk, position in self._coalescers[stream].add(text, time.monotonic(), at):
                await self._write(stream, chunk, position)
        self._buffered.set()

    async def flush(self, force: bool) -> None:
        """Send what is due (`force`: everything buffered)."""
        async with self._lock:
            now = time.monotonic()
            for name, coalescer in self._coalescers.items():
                if force or coalescer.due(now):
                    text, position = coalescer.take()
                    if text:
                        await self._write(name, text, position)

    async def flush_when_due(self) -> None:
        """Send each chunk at its deadline; runs until cancelled."""
        while True:
            await self._buffered.wait()
            self._buffered.clear()
            deadline = self._first_deadline()
            if deadline is not None:
                await anyio.sleep(max(0.0, deadline - time.monotonic()))
                await self.flush(force=False)
                if self._first_deadline() is not None:
                    self._buffered.set()

    def _first_deadline(self) -> float | None:
        deadlines = [d for c in self._coalescers.values() if (d := c.deadline()) is not None]
        return min(deadlines, default=None)
