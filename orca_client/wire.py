"""The socket protocol: every request, reply and daemon message as a msgspec Struct (the views of
runs and sessions they carry are in `views.py`), and pure framing, signing and checks.

No I/O here. A message is three ZeroMQ frames, `[PROTOCOL, signature, body]`: `body` is JSON and
`signature` is the hex HMAC-SHA256 of `PROTOCOL + b"\\n" + body` under the token. A request also
carries a fresh nonce and a timestamp, which `replay.ReplayGuard` checks. See docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from typing import Any, Literal

import msgspec

from orca_client.plan import Plan
from orca_client.views import (
    AgentChecks,
    DoctorResult,
    OrchestrationMode,
    RunStatus,
    StatusResult,
    Struct,
)

PROTOCOL = b"orca/1"
PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 1 << 20
"""The largest request body the daemon accepts; bigger ones get a `too_large` error reply."""
MAX_DAEMON_MESSAGE_BYTES = 16 << 20
"""The largest message a client accepts from the daemon (pages are kept far below it)."""
PAGE_BYTES = 512 << 10
"""The daemon stops filling a page of events (a read result or a push) past this many bytes."""


ErrorCode = Literal[
    "bad_request",
    "busy",
    "unauthenticated",
    "replayed",
    "stale",
    "too_large",
    "not_found",
    "conflict",
    "invalid_state",
    "shutting_down",
    "log_unavailable",
    "internal",
]


class EventRecord(Struct, frozen=True):
    """One committed event as a client sees it: its place in the log and its JSON body."""

    position: int
    stream: str
    version: int
    recorded_at: float
    schema_version: int
    event: msgspec.Raw


# --------------------------------------------------------------------------- requests


class Hello(Struct, tag="hello", frozen=True):
    """Ask for the protocol and daemon version; also a cheap liveness check, and the keep-alive
    of this connection's subscriptions. With `subscription`, also whether that subscription of
    this connection is still open (a subscriber that missed its end resubscribes)."""

    subscription: str | None = None


class Status(Struct, tag="status", frozen=True):
    """One run (`run_id`) with its sessions; or every live run and the `ended` most recently
    created runs that have ended (None: all of them), with their sessions. With `tree`, a run
    comes with all its descendant runs (children, their children, ...).

    The reply is one page: while its `next_cursor` is set, ask again with it as `cursor` (and
    the same other fields) for the rest."""

    run_id: str | None = None
    ended: int | None = 50
    tree: bool = False
    cursor: str | None = None
    """Where the page starts: the `next_cursor` of the page before; None: the first page."""
    page_bytes: int | None = None
    """The most bytes of runs and sessions a page may hold (at least one item is always sent);
    None, or more than the daemon allows (4 MiB): the daemon's limit."""


class StartRun(Struct, tag="run", frozen=True):
    """Create a run with one session in `cwd`: either `command` (a command agent) or the
    configured `agent` (by name, e.g. `codex`, `codex-exec`, `claude`) with `prompt`."""

    cwd: str
    command: list[str] = []
    agent: str | None = None
    title: str | None = None
    prompt: str | None = None
    follow_up: str | None = None
    """With `agent`: continue the agent's conversation from this earlier run (same agent)."""
    search_path: str | None = None
    """The client's PATH, where agent CLIs are looked for (orcad's own PATH may be shorter)."""
    codex_path: str | None = None
    """The client's ORCA_CODEX_PATH: the codex binary to use, over every other choice."""
    claude_path: str | None = None
    """The client's ORCA_CLAUDE_PATH: the claude binary to use, over every other choice."""
    repos: list[str] = []
    """Configured repositories (`[[repos]]` names) to run in: one runs directly, several fan
    out one child run each under a parent run."""
    project: str | None = None
    """Without `repos`: the project's repositories, else every enabled one (see `feature`)."""
    feature: str | None = None
    """Without `repos`: the feature's repositories first."""
    mode: Literal["exec", "plan"] | None = None
    """`plan`: resolve repositories from `feature`/`project`/all even if neither is given."""
    orchestration_mode: OrchestrationMode = "parallel"
    continue_on_failure: bool = False
    """Sequential children: go on after a failed child (default: the rest are not started)."""
    max_parallel: int | None = None
    """Parallel children at once (default: `orchestration.max_parallel_children`)."""
    worktree: bool | None = None
    """Run each session in its own git worktree (default: the agent's `worktree` setting)."""


