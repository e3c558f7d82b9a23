"""Events turned into `StoredEvent`s as the log would store them, and folded into a `State`: for
tests of the projection and of the pure decisions made from it."""

from __future__ import annotations

from orca_client.events import SCHEMA_VERSION, AnyEvent, encode_event, event_type, run_stream
from orca_daemon.log.records import StoredEvent
from orca_daemon.state.projection import State, replay


class Timeline:
    """Turns events into `StoredEvent`s as the log would: positions, stream versions, times."""

    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self._versions: dict[str, int] = {}

    def record(self, *events: AnyEvent) -> list[StoredEvent]:
        stored = []
        for event in events:
            stream = run_stream(event.run_id)
            self._versions[stream] = self._versions.get(stream, 0) + 1
            position = len(self.events) + 1
            record = StoredEvent(
                position,
                stream,
                self._versions[stream],
                event_type(event),
                SCHEMA_VERSION,
                1000.0 + position,
                encode_event(event),
            )
            self.events.append(record)
            stored.append(record)
        return stored

    def state(self) -> State:
        return replay(self.events)
