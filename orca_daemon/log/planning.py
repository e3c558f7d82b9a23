"""A batch of appends given their places: positions after the head, each stream's next versions,
checked against the versions the appends expect. Shared by both stores' transactions."""

from __future__ import annotations

import time

from orca_client.events import SCHEMA_VERSION, encode_event, event_type
from orca_daemon.log.pending import PendingAppend
from orca_daemon.log.records import ConcurrencyError, StoredEvent

Accepted = list[tuple[PendingAppend, list[StoredEvent]]]
"""The appends of a batch that go into its transaction, each with its events as stored."""
Row = tuple[int, str, int, str, int, float, bytes]
"""An event's row: position, stream, version, type, schema_version, recorded_at, data."""


def plan(
    batch: list[PendingAppend], head: int, versions: dict[str, int]
) -> tuple[Accepted, list[Row], list[StoredEvent]]:
    """The appends accepted (the others fail with `ConcurrencyError`), their rows, and their
    events as stored, positioned after `head`. `versions` holds the current version of every
    stream of the batch (absent: a new stream) and is moved on to the versions planned."""
    accepted: Accepted = []
    rows: list[Row] = []
    stored: list[StoredEvent] = []
    now = time.time()
    position = head
    for pending in batch:
        current = versions.get(pending.stream, 0)
        expected = pending.expected_version
        if expected is not None and expected != current:
            if not pending.future.done():
                pending.future.set_exception(
                    ConcurrencyError(
                        f"stream {pending.stream} is at version {current}, "
                        f"but the append expected version {expected}"
                    )
                )
            continue
        events: list[StoredEvent] = []
        for event in pending.events:
            position += 1
            current += 1
            record = StoredEvent(
                position,
                pending.stream,
                current,
                event_type(event),
                SCHEMA_VERSION,
                now,
                encode_event(event),
            )
            events.append(record)
            rows.append(
                (position, record.stream, current, record.type, SCHEMA_VERSION, now, record.data)
            )
        versions[pending.stream] = current
        accepted.append((pending, events))
        stored.extend(events)
    return accepted, rows, stored
