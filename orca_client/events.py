"""Every event Orca records, as one tagged union of msgspec Structs with past-tense names.

Events are facts: they are appended to the log once and never changed. `SCHEMA_VERSION` is stored
with every event; a change to a field's meaning bumps it. Secrets never appear in an event.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from orca_client.plan import Plan
from orca_client.views import OrchestrationMode, Question, RunKind, RunStatus, TerminalStatus

SCHEMA_VERSION = 1


class Event(msgspec.Struct, frozen=True, tag_field="type", forbid_unknown_fields=True):
    """Base of every event; `run_id` names the run whose stream holds it."""

    run_id: str


class AgentLookup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the client that started a run finds agent CLIs (its PATH, ORCA_CODEX_PATH,
    ORCA_CLAUDE_PATH): kept so that the sessions orcad starts later, after a restart too, find
    the same binaries."""

    search_path: str | None = None
    codex_path: str | None = None
    claude_path: str | None = None


class FanOutSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a fan-out ends: which agent synthesizes, where, and how much output it reads."""

    orchestrator: str
    task_file: str
    per_worker_chars: int
    total_chars: int
    worktree: bool = False


class ChildTarget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One child run a parent run will start: a configured repository."""

    repo: str
    path: str


class ChildrenSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A parent run's children and how to run them. Each child runs `agent` on the parent's
    prompt, or `command`, in its repository."""

    mode: OrchestrationMode
    targets: list[ChildTarget]
    max_parallel: int
    continue_on_failure: bool = False
    agent: str | None = None
    command: list[str] = []
    worktree: bool = False


class PlanSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A plan run's task graph and how to run it."""

    plan: Plan
    max_parallel: int
    cancel_dependants: bool = True
    agent: str | None = None
    """The agent of tasks that name none."""
    worktree: bool | None = None
    """Each task in a worktree of its own; None: as each task's agent is configured."""
    verify_timeout_seconds: float = 600.0


class RunCreated(Event, tag="run_created", frozen=True):
    title: str
    cwd: str
    parent_run_id: str | None = None
    kind: RunKind = "single"
    prompt: str | None = None
    repo: str | None = None
    fanout: FanOutSpec | None = None
    children: ChildrenSpec | None = None
    plan: PlanSpec | None = None
    agent_lookup: AgentLookup | None = None
    """A fan-out's, parent's or plan's: where its later sessions' agent CLIs are found."""
    daemon: str | None = None
    """With a log several daemons share: the daemon that created the run, which acts for it
    (its sessions run there) until another adopts it (`RunAdopted`). None: a daemon's own log."""


class SessionCreated(Event, tag="session_created", frozen=True):
    session_id: str
    agent: str
    command: list[str]
    cwd: str
    role: str = "worker"
    prompt: str | None = None
    debug_run_id: str | None = None
    """Set when the session is one of a fan-out's sessions, which share this id."""
    task_id: str | None = None
    attempt: int = 1
    worktree: bool = False
    """Run in a git worktree of its own, created before the agent starts."""


class SessionStarted(Event, tag="session_started", frozen=True):
    session_id: str
    pid: int
    process_start_ticks: int | None = None
    """The process's start time from /proc, so a restarted daemon never kills a reused pid."""
    holder_pid: int | None = None
    """The session's holder: the process that owns the agent's pipes and outlives orcad."""
    holder_start_ticks: int | None = None
    command: list[str] | None = None
    """This process's command line, when it is not the session's recorded one (a conversation
    continued after a reboot, e.g. `claude --resume ID`): the session's command from now on."""


class OutputAppended(Event, tag="output_appended", frozen=True):
    session_id: str
    stream: Literal["stdout", "stderr", "orca"]
    """`orca`: orcad's own notes about the session, e.g. a malformed line it ignored."""
    text: str
    offset: int | None = None
    """How far into the stream's spool (bytes the agent wrote) this chunk's text reaches; an
    orcad that re-attaches to the session reads on from the last one recorded."""


