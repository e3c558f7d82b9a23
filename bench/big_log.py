"""Write a large log as orcad would have written it, fast: for the restart benchmark.

Each run is a command session that printed lines and ended: `RunCreated`, `RunStatusChanged`
(running), `SessionCreated`, `SessionStarted`, `OutputAppended` x N (about 100 bytes of text
each), `SessionTerminated`, `RunStatusChanged` (completed). Runs interleave in groups of
16 (as concurrent runs do); the last `live` runs have not ended.

The rows go straight into the SQLite file through the log's own schema and event encoding (no
orcad: 1M events take seconds this way, minutes through a daemon).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from orca_client.events import (
    SCHEMA_VERSION,
    Event,
    OutputAppended,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionStarted,
    SessionTerminated,
    encode_event,
    event_type,
    run_stream,
)
from orca_daemon.log.schema import INSERT, connect

LINE = "x" * 90


def _run_events(run_id: str, outputs: int, ends: bool) -> Iterator[Event]:
    session_id = f"{run_id}.1"
    yield RunCreated(run_id=run_id, title=f"bench run {run_id}", cwd="/tmp")
    yield RunStatusChanged(run_id=run_id, status="running")
    yield SessionCreated(
        run_id=run_id, session_id=session_id, agent="command", command=["true"], cwd="/tmp"
    )
    yield SessionStarted(run_id=run_id, session_id=session_id, pid=1)
    for index in range(outputs):
        yield OutputAppended(
            run_id=run_id, session_id=session_id, stream="stdout", text=f"{index} {LINE}\n"
        )
    if ends:
        yield SessionTerminated(
            run_id=run_id,
            session_id=session_id,
            status="completed",
            reason="exited with 0",
            exit_code=0,
            summary="done",
            cause="agent",
        )
        yield RunStatusChanged(run_id=run_id, status="completed")


def write(path: Path, events: int, runs: int, live: int = 0) -> None:
    """Add about `events` events in `runs` new runs to the log at `path` (created if need be);
    the last `live` of them have not ended."""
    asyncio.run(_create(path))
    outputs = max(0, events // runs - 7)
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    position, known = db.execute(
        "SELECT COALESCE(MAX(position), 0), COUNT(DISTINCT stream) FROM events"
    ).fetchone()
    group = 16
    started = time.time()
    for first in range(known, known + runs, group):
        ids = [f"{index:012x}" for index in range(first, min(known + runs, first + group))]
        streams = [
            _run_events(run_id, outputs, ends=int(run_id, 16) < known + runs - live)
            for run_id in ids
        ]
        versions = [0] * len(ids)
        rows = []
        busy = True
        while busy:  # round-robin: the group's events interleave in the log
            busy = False
            for slot, events_of_run in enumerate(streams):
                event = next(events_of_run, None)
                if event is None:
                    continue
                busy = True
                position += 1
                versions[slot] += 1
                rows.append(
                    (
                        position,
                        run_stream(ids[slot]),
                        versions[slot],
                        event_type(event),
                        SCHEMA_VERSION,
                        started + position * 1e-4,
                        encode_event(event),
                    )
                )
        db.executemany(INSERT, rows)
    db.commit()
    db.close()


async def _create(path: Path) -> None:
    writer, reader, _ = await connect(path, "NORMAL")
    reader.close()
    await writer.close()
