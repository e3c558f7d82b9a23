"""The event log (orca_daemon/store.py) against real SQLite files.

Every test opens a real `EventStore` on a file in `tmp_path` with its writer task running, the way
orcad does, and checks what the log promises: positions and versions, reads (from the in-memory
ring and from the database), optimistic concurrency, group commit, durability before `append`
returns, commit listeners, and closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg
import pytest

from orca_client.events import (
    SCHEMA_VERSION,
    OutputAppended,
    RunCreated,
    RunStatusChanged,
    decode_event,
    run_stream,
)
from orca_daemon.log import writer as writer_module
from orca_daemon.log.appends import MAX_APPENDS_PER_BATCH
from orca_daemon.log.records import (
    ConcurrencyError,
    LogUnavailable,
    StoredEvent,
    StoreError,
    first_page,
)
from orca_daemon.log.store import EventStore
from orca_daemon.log.transactions import TEST_PAGE_LIMIT_VARIABLE

TIMEOUT = 10.0


class Log:
    """Opens `EventStore`s on one log (a SQLite file, or a PostgreSQL database), runs their
    writers, and shuts them down like orcad."""

    def __init__(self, path: Path, url: str | None = None) -> None:
        self.path = path
        self.url = url
        self._open: list[tuple[EventStore, asyncio.Task[None]]] = []

    async def open_unstarted(self, ring_size: int = 8192) -> EventStore:
        """A store on this log whose writer the caller runs."""
        if self.url is not None:
            return await EventStore.open_postgres(self.url, ring_size=ring_size)
        return await EventStore.open(self.path, ring_size=ring_size)

    async def open(self, ring_size: int = 8192) -> EventStore:
        store = await self.open_unstarted(ring_size)
        self._open.append((store, asyncio.create_task(store.run_writer())))
        return store

    async def close(self, store: EventStore) -> None:
        """stop_accepting, let the writer drain and return, then close (orcad's order)."""
        for entry in list(self._open):
            if entry[0] is store:
                self._open.remove(entry)
                store.stop_accepting()
                await asyncio.wait_for(entry[1], TIMEOUT)
                await store.close()

    async def reopen(self, store: EventStore, ring_size: int = 8192) -> EventStore:
        await self.close(store)
        return await self.open(ring_size)

    async def close_all(self) -> None:
        for store, _ in list(self._open):
            await self.close(store)

    def committed_positions(self) -> list[int]:
        """What a separate, plain connection to the database sees right now."""
        query = "SELECT position FROM events ORDER BY position"
        if self.url is not None:
            with psycopg.connect(self.url) as db:
                return [row[0] for row in db.execute(query)]
        with contextlib.closing(sqlite3.connect(self.path)) as db:
            return [row[0] for row in db.execute(query)]


@pytest.fixture(params=["sqlite", "postgres"])
async def log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Log]:
    """The log on each backend: its contract is the same."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    opened = Log(tmp_path / "events.sqlite3", url)
    yield opened
    await opened.close_all()


@pytest.fixture
async def sqlite_log(tmp_path: Path) -> AsyncIterator[Log]:
    """The SQLite log, for what only a file shows (a full disk, another connection's lock)."""
    opened = Log(tmp_path / "events.sqlite3")
    yield opened
    await opened.close_all()


@pytest.fixture
async def store(log: Log) -> EventStore:
    return await log.open()


def created(run_id: str, title: str = "t") -> RunCreated:
    return RunCreated(run_id=run_id, title=title, cwd="/tmp")


def output(run_id: str, text: str) -> OutputAppended:
    return OutputAppended(run_id=run_id, session_id=f"{run_id}.1", stream="stdout", text=text)


def shape(events: list[StoredEvent]) -> list[tuple[int, str, int]]:
    return [(e.position, e.stream, e.version) for e in events]


# --------------------------------------------------------------------------- appending


async def test_an_empty_log_has_head_position_zero_and_reads_nothing(store: EventStore) -> None:
    assert store.head_position == 0
    assert await store.read_all() == []
    assert await store.read_stream("run-x") == []


async def test_append_returns_the_events_as_stored_with_positions_and_stream_versions(
    store: EventStore,
) -> None:
    first = await store.append("run-a", [created("a"), output("a", "hello\n")])
    second = await store.append("run-b", [created("b")])
    third = await store.append("run-a", [output("a", "bye\n")])

    assert shape(first) == [(1, "run-a", 1), (2, "run-a", 2)]
    assert shape(second) == [(3, "run-b", 1)]
    assert shape(third) == [(4, "run-a", 3)]
    assert [e.type for e in first] == ["run_created", "output_appended"]
    assert all(e.schema_version == SCHEMA_VERSION for e in [*first, *second, *third])
    assert first[0].decode() == created("a")
    assert decode_event(third[0].data) == output("a", "bye\n")
    assert store.head_position == 4


async def test_an_empty_append_returns_nothing_and_writes_nothing(
    store: EventStore, log: Log
) -> None:
    assert await store.append("run-a", []) == []
    assert store.head_position == 0
    assert log.committed_positions() == []


async def test_a_stored_event_becomes_a_wire_record_with_the_same_body(store: EventStore) -> None:
    [stored] = await store.append("run-a", [created("a")])
    record = stored.to_record()
    assert (record.position, record.stream, record.version) == (1, "run-a", 1)
    assert record.schema_version == SCHEMA_VERSION
    assert record.recorded_at == stored.recorded_at
    assert bytes(record.event) == stored.data


# --------------------------------------------------------------------------- reading


async def test_first_page_is_the_longest_prefix_within_the_byte_budget(store: EventStore) -> None:
    events = await store.append("run-a", [output("a", "x" * 100) for _ in range(5)])
    size = events[0].size()
    assert all(e.size() == size for e in events)

    assert first_page(events, 3 * size) == events[:3]
    assert first_page(events, 3 * size + size - 1) == events[:3]
    assert first_page(events, 100 * size) == events
    # A single event bigger than the budget still makes a page, so paging always progresses.
    assert first_page(events, 1) == events[:1]
    assert first_page([], 10) == []


async def test_read_stream_returns_one_streams_events_after_a_version(store: EventStore) -> None:
    await store.append("run-a", [created("a")])
    await store.append("run-b", [created("b")])
    await store.append("run-a", [output("a", "1"), output("a", "2")])

    assert [e.version for e in await store.read_stream("run-a")] == [1, 2, 3]
    assert [e.decode() for e in await store.read_stream("run-a", after_version=1)] == [
        output("a", "1"),
        output("a", "2"),
    ]
    assert await store.read_stream("run-a", after_version=3) == []
    assert await store.read_stream("run-missing") == []
    only_output = await store.read_stream("run-a", event_type="output_appended")
    assert [e.version for e in only_output] == [2, 3]
    assert await store.read_stream("run-a", event_type="run_status_changed") == []


async def test_read_all_pages_with_after_and_limit(store: EventStore) -> None:
    for i in range(10):
        await store.append(f"run-{i % 3}", [output(str(i % 3), str(i))])

    assert [e.position for e in await store.read_all()] == list(range(1, 11))
    assert [e.position for e in await store.read_all(after=4, limit=3)] == [5, 6, 7]
    assert [e.position for e in await store.read_all(after=8, limit=100)] == [9, 10]
    assert await store.read_all(after=10) == []
    assert await store.read_all(after=50) == []
    assert await store.read_all(after=0, limit=0) == []


async def test_read_all_filtered_by_stream_keeps_global_positions(store: EventStore) -> None:
    for i in range(9):
        await store.append(f"run-{i % 3}", [output(str(i % 3), str(i))])

    only_1 = await store.read_all(stream="run-1")
    assert shape(only_1) == [(2, "run-1", 1), (5, "run-1", 2), (8, "run-1", 3)]
    assert [e.position for e in await store.read_all(after=2, stream="run-1")] == [5, 8]
    assert [e.position for e in await store.read_all(after=0, limit=1, stream="run-1")] == [2]
    assert await store.read_all(stream="run-nobody") == []


async def test_reads_from_the_ring_and_from_the_database_agree(log: Log) -> None:
    """A ring of 4 serves only the newest events; older ones, and all after reopening, come
    from SQLite. Every (after, limit, stream) read must be the same either way."""
    store = await log.open(ring_size=4)
    for i in range(10):
        await store.append(f"run-{i % 2}", [output(str(i % 2), f"line {i}")])

    queries = [
        (after, limit, stream)
        for after in range(0, 12)
        for limit in (0, 1, 3, 1000)
        for stream in (None, "run-0", "run-1")
    ]
    live = [await store.read_all(after, limit, stream) for after, limit, stream in queries]

    store = await log.reopen(store, ring_size=4)
    from_disk = [await store.read_all(after, limit, stream) for after, limit, stream in queries]

    assert live == from_disk
    for (after, limit, stream), events in zip(queries, live, strict=True):
        expected = [
            p for p in range(after + 1, 11) if stream is None or f"run-{(p - 1) % 2}" == stream
        ]
        assert [e.position for e in events] == expected[:limit], (after, limit, stream)


async def test_after_reopening_new_events_in_the_ring_join_older_ones_on_disk(log: Log) -> None:
    store = await log.open()
    await store.append("run-a", [created("a"), output("a", "1"), output("a", "2")])
    store = await log.reopen(store)
    await store.append("run-a", [output("a", "3")])
    await store.append("run-b", [created("b")])

    assert store.head_position == 5
    assert [e.position for e in await store.read_all()] == [1, 2, 3, 4, 5]
    assert [e.position for e in await store.read_all(after=2)] == [3, 4, 5]
    assert [e.position for e in await store.read_all(after=3)] == [4, 5]
    assert [e.version for e in await store.read_stream("run-a")] == [1, 2, 3, 4]


async def test_data_survives_close_and_reopen(log: Log) -> None:
    store = await log.open()
    written = await store.append("run-a", [created("a"), output("a", "é ✓ \x00 done\n")])
    written += await store.append("run-b", [created("b")])
    store = await log.reopen(store)

    assert store.head_position == 3
    assert await store.read_all() == written
    assert [e.decode() for e in await store.read_stream("run-a")] == [
        created("a"),
        output("a", "é ✓ \x00 done\n"),
    ]
    # Versions continue from the log, not from 1.
    [more] = await store.append("run-a", [output("a", "again")], expected_version=2)
    assert shape([more]) == [(4, "run-a", 3)]


# --------------------------------------------------------------------------- concurrency


async def test_expected_version_zero_means_a_new_stream(store: EventStore) -> None:
    [first] = await store.append("run-a", [created("a")], expected_version=0)
    assert first.version == 1
    [second] = await store.append("run-a", [output("a", "x")], expected_version=1)
    assert second.version == 2


async def test_a_stale_expected_version_raises_and_appends_nothing(
    store: EventStore, log: Log
) -> None:
    await store.append("run-a", [created("a"), output("a", "1")])

    with pytest.raises(ConcurrencyError) as raised:
        await store.append("run-a", [output("a", "lost"), output("a", "lost")], expected_version=1)

    message = str(raised.value)
    assert "run-a" in message
    assert "version 2" in message
    assert "expected version 1" in message
    assert isinstance(raised.value, StoreError)
    assert store.head_position == 2
    assert log.committed_positions() == [1, 2]
    assert [e.version for e in await store.read_stream("run-a")] == [1, 2]
    # The stream is usable afterwards with the right version.
    [ok] = await store.append("run-a", [output("a", "3")], expected_version=2)
    assert shape([ok]) == [(3, "run-a", 3)]


async def test_a_conflict_in_a_batch_fails_only_that_append(store: EventStore) -> None:
    batches: list[list[StoredEvent]] = []
    store.add_listener(batches.append)

    results = await asyncio.gather(
        store.append("run-a", [created("a")], expected_version=0),
        store.append("run-a", [created("a", "a rival")], expected_version=0),
        store.append("run-b", [created("b")], expected_version=0),
        store.append("run-a", [output("a", "unconditional")]),
        return_exceptions=True,
    )

    assert len(batches) == 1, "the four appends were meant to share one transaction"
    winner, loser, other, unconditional = results
    assert isinstance(loser, ConcurrencyError)
    assert "run-a is at version 1" in str(loser)
    assert isinstance(winner, list) and isinstance(other, list)
    assert isinstance(unconditional, list)
    assert shape(winner) == [(1, "run-a", 1)]
    assert shape(other) == [(2, "run-b", 1)]
    assert shape(unconditional) == [(3, "run-a", 2)]
    assert [e.decode() for e in await store.read_stream("run-a")] == [
        created("a"),
        output("a", "unconditional"),
    ]


async def test_expected_version_is_checked_against_the_log_after_reopening(log: Log) -> None:
    store = await log.open()
    await store.append("run-a", [created("a")])
    store = await log.reopen(store)

    with pytest.raises(ConcurrencyError):
        await store.append("run-a", [created("a")], expected_version=0)
    assert [e.version for e in await store.read_stream("run-a")] == [1]


# --------------------------------------------------------------------------- group commit


async def test_concurrent_appends_share_transactions_and_each_is_durable_on_return(
    store: EventStore, log: Log
) -> None:
    batches: list[list[int]] = []
    store.add_listener(lambda events: batches.append([e.position for e in events]))

    async def append_and_check(i: int) -> int:
        [stored] = await store.append(f"run-{i}", [created(str(i))])
        # Durable on return: another connection to the file already sees the row.
        assert stored.position in log.committed_positions()
        return stored.position

    positions = await asyncio.gather(*(append_and_check(i) for i in range(100)))

    assert sorted(positions) == list(range(1, 101))
    assert len(batches) < 100, f"{len(batches)} transactions for 100 appends: no group commit"
    assert sum(len(b) for b in batches) == 100
    assert log.committed_positions() == list(range(1, 101))


async def test_commit_listeners_get_every_batch_in_position_order_before_append_returns(
    store: EventStore,
) -> None:
    seen: list[int] = []
    store.add_listener(lambda events: seen.extend(e.position for e in events))

    async def append(i: int) -> None:
        stored = await store.append(f"run-{i % 5}", [output(str(i), "a"), output(str(i), "b")])
        assert set(e.position for e in stored) <= set(seen), "append returned before listeners"

    for _ in range(3):
        await asyncio.gather(*(append(i) for i in range(20)))
        await store.append("run-solo", [created("solo")])

    assert seen == list(range(1, store.head_position + 1))
    assert store.head_position == 3 * (20 * 2 + 1)


async def test_a_failing_listener_does_not_stop_commits_or_other_listeners(
    store: EventStore,
) -> None:
    seen: list[int] = []

    def broken(events: list[StoredEvent]) -> None:
        raise RuntimeError("listener bug")

    store.add_listener(broken)
    store.add_listener(lambda events: seen.extend(e.position for e in events))

    await store.append("run-a", [created("a")])
    store.remove_listener(broken)
    await store.append("run-a", [output("a", "x")])
    assert seen == [1, 2]


async def test_a_removed_listener_hears_nothing_more(store: EventStore) -> None:
    seen: list[int] = []

    def listener(events: list[StoredEvent]) -> None:
        seen.extend(e.position for e in events)

    store.add_listener(listener)
    await store.append("run-a", [created("a")])
    store.remove_listener(listener)
    store.remove_listener(listener)  # removing twice is harmless
    await store.append("run-a", [output("a", "x")])
    assert seen == [1]


async def test_wait_for_commit_after_wakes_when_a_later_event_commits(store: EventStore) -> None:
    await store.append("run-a", [created("a")])
    waiter = asyncio.create_task(store.wait_for_commit_after(1))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not waiter.done()

    await store.append("run-a", [output("a", "x")])
    await asyncio.wait_for(waiter, TIMEOUT)


async def test_wait_for_commit_after_returns_at_once_when_the_head_is_already_past(
    store: EventStore,
) -> None:
    await store.append("run-a", [created("a"), output("a", "x")])
    await asyncio.wait_for(store.wait_for_commit_after(0), TIMEOUT)
    await asyncio.wait_for(store.wait_for_commit_after(1), TIMEOUT)


async def test_several_waiters_on_different_positions_all_wake(store: EventStore) -> None:
    waiters = [asyncio.create_task(store.wait_for_commit_after(p)) for p in (0, 1, 2)]
    await asyncio.sleep(0)
    await store.append("run-a", [created("a"), output("a", "1"), output("a", "2")])
    await asyncio.wait_for(asyncio.gather(*waiters), TIMEOUT)


async def test_appends_made_together_share_one_transaction_even_behind_a_full_queue(
    store: EventStore,
) -> None:
    batches: list[list[str]] = []
    store.add_listener(lambda events: batches.append([e.stream for e in events]))
    queued = [
        store.append_nowait(f"run-q{i}", [created(f"q{i}")])
        for i in range(MAX_APPENDS_PER_BATCH - 2)
    ]
    together = [(f"run-t{i}", [created(f"t{i}")]) for i in range(5)]
    stored = await asyncio.wait_for(store.append_together(together), TIMEOUT)
    await asyncio.wait_for(asyncio.gather(*queued), TIMEOUT)

    assert [s[0].stream for s in stored] == [stream for stream, _ in together]
    holding = [b for b in batches if "run-t0" in b]
    assert len(holding) == 1 and {f"run-t{i}" for i in range(5)} <= set(holding[0])
    assert len({s[0].recorded_at for s in stored}) == 1


# --------------------------------------------------------------------------- a full log


@pytest.fixture
def page_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store's test hook: while this file holds 1, the log gets no new page (SQLITE_FULL)."""
    limit_file = tmp_path / "page-limit"
    monkeypatch.setenv(TEST_PAGE_LIMIT_VARIABLE, str(limit_file))
    return limit_file


def fill(limit_file: Path) -> None:
    limit_file.write_text("1\n")


def free(limit_file: Path) -> None:
    limit_file.unlink()


def big(run_id: str) -> OutputAppended:
    return output(run_id, "z" * 20_000)  # needs new pages


async def wait_for_outage(store: EventStore) -> LogUnavailable:
    while (refusal := store.unwritable()) is None:  # noqa: ASYNC110 - the writer's own state
        await asyncio.sleep(0.001)
    return refusal


async def test_a_full_log_holds_what_must_be_recorded_and_writes_it_once_there_is_space(
    sqlite_log: Log, page_limit: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = await sqlite_log.open()
    await store.append("run-a", [created("a")])
    fill(page_limit)

    waiting = asyncio.create_task(store.append("run-a", [big("a")]))
    refusal = await asyncio.wait_for(wait_for_outage(store), TIMEOUT)
    assert str(refusal) == f"the log cannot be written: disk full at {sqlite_log.path}"
    with pytest.raises(LogUnavailable, match="disk full"):
        await store.append("run-b", [big("b")], mode="refuse")
    with pytest.raises(LogUnavailable):  # output is dropped, not held
        await store.append_nowait("run-a", [big("a")], mode="drop")
    waiting_too = asyncio.create_task(store.append("run-a", [big("a")]))
    await asyncio.sleep(0)
    assert not waiting.done() and not waiting_too.done()  # both wait, neither failed
    assert sqlite_log.committed_positions() == [1]

    free(page_limit)
    first, second = await asyncio.wait_for(asyncio.gather(waiting, waiting_too), TIMEOUT)
    assert [first[0].version, second[0].version] == [2, 3]  # in the order they were made
    assert sqlite_log.committed_positions() == [1, 2, 3]
    assert store.unwritable() is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(";")[0] for r in errors] == [
        f"the log cannot be written: disk full at {sqlite_log.path}"
    ]
    assert not any(r.exc_info for r in caplog.records)


async def test_with_nothing_waiting_the_writer_finds_out_by_itself_when_the_log_has_space(
    sqlite_log: Log, page_limit: Path
) -> None:
    store = await sqlite_log.open()
    fill(page_limit)
    with pytest.raises(LogUnavailable):  # a client's append finds the log full
        await store.append("run-a", [big("a")], mode="refuse")
    with pytest.raises(LogUnavailable):  # the next is refused without trying
        await store.append("run-a", [created("a")], mode="refuse")

    free(page_limit)
    await asyncio.wait_for(wait_for(lambda: store.unwritable() is None), TIMEOUT)
    [stored] = await store.append("run-a", [big("a")], mode="refuse")
    assert stored.position in sqlite_log.committed_positions()


async def wait_for(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - the writer's own state
        await asyncio.sleep(0.001)


async def test_a_store_stopped_while_the_log_is_full_gives_up_after_a_bounded_time(
    sqlite_log: Log, page_limit: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer_module, "CLOSE_RETRY_SECONDS", 0.2)
    store = await EventStore.open(sqlite_log.path)
    writer = asyncio.create_task(store.run_writer())
    fill(page_limit)
    waiting = asyncio.create_task(store.append("run-a", [big("a")]))
    await asyncio.wait_for(wait_for_outage(store), TIMEOUT)

    store.stop_accepting()
    await asyncio.wait_for(writer, TIMEOUT)
    await store.close()
    with pytest.raises(LogUnavailable):
        await waiting


async def test_an_append_whose_caller_stopped_waiting_for_the_log_is_never_written(
    sqlite_log: Log, page_limit: Path
) -> None:
    """A caller cancelled while its append waits for the log (orcad's shutdown gives up on
    recording, say) must be able to tell that it was not written: it never is, later."""
    store = await sqlite_log.open()
    await store.append("run-a", [created("a")])
    fill(page_limit)
    alone = asyncio.create_task(store.append("run-a", [big("a")]))
    together = asyncio.create_task(
        store.append_together([("run-b", [big("b")]), ("run-c", [created("c")])])
    )
    await asyncio.wait_for(wait_for_outage(store), TIMEOUT)
    await asyncio.sleep(0)
    for task in (alone, together):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)

    free(page_limit)
    [later] = await asyncio.wait_for(store.append("run-a", [output("a", "later")]), TIMEOUT)
    assert (later.position, later.version) == (2, 2)
    assert sqlite_log.committed_positions() == [1, 2]


async def test_an_append_cancelled_while_the_writer_is_trying_it_is_not_tried_again(
    sqlite_log: Log,
) -> None:
    """Another connection holds the log locked, so the writer's attempt waits out the busy
    timeout (an outage, as a full disk is); the caller cancelled meanwhile returns once that
    attempt is over, and the append is never written after that."""
    store = await sqlite_log.open()
    await store.append("run-a", [created("a")])
    with contextlib.closing(sqlite3.connect(sqlite_log.path, isolation_level=None)) as db:
        db.execute("BEGIN IMMEDIATE")
        cancelled = asyncio.create_task(store.append("run-a", [output("a", "cancelled")]))
        await asyncio.sleep(0.05)  # (the writer is in its attempt by now; either way, it holds)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(cancelled, TIMEOUT)
        db.execute("ROLLBACK")
    [later] = await asyncio.wait_for(store.append("run-a", [output("a", "later")]), TIMEOUT)
    assert (later.position, later.version) == (2, 2)
    assert sqlite_log.committed_positions() == [1, 2]


async def test_after_another_writer_took_a_position_appends_made_together_stay_together(
    sqlite_log: Log, page_limit: Path
) -> None:
    """Something else wrote to the log: the writer re-reads it and writes each append again
    (a conflict fails only that one), but appends made together still share one transaction."""
    store = await sqlite_log.open()
    await store.append("run-a", [created("a")])
    batches: list[list[str]] = []
    store.add_listener(lambda events: batches.append([e.stream for e in events]))
    fill(page_limit)  # the appends below queue up, then are written in one batch
    first = store.append_nowait("run-a", [big("a")])
    await asyncio.wait_for(wait_for_outage(store), TIMEOUT)
    together = asyncio.create_task(
        store.append_together([("run-b", [created("b")]), ("run-c", [created("c")])])
    )
    await asyncio.sleep(0)
    with contextlib.closing(sqlite3.connect(sqlite_log.path)) as db, db:  # another writer
        db.execute(
            "INSERT INTO events VALUES (2, 'run-x', 1, 'run_created', ?, 0, ?)",
            (SCHEMA_VERSION, b'{"type":"run_created","run_id":"x","title":"t","cwd":"/"}'),
        )
    free(page_limit)

    [stored_first] = await asyncio.wait_for(first, TIMEOUT)
    [b], [c] = await asyncio.wait_for(together, TIMEOUT)
    assert (stored_first.position, b.position, c.position) == (3, 4, 5)
    assert ["run-b", "run-c"] in batches  # one transaction, as `append_together` promises
    assert b.recorded_at == c.recorded_at


# --------------------------------------------------------------------------- closing


async def test_after_stop_accepting_appends_are_refused_and_queued_ones_finish(
    log: Log,
) -> None:
    store = await log.open_unstarted()
    writer = asyncio.create_task(store.run_writer())
    queued = [asyncio.create_task(store.append("run-a", [output("a", str(i))])) for i in range(3)]
    await asyncio.sleep(0)  # the three appends are now waiting for the writer

    store.stop_accepting()
    with pytest.raises(StoreError, match="closed"):
        await store.append("run-a", [output("a", "late")])
    with pytest.raises(StoreError):
        await store.append("run-a", [])

    results = await asyncio.wait_for(asyncio.gather(*queued), TIMEOUT)
    await asyncio.wait_for(writer, TIMEOUT)  # the writer returns once drained
    await store.close()

    assert [r[0].version for r in results] == [1, 2, 3]
    assert log.committed_positions() == [1, 2, 3]


async def test_close_finishes_appends_that_are_already_queued(log: Log) -> None:
    """store.close() documents: "Finish pending appends (the writer must still be running)"."""
    store = await log.open_unstarted()
    writer = asyncio.create_task(store.run_writer())
    queued = [asyncio.create_task(store.append("run-a", [output("a", str(i))])) for i in range(3)]
    await asyncio.sleep(0)
    try:
        await asyncio.wait_for(store.close(), 2.0)
        results = await asyncio.wait_for(asyncio.gather(*queued), 2.0)
        assert [r[0].version for r in results] == [1, 2, 3]
        assert log.committed_positions() == [1, 2, 3]
    finally:
        for task in [*queued, writer]:
            task.cancel()
        await asyncio.gather(*queued, writer, return_exceptions=True)


async def test_the_log_file_is_an_ordinary_sqlite_table(sqlite_log: Log) -> None:
    log = sqlite_log
    store = await log.open()
    await store.append(run_stream("r1"), [created("r1")])
    await store.append(run_stream("r1"), [RunStatusChanged(run_id="r1", status="cancelled")])
    with contextlib.closing(sqlite3.connect(log.path)) as db:
        rows = db.execute("SELECT position, stream, version, type FROM events").fetchall()
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert rows == [(1, "run-r1", 1, "run_created"), (2, "run-r1", 2, "run_status_changed")]
    assert journal == "wal"


async def test_a_byte_bounded_read_is_the_first_page_of_the_unbounded_one(log: Log) -> None:
    """`max_bytes` cuts a read as `first_page` would, from the ring and from SQLite alike (where
    it reads no more rows than it returns), for the whole log and for one stream, seeking from
    an event of that stream or from any other position."""
    store = await log.open(ring_size=4)
    for i in range(12):
        await store.append(f"run-{i % 2}", [output(str(i % 2), "x" * (100 * (i + 1)))])
    queries = [
        (after, stream, budget)
        for after in range(0, 13)
        for stream in (None, "run-0", "run-1")
        for budget in (1, 300, 1000, 5000, 10**6)
    ]
    for reopened in (False, True):
        if reopened:
            store = await log.reopen(store, ring_size=4)
        for after, stream, budget in queries:
            whole = await store.read_all(after, 1000, stream)
            bounded = await store.read_all(after, 1000, stream, max_bytes=budget)
            assert bounded == first_page(whole, budget), (after, stream, budget, reopened)