class StartDebug(Struct, tag="debug", frozen=True):
    """A fan-out: one worker session per agent in `agents` (names may repeat) on `prompt`; once
    every worker is terminal, one `orchestrator` session synthesizes their outputs into
    `task_file`."""

    cwd: str
    agents: list[str]
    prompt: str
    orchestrator: str | None = None
    """A configured agent (default: `orchestration.orchestrator`)."""
    task_file: str | None = None
    """Where the synthesis goes (default: synthesis.md in the run's folder)."""
    title: str | None = None
    worktree: bool | None = None
    search_path: str | None = None
    codex_path: str | None = None
    claude_path: str | None = None


class Orchestrate(Struct, tag="orchestrate", frozen=True):
    """Start a fan-out's orchestrator now; live workers are cancelled first. Idempotent: a
    fan-out has one orchestrator, ever."""

    run_id: str
    requested_by: str = "unknown"


class StartPlan(Struct, tag="plan", frozen=True):
    """Run `plan` as a task graph in `cwd`; tasks without an agent use `agent`."""

    cwd: str
    plan: Plan
    agent: str | None = None
    title: str | None = None
    max_parallel: int | None = None
    """Tasks at once (default: `orchestration.max_parallel_tasks`)."""
    cancel_dependants: bool = True
    """When a task fails for good, cancel the tasks that depend on it (else they stay pending
    and the run fails once nothing else can run)."""
    worktree: bool | None = None
    search_path: str | None = None
    codex_path: str | None = None
    claude_path: str | None = None


class RetryTask(Struct, tag="retry_task", frozen=True):
    """Start a new attempt at a task of a live plan run: its current session is cancelled."""

    run_id: str
    task_id: str


class Doctor(Struct, tag="doctor", frozen=True):
    """What a run's live sessions are doing: pid, heartbeat, output tail; stuck ones flagged."""

    run_id: str
    stuck_after: float | None = None
    """Seconds without activity after which a session counts as stuck (default: config)."""


class CheckAgents(Struct, tag="check_agents", frozen=True):
    """Every agent a run may name (built in and configured): the binary a run started with
    this lookup would run, its `--version`, and whether Orca supports it."""

    search_path: str | None = None
    """The client's PATH (as `StartRun.search_path`); None: orcad's own."""
    codex_path: str | None = None
    """The client's ORCA_CODEX_PATH (as `StartRun.codex_path`)."""
    claude_path: str | None = None
    """The client's ORCA_CLAUDE_PATH (as `StartRun.claude_path`)."""
    timeout: float | None = None
    """Seconds one `--version` may take (default 10, at most 30); the agents are checked at
    once, so the reply comes within about this long."""


class Clean(Struct, tag="clean", frozen=True):
    """Remove the git worktrees of an ended run (their branches are kept)."""

    run_id: str


class Cancel(Struct, tag="cancel", frozen=True):
    """End a run: its sessions are stopped and it becomes `cancelled`."""

    run_id: str
    reason: str | None = None
    session_id: str | None = None
    """Cancel only this session (e.g. one worker of a fan-out); the run goes on."""


class Answer(Struct, tag="answer", frozen=True):
    """Answer a run's pending question request.

    Either `text` (only when exactly one question is pending; taken verbatim) or `answers`,
    which must name every pending question id and no other. `session_id` or `request_id` picks
    the request when several sessions of the run are waiting (each session numbers its requests
    on its own, so two sessions may wait with the same request id).
    """

    run_id: str
    text: str | None = None
    answers: dict[str, list[str]] | None = None
    request_id: str | None = None
    answered_by: str = "unknown"
    session_id: str | None = None


