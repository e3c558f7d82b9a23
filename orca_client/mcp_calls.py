"""What `orca mcp`'s tools do: blocking calls on a `Client`, each returning plain JSON data that
a calling model reads. No MCP here: `mcp_server` puts these behind the protocol."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import msgspec

from orca_client.client import Client, fetch_status
from orca_client.events import OutputAppended, QuestionAsked, RunStatusChanged
from orca_client.plan import PlanError, parse_plan
from orca_client.render_events import decode
from orca_client.views import TERMINAL_STATUSES, PendingQuestion, RunInfo, SessionInfo
from orca_client.wire import (
    Answer,
    AnswerResult,
    Cancel,
    CancelResult,
    ReadEvents,
    RunStarted,
    StartDebug,
    StartPlan,
    StartRun,
    Status,
)

if TYPE_CHECKING:
    from collections.abc import Generator

    from orca_client.cli.common import AgentLookup
    from orca_client.wire import EventRecord, EventsPage

MAX_WAIT_SECONDS = 50.0
"""The longest one `orca_wait` call waits: under what MCP clients allow one tool call (a call of
50 s passes with Codex's defaults)."""
LOG_CHARS = 20_000
"""How much output one `orca_logs` call returns by default."""
MAX_LOG_CHARS = 100_000
SYNTHESIS_CHARS = 100_000
"""How much of a fan-out's task file a run's view carries."""
READ_PAGE_EVENTS = 1000

Json = dict[str, Any]


class ToolRefused(Exception):
    """A call a tool will not make as asked; the message says why and what to do instead."""


# --------------------------------------------------------------------------- starting work


def start_run(
    client: Client,
    lookup: AgentLookup,
    *,
    prompt: str,
    agent: str,
    cwd: str,
    title: str | None,
    follow_up: str | None,
    worktree: bool | None,
) -> Json:
    started: RunStarted = client.request(
        StartRun(
            cwd=_absolute(cwd),
            agent=agent,
            prompt=prompt,
            title=title,
            follow_up=follow_up,
            worktree=worktree,
            **lookup,
        )
    )
    return _started(started, "a run")


def start_fanout(
    client: Client,
    lookup: AgentLookup,
    *,
    prompt: str,
    agents: list[str],
    cwd: str,
    orchestrator: str | None,
    title: str | None,
    task_file: str | None,
    worktree: bool | None,
) -> Json:
    if not agents or not all(name.strip() for name in agents):
        raise ToolRefused("agents: give one or more agent names (they may repeat)")
    started: RunStarted = client.request(
        StartDebug(
            cwd=_absolute(cwd),
            agents=[name.strip() for name in agents],
            prompt=prompt,
            orchestrator=orchestrator,
            task_file=None if task_file is None else _absolute(task_file, "task_file"),
            title=title,
            worktree=worktree,
            **lookup,
        )
    )
    return _started(started, f"a fan-out of {len(started.session_ids)} workers")


def start_plan(
    client: Client,
    lookup: AgentLookup,
    *,
    plan: Json,
    cwd: str,
    agent: str | None,
    title: str | None,
    max_parallel: int | None,
    keep_dependants: bool,
    worktree: bool | None,
) -> Json:
    try:
        parsed = parse_plan(msgspec.json.encode(plan))
    except PlanError as exc:
        raise ToolRefused("the plan cannot run: " + "; ".join(exc.errors)) from None
    started: RunStarted = client.request(
        StartPlan(
            cwd=_absolute(cwd),
            plan=parsed,
            agent=agent,
            title=title,
            max_parallel=max_parallel,
            cancel_dependants=not keep_dependants,
            worktree=worktree,
            **lookup,
        )
    )
    return _started(started, f"a plan of {len(parsed.tasks)} tasks")


def _started(started: RunStarted, what: str) -> Json:
    result: Json = {
        "run_id": started.run_id,
        "started": what,
        "next": f"call orca_wait with run_id {started.run_id!r} until it returns terminal: true",
    }
    if started.session_ids:
        result["session_ids"] = started.session_ids
    if started.child_run_ids:
        result["child_run_ids"] = started.child_run_ids
    if started.task_file:
        result["task_file"] = started.task_file
    return result


def _absolute(path: str, what: str = "cwd") -> str:
    if not path.startswith("/"):
        raise ToolRefused(f"{what} must be an absolute path, not {path!r}")
    return path


# --------------------------------------------------------------------------- reading


def status(client: Client, run_id: str | None, ended: int) -> Json:
    """One run in full, or every live run and the `ended` newest ended ones in short."""
    if run_id is not None:
        one = fetch_status(client, Status(run_id=run_id))
        return {"run": run_view(one.runs[0], one.sessions)}
    every = fetch_status(client, Status(ended=max(0, ended)))
    by_id = {session.session_id: session for session in every.sessions}
    runs = []
    for run in every.runs:
        short: Json = {
            "run_id": run.run_id,
            "title": run.title,
            "status": run.status,
            "kind": run.kind,
            "updated_at": _when(run.updated_at),
        }
        questions = [q.question for p in _pending(run, by_id) for q in p.questions]
        if questions:
            short["asks"] = questions
        runs.append(short)
    return {"runs": runs, "ended_not_shown": every.ended_not_shown}


def wait(client: Client, run_id: str, timeout: float, after: int | None) -> Json:
    """Follow the run's events after log position `after` until it ends, one of its sessions
    asks a question, or `timeout` (at most MAX_WAIT_SECONDS) has passed; then its status and
    the position it reflects (the next call's `after`). Without `after`, a question already
    pending returns at once (the caller may not have seen it yet)."""
    started = time.monotonic()
    deadline = started + min(max(timeout, 0.0), MAX_WAIT_SECONDS)
    first = fetch_status(client, Status(run_id=run_id))
    run = first.runs[0]
    shown_pending = after is None and _pending(run, {s.session_id: s for s in first.sessions})
    if run.status not in TERMINAL_STATUSES and not shown_pending:
        start = first.head_position if after is None else after
        events = client.follow(after=start, run_id=run.run_id, until=deadline)
        with contextlib.closing(cast("Generator[EventRecord]", events)):  # ends the subscription
            for record in events:
                event = decode(record)
                if isinstance(event, QuestionAsked) or _ends(event):
                    break
                if time.monotonic() >= deadline:
                    break
    now = fetch_status(client, Status(run_id=run.run_id))
    view = run_view(now.runs[0], now.sessions)
    position = now.head_position
    if view["terminal"]:
        next_step = "the run has ended: see run.status, run.result and (a fan-out) run.synthesis"
    elif "pending" in view:
        next_step = (
            "the run waits for an answer: give it with orca_answer (a secret question: ask the "
            f"user to answer it with `orca answer {run.run_id}`), then call orca_wait again "
            f"with after={position}"
        )
    else:
        next_step = f"not ended yet: call orca_wait again with after={position}"
    return {
        "run": view,
        "terminal": view["terminal"],
        "position": position,
        "waited_seconds": round(time.monotonic() - started, 1),
        "next": next_step,
    }


def _ends(event: object) -> bool:
    return isinstance(event, RunStatusChanged) and event.status in TERMINAL_STATUSES


def logs(client: Client, run_id: str, after: int, max_chars: int, tail: bool) -> Json:
    """The run's output after log position `after`, in chunks by session and stream: from the
    start, at most about `max_chars` (`next_after` continues), or with `tail` its last
    `max_chars`."""
    budget = min(max(max_chars, 1), MAX_LOG_CHARS)
    found = fetch_status(client, Status(run_id=run_id))
    run = found.runs[0]
    pieces: deque[OutputAppended] = deque()
    size = 0
    position = after
    cut = dropped = False
    for record in _records(client, run.run_id, after):
        event = decode(record)
        if isinstance(event, OutputAppended):
            if not tail and size and size + len(event.text) > budget:
                cut = True
                break
            pieces.append(event)
            size += len(event.text)
            while tail and size - len(pieces[0].text) >= budget:
                size -= len(pieces.popleft().text)
                dropped = True
        position = record.position
    chunks = _chunks(pieces, keep=budget if tail else None)
    result: Json = {
        "run_id": run.run_id,
        "run_status": run.status,
        "chunks": chunks,
        "next_after": position,
        "more": cut,
    }
    if tail:
        result["earlier_output_left_out"] = dropped or size > budget
    result["next"] = (
        f"more output follows: call orca_logs again with after={position}"
        if cut
        else "that is all the output so far"
        + ("" if run.status in TERMINAL_STATUSES else f"; for new output, after={position}")
    )
    return result


def _records(client: Client, run_id: str, after: int) -> Generator[EventRecord]:
    while True:
        page: EventsPage = client.request(
            ReadEvents(after=after, limit=READ_PAGE_EVENTS, run_id=run_id)
        )
        if not page.events:
            return
        yield from page.events
        after = page.events[-1].position


def _chunks(pieces: deque[OutputAppended], keep: int | None) -> list[Json]:
    """Output events joined into chunks, one per run of the same session and stream; with
    `keep`, only the last `keep` characters."""
    chunks: list[Json] = []
    texts: list[str] = []
    for event in pieces:
        if not chunks or (chunks[-1]["session_id"], chunks[-1]["stream"]) != (
            event.session_id,
            event.stream,
        ):
            if chunks:
                chunks[-1]["text"] = "".join(texts)
            chunks.append({"session_id": event.session_id, "stream": event.stream})
            texts = []
        texts.append(event.text)
    if chunks:
        chunks[-1]["text"] = "".join(texts)
    excess = 0 if keep is None else sum(len(c["text"]) for c in chunks) - keep
    while excess > 0:
        first: str = chunks[0]["text"]
        chunks[0]["text"] = first[excess:]
        excess -= len(first)
        if not chunks[0]["text"]:
            chunks.pop(0)
    return chunks


# --------------------------------------------------------------------------- acting on a run


def answer(
    client: Client,
    run_id: str,
    *,
    text: str | None,
    answers: dict[str, str | list[str]] | None,
    request_id: str | None,
    answered_by: str,
) -> Json:
    """Answer the question request a run waits on; a request with a secret question is refused
    (only a person answers those). The request checked is the one answered: orcad refuses the
    answer if another has replaced it meanwhile."""
    if (text is None) == (answers is None):
        raise ToolRefused(
            "give either text (the answer to a lone question) or answers (by question id)"
        )
    found = fetch_status(client, Status(run_id=run_id))
    run = found.runs[0]
    by_id = {session.session_id: session for session in found.sessions}
    pending = _pending(run, by_id)
    if request_id is not None:
        pending = [p for p in pending if p.request_id == request_id]
    if not pending:
        asked = f" request {request_id!r}" if request_id else " question"
        raise ToolRefused(
            f"run {run.run_id} has no pending{asked} (it is {run.status}); see orca_status"
        )
    if len(pending) > 1:
        listed = "; ".join(
            f"{p.request_id} (session {p.session_id}: "
            + " / ".join(q.question for q in p.questions)
            + ")"
            for p in pending
        )
        raise ToolRefused(f"several sessions of run {run.run_id} wait; give request_id: {listed}")
    request = pending[0]
    secret = [q.id for q in request.questions if q.is_secret]
    if secret:
        raise ToolRefused(
            f"question {', '.join(secret)} of run {run.run_id} is secret (a password, token or "
            "key): only a person answers it, never a model. Ask the user to answer it with "
            f"`orca answer {run.run_id}` in a terminal (it asks without echo) or in their "
            "editor; then call orca_wait again."
        )
    by_question = (
        None
        if answers is None
        else {qid: [value] if isinstance(value, str) else value for qid, value in answers.items()}
    )
    result: AnswerResult = client.request(
        Answer(
            run_id=run.run_id,
            text=text,
            answers=by_question,
            request_id=request.request_id,
            answered_by=answered_by,
        )
    )
    return {
        "run_id": result.run_id,
        "session_id": result.session_id,
        "request_id": result.request_id,
        "run_status": result.status,
        "delivered": result.delivered,
        "next": f"call orca_wait with run_id {result.run_id!r}",
    }


def cancel(client: Client, run_id: str, reason: str | None, session_id: str | None) -> Json:
    result: CancelResult = client.request(
        Cancel(run_id=run_id, reason=reason, session_id=session_id)
    )
    return {
        "run_id": result.run_id,
        "run_status": result.status,
        "already_ended": result.already_terminal,
        "cancelled": session_id or result.run_id,
    }


# --------------------------------------------------------------------------- views


def run_view(run: RunInfo, sessions: list[SessionInfo]) -> Json:
    """A run as a model reads it: its status, sessions, tasks, pending questions (and how to
    answer them), and, once a fan-out has ended, its synthesis (the task file's text)."""
    view: Json = {
        "run_id": run.run_id,
        "title": run.title,
        "kind": run.kind,
        "status": run.status,
        "terminal": run.status in TERMINAL_STATUSES,
        "reason": run.reason,
        "cwd": run.cwd,
        "created_at": _when(run.created_at),
        "updated_at": _when(run.updated_at),
        "result": run.result,
        "task_file": run.task_file,
        "parent_run_id": run.parent_run_id,
        "child_run_ids": run.child_run_ids or None,
        "cost_usd": run.cost_usd,
    }
    view["sessions"] = [_session_view(session) for session in sessions]
    if run.tasks:
        view["tasks"] = [_drop_empty(msgspec.to_builtins(task)) for task in run.tasks]
    by_id = {session.session_id: session for session in sessions}
    pending = _pending(run, by_id)
    if pending:
        view["pending"] = [_pending_view(run.run_id, request) for request in pending]
    if run.kind == "fanout" and run.task_file and run.status in TERMINAL_STATUSES:
        view["synthesis"] = _read_synthesis(run.task_file)
    return _drop_empty(view)


def _session_view(session: SessionInfo) -> Json:
    return _drop_empty(
        {
            "session_id": session.session_id,
            "agent": session.agent,
            "role": session.role,
            "task_id": session.task_id,
            "status": session.status,
            "summary": session.summary,
            "reason": session.reason,
            "exit_code": session.exit_code,
            "last_output_line": session.last_output_line,
        }
    )


def _pending(run: RunInfo, sessions: dict[str, SessionInfo]) -> list[PendingQuestion]:
    found = (sessions.get(session_id) for session_id in run.session_ids)
    return [s.pending for s in found if s is not None and s.pending is not None]


def _pending_view(run_id: str, request: PendingQuestion) -> Json:
    questions = []
    for question in request.questions:
        shown: Json = {"id": question.id, "header": question.header, "question": question.question}
        if question.options:
            shown["options"] = [_drop_empty(msgspec.to_builtins(o)) for o in question.options]
            shown["other_answers_allowed"] = question.is_other
        if question.is_secret:
            shown["secret"] = True
            shown["answered_by"] = f"a person only: `orca answer {run_id}` or the editor"
        questions.append(_drop_empty(shown))
    return {
        "request_id": request.request_id,
        "session_id": request.session_id,
        "asked_at": _when(request.asked_at),
        "questions": questions,
    }


def _read_synthesis(task_file: str) -> str:
    try:
        with open(task_file, encoding="utf-8", errors="replace") as handle:
            text = handle.read(SYNTHESIS_CHARS + 1)
    except OSError as exc:
        return f"(the task file {task_file} cannot be read: {exc.strerror})"
    if len(text) > SYNTHESIS_CHARS:
        return (
            text[:SYNTHESIS_CHARS] + f"\n… (cut at {SYNTHESIS_CHARS:,} characters; see {task_file})"
        )
    return text


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _drop_empty(values: Json) -> Json:
    return {key: value for key, value in values.items() if value not in (None, "", [])}
