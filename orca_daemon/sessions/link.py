"""What the pump needs of an agent it drives: a live holder's connection (`held.HeldAgent`), or
the files of a holder that ended while no orcad was attached (`SpooledAgent`)."""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

from orca_daemon.sessions.held import HolderExit, HolderPlaces, spool_bytes
from orca_daemon.sessions.input import InputPipe

Stream = Literal["stdout", "stderr"]

SPOOL_READ_BYTES = 65_536


class AgentLink(Protocol):
    """An agent as the pump sees it: its output in order, its exit, its input."""

    @property
    def pid(self) -> int: ...

    @property
    def start_ticks(self) -> int | None: ...

    @property
    def holder_pid(self) -> int: ...

    @property
    def holder_start_ticks(self) -> int | None: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def exit(self) -> HolderExit | None:
        """How the agent ended, once known."""
        ...

    @property
    def stdin(self) -> InputPipe: ...

    async def read(self) -> tuple[Stream, bytes] | None: ...

    async def acknowledge(self) -> None: ...

    def detach(self) -> None: ...


class NoInput:
    """The input of an agent that has ended: everything written is dropped."""

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    async def settle(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return True

    def buffered(self) -> int:
        return 0

    def abort(self) -> None:
        pass


class SpooledAgent:
    """An agent whose holder ended while orcad was away (its orphan timeout, say): what it
    printed after `stdout`/`stderr` comes from the spool files, then its exit status."""

    def __init__(
        self,
        places: HolderPlaces,
        ended: HolderExit,
        offsets: tuple[int, int],
        process: tuple[int, int | None],
    ) -> None:
        self._places = places
        self._ended = ended
        self._next = {"stdout": offsets[0], "stderr": offsets[1]}
        self.pid, self.start_ticks = process
        self.holder_pid = 0
        self.holder_start_ticks: int | None = None
        self.returncode: int | None = None
        self.exit: HolderExit | None = None
        self.stdin: InputPipe = NoInput()

    async def read(self) -> tuple[Stream, bytes] | None:
        ends: dict[Stream, int] = {"stdout": self._ended.stdout, "stderr": self._ended.stderr}
        for stream, end in ends.items():
            start = self._next[stream]
            if start < end:
                data = await asyncio.to_thread(
                    spool_bytes, self._places, stream, start, min(end, start + SPOOL_READ_BYTES)
                )
                if data:
                    self._next[stream] = start + len(data)
                    return stream, data
        self.returncode = self._ended.exit_code
        self.exit = self._ended
        return None

    async def acknowledge(self) -> None:
        pass

    def detach(self) -> None:
        pass