class ReadEvents(Struct, tag="read", frozen=True):
    """Committed events with position greater than `after`, at most `limit` of them."""

    after: int = 0
    limit: int = 1000
    run_id: str | None = None


class Subscribe(Struct, tag="subscribe", frozen=True):
    """Every event after `after` (catch-up from the log), then live events as they commit."""

    after: int = 0
    run_id: str | None = None


class Unsubscribe(Struct, tag="unsubscribe", frozen=True):
    subscription: str


class Shutdown(Struct, tag="shutdown", frozen=True):
    """Stop the daemon cleanly, as SIGTERM does: running sessions keep running in their holders
    and the next orcad re-attaches to them; with `cancel_sessions`, they are stopped and end
    failed ("orcad stopped while the session was running")."""

    cancel_sessions: bool = False


class Reload(Struct, tag="reload", frozen=True):
    """Read the config file again and use it from now on, as SIGHUP does. A file with errors
    changes nothing (the error lists them all). Agents, hooks, `[notify]`, `[orchestration]` and
    repositories change at once; `[daemon]` settings only at the next start (`needs_restart`
    names them)."""

    dry_run: bool = False
    """Only compare the file with what orcad uses; change nothing."""


Request = (
    Hello
    | Status
    | StartRun
    | StartDebug
    | Orchestrate
    | StartPlan
    | RetryTask
    | Doctor
    | CheckAgents
    | Clean
    | Cancel
    | Answer
    | ReadEvents
    | Subscribe
    | Unsubscribe
    | Shutdown
    | Reload
)


class RequestEnvelope(Struct, frozen=True):
    """A signed request: `id` pairs it with its reply; `nonce` and `ts` defeat replay."""

    id: str
    nonce: str
    ts: float
    request: Request


# --------------------------------------------------------------------------- results


class HelloResult(Struct, frozen=True):
    protocol: int
    daemon_version: str
    instance: str
    pid: int
    started_at: float
    head_position: int
    log_file: str
    """Where the log is: the SQLite file, or the PostgreSQL database (without its password)."""
    daemon_name: str = ""
    """This daemon's name (`[daemon] name`): which daemon owns a run, with a shared log."""
    subscriptions: int = 0
    """Open subscriptions (a disconnected peer's are closed at once)."""
    subscription_open: bool | None = None
    """Whether the `subscription` asked about is open on this connection (None: not asked)."""
    requests: list[str] = msgspec.field(default_factory=list)
    """Every request type this daemon serves: how a client detects a feature before using it."""


class RunStarted(Struct, frozen=True):
    run_id: str
    session_id: str | None
    """The run's first session; None for a parent run, whose work is in its children."""
    position: int
    session_ids: list[str] = []
    child_run_ids: list[str] = []
    task_file: str | None = None


class OrchestrateResult(Struct, frozen=True):
    run_id: str
    session_id: str
    """The orchestrator session (the existing one when `already_triggered`)."""
    already_triggered: bool
    cancelled_workers: list[str] = []


class TaskRetried(Struct, frozen=True):
    run_id: str
    task_id: str
    attempt: int


class CleanResult(Struct, frozen=True):
    run_id: str
    removed: list[str]
    already_gone: list[str]
    branches_kept: list[str]


class CancelResult(Struct, frozen=True):
    run_id: str
    status: RunStatus
    already_terminal: bool


class AnswerResult(Struct, frozen=True):
    run_id: str
    session_id: str
    request_id: str
    status: RunStatus
    delivered: bool = True
    """False when the answer waits in orcad for the agent to read its input (it gets it then)."""


