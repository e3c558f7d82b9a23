"""What orcad shows of its state: runs, sessions, tasks, pending questions and health, as the
projection keeps them and `status` and `doctor` return them; the status Literals. Pure data."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

RunKind = Literal["single", "fanout", "parent", "plan"]
OrchestrationMode = Literal["parallel", "sequential"]
RunStatus = Literal[
    "queued",
    "planning",
    "running",
    "waiting_for_answer",
    "reviewing",
    "completed",
    "failed",
    "cancelled",
]
SessionStatus = Literal[
    "created", "running", "waiting_for_answer", "completed", "failed", "cancelled"
]
TerminalStatus = Literal["completed", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class Struct(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Base for protocol messages and views: unknown fields are an error, not silently dropped."""


class QuestionOption(msgspec.Struct, frozen=True):
    """A suggested answer. Extra fields an agent sends are ignored."""

    label: str
    description: str = ""


class Question(msgspec.Struct, frozen=True, rename="camel"):
    """One question of a request, in the Codex `requestUserInput` shape (extra fields ignored)."""

    id: str
    question: str
    header: str = ""
    options: list[QuestionOption] | None = None
    is_other: bool = False
    is_secret: bool = False


def option_named(question: Question, reply: str) -> str | None:
    """The label of the option `reply` names — the label itself, its number (from 1), or the
    label in another case when only one matches, surrounding spaces ignored — or None."""
    labels = [option.label for option in question.options or []]
    word = reply.strip()
    if word.isdigit() and 1 <= int(word) <= len(labels):
        return labels[int(word) - 1]
    if word in labels:
        return word
    folded = [label for label in labels if label.casefold() == word.casefold()]
    return folded[0] if len(folded) == 1 else None


class PendingQuestion(Struct, frozen=True):
    """A question request an agent asked and nobody has answered or cleared yet."""

    request_id: str
    session_id: str
    questions: list[Question]
    asked_at: float


class WorktreeInfo(Struct, frozen=True):
    """The git worktree a session runs in, on its own branch."""

    repo: str
    path: str
    branch: str
    removed: bool = False


class TaskInfo(Struct, frozen=True):
    """The projected state of one task of a plan run."""

    task_id: str
    title: str
    status: str
    """`pending | in_progress | done | failed | cancelled`."""
    depends_on: list[str] = []
    attempt: int = 0
    """Attempts started so far."""
    interrupted: int = 0
    """Attempts that orcad stopping or restarting ended: they do not count as failures."""
    max_retries: int = 0
    session_id: str | None = None
    """The session of the latest attempt."""
    reason: str | None = None
    summary: str | None = None


class SessionInfo(Struct, frozen=True):
    """The projected state of one session."""

    session_id: str
    run_id: str
    agent: str
    role: str
    status: SessionStatus
    command: list[str]
    cwd: str
    created_at: float
    debug_run_id: str | None = None
    pid: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    summary: str | None = None
    output_events: int = 0
    pending: PendingQuestion | None = None
    agent_session_id: str | None = None
    """The agent's own id for the conversation (Codex thread, Claude session), for resuming."""
    usage: dict[str, Any] | None = None
    """The latest token usage or cost the agent reported, as it reported it."""
    input_tokens: int | None = None
    """Tokens the agent's model read in this session so far (cached ones included), where its
    protocol says (Codex, Claude); likewise `output_tokens` and `cost_usd`."""
    output_tokens: int | None = None
    cost_usd: float | None = None
    task_id: str | None = None
    """In a plan run: the task this session is an attempt at."""
    attempt: int = 1
    in_worktree: bool = False
    """The session runs in a git worktree of its own (`worktree` once it is created)."""
    worktree: WorktreeInfo | None = None
    last_activity_at: float | None = None
    """When the session last did anything recorded (started, wrote output, asked, ...)."""
    last_output_line: str | None = None
    """The last non-blank line the agent wrote (stdout or stderr; after its last carriage
    return), as written: at most 200 characters, its end kept, cut ones starting with `…`."""
    detached: str | None = None
    """Set while the session's holder is alive but this orcad is not attached to it (why): its
    agent runs on, its output waits in the holder's spool; orcad retries at each heartbeat."""


