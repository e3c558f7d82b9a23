"""Runs and sessions as the projection keeps them: live ones as structs, ended ones packed.

A run that has ended, whose sessions have all ended too (and left no worktree behind), is kept
as one packed record: its `RunInfo` and its sessions' `SessionInfo`s, msgpack-encoded and
deflated against a dictionary of their field names (about a tenth of the structs' memory), so
orcad's memory grows with its live work, not with its history. Reading one unpacks it (a few
microseconds); writing one (an event for an ended run) unpacks it for good, until `settle`
packs it again. Both tables are mappings, so readers need not know which runs are packed.

Session ids begin with their run's id and a dot (`RUN.1`, `RUN.task.2`): that is how a packed
session is found. A run with a session named otherwise is never packed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TypeVar, overload

import msgspec

from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo, WorktreeInfo

_T = TypeVar("_T")
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[RunInfo, list[SessionInfo]])
_WINDOW_BITS = -12  # raw deflate, a 4 KiB window: room for the dictionary and a record
_MEMORY_LEVEL = 4


def _dictionary() -> bytes:
    """What a packed record is deflated against: a typical record, so that field names and
    the usual values cost a few bytes each."""
    run = RunInfo(
        run_id="0123456789ab",
        title="fix the tests",
        status="completed",
        cwd="/home/user/src",
        created_at=1.8e9,
        updated_at=1.8e9,
        session_ids=["0123456789ab.1"],
    )
    session = SessionInfo(
        session_id="0123456789ab.1",
        run_id="0123456789ab",
        agent="codex",
        role="worker",
        status="completed",
        command=["codex", "app-server"],
        cwd="/home/user/src",
        created_at=1.8e9,
        started_at=1.8e9,
        ended_at=1.8e9,
        exit_code=0,
        reason="exited with 0",
        worktree=WorktreeInfo(repo="/home/user/src", path="/home/user/src", branch="orca/"),
    )
    return _encoder.encode((run, [session]))


DICTIONARY = _dictionary()


def pack(run: RunInfo, sessions: list[SessionInfo]) -> bytes:
    packer = zlib.compressobj(
        6, zlib.DEFLATED, _WINDOW_BITS, _MEMORY_LEVEL, zlib.Z_DEFAULT_STRATEGY, DICTIONARY
    )
    return packer.compress(_encoder.encode((run, sessions))) + packer.flush()


def unpack(data: bytes) -> tuple[RunInfo, list[SessionInfo]]:
    return _decoder.decode(zlib.decompressobj(_WINDOW_BITS, zdict=DICTIONARY).decompress(data))


Entry = RunInfo | bytes
"""A run as the table holds it: its view, or packed (`pack`)."""


class RunTable(Mapping[str, RunInfo]):
    """Every run by id, in the order they were created; `sessions` is their sessions' table."""

    def __init__(self) -> None:
        self._entries: dict[str, Entry] = {}
        self._order: list[str] = []
        """Every run id, in the order created: a run's place is its index here."""
        self._live: dict[str, int] = {}
        """The runs that have not ended, with their places, in the order created."""
        self.sessions = SessionTable(self)

    # ------------------------------------------------------------------ reading

    def __getitem__(self, run_id: str) -> RunInfo:
        entry = self._entries[run_id]
        return unpack(entry)[0] if isinstance(entry, bytes) else entry

    @overload
    def get(self, run_id: str, /) -> RunInfo | None: ...
    @overload
    def get(self, run_id: str, default: RunInfo | _T, /) -> RunInfo | _T: ...
    def get(self, run_id: str, default: object = None, /) -> object:
        entry = self._entries.get(run_id)
        if entry is None:
            return default
        return unpack(entry)[0] if isinstance(entry, bytes) else entry

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __reversed__(self) -> Iterator[str]:
        return reversed(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def is_packed(self, run_id: str) -> bool:
        """Whether the run has ended for good and is kept packed (so its status is terminal)."""
        return isinstance(self._entries.get(run_id), bytes)

    def unpacked(self) -> Iterator[RunInfo]:
        """The runs not packed: every live run, and ended ones still settling, in order."""
        return (entry for entry in self._entries.values() if isinstance(entry, RunInfo))

    def entries(self) -> dict[str, Entry]:
        """Every run as held (for a snapshot); not to be changed."""
        return self._entries

    def with_sessions(self, run_id: str) -> tuple[RunInfo, Mapping[str, SessionInfo]]:
        """A run and where its sessions are found (a packed run is unpacked once for both)."""
        entry = self._entries[run_id]
        if isinstance(entry, RunInfo):
            return entry, self.sessions
        run, sessions = unpack(entry)
        return run, {session.session_id: session for session in sessions}

    def run_id_at(self, place: int) -> str:
        """The id of the run created `place`-th (from 0)."""
        return self._order[place]

    def recent(self, ended: int | None) -> tuple[Sequence[int], int]:
        """The places of every live run and of the `ended` newest ended ones (None: all), in
        order, and how many ended runs that leaves out. Costs what it returns, not the
        history: the ended runs are found from the newest back."""
        if ended is None:
            return range(len(self._order)), 0
        newest: list[int] = []
        place = len(self._order) - 1
        while len(newest) < ended and place >= 0:
            if self._order[place] not in self._live:
                newest.append(place)
            place -= 1
        places = sorted([*self._live.values(), *newest])
        return places, len(self._order) - len(self._live) - len(newest)

    # ------------------------------------------------------------------ writing

    def __setitem__(self, run_id: str, run: RunInfo) -> None:
        self.unpack(run_id)
        if run_id not in self._entries:
            self._order.append(run_id)
            if run.status not in TERMINAL_STATUSES:
                self._live[run_id] = len(self._order) - 1
        elif run.status in TERMINAL_STATUSES:
            self._live.pop(run_id, None)
        self._entries[run_id] = run

    def unpack(self, run_id: str) -> None:
        """Keep the run (and its sessions) as structs again: it is about to change."""
        entry = self._entries.get(run_id)
        if isinstance(entry, bytes):
            run, sessions = unpack(entry)
            self._entries[run_id] = run
            self.sessions.took_back(sessions)

    def settle(self, run_id: str) -> None:
        """Pack the run if it and all its sessions have ended (and no worktree is left)."""
        run = self._entries.get(run_id)
        if not isinstance(run, RunInfo) or run.status not in TERMINAL_STATUSES:
            return
        sessions = self.sessions.gave_up(run)
        if sessions is not None:
            self._entries[run_id] = pack(run, sessions)

    def restore(
        self, entries: dict[str, Entry], sessions: list[SessionInfo], packed_sessions: int
    ) -> None:
        """Hold `entries`, the unpacked `sessions` and the count of packed ones (a snapshot's)."""
        self._entries = entries
        self._order = list(entries)
        self._live = {
            run_id: place
            for place, (run_id, entry) in enumerate(entries.items())
            if isinstance(entry, RunInfo) and entry.status not in TERMINAL_STATUSES
        }
        self.sessions.restore(sessions, packed_sessions)


class SessionTable(Mapping[str, SessionInfo]):
    """Every session by id: those of packed runs are found in their run's record."""

    def __init__(self, runs: RunTable) -> None:
        self._runs = runs
        self._unpacked: dict[str, SessionInfo] = {}
        self._packed = 0

    def __getitem__(self, session_id: str) -> SessionInfo:
        found = self.get(session_id)
        if found is None:
            raise KeyError(session_id)
        return found

    @overload
    def get(self, session_id: str, /) -> SessionInfo | None: ...
    @overload
    def get(self, session_id: str, default: SessionInfo | _T, /) -> SessionInfo | _T: ...
    def get(self, session_id: str, default: object = None, /) -> object:
        found = self._unpacked.get(session_id)
        if found is not None:
            return found
        entry = self._runs.entries().get(session_id.split(".", 1)[0])
        if isinstance(entry, bytes):
            for session in unpack(entry)[1]:
                if session.session_id == session_id:
                    return session
        return default

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self.get(session_id) is not None

    def __iter__(self) -> Iterator[str]:
        yield from self._unpacked
        for entry in list(self._runs.entries().values()):
            if isinstance(entry, bytes):
                yield from unpack(entry)[0].session_ids

    def __len__(self) -> int:
        return len(self._unpacked) + self._packed

    def __setitem__(self, session_id: str, session: SessionInfo) -> None:
        self._runs.unpack(session.run_id)
        self._unpacked[session_id] = session

    def unpacked(self) -> Iterator[SessionInfo]:
        """The sessions of runs not packed: every live session among them."""
        return iter(self._unpacked.values())

    @property
    def packed_count(self) -> int:
        return self._packed

    def took_back(self, sessions: list[SessionInfo]) -> None:
        for session in sessions:
            self._unpacked[session.session_id] = session
        self._packed -= len(sessions)

    def gave_up(self, run: RunInfo) -> list[SessionInfo] | None:
        """The run's sessions, taken out of this table to be packed with it; None (and nothing
        taken) when one of them is live, named otherwise, or has a worktree left."""
        sessions = []
        for session_id in run.session_ids:
            session = self._unpacked.get(session_id)
            if (
                session is None
                or not session_id.startswith(f"{run.run_id}.")
                or session.status not in TERMINAL_STATUSES
                or (session.worktree is not None and not session.worktree.removed)
            ):
                return None
            sessions.append(session)
        for session_id in run.session_ids:
            del self._unpacked[session_id]
        self._packed += len(sessions)
        return sessions

    def restore(self, sessions: list[SessionInfo], packed: int) -> None:
        self._unpacked = {session.session_id: session for session in sessions}
        self._packed = packed
