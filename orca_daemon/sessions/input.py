"""An agent's stdin: lines written in order from one task, never waited for by the pump."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from orca_daemon.sessions.held import HolderError

log = logging.getLogger(__name__)

MAX_UNREAD_INPUT_LINES = 1024
MAX_UNREAD_INPUT_BYTES = 16 << 20
"""How much input orcad keeps for an agent that has not read it yet (besides its pipe)."""


class InputPipe(Protocol):
    """Where an agent's input goes (its holder's connection), as a pipe of its own: `buffered`
    is what is not in the agent's pipe yet, `drain` returns once nothing is, `settle` once it is
    known how much of what was written the pipe took (for a holder: a round trip)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def settle(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...

    def buffered(self) -> int: ...

    def abort(self) -> None: ...


class InputWriter:
    """An agent's stdin: lines go out in order from one task (`run`), so neither the pump nor a
    request ever waits for an agent that does not read; what waits is bounded."""

    def __init__(self, stdin: InputPipe, session_id: str) -> None:
        self._stdin = stdin
        self._session_id = session_id
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._wake = asyncio.Event()
        self._written = asyncio.Event()
        self._written.set()
        self._closing = False
        self._dropped = 0
        """Lines dropped while the agent ran because too much waited unread."""

    def has_room(self) -> bool:
        lines, unread = self.unwritten()
        return lines < MAX_UNREAD_INPUT_LINES and unread < MAX_UNREAD_INPUT_BYTES

    def send(self, line: bytes, force: bool = False) -> bool:
        """Queue `line`; False when it is dropped: the input is closed, or (unless `force`) too
        much already waits for the agent to read it."""
        if self._closing or self._stdin.is_closing() or not (force or self.has_room()):
            return False
        self._written.clear()
        if not self._queue and self._buffered() == 0:
            self._hand_over(line)  # in order: nothing waits before it; the pipe takes what fits
        else:
            self._queue.append(line)
            self._queued_bytes += len(line)
        self._wake.set()
        return True

    def offer(self, line: bytes, force: bool) -> bool:
        """`send`, and when the line is dropped, say so in orcad's log (an agent that does not
        read, once; its lines are counted for `abandon`)."""
        if self.send(line, force):
            return True
        if self.has_room() or force:
            log.info("session %s: its stdin is closed; dropped a line", self._session_id)
            return False
        self._dropped += 1
        if self._dropped == 1:
            log.warning(
                "session %s: the agent does not read its input; dropping lines for it",
                self._session_id,
            )
        return False

    def close(self) -> None:
        """Close the agent's stdin once every queued line is written."""
        self._closing = True
        self._wake.set()

    def unwritten(self) -> tuple[int, int]:
        """Lines queued, and bytes not yet in the pipe (queued or in the transport's buffer)."""
        return len(self._queue), self._queued_bytes + self._stdin.buffered()

    async def settle(self) -> None:
        """Return once `unwritten` says how much of what was handed over is in the pipe."""
        await self._stdin.settle()

    async def wait_written(self) -> None:
        """Return once everything sent so far is in the pipe."""
        await self._written.wait()

    async def run(self) -> None:
        """Write queued lines as the agent reads; ends when the input is closed (by orcad or by
        the agent). The owner cancels it when the agent has exited."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while True:
                    await self._stdin.drain()
                    if not self._queue:
                        break
                    line = self._queue.popleft()
                    self._queued_bytes -= len(line)
                    self._hand_over(line)
                self._written.set()
                if self._closing:
                    self._stdin.close()
                    return
        except (OSError, HolderError):  # the connection to the holder broke
            self._closing = True
        finally:
            self._written.set()  # nothing more will be written: nobody waits for it

    def abandon(self) -> list[str]:
        """The agent has exited: drop what it never read; returns what to say about the lines
        it never got in the session's log."""
        lines, unread = self.unwritten()
        self._queue.clear()
        self._queued_bytes = 0
        self._closing = True
        self._stdin.abort()
        notes = []
        if self._dropped:
            notes.append(
                f"orcad dropped {self._dropped} line(s) for the agent: it did not read "
                f"its input (at most {MAX_UNREAD_INPUT_BYTES} bytes wait for it)\n"
            )
        if unread:
            log.info("session %s: the agent never read %d bytes", self._session_id, unread)
            notes.append(
                f"the agent exited without reading up to {unread} bytes of its input "
                f"({lines} more line(s) queued); orcad dropped them\n"
            )
        return notes

    def _hand_over(self, line: bytes) -> None:
        self._stdin.write(line)

    def _buffered(self) -> int:
        return self._stdin.buffered()
