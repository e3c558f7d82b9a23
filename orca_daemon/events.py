"""Every event Orca records, as one tagged union of msgspec Structs with past-tense names.

Events are facts: they are appended to the log once and never changed. `SCHEMA_VERSION` is stored
with every event; a change to a field's meaning bumps it. Secrets never appear in an event.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from orca_client.wire import Question, RunStatus, TerminalStatus

SCHEMA_VERSION = 1


class Event(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=True):
    """Base of every event; `run_id` names the run whose stream holds it."""

    run_id: str


class RunCreated(Event, tag="run_created", frozen=True):
    title: str
    cwd: str
    parent_run_id: str | None = None


class SessionCreated(Event, tag="session_created", frozen=True):
    session_id: str
    agent: str
    command: list[str]
    cwd: str
    role: str = "worker"
    prompt: str | None = None
    debug_run_id: str | None = None
    """Set when the session is one of a fan-out's sessions, which share this id."""


class SessionStarted(Event, tag="session_started", frozen=True):
    session_id: str
    pid: int
    process_start_ticks: int | None = None
    """The process's start time from /proc, so a restarted daemon never kills a reused pid."""


class OutputAppended(Event, tag="output_appended", frozen=True):
    session_id: str
    stream: Literal["stdout", "stderr", "orca"]
    """`orca`: orcad's own notes about the session, e.g. a malformed line it ignored."""
    text: str


class QuestionAsked(Event, tag="question_asked", frozen=True):
    session_id: str
    request_id: str
    questions: list[Question]


class QuestionAnswered(Event, tag="question_answered", frozen=True):
    """That a request was answered and by whom; answers to secret questions are left out."""

    session_id: str
    request_id: str
    answered_by: str
    answers: dict[str, list[str]] = {}
    redacted_ids: list[str] = []


class QuestionCleared(Event, tag="question_cleared", frozen=True):
    session_id: str
    request_id: str
    reason: str


class UsageRecorded(Event, tag="usage_recorded", frozen=True):
    """Token usage or cost an agent reported, as the agent reported it."""

    session_id: str
    data: dict[str, Any]


class AgentSessionIdentified(Event, tag="agent_session_identified", frozen=True):
    """The agent's own id for the conversation (Codex thread id, Claude session id)."""

    session_id: str
    agent_session_id: str


class HookStarted(Event, tag="hook_started", frozen=True):
    """A hook was started for the event at `trigger_position` (it never starts twice)."""

    hook: str
    trigger_position: int
    command: list[str]


class HookFinished(Event, tag="hook_finished", frozen=True):
    hook: str
    trigger_position: int
    ok: bool
    reason: str
    exit_code: int | None = None
    output_tail: str = ""


class SessionTerminated(Event, tag="session_terminated", frozen=True):
    session_id: str
    status: TerminalStatus
    reason: str
    exit_code: int | None = None
    summary: str | None = None


class RunStatusChanged(Event, tag="run_status_changed", frozen=True):
    status: RunStatus
    reason: str | None = None


AnyEvent = (
    RunCreated
    | SessionCreated
    | SessionStarted
    | OutputAppended
    | QuestionAsked
    | QuestionAnswered
    | QuestionCleared
    | UsageRecorded
    | AgentSessionIdentified
    | HookStarted
    | HookFinished
    | SessionTerminated
    | RunStatusChanged
)
EVENT_TYPES: tuple[type[Event], ...] = (
    RunCreated,
    SessionCreated,
    SessionStarted,
    OutputAppended,
    QuestionAsked,
    QuestionAnswered,
    QuestionCleared,
    UsageRecorded,
    AgentSessionIdentified,
    HookStarted,
    HookFinished,
    SessionTerminated,
    RunStatusChanged,
)

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[AnyEvent] = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> AnyEvent:
    decoded: AnyEvent = _decoder.decode(data)
    return decoded


def event_type(event: Event) -> str:
    """The tag an event is stored and sent under, e.g. `run_created`."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag


def run_stream(run_id: str) -> str:
    """The stream that holds a run's events and those of its sessions."""
    return f"run-{run_id}"
