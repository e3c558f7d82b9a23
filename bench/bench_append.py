"""Append throughput: `EventStore` under 100 concurrent appenders vs raw sqlite3.

Every variant writes the same rows (one `OutputAppended` event of ~200 characters per row, 100
streams interleaved) into the same schema, in WAL mode with synchronous=FULL, on a fresh file in
the system temp directory. Encoding the event is timed in every variant.

- ours: `EventStore.append` of single events from 100 concurrent tasks (the writer group-commits).
- raw batched: sqlite3 `executemany`, 1000 rows per transaction (the ceiling).
- raw one commit per event: sqlite3, one transaction per row (what naive durability costs).
- raw batched x100 (for information): sqlite3 with 100 rows per transaction, the largest group
  ours can form here, since each of the 100 appenders waits for its append to be durable.

Each variant runs on its own fresh file; the rounds alternate the variants and medians are kept.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orca_client.events import SCHEMA_VERSION, OutputAppended, encode_event, event_type, run_stream
from orca_daemon.log.schema import INSERT, SCHEMA
from orca_daemon.log.store import EventStore

APPENDERS = 100
RAW_BATCH_ROWS = 1000
TEXT = ("orca bench output line " * 10)[:199] + "\n"
GOAL_VS_BATCHED = 0.5
GOAL_VS_ONE_COMMIT = 10.0


@dataclass(frozen=True)
class AppendResult:
    """Events per second of each variant and the ratios the goals are stated in."""

    events: int
    one_commit_events: int
    rounds: int
    ours: float
    raw_batched: float
    raw_one_commit: float
    raw_batched_by_appenders: float

    @property
    def vs_batched(self) -> float:
        return self.ours / self.raw_batched

    @property
    def vs_one_commit(self) -> float:
        return self.ours / self.raw_one_commit


def bench_event(appender: int, index: int) -> OutputAppended:
    run_id = f"bench{appender:03d}"
    return OutputAppended(
        run_id=run_id, session_id=f"{run_id}-s{index % 3}", stream="stdout", text=TEXT
    )


def bench_rows(total: int) -> Iterator[tuple[object, ...]]:
    """The rows `total` appends produce, in the interleaved order of 100 appenders."""
    position = 0
    for index in range(total // APPENDERS):
        for appender in range(APPENDERS):
            event = bench_event(appender, index)
            position += 1
            yield (
                position,
                run_stream(event.run_id),
                index + 1,
                event_type(event),
                SCHEMA_VERSION,
                time.time(),
                encode_event(event),
            )


def _raw_connection(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def raw_batched(path: Path, total: int, batch_rows: int = RAW_BATCH_ROWS) -> float:
    """Events/s of sqlite3 `executemany`, `batch_rows` rows per transaction."""
    db = _raw_connection(path)
    try:
        start = time.perf_counter()
        batch: list[tuple[object, ...]] = []
        for row in bench_rows(total):
            batch.append(row)
            if len(batch) == batch_rows:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(INSERT, batch)
                db.execute("COMMIT")
                batch.clear()
        if batch:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(INSERT, batch)
            db.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        db.close()
    return total / elapsed


def raw_one_commit(path: Path, total: int) -> float:
    """Events/s of sqlite3 with one transaction (one fsync) per event."""
    db = _raw_connection(path)
    try:
        start = time.perf_counter()
        for row in bench_rows(total):
            db.execute("BEGIN IMMEDIATE")
            db.execute(INSERT, row)
            db.execute("COMMIT")
        elapsed = time.perf_counter() - start
    finally:
        db.close()
    return total / elapsed


async def _ours(path: Path, total: int) -> float:
    store = await EventStore.open(path, synchronous="FULL")
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


def ours(path: Path, total: int) -> float:
    """Events/s of `EventStore.append`, single events from `APPENDERS` concurrent tasks."""
    return asyncio.run(_ours(path, total))


def run(quick: bool = False) -> AppendResult:
    """Measure every variant in alternating rounds, each time on a fresh database file."""
    events = 10_000 if quick else 50_000
    one_commit_events = 1_000 if quick else 2_000
    rounds = 2 if quick else 5
    samples: dict[str, list[float]] = {"ours": [], "batched": [], "one": [], "by_appenders": []}
    workdir = Path(tempfile.mkdtemp(prefix="orca-bench-append-"))
    try:
        for _ in range(rounds):
            samples["ours"].append(ours(workdir / "ours.sqlite3", events))
            samples["batched"].append(raw_batched(workdir / "batched.sqlite3", events))
            samples["one"].append(raw_one_commit(workdir / "one.sqlite3", one_commit_events))
            samples["by_appenders"].append(
                raw_batched(workdir / "by-appenders.sqlite3", events, APPENDERS)
            )
            for path in workdir.iterdir():  # the next round starts on fresh files
                path.unlink()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return AppendResult(
        events=events,
        one_commit_events=one_commit_events,
        rounds=rounds,
        ours=statistics.median(samples["ours"]),
        raw_batched=statistics.median(samples["batched"]),
        raw_one_commit=statistics.median(samples["one"]),
        raw_batched_by_appenders=statistics.median(samples["by_appenders"]),
    )


def report(result: AppendResult) -> str:
    """The figures and ratios as printable lines."""

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    return "\n".join(
        [
            f"append throughput ({APPENDERS} appenders, WAL, synchronous=FULL,"
            f" median of {result.rounds} rounds)",
            f"  ours (EventStore.append)     {result.ours:>10,.0f} events/s"
            f"  ({result.events:,} events)",
            f"  raw sqlite3, batched x{RAW_BATCH_ROWS}  {result.raw_batched:>10,.0f} events/s"
            f"  ({result.events:,} events)",
            f"  raw sqlite3, commit/event    {result.raw_one_commit:>10,.0f} events/s"
            f"  ({result.one_commit_events:,} events)",
            f"  raw sqlite3, batched x{APPENDERS}   {result.raw_batched_by_appenders:>10,.0f}"
            f" events/s  (for information: the largest group ours can form here)",
            f"  ours / raw batched           {result.vs_batched:>10.2f}"
            f"  (goal >= {GOAL_VS_BATCHED}: {verdict(result.vs_batched >= GOAL_VS_BATCHED)})",
            f"  ours / one commit per event  {result.vs_one_commit:>10.1f}"
            f"  (goal >= {GOAL_VS_ONE_COMMIT:.0f}: "
            f"{verdict(result.vs_one_commit >= GOAL_VS_ONE_COMMIT)})",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
