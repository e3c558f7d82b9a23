"""The PostgreSQL log as several orcad daemons share it, against a real server.

The contract that both logs keep is in test_store.py (it runs on each). Here: two stores on one
database, as two daemons are, see every event once and in the same order; racing appends to
one stream version, one wins; a commit on one wakes the other; a lost server holds what must
be recorded and writes it once when it is back; the tables are created once and versioned; and
the URL's password never appears in what orcad says.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
from support.tcp_proxy import CuttableProxy

from orca_client.events import OutputAppended, RunAdopted, RunCreated
from orca_daemon.log import pg_follow
from orca_daemon.log.pg_follow import LISTEN_NAME
from orca_daemon.log.pg_schema import redacted
from orca_daemon.log.records import ConcurrencyError, FencedAppend, LogUnavailable, StoreError
from orca_daemon.log.store import DaemonIdentity, EventStore

TIMEOUT = 30.0


class Daemons:
    """Stores on one database, each with its writer running, as orcad runs them."""

    def __init__(self) -> None:
        self._open: list[tuple[EventStore, asyncio.Task[None]]] = []

    async def open(self, url: str, daemon: DaemonIdentity | None = None) -> EventStore:
        """A store on `url` (as the daemon `daemon`, when given) with its writer running."""
        store = await EventStore.open_postgres(url, daemon=daemon)
        self._open.append((store, asyncio.create_task(store.run_writer())))
        return store

    async def close_all(self) -> None:
        for store, writer in self._open:
            store.stop_accepting()
            await asyncio.wait_for(writer, TIMEOUT)
            await store.close()


@pytest.fixture
async def daemons() -> AsyncIterator[Daemons]:
    opened = Daemons()
    yield opened
    await opened.close_all()


def created(run_id: str) -> RunCreated:
    return RunCreated(run_id=run_id, title="t", cwd="/tmp")


def output(run_id: str, text: str) -> OutputAppended:
    return OutputAppended(run_id=run_id, session_id=f"{run_id}.1", stream="stdout", text=text)


def committed(url: str) -> list[tuple[int, str, int]]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT position, stream, version FROM events ORDER BY position")
        return [(int(p), str(s), int(v)) for p, s, v in rows]


async def listening(url: str, count: int) -> None:
    """Wait until `count` stores' followers LISTEN for commits on the database at `url`."""

    def listeners() -> int:
        with psycopg.connect(url) as db:
            row = db.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = %s AND query LIKE 'LISTEN %%'",
                (LISTEN_NAME,),
            ).fetchone()
        return 0 if row is None else int(row[0])

    await until(lambda: listeners() >= count, f"{count} followers to listen")


