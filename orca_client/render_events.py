"""How the CLI shows events to a person: `orca watch` lines, `orca logs` output and notes, and
what `--wait` says as a run goes on. Events are decoded once per record (`decode`) into the typed
union of `orca_client.events`, and each view matches on their classes."""

from __future__ import annotations

import sys
import time

import msgspec

from orca_client.answering import answer_hint
from orca_client.events import (
    AnyEvent,
    NotificationFailed,
    NotificationSent,
    NotificationTriggered,
    OrchestrationFinished,
    OrchestratorTriggered,
    OutputAppended,
    OutputRead,
    QuestionAnswered,
    QuestionAsked,
    QuestionCleared,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionStarted,
    SessionTerminated,
    TaskStatusChanged,
    VerifyFinished,
    WorktreeCreated,
    WorktreeRemoved,
    decode_event,
    event_type,
)
from orca_client.terminal_text import clip, one_line, visible
from orca_client.views import TERMINAL_STATUSES, Question
from orca_client.wire import EventRecord


class UnknownEvent(msgspec.Struct, frozen=True):
    """An event this client does not know (one a newer orcad records): shown by its type."""

    type: str = "?"
    run_id: str = ""
    session_id: str | None = None


ShownEvent = AnyEvent | UnknownEvent


def decode(record: EventRecord) -> ShownEvent:
    """The event a record holds; one this version of Orca does not know becomes `UnknownEvent`,
    so a client older than its orcad still shows every event."""
    try:
        return decode_event(record.event)
    except msgspec.ValidationError:
        return msgspec.json.decode(record.event, type=UnknownEvent)


def kind_of(event: ShownEvent) -> str:
    """The event's type as it is recorded, e.g. `run_created`."""
    return event.type if isinstance(event, UnknownEvent) else event_type(event)


def _who(event: ShownEvent) -> str:
    session_id: str | None = getattr(event, "session_id", None)
    return session_id or event.run_id


def event_line(record: EventRecord, event: ShownEvent) -> str:
    """One event as a single human-readable line."""
    stamp = time.strftime("%H:%M:%S", time.localtime(record.recorded_at))
    line = f"{record.position:>7} {stamp} {_who(event):<15} {kind_of(event):<18} {_detail(event)}"
    return one_line(line.rstrip())


def _detail(event: ShownEvent) -> str:
    match event:
        case OutputAppended():
            text = event.text.rstrip("\n")
            return f"{event.stream}: " + clip(text.replace("\n", " ⏎ "), 100)
        case RunCreated():
            return f"{event.title!r} in {event.cwd}"
        case SessionCreated():
            return " ".join(event.command)
        case SessionStarted():
            return f"pid {event.pid}"
        case OutputRead():
            return f"{event.stream} read to byte {event.offset}"
        case SessionTerminated() | RunStatusChanged():
            return event.status + (f" ({event.reason})" if event.reason else "")
        case QuestionAsked():
            return ", ".join(question.id for question in event.questions)
        case QuestionAnswered():
            return f"{event.request_id} by {event.answered_by}: " + answers_text(event)
        case QuestionCleared():
            return f"{event.request_id}: {event.reason}"
        case TaskStatusChanged():
            why = f" ({event.reason})" if event.reason else ""
            return f"{event.task_id} {event.status}{why}"
        case VerifyFinished():
            verdict = "passed" if event.ok else f"failed ({event.exit_code})"
            return f"{event.task_id}: {verdict}: {event.command}"
        case OrchestratorTriggered():
            return f"{event.session_id} by {event.triggered_by}"
        case OrchestrationFinished():
            return f"{event.status}: {event.task_file}"
        case WorktreeCreated():
            return f"{event.path} on {event.branch}" if event.branch else event.path
        case WorktreeRemoved():
            return event.path
        case NotificationTriggered():
            return f"{event.kind} (position {event.trigger_position}): {', '.join(event.channels)}"
        case NotificationSent():
            return f"{event.channel} (position {event.trigger_position}, attempt {event.attempts})"
        case NotificationFailed():
            return f"{event.channel} (position {event.trigger_position}): {event.reason}"
    return ""


def answers_text(answered: QuestionAnswered) -> str:
    """A `question_answered` event's answers, `db=postgres, token=(secret)`: secret answers
    are never recorded, so none can be shown."""
    shown = [f"{qid}={'; '.join(answers)}" for qid, answers in answered.answers.items()]
    shown += [f"{qid}=(secret)" for qid in answered.redacted_ids]
    return ", ".join(shown) or "(no answers)"