class ReloadResult(Struct, frozen=True):
    config_file: str
    applied: bool
    """False for a dry run."""
    changed: list[str]
    """What differs from the configuration orcad used before: `agents.NAME`, `hooks.KEY`,
    `notify.KEY`, `orchestration.KEY`, `daemon.KEY`, `repos`."""
    needs_restart: list[str]
    """Of `changed`, what orcad uses only from its next start (the `[daemon]` settings)."""
    agents: list[str]
    """Every agent orcad can run now: built in and configured."""
    error: str | None = None
    """A dry run of a file with errors: every error (a reload would be refused with it)."""


class EventsPage(Struct, frozen=True):
    events: list[EventRecord]
    head_position: int


class Subscribed(Struct, frozen=True):
    subscription: str


class Done(Struct, frozen=True):
    """The result of a request that has nothing to return."""


class ErrorInfo(Struct, frozen=True):
    code: ErrorCode
    message: str


# --------------------------------------------------------------------------- daemon messages


class Reply(Struct, tag="reply", tag_field="kind", frozen=True):
    """The answer to request `id`: `result` (the request's result type) when `ok`, else `error`."""

    id: str
    ok: bool
    result: msgspec.Raw
    error: ErrorInfo | None = None


NO_RESULT = msgspec.Raw(b"null")


def ok_reply(request_id: str, result: msgspec.Struct) -> Reply:
    return Reply(request_id, True, msgspec.Raw(_encoder.encode(result)))


def error_reply(request_id: str, code: ErrorCode, message: str) -> Reply:
    return Reply(request_id, False, NO_RESULT, ErrorInfo(code, message))


class EventsPushed(Struct, tag="events", tag_field="kind", frozen=True):
    """Events for a subscription, in position order, never with a gap."""

    subscription: str
    events: list[EventRecord]


class SubscriptionOverflowed(Struct, tag="overflow", tag_field="kind", frozen=True):
    """The subscriber fell too far behind; the subscription ended. Subscribe again after
    `resume_from` (the last position delivered) to continue without a gap."""

    subscription: str
    resume_from: int


DaemonMessage = Reply | EventsPushed | SubscriptionOverflowed

REQUEST_TYPES: tuple[type[Struct], ...] = (
    Hello,
    Status,
    StartRun,
    StartDebug,
    Orchestrate,
    StartPlan,
    RetryTask,
    Doctor,
    CheckAgents,
    Clean,
    Cancel,
    Answer,
    ReadEvents,
    Subscribe,
    Unsubscribe,
    Shutdown,
    Reload,
)
REQUEST_NAMES: tuple[str, ...] = tuple(str(kind.__struct_config__.tag) for kind in REQUEST_TYPES)
"""The `type` of every request, as `hello` lists them."""
RESULT_TYPES: dict[type[Struct], type[Struct]] = {
    Hello: HelloResult,
    Status: StatusResult,
    StartRun: RunStarted,
    StartDebug: RunStarted,
    Orchestrate: OrchestrateResult,
    StartPlan: RunStarted,
    RetryTask: TaskRetried,
    Doctor: DoctorResult,
    CheckAgents: AgentChecks,
    Clean: CleanResult,
    Cancel: CancelResult,
    Answer: AnswerResult,
    ReadEvents: EventsPage,
    Subscribe: Subscribed,
    Unsubscribe: Done,
    Shutdown: Done,
    Reload: ReloadResult,
}


# --------------------------------------------------------------------------- framing


