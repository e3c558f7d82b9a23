"""A projection saved with its log position, so a restart folds only the log's tail.

`encode(state, anchor)` and `decode(data)` are pure. A snapshot names the event at its position
(`Anchor`: stream and version), so one taken from another log, or from events a crash took back,
is recognised and not used; and it carries a fingerprint of its own layout (`FORMAT` and the
shape of every type it holds), so a snapshot written by another version of orcad is not used
either: orcad replays the whole log instead, and saves a new one.

What a snapshot holds is exactly `State` (packed runs as they are packed), except `State.plans`,
which `decode` derives from each live plan's graph and its tasks' statuses
(`PlanProgress.resume`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec

from orca_client.events import (
    EndCause,
    HookStarted,
    NotificationTriggered,
    RelayedRequest,
    RunCreated,
)
from orca_client.plan import PlanGraph
from orca_client.views import RunInfo, SessionInfo
from orca_daemon.state.projection import PlanProgress, State
from orca_daemon.state.tables import DICTIONARY

FORMAT = 2
"""Bump when `apply` changes what it makes of the same events (a snapshot made by the old
rules would then differ from a replay by the new ones)."""


class Anchor(msgspec.Struct, frozen=True, array_like=True):
    """The event at the snapshot's position: its stream and version in that stream."""

    stream: str
    version: int


class _Body(msgspec.Struct, array_like=True):
    run_ids: list[str]
    runs: list[RunInfo | bytes]
    """Each run as `RunTable` holds it: its view, or packed with its sessions."""
    sessions: list[SessionInfo]
    """The sessions of the runs not packed."""
    packed_sessions: int
    hooks_running: list[HookStarted]
    notifications_due: list[tuple[str, NotificationTriggered, float]]
    run_versions: dict[str, int]
    prompts: dict[str, str]
    task_index: dict[str, dict[str, int]]
    created: list[RunCreated]
    run_answers: dict[str, list[tuple[str, str]]]
    start_ticks: dict[str, int]
    read_offsets: dict[str, dict[str, int]]
    holders: dict[str, tuple[int, int | None]]
    causes: dict[str, EndCause]
    open_lines: dict[str, str]
    relayed: list[RelayedRequest]
    adopted_at: dict[str, int]


class _Header(msgspec.Struct, array_like=True):
    fingerprint: str
    position: int
    anchor: Anchor | None
    body: msgspec.Raw


@dataclass(frozen=True)
class Snapshot:
    """A decoded snapshot: the state and the event it was taken at."""

    state: State
    anchor: Anchor | None


class UnusableSnapshot(Exception):
    """The snapshot was written by another version of orcad, or is damaged; says which."""


def _fingerprint() -> str:
    shape = msgspec.json.encode(msgspec.json.schema(_Body))
    return hashlib.sha256(b"%d:" % FORMAT + shape + DICTIONARY).hexdigest()[:32]


FINGERPRINT = _fingerprint()
_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(_Header)
_body_decoder = msgspec.msgpack.Decoder(_Body)


def encode(state: State, anchor: Anchor | None) -> bytes:
    """`state` as bytes; `anchor` names the event at `state.position` (None at position 0)."""
    return seal(state.position, anchor, encode_body(state))


def encode_body(state: State) -> bytes:
    """What `state` holds, as bytes: `seal` makes them a snapshot once the anchor is known."""
    return _encoder.encode(_body(state))


def encode_body_into(state: State, buffer: bytearray) -> None:
    """`encode_body(state)` into `buffer`, which is reused from one snapshot to the next: a
    new one of several MB each time is fresh pages to fault in, while the loop waits."""
    _encoder.encode_into(_body(state), buffer)


def _body(state: State) -> _Body:
    entries = state.runs.entries()
    return _Body(
        run_ids=list(entries),
        runs=list(entries.values()),
        sessions=list(state.sessions.unpacked()),
        packed_sessions=state.sessions.packed_count,
        hooks_running=list(state.hooks_running.values()),
        notifications_due=[
            (channel, event, at) for (_, channel), (event, at) in state.notifications_due.items()
        ],
        run_versions=state.run_versions,
        prompts=state.prompts,
        task_index=state.task_index,
        created=list(state.created.values()),
        run_answers=state.run_answers,
        start_ticks=state.start_ticks,
        read_offsets=state.read_offsets,
        holders=state.holders,
        causes=state.causes,
        open_lines=state.open_lines,
        relayed=list(state.relayed.values()),
        adopted_at=state.adopted_at,
    )


def seal(position: int, anchor: Anchor | None, body: bytes) -> bytes:
    """The snapshot of a state at `position` whose `encode_body` is `body`."""
    return _encoder.encode(_Header(FINGERPRINT, position, anchor, msgspec.Raw(body)))


def header(position: int, anchor: Anchor | None) -> bytes:
    """What comes before the body in a snapshot: `header(p, a) + body == seal(p, a, body)`
    (written one after the other, the body is not copied)."""
    return _encoder.encode(_Header(FINGERPRINT, position, anchor, _NIL))[:-1]


_NIL = msgspec.Raw(b"\xc0")
"""msgpack's nil, one byte: what stands for the body in `header`."""


def decode(data: bytes) -> Snapshot:
    """The state `encode` saved; `UnusableSnapshot` when it cannot be used, saying why."""
    try:
        header = _header_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise UnusableSnapshot(f"it is damaged ({exc})") from None
    if header.fingerprint != FINGERPRINT:
        raise UnusableSnapshot("another version of orcad wrote it")
    try:
        body = _body_decoder.decode(header.body)
    except msgspec.DecodeError as exc:
        raise UnusableSnapshot(f"it is damaged ({exc})") from None
    if len(body.run_ids) != len(body.runs):
        raise UnusableSnapshot("it is damaged (its runs and their ids differ in number)")
    state = State(
        position=header.position,
        hooks_running={(hook.hook, hook.trigger_position): hook for hook in body.hooks_running},
        notifications_due={
            (event.trigger_position, channel): (event, at)
            for channel, event, at in body.notifications_due
        },
        run_versions=body.run_versions,
        prompts=body.prompts,
        task_index=body.task_index,
        created={created.run_id: created for created in body.created},
        run_answers=body.run_answers,
        start_ticks=body.start_ticks,
        read_offsets=body.read_offsets,
        holders=body.holders,
        causes=body.causes,
        open_lines=body.open_lines,
        relayed={request.request_id: request for request in body.relayed},
        adopted_at=body.adopted_at,
    )
    state.runs.restore(
        dict(zip(body.run_ids, body.runs, strict=True)), body.sessions, body.packed_sessions
    )
    for run_id, created in state.created.items():
        run = state.runs.get(run_id)
        if created.plan is not None and run is not None:
            graph = PlanGraph(created.plan.plan.tasks)
            state.plans[run_id] = PlanProgress.resume(graph, [task.status for task in run.tasks])
    return Snapshot(state, header.anchor)