def record_json(record: EventRecord) -> str:
    return msgspec.json.encode(record).decode()


def write_output(
    record: EventRecord,
    event: ShownEvent,
    *,
    as_json: bool,
    raw: bool = False,
    labels: OutputLabels | None = None,
) -> None:
    """Print an output event's text to stdout or stderr, its control characters made visible
    (`raw`: exactly as the agent wrote it); with `labels`, each line says whose it is."""
    if labels is not None:
        labels.learn(event)
    if not isinstance(event, OutputAppended):
        return
    if as_json:
        sys.stdout.write(record_json(record) + "\n")
        sys.stdout.flush()
        return
    stream = "stderr" if event.stream == "stderr" else "stdout"
    out = sys.stderr if stream == "stderr" else sys.stdout
    text = event.text if raw else visible(event.text)
    if labels is not None:
        text = labels.label(event.session_id, stream, text)
    out.write(text)
    out.flush()


class OutputLabels:
    """Puts the session's name before each line of a fan-out's or plan's output, as in
    `[2 codex] ` or `[build.1 codex] ` (its id after the run's, and its agent); the output of a
    run of one session is left as it is. Learns from the run's events, which come first."""

    def __init__(self) -> None:
        self.several_sessions = False
        self._names: dict[str, str] = {}
        self._unended: dict[str, str] = {}
        """Per output stream: the session whose last line has not ended yet."""

    def learn(self, event: ShownEvent) -> None:
        match event:
            case RunCreated():
                self.several_sessions = event.kind in ("fanout", "plan")
            case SessionCreated():
                short = event.session_id.removeprefix(f"{event.run_id}.")
                self._names[event.session_id] = one_line(f"[{short} {event.agent}] ")

    def label(self, session_id: str, stream: str, text: str) -> str:
        """`text` with the session's label at the start of each of its lines."""
        if not self.several_sessions or not text:
            return text
        name = self._names.get(session_id, one_line(f"[{session_id}] "))
        unended = self._unended.pop(stream, None)
        at_start = unended != session_id
        parts = ["\n"] if unended is not None and at_start else []  # end another's line
        lines = text.split("\n")
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            if line or not last:
                label = (name if line else name.rstrip()) if at_start else ""
                parts += [label, line, "" if last else "\n"]
            at_start = True
        if lines[-1]:
            self._unended[stream] = session_id
        return "".join(parts)


def write_notes(event: ShownEvent, *, raw: bool = False) -> None:
    """On stderr, what orcad itself found that `orca logs` should show: the output of a verify
    command that failed."""
    if not isinstance(event, VerifyFinished) or event.ok:
        return
    code = event.exit_code
    verdict = f"exit status {code}" if code is not None else "it did not finish"
    tail = event.output_tail
    sys.stderr.write(
        one_line(
            f"orca: task {event.task_id} attempt {event.attempt}: verify command "
            f"failed ({verdict}): {event.command}"
        )
        + (":\n" if tail else "\n")
    )
    if tail:
        sys.stderr.write((tail if raw else visible(tail)).rstrip("\n") + "\n")
    sys.stderr.flush()


def ends_run(event: ShownEvent) -> bool:
    """True for the event that moves a run into a terminal status."""
    return isinstance(event, RunStatusChanged) and event.status in TERMINAL_STATUSES


def long_texts(event: ShownEvent) -> list[tuple[str, str]]:
    """The texts of an event that `orca status` shows only the start of (`view_text`), each
    with what it is: an agent's summary, a reason, a question, a prompt."""
    from orca_client.view_text import is_long

    who = _who(event)
    found: list[tuple[str, str | None]] = []
    match event:
        case SessionTerminated():
            found += [(f"{who} reason", event.reason), (f"{who} summary", event.summary)]
        case RunStatusChanged():
            found.append((f"{who} reason", event.reason))
        case TaskStatusChanged():
            what = f"task {event.task_id}"
            found += [(f"{what} reason", event.reason), (f"{what} summary", event.summary)]
        case OrchestrationFinished():
            found.append((f"{who} result", event.summary))
        case RunCreated():
            found.append((f"{who} prompt", event.prompt))
        case QuestionAsked():
            for question in event.questions:
                asked = f"{who} question {question.id}"
                found += [(f"{asked} header", question.header)]
                found += [(f"{asked} question", question.question)]
                for number, option in enumerate(question.options or [], 1):
                    found += [
                        (f"{asked} option {number} label", option.label),
                        (f"{asked} option {number} description", option.description),
                    ]
    return [(what, text) for what, text in found if text is not None and is_long(text)]


