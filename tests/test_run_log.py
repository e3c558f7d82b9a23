"""The run log's decision locks: one lock per run while anyone holds or waits for it, and none
kept for runs nobody is deciding about (memory does not grow with every run ever made)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

from orca_daemon.log.store import EventStore
from orca_daemon.runs.run_log import RunLog
from orca_daemon.state.projection import State


async def test_a_runs_lock_is_shared_while_held_and_not_kept_after(tmp_path: Path) -> None:
    store = await EventStore.open(tmp_path / "events.sqlite3")
    try:
        runs = RunLog(store, State())
        order: list[str] = []

        async def decide(name: str) -> None:
            async with runs.lock("r1"):
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

        await asyncio.gather(decide("a"), decide("b"))
        assert order == ["a in", "a out", "b in", "b out"]  # one lock: never interleaved
        held = runs.lock("r1")
        async with held:
            assert runs.lock("r1") is held
        gone = weakref.ref(held)
        del held
        for run in range(1000):  # runs nobody decides about any more keep no lock
            async with runs.lock(f"run-{run}"):
                pass
        gc.collect()
        assert gone() is None
    finally:
        await store.close()
