"""What `orca mcp`'s tools do: blocking calls on a `Client`, each returning plain JSON data that
a calling model reads. No MCP here: `mcp_server` puts these behind the protocol."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING, cast

import msgspec

from orca_client.client import Client, fetch_status
from orca_client.events import OutputAppended, QuestionAsked, RunStatusChanged, run_stream
from orca_client.mcp_views import (
    Json,
    answer_with,
    drop_empty,
    next_after_wait,
    pending_of,
    person_answers,
    run_view,
    when,
)
from orca_client.plan import PlanError, parse_plan
from orca_client.render_events import decode
from orca_client.views import TERMINAL_STATUSES, AgentChecks, RunInfo, StatusResult
from orca_client.wire import (
    Answer,
    AnswerResult,
    Cancel,
    CancelResult,
    CheckAgents,
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
READ_PAGE_EVENTS = 1000
AGENT_CHECK_SECONDS = 10.0
"""The longest orcad may let one agent's `--version` take for `orca_agents` (it checks them all
at once)."""


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
    """One run in full (with its child runs), or every live run and the `ended` newest ended
    ones in short."""
    if run_id is not None:
        return {"run": run_view(fetch_status(client, Status(run_id=run_id, tree=True)))}
    every = fetch_status(client, Status(ended=max(0, ended)))
    by_id = {session.session_id: session for session in every.sessions}
    runs = []
    for run in every.runs:
        short: Json = {
            "run_id": run.run_id,
            "title": run.title,
            "status": run.status,
            "kind": run.kind,
            "updated_at": when(run.updated_at),
        }
        if run.parent_run_id is not None:
            short["parent_run_id"] = run.parent_run_id
        pending = pending_of(run, by_id)
        if pending:
            short["asks"] = [q.question for p in pending for q in p.questions]
            short["answer_with"] = [answer_with(run.run_id, p, len(pending) > 1) for p in pending]
        runs.append(short)
    return {"runs": runs, "ended_not_shown": every.ended_not_shown}


def wait(client: Client, run_id: str, timeout: float, after: int | None) -> Json:
    """Follow the events of the run and its child runs after log position `after` until the
    run ends, a session of it or of a child run asks a question, or `timeout` (capped at
    MAX_WAIT_SECONDS) has passed; then its status and the position it reflects (the next
    call's `after`). Without `after`, a question already pending returns at once (the caller
    may not have seen it yet)."""
    started = time.monotonic()
    deadline = started + (min(timeout, MAX_WAIT_SECONDS) if timeout > 0 else 0.0)  # NaN: 0
    first = fetch_status(client, Status(run_id=run_id, tree=True))
    root = first.runs[0]
    by_id = {session.session_id: session for session in first.sessions}
    shown_pending = after is None and any(pending_of(run, by_id) for run in first.runs)
    if root.status not in TERMINAL_STATUSES and not shown_pending:
        start = first.head_position if after is None else after
        _follow_until_news(client, first.runs, start, deadline)
    now = fetch_status(client, Status(run_id=root.run_id, tree=True))
    view = run_view(now)
    return {
        "run": view,
        "terminal": view["terminal"],
        "position": now.head_position,
        "waited_seconds": round(time.monotonic() - started, 1),
        "next": next_after_wait(view, now.head_position),
    }


class _Created(msgspec.Struct):
    """What of an event shows a new child run: a `run_created` naming its parent."""

    type: str = "?"
    parent_run_id: str | None = None


def _follow_until_news(client: Client, tree: list[RunInfo], after: int, deadline: float) -> None:
    """Follow the events after `after` of `tree` (a run, then its descendant runs, and the
    child runs created meanwhile) until a question is asked in it, the run ends, or
    `deadline`. A run that has child runs, or may have (a parent), is followed through the
    whole log; any other through its own stream."""
    root = tree[0]
    family = {run_stream(run.run_id) for run in tree}
    whole_log = root.kind == "parent" or len(tree) > 1
    events = client.follow(after=after, run_id=None if whole_log else root.run_id, until=deadline)
    with contextlib.closing(cast("Generator[EventRecord]", events)):  # ends the subscription
        for record in events:
            if record.stream not in family:
                created = msgspec.json.decode(record.event, type=_Created)
                parent = created.parent_run_id
                if created.type == "run_created" and parent and run_stream(parent) in family:
                    family.add(record.stream)
            else:
                event = decode(record)
                if isinstance(event, QuestionAsked):
                    return
                if event.run_id == root.run_id and _ends(event):
                    return
            if time.monotonic() >= deadline:
                return


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
    position = min(after, found.head_position)  # past the log's end: from its end
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
    session_id: str | None,
    request_id: str | None,
    answered_by: str,
) -> Json:
    """Answer the question request a run waits on (of session `session_id`, its full id or the
    part after the run id, and/or with `request_id`, when several sessions wait); a request
    with a secret question is refused (only a person answers those). The request checked is
    the one answered: orcad refuses the answer if another has replaced it meanwhile."""
    if (text is None) == (answers is None):
        raise ToolRefused(
            "give either text (the answer to a lone question) or answers (by question id)"
        )
    found = fetch_status(client, Status(run_id=run_id, tree=True))
    run = found.runs[0]
    by_id = {session.session_id: session for session in found.sessions}
    waiting = pending = pending_of(run, by_id)
    if session_id is not None:
        prefix = f"{run.run_id}."
        whole = session_id if session_id.startswith(prefix) else prefix + session_id
        pending = [p for p in pending if p.session_id == whole]
    if request_id is not None:
        pending = [p for p in pending if p.request_id == request_id]
    if not pending:
        raise ToolRefused(_nothing_to_answer(found, session_id, request_id))
    if len(pending) > 1:
        listed = "; ".join(
            f"{p.session_id} (request {p.request_id}: "
            + " / ".join(q.question for q in p.questions)
            + ")"
            for p in pending
        )
        raise ToolRefused(
            f"several sessions of run {run.run_id} wait; give session_id, one of: {listed}"
        )
    request = pending[0]
    secret = [q.id for q in request.questions if q.is_secret]
    if secret:
        raise ToolRefused(
            f"question {', '.join(secret)} of run {run.run_id} is secret (a password, token or "
            "key): only a person answers it, never a model. Ask the user to answer it with "
            f"`{person_answers(run.run_id, request, len(waiting) > 1)}` in a terminal (it asks "
            "without echo) or in their editor; then call orca_wait again."
        )
    if text is not None and len(request.questions) > 1:
        ids = ", ".join(q.id for q in request.questions)
        raise ToolRefused(
            f"{len(request.questions)} questions are pending ({ids}): give answers as "
            "{question_id: answer}, one for each, instead of text"
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
            session_id=request.session_id,
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


def _nothing_to_answer(found: StatusResult, session_id: str | None, request_id: str | None) -> str:
    """Why run `found.runs[0]` has nothing to answer, and which of its child runs has."""
    run = found.runs[0]
    by_id = {session.session_id: session for session in found.sessions}
    asked = " question" + (f" of session {session_id!r}" if session_id else "")
    asked += f" with request id {request_id!r}" if request_id else ""
    waiting = [child for child in found.runs[1:] if pending_of(child, by_id)]
    if not waiting:
        return f"run {run.run_id} has no pending{asked} (it is {run.status}); see orca_status"
    children = "; ".join(
        f"{child.run_id}"
        + (f" (repository {child.repo})" if child.repo else "")
        + ": "
        + " / ".join(q.question for p in pending_of(child, by_id) for q in p.questions)
        for child in waiting
    )
    return (
        f"run {run.run_id} waits on no question itself; its child runs do, {children}. Call "
        f'orca_answer with run_id="{waiting[0].run_id}" (the child run\'s id) to answer it'
    )


def cancel(client: Client, run_id: str, reason: str | None, session_id: str | None) -> Json:
    result: CancelResult = client.request(
        Cancel(run_id=run_id, reason=reason, session_id=session_id)
    )
    what = f"session {session_id}" if session_id else f"run {result.run_id}"
    if result.already_terminal:
        return {
            "run_id": result.run_id,
            "run_status": result.status,
            "already_ended": True,
            "cancelled": None,
            "message": f"nothing was cancelled: {what} had already ended (the run is "
            f"{result.status})",
        }
    return {
        "run_id": result.run_id,
        "run_status": result.status,
        "already_ended": False,
        "cancelled": session_id or result.run_id,
        "message": f"{what} is cancelled (the run is {result.status})",
    }


# --------------------------------------------------------------------------- agents


def agents(client: Client, lookup: AgentLookup) -> Json:
    """Every agent a run may name, and whether a run of it can start (`--version` of each CLI
    agent's binary, found with `lookup`)."""
    checked: AgentChecks = client.request(
        CheckAgents(**lookup, timeout=AGENT_CHECK_SECONDS),
        timeout=client.timeout + 2 * AGENT_CHECK_SECONDS,
    )
    return {
        "agents": [
            drop_empty(
                {
                    "name": check.name,
                    "kind": check.kind,
                    "usable": check.usable,
                    "status": check.status,
                    "version": check.version,
                    "detail": check.detail,
                }
            )
            for check in checked.agents
        ],
        "next": "name a usable agent in orca_run (agent), orca_debug (agents, orchestrator) or "
        "orca_plan (agent, or a task's agent)",
    }
