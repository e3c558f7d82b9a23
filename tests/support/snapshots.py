"""The projection's snapshot checked against a replay of the log it was taken from."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import psycopg

from orca_daemon.log.records import StoredEvent
from orca_daemon.log.schema import COLUMNS, row_to_event
from orca_daemon.state.projection import State, apply
from orca_daemon.state.snapshot import decode, encode_body
from orca_daemon.state.snapshot_keeper import SNAPSHOT_NAME


def read_log(source: Path | str, upto: int | None = None) -> list[StoredEvent]:
    """The events of a log (up to position `upto`), in position order: of the SQLite file
    `source`, through a read-only connection, or of the PostgreSQL database at the URL
    `source`."""
    query = f"SELECT {COLUMNS} FROM events WHERE position <= ? ORDER BY position"
    bound = upto if upto is not None else 1 << 62
    if isinstance(source, str):
        with psycopg.connect(source) as pg:
            rows = pg.execute(query.replace("?", "%s").encode(), (bound,)).fetchall()
    else:
        db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            rows = db.execute(query, (bound,)).fetchall()
        finally:
            db.close()
    return [row_to_event(row) for row in rows]


def fold(events: list[StoredEvent], state: State | None = None) -> State:
    """`events` folded as orcad folds them (an unreadable one is skipped)."""
    state = State() if state is None else state
    for stored in events:
        try:
            apply(state, stored)
        except msgspec.ValidationError:
            state.position = stored.position
    return state


def same_state(left: State, right: State) -> bool:
    """The two states hold the same: what a snapshot holds, and each live plan's progress."""
    if left.position != right.position or encode_body(left) != encode_body(right):
        return False
    if left.plans.keys() != right.plans.keys():
        return False
    for run_id, plan in left.plans.items():
        other = right.plans[run_id]
        if (plan.waiting, plan.ready, plan.in_progress) != (
            other.waiting,
            other.ready,
            other.in_progress,
        ) or plan.first_ready(len(plan.graph)) != other.first_ready(len(other.graph)):
            return False
    return True


def assert_snapshot_matches_log(state_dir: Path, log_file: Path | str, output: str = "") -> None:
    """The snapshot orcad left in `state_dir` is the projection of the whole log (`output`,
    orcad's, is shown if it is not)."""
    snapshot = decode((state_dir / SNAPSHOT_NAME).read_bytes())
    replayed = fold(read_log(log_file))
    assert snapshot.state.position == replayed.position, (
        f"the snapshot is at {snapshot.state.position}, the log's head at {replayed.position}"
        f"; orcad said:\n{output[-4000:]}"
    )
    assert same_state(snapshot.state, replayed), (
        f"the snapshot differs from a replay of the log; orcad said:\n{output[-4000:]}"
    )