class RunInfo(Struct, frozen=True):
    """The projected state of one run; its sessions are listed by id."""

    run_id: str
    title: str
    status: RunStatus
    cwd: str
    created_at: float
    updated_at: float
    session_ids: list[str] = []
    reason: str | None = None
    parent_run_id: str | None = None
    paused_status: RunStatus | None = None
    """While `waiting_for_answer`: the status the run returns to once answered."""
    kind: RunKind = "single"
    """`single`: one session. `fanout`: workers on one prompt, then one orchestrator.
    `parent`: one child run per repository. `plan`: a task graph."""
    prompt: str | None = None
    debug_run_id: str | None = None
    """A fan-out's id, shared by its worker sessions and its orchestrator."""
    orchestrator_session_id: str | None = None
    task_file: str | None = None
    """A fan-out's synthesis file, which its orchestrator writes."""
    result: str | None = None
    """A fan-out's outcome: its orchestrator's summary."""
    orchestration_mode: OrchestrationMode | None = None
    """A parent run's: children all at once (up to a limit) or one after another."""
    child_run_ids: list[str] = []
    repo: str | None = None
    """The configured repository the run works in, by name."""
    input_tokens: int | None = None
    """Summed over the run's sessions that report it (not over child runs); likewise
    `output_tokens` and `cost_usd`."""
    output_tokens: int | None = None
    cost_usd: float | None = None
    tasks: list[TaskInfo] = []
    owner: str | None = None
    """With a log several daemons share: the daemon that acts for the run (its sessions run
    there; answers and cancels go there). None: a daemon's own log."""


class StatusResult(Struct, frozen=True):
    """One page of a status. A run whose tasks or sessions do not all fit comes again at the
    start of the next page with the rest: its `tasks` and `session_ids` hold what each page
    carries, so a client appends them to the run it has (`sessions` holds the page's sessions,
    in the order of the `session_ids` on it)."""

    runs: list[RunInfo]
    sessions: list[SessionInfo]
    head_position: int
    ended_not_shown: int = 0
    """Ended runs left out by `ended`."""
    next_cursor: str | None = None
    """Set when more follows: send the same `Status` again with this as its `cursor`."""


class SessionHealth(Struct, frozen=True):
    """One live session as `orca doctor` shows it."""

    session_id: str
    task_id: str | None
    status: str
    pid: int | None
    alive: bool
    last_heartbeat: float | None
    """When orcad last saw the process alive."""
    last_activity_at: float | None
    stuck: bool
    why: str
    output_tail: str
    retry_command: str | None


class DoctorResult(Struct, frozen=True):
    run_id: str
    status: RunStatus
    sessions: list[SessionHealth]
    stuck_after: float


AgentSupport = Literal["supported", "too_old", "not_found", "not_runnable", "unknown_version"]


class AgentCheck(Struct, frozen=True):
    """One agent as `orca doctor --agents` shows it."""

    name: str
    kind: str
    """Its adapter: `codex`, `codex-exec`, `claude` or `command`."""
    status: AgentSupport
    """`supported`; `too_old` (older than `minimum`); `not_found`; `not_runnable` (its
    `--version` failed or timed out); `unknown_version` (it printed no x.y.z version)."""
    usable: bool
    """Whether a run of this agent can start with this binary (`status` is `supported`)."""
    detail: str
    """What was found, or what is wrong and what to do, in a sentence."""
    binary: str | None = None
    """The program orcad would run (None: none found)."""
    version: str | None = None
    """The x.y.z version its `--version` printed."""
    version_text: str | None = None
    """The first line its `--version` printed (or why there is none)."""
    minimum: str | None = None
    """The oldest version Orca supports for this kind (None: no minimum)."""


class AgentChecks(Struct, frozen=True):
    agents: list[AgentCheck]