def write_long_texts(event: ShownEvent, *, raw: bool = False) -> None:
    """On stderr, the whole of each text of an event that `orca status` shortens (its control
    characters made visible unless `raw`)."""
    for what, text in long_texts(event):
        shown = text if raw else visible(text)
        sys.stderr.write(f"orca: {visible(what)} ({len(text):,} characters):\n{shown}\n")
    sys.stderr.flush()


class RunProgress:
    """What a person waiting on a run is told as its events come: workers and the orchestrator
    starting and ending, tasks starting, done, failed or retried, a verify command failing, a
    question waiting for an answer (and how to give it), an answer given. Pure: events in,
    lines out."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.kind = "single"
        self.pending: dict[str, tuple[str, list[Question]]] = {}
        """Question requests waiting for an answer: their request id and questions, by session
        (a session waits on one request at a time; two sessions may use the same request id)."""
        self._sessions: dict[str, SessionCreated] = {}
        self._workers: dict[str, str] = {}
        """A fan-out's workers: their status, by session id."""
        self._tasks: dict[str, str] = {}

    def lines(self, event: ShownEvent) -> list[str]:
        """What to say about one event of the run (often nothing)."""
        match event:
            case RunCreated():
                self.kind = event.kind
                tasks = event.plan.plan.tasks if event.plan is not None else []
                self._tasks = {task.id: "pending" for task in tasks}
            case SessionCreated():
                self._sessions[event.session_id] = event
                if event.role == "worker" and self.kind == "fanout":
                    self._workers[event.session_id] = "created"
            case SessionStarted():
                return self._session_line(event.session_id, "started")
            case SessionTerminated():
                status = event.status
                if event.session_id in self._workers:
                    self._workers[event.session_id] = status
                reason = f": {event.reason}" if status != "completed" and event.reason else ""
                return self._session_line(event.session_id, status + reason)
            case TaskStatusChanged():
                return [self._task_line(event)]
            case VerifyFinished() if not event.ok:
                code = event.exit_code
                verdict = f"exit status {code}" if code is not None else "it did not finish"
                return [f"task {event.task_id}: verify failed ({verdict}): {event.command}"]
            case QuestionAsked():
                self.pending[event.session_id] = (event.request_id, list(event.questions))
                return [self.waiting_line()]
            case QuestionAnswered() | QuestionCleared():
                waiting = self.pending.get(event.session_id)
                if waiting is None or waiting[0] != event.request_id:
                    return []
                del self.pending[event.session_id]
                if isinstance(event, QuestionCleared):
                    return [f"question withdrawn: {event.reason}"]
                return [f"answered by {event.answered_by}: {answers_text(event)}"]
        return []

    def _session_line(self, session_id: str, what: str) -> list[str]:
        created = self._sessions.get(session_id)
        role = created.role if created is not None else None
        if self.kind == "single" or role == "task":  # the outcome or the task says it
            return []
        short = session_id.removeprefix(f"{self.run_id}.")
        agent = created.agent if created is not None else None
        line = f"{role} {short} ({agent}) {what}"
        if session_id in self._workers and what != "started":
            ended = sum(status in TERMINAL_STATUSES for status in self._workers.values())
            line += f" ({ended}/{len(self._workers)} workers ended)"
        return [line]

    def _task_line(self, event: TaskStatusChanged) -> str:
        task_id, status = event.task_id, event.status
        self._tasks[task_id] = status
        why = f": {event.reason}" if event.reason else ""
        if status == "in_progress":
            return f"task {task_id} started (attempt {event.attempt})"
        if status == "pending":
            again = "runs again" if event.interrupted else "retrying"
            return f"task {task_id} {again}{why}"
        done = sum(s == "done" for s in self._tasks.values())
        counted = f" ({done}/{len(self._tasks)} done)"
        return f"task {task_id} {status}{why if status != 'done' else ''}{counted}"

    def waiting_line(self) -> str:
        """`waiting for an answer: db, token — answer with: …` for the pending requests."""
        several = len(self.pending) > 1
        parts = []
        for session_id, (_, questions) in self.pending.items():
            ids = [one_line(q.id) + (" [secret]" if q.is_secret else "") for q in questions]
            # several sessions wait: each is named (its id after the run's)
            run = self.run_id
            if several:
                run += f" --session {session_id.removeprefix(self.run_id + '.')}"
            parts.append(f"{', '.join(ids)} — answer with: {answer_hint(run, questions)}")
        return "waiting for an answer: " + "; ".join(parts)
