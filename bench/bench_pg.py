"""The PostgreSQL log: append throughput against raw psycopg, `status` round trip against the
SQLite log, and delivery from a commit on one daemon's store to another's.

A private PostgreSQL server is started for the run (tests/support/postgres.py; or the one at
ORCA_TEST_POSTGRES_URL), each variant on a fresh database of its own.

- append, ours: `EventStore.append` of single events (~200 characters of output each, the rows
  of bench_append.py) from 100 concurrent tasks: the writer group-commits them, so transactions
  hold up to 100 events.
- append, raw: psycopg (async, one connection) inserting the same rows, 100 per transaction
  (`executemany` in one transaction), into the same table: the same batch size without the
  store. Goal: ours >= 0.5x raw.
- status: `Client.request(Status())` against a real orcad with its log in PostgreSQL, against
  the same with its SQLite file, 20 finished runs each, in alternating blocks (p50, p99).
- delivery: store A appends one event at a time; store B (another daemon's, same database, in
  the same process here) hears it through NOTIFY and its follower. Time from A's `append` call
  to B's commit listener, beside the time to A's `append` returning (its commit), p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_append, bench_roundtrip
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the private server

from bench_append import APPENDERS, bench_event, bench_rows
from bench_roundtrip import OrcaDaemon
from support.postgres import fresh_database, postgres_server

from orca_client.events import run_stream
from orca_client.wire import Status
from orca_daemon.log.store import EventStore

GOAL_VS_RAW = 0.5
INSERT = (
    "INSERT INTO events (position, stream, version, type, schema_version, recorded_at, data)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class PgResult:
    events: int
    rounds: int
    ours: float
    raw: float
    status_pg: list[float]
    status_sqlite: list[float]
    commits: list[float]
    delivery: list[float]

    @property
    def vs_raw(self) -> float:
        return self.ours / self.raw


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


async def ours(url: str, total: int) -> float:
    """Events/s of `EventStore.append` from `APPENDERS` concurrent tasks."""
    store = await EventStore.open_postgres(url)
    writer = asyncio.create_task(store.run_writer())
    per_appender = total // APPENDERS

    async def appender(number: int) -> None:
        stream = run_stream(f"bench{number:03d}")
        for index in range(per_appender):
            await store.append(stream, [bench_event(number, index)])

    try:
        start = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for number in range(APPENDERS):
                group.create_task(appender(number))
        elapsed = time.perf_counter() - start
        assert store.head_position == per_appender * APPENDERS
    finally:
        store.stop_accepting()
        await writer
        await store.close()
    return per_appender * APPENDERS / elapsed


async def raw(url: str, total: int) -> float:
    """Events/s of psycopg inserting the same rows, `APPENDERS` per transaction (the tables are
    made by opening a store first, outside the timing)."""
    store = await EventStore.open_postgres(url)
    await store.close()
    async with await psycopg.AsyncConnection.connect(url) as connection:
        start = time.perf_counter()
        batch: list[tuple[object, ...]] = []
        for row in bench_rows(total):
            batch.append(row)
            if len(batch) == APPENDERS:
                async with connection.transaction(), connection.cursor() as cursor:
                    await cursor.executemany(INSERT, batch)
                batch.clear()
        elapsed = time.perf_counter() - start
    return total / elapsed


async def delivery(url: str, count: int) -> tuple[list[float], list[float]]:
    """Milliseconds from A's `append` call to its return (the commit), and to B's listener
    hearing the event, one event at a time."""
    a = await EventStore.open_postgres(url)
    b = await EventStore.open_postgres(url)
    writers = [asyncio.create_task(s.run_writer()) for s in (a, b)]
    heard: dict[int, float] = {}
    b.add_listener(lambda events: heard.update((e.position, time.perf_counter()) for e in events))
    commits: list[float] = []
    samples: list[float] = []
    try:
        await asyncio.sleep(0.3)  # b's follower is listening
        for index in range(count):
            called = time.perf_counter()
            [stored] = await a.append("run-latency", [bench_event(0, index)])
            commits.append((time.perf_counter() - called) * 1000)
            while stored.position not in heard:  # noqa: ASYNC110 - b's listener sets it
                await asyncio.sleep(0.0002)
            samples.append((heard[stored.position] - called) * 1000)
            await asyncio.sleep(0.005)
    finally:
        for store, writer in zip((a, b), writers, strict=True):
            store.stop_accepting()
            await writer
            await store.close()
    return commits, samples


def status_round_trips(log_url: str | None, blocks: int) -> list[float]:
    """Milliseconds per `Status()` round trip against a real orcad (on PostgreSQL at `log_url`,
    or on its SQLite file)."""
    saved = os.environ.get("ORCA_LOG_URL")
    if log_url is not None:
        os.environ["ORCA_LOG_URL"] = log_url
    else:
        os.environ.pop("ORCA_LOG_URL", None)
    try:
        samples: list[float] = []
        with OrcaDaemon() as daemon:
            daemon.create_runs(20)
            with daemon.client() as client:
                for _ in range(blocks * 100):
                    start = time.perf_counter()
                    client.request(Status())
                    samples.append((time.perf_counter() - start) * 1000)
        return samples
    finally:
        if saved is None:
            os.environ.pop("ORCA_LOG_URL", None)
        else:
            os.environ["ORCA_LOG_URL"] = saved


def run(quick: bool = False) -> PgResult:
    events = 5_000 if quick else 30_000
    rounds = 1 if quick else 3
    samples: dict[str, list[float]] = {"ours": [], "raw": []}
    status_pg: list[float] = []
    status_sqlite: list[float] = []
    with postgres_server() as server:
        for _ in range(rounds):
            with fresh_database(server) as url:
                samples["ours"].append(asyncio.run(ours(url, events)))
            with fresh_database(server) as url:
                samples["raw"].append(asyncio.run(raw(url, events)))
        for _ in range(rounds):
            with fresh_database(server) as url:
                status_pg += status_round_trips(url, 2 if quick else 5)
            status_sqlite += status_round_trips(None, 2 if quick else 5)
        with fresh_database(server) as url:
            commits, latencies = asyncio.run(delivery(url, 100 if quick else 500))
    return PgResult(
        events=events,
        rounds=rounds,
        ours=statistics.median(samples["ours"]),
        raw=statistics.median(samples["raw"]),
        status_pg=status_pg,
        status_sqlite=status_sqlite,
        commits=commits,
        delivery=latencies,
    )


def report(result: PgResult) -> str:
    met = "met" if result.vs_raw >= GOAL_VS_RAW else "NOT MET"
    pg50, pg99 = percentile(result.status_pg, 50), percentile(result.status_pg, 99)
    sq50, sq99 = percentile(result.status_sqlite, 50), percentile(result.status_sqlite, 99)
    return "\n".join(
        [
            f"PostgreSQL log ({APPENDERS} appenders, median of {result.rounds} rounds)",
            f"  append, ours (EventStore)      {result.ours:>10,.0f} events/s"
            f"  ({result.events:,} events)",
            f"  append, raw psycopg x{APPENDERS}       {result.raw:>10,.0f} events/s",
            f"  ours / raw                     {result.vs_raw:>10.2f}"
            f"  (goal >= {GOAL_VS_RAW}: {met})",
            f"  status round trip, PostgreSQL  p50 {pg50:6.2f} ms  p99 {pg99:6.2f} ms",
            f"  status round trip, SQLite      p50 {sq50:6.2f} ms  p99 {sq99:6.2f} ms"
            f"  (PostgreSQL / SQLite p50: {pg50 / sq50:.2f})",
            f"  commit on A (append call)      p50 {percentile(result.commits, 50):6.2f} ms"
            f"  p99 {percentile(result.commits, 99):6.2f} ms  ({len(result.commits)} events)",
            f"  delivery to B (append call)    p50 {percentile(result.delivery, 50):6.2f} ms"
            f"  p99 {percentile(result.delivery, 99):6.2f} ms  (B: another store, same database)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
