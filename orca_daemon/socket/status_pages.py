"""A `status` reply in pages of bounded size, and where the next page starts (its cursor).

A listing is the runs a status shows, in order, each with a key that only grows along the
listing: the run's place in creation order (every run, or the live ones and the newest ended
ones), or its index in a run's tree. A cursor names the run a page stopped at with its key, so
the next page is found by bisection, at a cost that does not grow with the history; a run no
longer listed (an ended run that `ended` now leaves out) is passed by: the page starts at the
first run after it.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from orca_client.views import RunInfo, SessionInfo
from orca_client.wire import WireError
from orca_daemon.state.tables import RunTable


class StatusCursor(msgspec.Struct, array_like=True, frozen=True):
    """Where a status page starts: a run (its id and its key in the listing), and how many
    of its tasks and sessions came before."""

    run_id: str
    key: int
    tasks: int
    sessions: int


_cursor_decoder = msgspec.json.Decoder(StatusCursor)
_size_encoder = msgspec.json.Encoder()
_FIRST = StatusCursor("", -1, 0, 0)
SMALL_RUN_ITEMS = 8
"""A run of at most this many tasks and sessions may go on a page measured whole."""
PAGE_RUNS = 200
"""The most runs one page shows: a page is a few milliseconds of orcad's loop (7 ms for a round
trip at 10k runs; 500 runs a page took 20 ms, and held the loop, and every session's output, as
long), and a whole status costs the same in pages of either size."""


@dataclass(frozen=True)
class Listing:
    """The runs a status shows: each one's key (ascending) and how to find its id."""

    runs: RunTable
    keys: Sequence[int]
    run_id_at: Callable[[int], str]
    """The id of the listing's `index`-th run."""
    index_of: Callable[[str], int | None] | None = None
    """Where a run is in the listing, when its key may have moved (a tree that grew)."""

    @classmethod
    def of_places(cls, runs: RunTable, places: Sequence[int]) -> Listing:
        """Runs by their places in creation order (`RunTable.recent`)."""
        return cls(runs, places, lambda index: runs.run_id_at(places[index]))

    @classmethod
    def of_ids(cls, runs: RunTable, run_ids: list[str]) -> Listing:
        """These runs (one, or a run's tree: few), in this order."""
        indexes = {run_id: index for index, run_id in enumerate(run_ids)}
        return cls(runs, range(len(run_ids)), run_ids.__getitem__, indexes.get)

    def resume(self, cursor: str | None) -> tuple[int, StatusCursor]:
        """The index the page starts at, and what of that run the page before showed."""
        if cursor is None:
            return 0, _FIRST
        try:
            where = _cursor_decoder.decode(cursor)
        except (msgspec.DecodeError, msgspec.ValidationError):
            where = StatusCursor("", -1, -1, -1)
        if min(where.key, where.tasks, where.sessions) < 0 or where.run_id not in self.runs:
            raise WireError("bad_request", "not a status cursor: ask for the first page")
        index = bisect.bisect_left(self.keys, where.key)
        if index < len(self.keys) and self.run_id_at(index) == where.run_id:
            return index, where
        moved = None if self.index_of is None else self.index_of(where.run_id)
        if moved is not None:
            return moved, where
        return index, _FIRST

    def from_index(self, index: int) -> Iterator[tuple[int, RunInfo, Mapping[str, SessionInfo]]]:
        """From the `index`-th run on: each one's key, view and where its sessions are."""
        for at in range(index, len(self.keys)):
            yield self.keys[at], *self.runs.with_sessions(self.run_id_at(at))


class StatusPage(msgspec.Struct, frozen=True):
    runs: list[RunInfo]
    sessions: list[SessionInfo]
    next_cursor: str | None


def status_page(listing: Listing, cursor: str | None, budget: int) -> StatusPage:
    """As much of `listing` (each run with its tasks, then its sessions) as fits in about
    `budget` bytes and `PAGE_RUNS` runs, from where `cursor` says on; never nothing, so paging
    always ends. Only the runs on the page are looked at (a packed run is unpacked to be shown),
    and a page is bounded in work as in bytes: a request never holds orcad for long.

    A run cut short is shown with the tasks and session ids this page carries; the cursor
    says where the next page carries on."""
    index, start = listing.resume(cursor)
    if start.tasks == start.sessions == 0:
        whole = _whole_runs(listing, index, budget)
        if whole is not None:
            return whole
    shown: list[RunInfo] = []
    shown_sessions: list[SessionInfo] = []
    used = 0
    moved = False  # something new is on the page: the page may end at the next item

    def fits(item: int) -> bool:
        nonlocal used, moved
        if moved and used + item > budget:
            return False
        used += item
        moved = True
        return True

    first_task, first_session = start.tasks, start.sessions
    for key, run, sessions in listing.from_index(index):
        if len(shown) == PAGE_RUNS:
            return StatusPage(shown, shown_sessions, _cursor(run.run_id, key, 0, 0))
        header = _size(msgspec.structs.replace(run, tasks=[], session_ids=[]))
        if (first_task, first_session) != (0, 0):
            used += header  # the run the page before cut short: it comes again, with the rest
            header = 0
        task, session = first_task, first_session  # a run starts a page with its first item
        while task < len(run.tasks) and fits(header + _size(run.tasks[task]) + 1):
            header, task = 0, task + 1
        while task == len(run.tasks) and session < len(run.session_ids):
            info = sessions[run.session_ids[session]]
            if not fits(header + _size(info) + len(info.session_id) + 4):
                break
            shown_sessions.append(info)
            header, session = 0, session + 1
        if header and (run.tasks or run.session_ids or not fits(header)):
            return StatusPage(shown, shown_sessions, _cursor(run.run_id, key, 0, 0))
        ids = run.session_ids[first_session:session]
        shown.append(
            msgspec.structs.replace(run, tasks=run.tasks[first_task:task], session_ids=ids)
        )
        if task < len(run.tasks) or session < len(run.session_ids):
            return StatusPage(shown, shown_sessions, _cursor(run.run_id, key, task, session))
        first_task = first_session = 0
    return StatusPage(shown, shown_sessions, None)


def _whole_runs(listing: Listing, index: int, budget: int) -> StatusPage | None:
    """The page from the `index`-th run when its `PAGE_RUNS` runs (or the rest) are small
    ones and, whole, fit in `budget` bytes: the usual page, measured in one encoding instead
    of one per item; None otherwise (`status_page` then fits them item by item, and a run of
    many tasks or sessions is not encoded whole just to find that it does not fit)."""
    runs: list[RunInfo] = []
    sessions: list[SessionInfo] = []
    for key, run, where in listing.from_index(index):
        if len(runs) == PAGE_RUNS:
            page = StatusPage(runs, sessions, _cursor(run.run_id, key, 0, 0))
            break
        if len(run.tasks) + len(run.session_ids) > SMALL_RUN_ITEMS:
            return None
        runs.append(run)
        sessions += [where[session_id] for session_id in run.session_ids]
    else:
        page = StatusPage(runs, sessions, None)
    if len(_size_encoder.encode(runs)) + len(_size_encoder.encode(sessions)) > budget:
        return None
    return page


def _size(item: msgspec.Struct) -> int:
    return len(_size_encoder.encode(item))


def _cursor(run_id: str, key: int, tasks: int, sessions: int) -> str:
    return _size_encoder.encode(StatusCursor(run_id, key, tasks, sessions)).decode()
