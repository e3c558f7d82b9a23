"""What the log hands out and how an append can fail: stored events, append modes, errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec

from orca_client.events import AnyEvent, decode_event
from orca_client.wire import EventRecord

AppendMode = Literal["wait", "drop", "refuse"]
"""What an append does while the log cannot be written: `wait` until it is written (facts that
must be recorded), `drop` (output: raises or fails with `LogUnavailable`, the caller counts what
was lost), `refuse` (a client's request: raises or fails with `LogUnavailable`). The writer
retries the waiting appends (or, with none, probes) until a write succeeds."""


class StoreError(Exception):
    """The log could not take an append (store closed, or a failure it does not retry)."""


class ConcurrencyError(StoreError):
    """An append expected a stream version that another append already took."""


class FencedAppend(StoreError):
    """With a shared log: an append for a run that another daemon owns (or took over); it was
    not written."""


class LogUnavailable(StoreError):
    """The log cannot be written now (disk full, I/O error); `reason` says what and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the log cannot be written: {reason}")
        self.reason = reason


class StoredEvent(msgspec.Struct, frozen=True):
    """An event as the log holds it: its place, its type tag and its JSON body."""

    position: int
    stream: str
    version: int
    type: str
    schema_version: int
    recorded_at: float
    data: bytes

    def size(self) -> int:
        return len(self.data) + len(self.stream) + 64

    def decode(self) -> AnyEvent:
        return decode_event(self.data)

    def to_record(self) -> EventRecord:
        return EventRecord(
            position=self.position,
            stream=self.stream,
            version=self.version,
            recorded_at=self.recorded_at,
            schema_version=self.schema_version,
            event=msgspec.Raw(self.data),
        )


CommitListener = Callable[[list[StoredEvent]], None]


def first_page(events: list[StoredEvent], max_bytes: int) -> list[StoredEvent]:
    """The longest prefix of `events` within `max_bytes` (always at least one event)."""
    total = 0
    for index, event in enumerate(events):
        total += event.size()
        if total > max_bytes and index > 0:
            return events[:index]
    return events
