"""What a test puts in an ORCA_HOME before orcad starts: its config.toml, or the log an earlier
orcad left."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from orca_client.events import Event, run_stream
from orca_daemon.log.store import EventStore


def write_config(home: Path, text: str) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    (home / "config.toml").write_text(text)


def write_log(home: Path, events: list[Event]) -> None:
    """Append events to a fresh home's log as an earlier orcad would have (one stream each)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)

    async def write() -> None:
        store = await EventStore.open(home / "events.sqlite3")
        writer = asyncio.create_task(store.run_writer())
        for event in events:
            await store.append(run_stream(event.run_id), [event])
        await store.close()
        await writer

    asyncio.run(write())
