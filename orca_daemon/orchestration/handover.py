"""Which daemon reacts to each event of a run, when runs change hands (a shared log).

Hooks and notifications react to a run's events on the daemon that owns the run, each daemon
following the log with its own tracking row (`hooks@NAME`). An event before the run's latest
adoption was its earlier owner's: that one handled it, unless it died first, after its tracking
position. The adopter catches those up when it reaches its `RunAdopted` in the log, skipping
any that the log shows handled already (so a catch-up cut short by a crash is resumed, not
repeated).
"""

from __future__ import annotations

from collections.abc import Callable

from orca_client.events import RunAdopted, run_stream
from orca_daemon.log.records import StoredEvent
from orca_daemon.log.store import EventStore
from orca_daemon.state.projection import State

PAGE_EVENTS = 500


def handled_here(state: State, acts_for: Callable[[str], bool], run_id: str, position: int) -> bool:
    """Whether this daemon reacts to the run's event at `position`: it acts for the run, and
    the event came after the run's latest adoption."""
    return acts_for(run_id) and position > state.adopted_at.get(run_id, 0)


def adopted_here(state: State, acts_for: Callable[[str], bool], stored: StoredEvent) -> bool:
    """Whether `stored` is this daemon's latest adoption of its run (the one to catch up)."""
    run_id = stored.stream.removeprefix("run-")
    return acts_for(run_id) and state.adopted_at.get(run_id) == stored.position


async def missed_before_adoption(
    store: EventStore,
    adopted: StoredEvent,
    tracking: str,
    types: frozenset[str],
) -> list[StoredEvent]:
    """The run's events of `types` that its earlier owner had not reacted to when it lost the
    run: after that owner's tracking position as the adoption recorded it (read then, so an
    earlier owner still running cannot move it past an event it skipped), before `adopted`."""
    event = adopted.decode()
    assert isinstance(event, RunAdopted)
    theirs = event.tracked.get(tracking)
    if theirs is None:
        theirs = await store.read_tracking(f"{tracking}@{event.from_daemon}") or 0
    missed: list[StoredEvent] = []
    after = theirs
    while after < adopted.position:
        page = await store.read_all(after, PAGE_EVENTS, stream=run_stream(event.run_id))
        if not page:
            break
        missed += [e for e in page if e.position < adopted.position and e.type in types]
        after = page[-1].position
    return missed