class WireError(Exception):
    """A message that cannot be accepted; `code` and the text go back in the error reply."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message


_encoder = msgspec.json.Encoder()
_request_decoder = msgspec.json.Decoder(RequestEnvelope)
_daemon_decoder: msgspec.json.Decoder[DaemonMessage] = msgspec.json.Decoder(DaemonMessage)


def sign(key: bytes, body: bytes) -> bytes:
    """The hex HMAC-SHA256 signature of a message body (of `PROTOCOL`, a newline, the body;
    the body is hashed where it lies, never copied: replies run to megabytes)."""
    signature = hmac.new(key, PROTOCOL + b"\n", hashlib.sha256)
    signature.update(body)
    return signature.hexdigest().encode()


def _verified_body(key: bytes, frames: list[bytes], limit: int) -> bytes:
    if len(frames) != 3:
        raise WireError(
            "bad_request", f"expected 3 frames (protocol, signature, body), got {len(frames)}"
        )
    protocol, signature, body = frames
    if protocol != PROTOCOL:
        raise WireError(
            "bad_request",
            f"unsupported protocol {protocol[:32]!r}; this daemon speaks {PROTOCOL!r}",
        )
    if len(body) > limit:
        raise WireError("too_large", f"message of {len(body)} bytes exceeds {limit}")
    if not hmac.compare_digest(sign(key, body), signature):
        raise WireError("unauthenticated", "bad signature: sign requests with the daemon's token")
    return body


def encode_request(
    key: bytes, request: Request, request_id: str | None = None
) -> tuple[str, list[bytes]]:
    """Frame and sign a request; returns its id and the frames to send."""
    request_id = request_id or os.urandom(8).hex()
    envelope = RequestEnvelope(
        id=request_id, nonce=os.urandom(16).hex(), ts=time.time(), request=request
    )
    body = _encoder.encode(envelope)
    return request_id, [PROTOCOL, sign(key, body), body]


def decode_request(key: bytes, frames: list[bytes]) -> RequestEnvelope:
    """Verify and decode a request's frames; raises `WireError` on anything unacceptable."""
    body = _verified_body(key, frames, MAX_MESSAGE_BYTES)
    try:
        return _request_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise WireError("bad_request", f"invalid request: {exc}") from None


class _RequestId(msgspec.Struct):
    """Only the `id` of an envelope; every other field is skipped."""

    id: str = ""


_id_decoder = msgspec.json.Decoder(_RequestId)
_LEADING_ID = re.compile(rb'\s*\{\s*"id"\s*:\s*"([^"\\]{1,128})"')
MAX_REQUEST_ID_CHARS = 128


def request_id_of(body: bytes) -> str:
    """Best-effort id of an undecodable request, so its error reply can still be paired.

    Never raises. An `id` that comes first (as every Orca client encodes it) is read from the
    start of the body whatever its size; otherwise the body is decoded only if it is within
    `MAX_MESSAGE_BYTES`, skipping every other field.
    """
    leading = _LEADING_ID.match(body, 0, 256)
    if leading is not None:
        return leading.group(1).decode("utf-8", "replace")
    if len(body) > MAX_MESSAGE_BYTES:
        return ""
    try:
        found = _id_decoder.decode(body).id
    except (msgspec.DecodeError, RecursionError, MemoryError, ValueError):
        return ""
    return found[:MAX_REQUEST_ID_CHARS]


def check_request_size(frames: list[bytes]) -> None:
    """Refuse, before sending, a request the daemon would refuse as `too_large`."""
    size = len(frames[-1])
    if size > MAX_MESSAGE_BYTES:
        raise WireError(
            "too_large",
            f"the request is {size / (1 << 20):.1f} MiB; orcad accepts requests of at most "
            f"{MAX_MESSAGE_BYTES >> 20} MiB",
        )


def encode_daemon_message(key: bytes, message: DaemonMessage) -> list[bytes]:
    body = _encoder.encode(message)
    return [PROTOCOL, sign(key, body), body]


def decode_daemon_message(key: bytes, frames: list[bytes]) -> DaemonMessage:
    """Verify and decode a message from the daemon (a client checks the daemon holds the token)."""
    body = _verified_body(key, frames, MAX_DAEMON_MESSAGE_BYTES)
    try:
        return _daemon_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise WireError("bad_request", f"invalid message from daemon: {exc}") from None


def decode_result(reply: Reply, result_type: type[Struct]) -> Any:
    """A successful reply's `result` as its result Struct."""
    try:
        return msgspec.json.decode(reply.result, type=result_type)
    except msgspec.DecodeError as exc:
        raise WireError(
            "bad_request", f"invalid {result_type.__name__} from daemon: {exc}"
        ) from None
