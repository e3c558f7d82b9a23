"""The bridge's standard input and output, both bounded: lines come in from a thread that reads
stdin (waiting while the bridge has lines it has not taken), and go out through an outbox that
makes its putters wait while it is full (so when the editor stops reading, the bridge stops
pulling from orcad) to a thread that writes stdout."""

from __future__ import annotations

import asyncio
import enum
import os
import queue
import select
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from orca_client.bridge_rpc import MAX_LINE_BYTES

READ_CHUNK = 1 << 16
INBOX_LINES = 16
"""Lines read but not yet taken by the bridge (each at most MAX_LINE_BYTES)."""
OUTBOX_LINES = 1024
OUTBOX_BYTES = 4 << 20


class Marker(enum.Enum):
    END = "end"
    """stdin closed."""
    TOO_LONG = "too_long"
    """A line longer than MAX_LINE_BYTES was dropped."""


class LineReader:
    """stdin, read on a thread of its own, as lines (without their newline) and markers."""

    def __init__(self, fd: int = 0, capacity: int = INBOX_LINES) -> None:
        self._fd = fd
        self._lines: asyncio.Queue[bytes | Marker] = asyncio.Queue(capacity)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self._read, args=(loop,), name="orca-bridge-stdin", daemon=True
        ).start()

    async def next(self) -> bytes | Marker:
        return await self._lines.get()

    def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        def hand_over(item: bytes | Marker) -> None:
            asyncio.run_coroutine_threadsafe(self._lines.put(item), loop).result()

        try:
            for item in split_lines(read_chunks(self._fd)):
                hand_over(item)
            hand_over(Marker.END)
        except BaseException:  # the loop is gone: nobody is left to read for
            return


def read_chunks(fd: int) -> Iterator[bytes]:
    """What `fd` reads, chunk by chunk, until its end (an error counts as its end)."""
    while True:
        try:
            chunk = os.read(fd, READ_CHUNK)
        except OSError:
            return
        if not chunk:
            return
        yield chunk


def split_lines(chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes | Marker]:
    """Lines (without their newline) from chunks. A line longer than `limit` is skipped to its
    newline, holding at most about `limit` bytes of it, and comes out as Marker.TOO_LONG. A last
    line without a newline counts."""
    buffer = bytearray()
    skipping = False
    for chunk in chunks:
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            if not skipping:
                buffer += chunk[start:] if newline < 0 else chunk[start:newline]
                if len(buffer) > limit:
                    skipping = True
                    buffer.clear()
            if newline < 0:
                break
            yield Marker.TOO_LONG if skipping else bytes(buffer)
            buffer.clear()
            skipping = False
            start = newline + 1
    if skipping:
        yield Marker.TOO_LONG
    elif buffer:
        yield bytes(buffer)


class Outbox:
    """Lines for the editor, bounded in lines and bytes. A put waits while the outbox is full;
    `holds` counts the puts that had to, so the bridge can tell that orcad's replies were late
    because it was not reading (the editor was not), not because orcad was silent."""

    def __init__(self, max_lines: int = OUTBOX_LINES, max_bytes: int = OUTBOX_BYTES) -> None:
        self._max_lines = max_lines
        self._max_bytes = max_bytes
        self._lines: deque[bytes] = deque()
        self._bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._ready = asyncio.Event()
        self._waiting = 0
        self._closed = False
        self.holds = 0

    @property
    def held(self) -> bool:
        """Some put is waiting for room now."""
        return self._waiting > 0

    def _full(self) -> bool:
        return bool(self._lines) and (
            len(self._lines) >= self._max_lines or self._bytes >= self._max_bytes
        )

    def _changed(self) -> None:
        if self._closed or not self._full():
            self._room.set()
        else:
            self._room.clear()
        if self._closed or self._lines:
            self._ready.set()
        else:
            self._ready.clear()

    async def put(self, line: bytes, wanted: Callable[[], bool] | None = None) -> bool:
        """Queue `line`, waiting for room; `wanted` is asked once there is room (a line it no
        longer wants is dropped). False when the line was dropped, or the outbox is closed."""
        if self._full() and not self._closed:
            self.holds += 1
            self._waiting += 1
            try:
                while self._full() and not self._closed:
                    await self._room.wait()
            finally:
                self._waiting -= 1
        if self._closed or (wanted is not None and not wanted()):
            return False
        self._lines.append(line)
        self._bytes += len(line)
        self._changed()
        return True

    async def take(self) -> bytes:
        """Every queued line, joined; waits for one. b"" once closed and empty."""
        while not self._lines and not self._closed:
            await self._ready.wait()
        data = b"".join(self._lines)
        self._lines.clear()
        self._bytes = 0
        self._changed()
        return data

    def close(self) -> None:
        """Take no more lines; what is queued is still taken."""
        self._closed = True
        self._changed()


class ClientGone(Exception):
    """stdout was closed: the editor is gone."""


class StdoutWriter:
    """Writes to a descriptor on a thread of its own, so a reader that stops reading holds up
    that thread and the outbox behind it, never the event loop."""

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd
        self._jobs: queue.SimpleQueue[tuple[bytes, asyncio.Future[None]]] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._work, name="orca-bridge-stdout", daemon=True).start()

    async def run(self, outbox: Outbox) -> None:
        """Write what the outbox holds until it is closed and empty; ClientGone if stdout is."""
        assert self._loop is not None, "started"
        while True:
            data = await outbox.take()
            if not data:
                return
            done: asyncio.Future[None] = self._loop.create_future()
            self._jobs.put((data, done))
            await done

    def _work(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            data, done = self._jobs.get()
            failure: BaseException | None = None
            try:
                write_all(self._fd, data)
            except OSError as exc:
                failure = ClientGone(f"stdout: {exc.strerror or exc}")
            try:
                loop.call_soon_threadsafe(_settle, done, failure)
            except RuntimeError:  # the loop is closed: the bridge has ended
                return


def _settle(done: asyncio.Future[None], failure: BaseException | None) -> None:
    if done.done():
        return
    if failure is None:
        done.set_result(None)
    else:
        done.set_exception(failure)


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to `fd`, waiting whenever it is full (also if it is non-blocking)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]
