"""A log written straight into its SQLite file, as orcad would have written it: for tests that
need a long history without making it one run at a time."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import msgspec

from orca_client.events import AnyEvent
from orca_daemon.log.schema import INSERT, connect
from support.timeline import Timeline


def write_log(path: Path, events: list[AnyEvent]) -> None:
    """A new log at `path` holding `events` (positions, versions and times as the log gives)."""

    async def create() -> None:
        writer, reader, _ = await connect(path, "NORMAL")
        reader.close()
        await writer.close()

    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    asyncio.run(create())
    timeline = Timeline()
    timeline.record(*events)
    with sqlite3.connect(path) as db:
        db.executemany(INSERT, [msgspec.structs.astuple(stored) for stored in timeline.events])


def ended_runs(count: int, first: int = 0) -> list[AnyEvent]:
    """`count` runs that each printed a line and completed (ids `%012x` from `first`)."""
    from orca_client.events import (
        OutputAppended,
        RunCreated,
        RunStatusChanged,
        SessionCreated,
        SessionStarted,
        SessionTerminated,
    )

    events: list[AnyEvent] = []
    for index in range(first, first + count):
        run_id, session_id = f"{index:012x}", f"{index:012x}.1"
        events += [
            RunCreated(run_id=run_id, title=f"run {index}", cwd="/home/user/src"),
            RunStatusChanged(run_id=run_id, status="running"),
            SessionCreated(
                run_id=run_id,
                session_id=session_id,
                agent="codex",
                command=["codex", "app-server"],
                cwd="/home/user/src",
                prompt="fix the flaky test in tests/test_x.py",
            ),
            SessionStarted(run_id=run_id, session_id=session_id, pid=1000 + index),
            OutputAppended(
                run_id=run_id, session_id=session_id, stream="stdout", text=f"step {index}\n"
            ),
            SessionTerminated(
                run_id=run_id,
                session_id=session_id,
                status="completed",
                reason="exited with 0",
                exit_code=0,
                summary="fixed",
                cause="agent",
            ),
            RunStatusChanged(run_id=run_id, status="completed"),
        ]
    return events
