"""Where the projection's snapshot lives: loaded at start-up, saved as the log grows and at stop.

The snapshot is one file beside the log (`projection.snapshot`, 0600 in the private state
directory), replaced atomically (written aside, synced, renamed), so a crash leaves the old one
or the new one, never a torn one. It is a cache: when it is missing, damaged, written by another
version of orcad or taken from another log (its anchor event is not in this one), orcad says so
and replays the whole log, then saves a new one. It holds nothing the log does not.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import anyio

from orca_daemon.log.store import EventStore
from orca_daemon.state.projection import State
from orca_daemon.state.snapshot import (
    Anchor,
    UnusableSnapshot,
    decode,
    encode_body_into,
    header,
)

log = logging.getLogger("orcad")

SNAPSHOT_NAME = "projection.snapshot"


async def load_snapshot(path: Path, store: EventStore) -> State | None:
    """The state saved at `path`, if it can be used with the log in `store`; else None (and a
    warning saying why, unless there is no snapshot at all)."""
    try:
        data = await anyio.to_thread.run_sync(path.read_bytes)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("not using the snapshot %s (%s); replaying the whole log", path, exc)
        return None
    try:
        snapshot = await anyio.to_thread.run_sync(decode, data)
    except UnusableSnapshot as exc:
        log.warning("not using the snapshot %s: %s; replaying the whole log", path, exc)
        return None
    found = await _anchor_at(store, snapshot.state.position)
    if found != snapshot.anchor:
        log.warning(
            "not using the snapshot %s: it was taken at position %d of another log (or of "
            "events this log lost in a crash); replaying the whole log",
            path,
            snapshot.state.position,
        )
        return None
    return snapshot.state


async def _anchor_at(store: EventStore, position: int) -> Anchor | None:
    """The stream and version of the event at `position` (None at 0 or past the head)."""
    if position <= 0:
        return None
    found = await store.read_all(after=position - 1, limit=1)
    if not found or found[0].position != position:
        return None
    return Anchor(found[0].stream, found[0].version)


class SnapshotKeeper:
    """Saves `state` to `path` every `every_events` events, and when asked (at stop).
    `saved_at`: the position of the snapshot the state was loaded from, if it was."""

    def __init__(
        self, path: Path, store: EventStore, state: State, every_events: int, saved_at: int | None
    ) -> None:
        self._path = path
        self._store = store
        self._state = state
        self._every = every_events
        self._saved = saved_at
        self._body = bytearray()
        """The last body encoded, kept: the next is encoded into the same memory."""
        self._saving = anyio.Lock()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Save each time the log has grown by `every_events` since the last save."""
        task_status.started()
        while True:
            since = self._saved or 0
            await self._store.wait_for_commit_after(since + self._every - 1)
            await self.save()

    async def save(self) -> None:
        """Save the state as it is now (a failure is logged: the snapshot is only a cache)."""
        async with self._saving:  # (one at a time: each encodes into the same buffer)
            await self._save()

    async def _save(self) -> None:
        started = time.perf_counter()
        position = self._state.position
        if position == self._saved:
            return
        encode_body_into(self._state, self._body)  # at once: the state moves on at next await
        anchor = await _anchor_at(self._store, position)
        if position and anchor is None:
            log.warning("snapshot not saved: the event at position %d was not found", position)
            self._saved = position
            return
        parts: list[bytes | bytearray] = [header(position, anchor), self._body]
        try:
            await anyio.to_thread.run_sync(_write_atomically, self._path, parts)
        except OSError as exc:
            log.warning("snapshot not saved to %s: %s", self._path, exc)
        else:
            log.info(
                "saved a snapshot at position %d (%d runs, %.1f MB) in %.3f s",
                position,
                len(self._state.runs),
                sum(map(len, parts)) / 1e6,
                time.perf_counter() - started,
            )
        self._saved = position


def _write_atomically(path: Path, parts: list[bytes | bytearray]) -> None:
    """Write `parts`, one after the other, as the whole of `path`: a crash leaves the old file
    or the new one."""
    aside = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            for part in parts:
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(aside, path)
    except BaseException:
        aside.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