async def until(condition: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not condition():  # noqa: ASYNC110 - the stores' own state
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_two_daemons_see_every_event_once_and_in_the_same_order(
    daemons: Daemons, postgres_url: str
) -> None:
    a, b = await daemons.open(postgres_url), await daemons.open(postgres_url)
    heard: dict[str, list[int]] = {"a": [], "b": []}
    a.add_listener(lambda events: heard["a"].extend(e.position for e in events))
    b.add_listener(lambda events: heard["b"].extend(e.position for e in events))

    async def append(store: EventStore, name: str, i: int) -> None:
        stored = await store.append(f"run-{i % 7}", [output(name, f"{i}a"), output(name, f"{i}b")])
        assert {e.position for e in stored} <= set(heard[name]), "returned before listeners"

    await asyncio.gather(
        *(append(a, "a", i) for i in range(100)), *(append(b, "b", i) for i in range(100))
    )
    total = 400
    await until(lambda: a.head_position == b.head_position == total, "both heads at the end")
    assert heard["a"] == heard["b"] == list(range(1, total + 1))
    from_a, from_b = await a.read_all(0, limit=total), await b.read_all(0, limit=total)
    assert from_a == from_b
    assert [(e.position, e.stream, e.version) for e in from_a] == committed(postgres_url)
    for stream in {e.stream for e in from_a}:  # versions are dense in every stream
        versions = [e.version for e in from_a if e.stream == stream]
        assert versions == list(range(1, len(versions) + 1))


async def test_two_daemons_racing_for_one_stream_version_one_wins_always(
    daemons: Daemons, postgres_url: str
) -> None:
    a, b = await daemons.open(postgres_url), await daemons.open(postgres_url)
    for version in range(30):
        outcomes = await asyncio.gather(
            a.append("run-r", [output("r", f"a{version}")], expected_version=version),
            b.append("run-r", [output("r", f"b{version}")], expected_version=version),
            return_exceptions=True,
        )
        won = [o for o in outcomes if isinstance(o, list)]
        lost = [o for o in outcomes if isinstance(o, ConcurrencyError)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert won[0][0].version == version + 1
    assert [v for _, _, v in committed(postgres_url)] == list(range(1, 31))


async def test_a_tracking_row_commits_with_its_events_and_never_goes_back(
    daemons: Daemons, postgres_url: str
) -> None:
    a, b = await daemons.open(postgres_url), await daemons.open(postgres_url)
    [stored] = await a.append_tracked("run-t", [created("t")], ("fanout", 7))
    assert stored.position == 1
    assert await b.read_tracking("fanout") == 7
    await b.save_tracking("fanout", 3)
    assert await a.read_tracking("fanout") == 7
    assert await a.read_tracking("nobody") is None


async def test_a_commit_on_one_daemon_wakes_a_waiter_on_the_other_without_polling(
    daemons: Daemons, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_follow, "POLL_SECONDS", 3600.0)  # only a notification can wake it
    a, b = await daemons.open(postgres_url), await daemons.open(postgres_url)
    await listening(postgres_url, 2)
    waiting = asyncio.create_task(b.wait_for_commit_after(0))
    await a.append("run-w", [created("w")])
    await asyncio.wait_for(waiting, TIMEOUT)
    assert [e.stream for e in await b.read_all(0)] == ["run-w"]


async def test_commits_made_while_a_daemon_was_not_listening_reach_it_when_it_is_back(
    daemons: Daemons, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notifications are lost while the listening connection is down: the follower reads what
    it missed when it listens again."""
    monkeypatch.setattr(pg_follow, "POLL_SECONDS", 3600.0)
    proxy = CuttableProxy(postgres_url)
    await proxy.start()
    try:
        a, b = await daemons.open(postgres_url), await daemons.open(proxy.url)
        await listening(postgres_url, 2)
        proxy.cut()
        await a.append("run-m", [created("m")])
        await a.append("run-m", [output("m", "missed")])
        await asyncio.sleep(0.2)  # (b gets nothing while cut off: no condition to wait for)
        assert b.head_position == 0
        proxy.mend()
        await until(lambda: b.head_position == 2, "b to catch up")
        assert [e.version for e in await b.read_all(0)] == [1, 2]
    finally:
        await proxy.close()


async def test_a_lost_server_holds_what_must_be_recorded_and_writes_it_once_when_back(
    daemons: Daemons, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pg-s3cret-word"
    proxy = CuttableProxy(postgres_url.replace("orca@", f"orca:{secret}@"))
    await proxy.start()
    try:
        store = await daemons.open(proxy.url)
        await store.append("run-l", [created("l")])
        proxy.cut()
        waiting = asyncio.create_task(store.append("run-l", [output("l", "kept")]))
        await until(lambda: store.unwritable() is not None, "the outage")
        with pytest.raises(LogUnavailable, match="cannot reach PostgreSQL at postgresql://orca@"):
            await store.append("run-l", [output("l", "refused")], mode="refuse")
        assert not waiting.done()

        proxy.mend()
        [kept] = await asyncio.wait_for(waiting, TIMEOUT)
        assert (kept.position, kept.version) == (2, 2)
        assert committed(postgres_url) == [(1, "run-l", 1), (2, "run-l", 2)]
        await until(lambda: store.unwritable() is None, "the outage to end")
    finally:
        await proxy.close()
    assert secret not in caplog.text
    assert any("cannot reach PostgreSQL" in r.getMessage() for r in caplog.records)


async def test_daemons_starting_together_create_the_tables_once(postgres_url: str) -> None:
    stores = await asyncio.gather(*(EventStore.open_postgres(postgres_url) for _ in range(3)))
    for store in stores:
        await store.close()
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version FROM log_schema").fetchall() == [(1,)]


async def test_a_log_written_by_a_newer_orcad_is_refused_and_left_alone(postgres_url: str) -> None:
    store = await EventStore.open_postgres(postgres_url)
    await store.close()
    with psycopg.connect(postgres_url) as db:
        db.execute("UPDATE log_schema SET version = 99")
    with pytest.raises(StoreError, match="tables are at version 99, newer than this orcad"):
        await EventStore.open_postgres(postgres_url)
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT version FROM log_schema").fetchall() == [(99,)]


async def test_an_unreachable_server_fails_opening_with_its_name_and_not_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = CuttableProxy("postgresql://orca@127.0.0.1:1/orca")
    await proxy.start()
    proxy.cut()
    url = f"postgresql://orca:pg-s3cret-word@127.0.0.1:{proxy.port}/orca"
    try:
        with pytest.raises(StoreError) as raised:
            await EventStore.open_postgres(url, wait_seconds=1.0)
    finally:
        await proxy.close()
    assert f"cannot open the log at postgresql://orca@127.0.0.1:{proxy.port}/orca" in str(
        raised.value
    )
    assert "s3cret" not in str(raised.value) and "s3cret" not in caplog.text


async def test_a_commit_whose_answer_was_lost_is_found_and_not_written_again(
    daemons: Daemons, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection drops after the server got COMMIT and before orcad heard back: the
    transaction may have committed. The retry finds its events and does not write them twice."""
    proxy = CuttableProxy(postgres_url)
    await proxy.start()
    try:
        store = await daemons.open(proxy.url)
        await store.append("run-d", [created("d")])
        proxy.lose_answer_to(b"COMMIT")
        [once] = await asyncio.wait_for(store.append("run-d", [output("d", "once")]), TIMEOUT)
        after = await asyncio.wait_for(store.append("run-d", [output("d", "after")]), TIMEOUT)
    finally:
        await proxy.close()
    assert (once.position, once.version) == (2, 2)
    assert [(e.position, e.version) for e in after] == [(3, 3)]
    assert committed(postgres_url) == [(1, "run-d", 1), (2, "run-d", 2), (3, "run-d", 3)]
    assert [e.position for e in await store.read_all(0)] == [1, 2, 3]
    assert "did commit the transaction whose answer was lost" in caplog.text


def identity(name: str) -> DaemonIdentity:
    return DaemonIdentity(name, f"/tmp/{name}", lease_seconds=15.0)


async def test_a_daemon_appends_only_for_the_runs_it_owns(
    daemons: Daemons, postgres_url: str
) -> None:
    """Each run's owner is checked by every append to the run, in its transaction: the daemon
    that created the run (or took it over) appends for it; another one's append is refused and
    not written, whatever it races with; appends that are not a run's are anyone's."""
    a, b = (
        await daemons.open(postgres_url, identity("a")),
        await daemons.open(postgres_url, identity("b")),
    )
    await a.append("run-x", [created("x")], expected_version=0)
    await b.append("run-y", [created("y")], expected_version=0)
    await a.append("run-x", [output("x", "a's")])
    with pytest.raises(FencedAppend, match=r"run x is owned by orcad a .*not by orcad b"):
        await b.append("run-x", [output("x", "b's")])
    outcomes = await asyncio.gather(  # in one batch with b's own appends
        b.append("run-y", [output("y", "b's own")]),
        b.append("run-x", [output("x", "b's again")]),
        b.append_tracked("run-y", [], ("b's reaction", 2)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], FencedAppend) and isinstance(outcomes[0], list)
    assert await a.read_tracking("b's reaction") == 2
    assert [s for _, s, _ in committed(postgres_url)] == ["run-x", "run-y", "run-x", "run-y"]

    before = committed(postgres_url)
    with pytest.raises(FencedAppend):  # made together with one that is refused: neither
        await a.append_together([("run-x", [output("x", "mine")]), ("run-y", [output("y", "b's")])])
    assert committed(postgres_url) == before

    again = await daemons.open(
        postgres_url, identity("a")
    )  # a's next process: the runs are still a's
    await again.append("run-x", [output("x", "after a restart")])
    with psycopg.connect(postgres_url) as db:
        owners = db.execute("SELECT run_id, owner, generation FROM run_owners ORDER BY 1")
        assert owners.fetchall() == [("x", "a", 1), ("y", "b", 1)]


async def test_a_name_in_use_by_a_live_daemon_elsewhere_is_refused(postgres_url: str) -> None:
    first = await EventStore.open_postgres(postgres_url, daemon=identity("same"))
    try:
        other = DaemonIdentity("same", "/tmp/another-home", lease_seconds=15.0)
        with pytest.raises(StoreError, match=r"a daemon named same runs on .* another name"):
            await EventStore.open_postgres(postgres_url, daemon=other)
        again = await EventStore.open_postgres(postgres_url, daemon=identity("same"))
        await again.close()  # the same daemon's next process takes its row
    finally:
        await first.close()
    with psycopg.connect(postgres_url) as db:
        rows = db.execute("SELECT name, home, expires_at > now() FROM daemons").fetchall()
    assert rows == [("same", "/tmp/same", True)]


async def test_when_a_lease_runs_out_one_daemon_adopts_the_run_and_the_old_owner_is_fenced(
    daemons: Daemons, postgres_url: str
) -> None:
    a, b, c = (
        await daemons.open(postgres_url, identity("a")),
        await daemons.open(postgres_url, identity("b")),
        await daemons.open(postgres_url, identity("c")),
    )
    await a.append("run-x", [created("x")], expected_version=0)
    assert await b.runs_to_adopt() == []  # a's lease runs
    with psycopg.connect(postgres_url) as db:  # a stops renewing: its lease has run out
        db.execute("UPDATE daemons SET expires_at = now() - interval '1 s' WHERE name = 'a'")
    assert await b.runs_to_adopt() == [("x", "a", 1)]

    for _ in range(2):  # b and c race to adopt: one wins, the other is told, every time
        outcomes = await asyncio.gather(
            b.adopt(RunAdopted(run_id="x", daemon="b", from_daemon="a", generation=2)),
            c.adopt(RunAdopted(run_id="x", daemon="c", from_daemon="a", generation=2)),
            return_exceptions=True,
        )
        won = [o for o in outcomes if isinstance(o, list)]
        assert len(won) <= 1 and all(
            isinstance(o, ConcurrencyError) for o in outcomes if not isinstance(o, list)
        ), outcomes
    adopted = [e for e in await b.read_stream("run-x") if e.type == "run_adopted"]
    assert len(adopted) == 1
    winner = b if adopted[0].decode().daemon == "b" else c  # type: ignore[union-attr]
    loser = c if winner is b else b

    with pytest.raises(FencedAppend, match="not by orcad a"):  # a came back: too late
        await a.append("run-x", [output("x", "a's, after")])
    with pytest.raises(FencedAppend):
        await loser.append("run-x", [output("x", "the loser's")])
    await winner.append("run-x", [output("x", "the adopter's")])
    with psycopg.connect(postgres_url) as db:
        row = db.execute("SELECT owner, generation FROM run_owners WHERE run_id = 'x'")
        assert row.fetchone() == (winner.daemon, 2)
    assert await winner.runs_to_adopt() == []


def test_the_password_is_taken_out_of_whatever_is_said_about_the_url() -> None:
    url = "postgresql://orca:pg-s3cret-word@127.0.0.1:5432/orca"
    said = "could not use postgresql://orca:pg-s3cret-word@127.0.0.1:5432/orca"
    assert redacted(said, url) == "could not use postgresql://orca:***@127.0.0.1:5432/orca"
    assert redacted("password=pw-9 host=x", "host=x password=pw-9") == "password=*** host=x"
    assert redacted("nothing to hide", "postgresql://orca@127.0.0.1/orca") == "nothing to hide"


async def test_a_url_that_cannot_be_read_is_refused_without_its_password() -> None:
    url = "postgresql://orca:pg-s3cret-word@127.0.0.1:5432/orca?no_such_option=1"
    with pytest.raises(StoreError) as raised:
        await EventStore.open_postgres(url, wait_seconds=1.0)
    assert str(raised.value) == (
        'the log\'s URL cannot be read (invalid URI query parameter: "no_such_option"); it '
        "should look like postgresql://user@host:port/database"
    )