class OutputRead(Event, tag="output_read", frozen=True):
    """orcad has handled what the agent wrote on `stream` up to `offset` (recorded with what
    that output caused, or before orcad answers a line of it): a re-attach reads on from there."""

    session_id: str
    stream: Literal["stdout", "stderr"]
    offset: int


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
    """Token usage or cost an agent reported, as the agent reported it, with the session's
    totals so far where the agent's protocol says them."""

    session_id: str
    data: dict[str, Any]
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


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


NotificationKind = Literal["waiting", "completed", "failed"]


class NotificationTriggered(Event, tag="notification_triggered", frozen=True):
    """A notification is due for the event at `trigger_position` (recorded once, with how far
    the notifier has read the log): what it says, and the channels it goes to. Each channel's
    delivery ends with `NotificationSent` or `NotificationFailed`; one with neither when orcad
    starts is delivered again, with the same idempotency key (`notification_key`)."""

    trigger_position: int
    kind: NotificationKind
    title: str
    """The run's title."""
    summary: str
    """One line: the run and what happened."""
    text: str
    """The body: the title, what the run asks (and its options) or how it ended, and the
    command to answer. Never an answer."""
    channels: list[str]
    answer_command: str | None = None
    request_id: str | None = None


class NotificationSent(Event, tag="notification_sent", frozen=True):
    """A channel took the notification (a 2xx reply; notify-send exited 0)."""

    trigger_position: int
    channel: str
    attempts: int


class NotificationFailed(Event, tag="notification_failed", frozen=True):
    """A channel's delivery was given up; `reason` is the last attempt's error."""

    trigger_position: int
    channel: str
    attempts: int
    reason: str


def notification_key(trigger_position: int, channel: str) -> str:
    """The idempotency key of one notification on one channel: the same on every delivery of
    it (a restart may deliver it again), unique within one Orca home."""
    return f"orca-{trigger_position}-{channel}"


EndCause = Literal[
    "agent", "cancelled", "spawn_failed", "orcad_stopped", "orcad_restarted", "internal"
]
"""Why a session ended, for programs: its agent ended it (exited, or reported its result), it
was cancelled, it could not start, orcad stopped or restarted under it, or orcad failed."""

STOPPED_REASON = "orcad stopped while the session was running"
RESTARTED_REASON = "orcad restarted while the session was running"
"""Written by orcads before session holders (issue 12); now `LOST_REASON` (or re-attached)."""
LOST_REASON = (
    "its agent stopped while orcad was away: its holder is gone (the machine restarted, or "
    "the holder was killed)"
)


class SessionTerminated(Event, tag="session_terminated", frozen=True):
    session_id: str
    status: TerminalStatus
    reason: str
    """Why, for people."""
    exit_code: int | None = None
    summary: str | None = None
    cause: EndCause | None = None
    """Why, for programs (absent in logs written before it existed: see `cause_of`)."""


def cause_of(ended: SessionTerminated) -> EndCause:
    """A session end's cause; for an end recorded before `cause` existed, read from its
    status and reason (the one place that reads display text for control flow)."""
    if ended.cause is not None:
        return ended.cause
    if ended.status == "cancelled":
        return "cancelled"
    if ended.reason == STOPPED_REASON:
        return "orcad_stopped"
    if ended.reason == RESTARTED_REASON:
        return "orcad_restarted"
    if ended.reason.startswith("could not start"):
        return "spawn_failed"
    if ended.reason == "internal error in orcad":
        return "internal"
    return "agent"


class RunStatusChanged(Event, tag="run_status_changed", frozen=True):
    status: RunStatus
    reason: str | None = None


class RunAdopted(Event, tag="run_adopted", frozen=True):
    """The daemon that acted for the run stopped renewing its lease: `daemon` took the run
    over and acts for it from here on. `generation` is the fencing token its appends for the
    run carry; the one that was adopted can no longer append for it."""

    daemon: str
    from_daemon: str
    generation: int
    tracked: dict[str, int] = {}
    """How far the earlier owner's reactions (`hooks`, `notifications`) had handled the log
    when the run was adopted: the adopter handles the run's events after that."""


class CancelRequested(Event, tag="cancel_requested", frozen=True):
    """With a log several daemons share: a client asked `from_daemon`, which does not own the
    run, to cancel it (or one of its sessions). The owner carries it out and records
    `RelayedRequestSettled` with the same `request_id`."""

    request_id: str
    from_daemon: str
    reason: str | None = None
    session_id: str | None = None


class AnswerRequested(Event, tag="answer_requested", frozen=True):
    """With a log several daemons share: a client gave `from_daemon`, which does not own the
    run, the answer to a pending question request; the owner hands it to the agent and records
    `RelayedRequestSettled`. Never an answer to a secret question: those are refused, not
    relayed (they never reach the log)."""

    request_id: str
    from_daemon: str
    session_id: str
    question_request_id: str
    answers: dict[str, list[str]]
    answered_by: str


class RelayedRequestSettled(Event, tag="relayed_request_settled", frozen=True):
    """The owner of the run carried out (or refused) a relayed request: `result_json` is the
    reply's result (JSON), or `error_code` and `message` say why not."""

    request_id: str
    daemon: str
    result_json: str | None = None
    error_code: str | None = None
    message: str | None = None


RelayedRequest = CancelRequested | AnswerRequested


class OrchestratorTriggered(Event, tag="orchestrator_triggered", frozen=True):
    """A fan-out's one orchestrator was decided on. Appended at an expected stream version, so
    of two triggers that race, one loses; the orchestrator's `SessionCreated` follows it in the
    same transaction."""

    debug_run_id: str
    session_id: str
    triggered_by: str
    worker_statuses: dict[str, str]
    truncated: bool


class OrchestrationFinished(Event, tag="orchestration_finished", frozen=True):
    """A fan-out's orchestrator ended; its synthesis is in `task_file` when it completed."""

    debug_run_id: str
    session_id: str
    status: TerminalStatus
    task_file: str
    summary: str | None = None


class TaskStatusChanged(Event, tag="task_status_changed", frozen=True):
    """A plan task moved: `in_progress` starts attempt `attempt` in `session_id`."""

    task_id: str
    status: Literal["pending", "in_progress", "done", "failed", "cancelled"]
    reason: str | None = None
    attempt: int = 0
    session_id: str | None = None
    summary: str | None = None
    interrupted: bool = False
    """`pending` again because orcad stopped or restarted under the attempt: not counted
    against the task's `max_retries`."""


class VerifyFinished(Event, tag="verify_finished", frozen=True):
    """One of a task's verify commands ran (orcad runs them after the agent reports done)."""

    task_id: str
    attempt: int
    command: str
    ok: bool
    exit_code: int | None
    output_tail: str = ""


class WorktreeCreated(Event, tag="worktree_created", frozen=True):
    session_id: str
    repo: str
    path: str
    branch: str


class WorktreeRemoved(Event, tag="worktree_removed", frozen=True):
    session_id: str
    path: str


AnyEvent = (
    RunCreated
    | SessionCreated
    | SessionStarted
    | OutputAppended
    | OutputRead
    | QuestionAsked
    | QuestionAnswered
    | QuestionCleared
    | UsageRecorded
    | AgentSessionIdentified
    | HookStarted
    | HookFinished
    | NotificationTriggered
    | NotificationSent
    | NotificationFailed
    | SessionTerminated
    | RunStatusChanged
    | RunAdopted
    | CancelRequested
    | AnswerRequested
    | RelayedRequestSettled
    | OrchestratorTriggered
    | OrchestrationFinished
    | TaskStatusChanged
    | VerifyFinished
    | WorktreeCreated
    | WorktreeRemoved
)
EVENT_TYPES: tuple[type[Event], ...] = (
    RunCreated,
    SessionCreated,
    SessionStarted,
    OutputAppended,
    OutputRead,
    QuestionAsked,
    QuestionAnswered,
    QuestionCleared,
    UsageRecorded,
    AgentSessionIdentified,
    HookStarted,
    HookFinished,
    NotificationTriggered,
    NotificationSent,
    NotificationFailed,
    SessionTerminated,
    RunStatusChanged,
    RunAdopted,
    CancelRequested,
    AnswerRequested,
    RelayedRequestSettled,
    OrchestratorTriggered,
    OrchestrationFinished,
    TaskStatusChanged,
    VerifyFinished,
    WorktreeCreated,
    WorktreeRemoved,
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
