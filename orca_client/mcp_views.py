"""What a model reads from `orca mcp`: a run (with its child runs and the questions they wait on)
as plain JSON data, the step to take next, and orcad's refusals in the tools' terms."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from orca_client.views import (
    TERMINAL_STATUSES,
    PendingQuestion,
    RunInfo,
    SessionInfo,
    StatusResult,
)

Json = dict[str, Any]

SYNTHESIS_CHARS = 100_000
"""How much of a fan-out's task file a run's view carries."""

CLI_TERMS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("not_found", re.compile(r"\(orca status lists the runs\)"), "(orca_status lists the runs)"),
    (
        "bad_request",
        re.compile(r"no agent named (.*)needs `orca daemon reload` \(or kill -HUP orcad's pid\)"),
        r"no agent named \1needs orcad to read its configuration again (the user runs "
        "`orca daemon reload`); orca_agents lists the agents orcad has",
    ),
    ("bad_request", re.compile(r"a default with --agent"), "a default with the agent parameter"),
    ("bad_request", re.compile(r"see orca status\)"), "see orca_status)"),
    ("bad_request", re.compile(r"give --agent"), "give agent"),
    (
        "bad_request",
        re.compile(r"answer each by id \(orca answer \S+ --json .*\)$"),
        "give answers as {question_id: answer}, one for each, instead of text",
    ),
    (
        "bad_request",
        re.compile(r"pick one by its session \(session_id; orca answer --session\):"),
        "give session_id, one of:",
    ),
    (
        "invalid_state",
        re.compile(r"its child run (\S+) is: orca answer \S+"),
        r"its child run \1 is: call orca_answer with run_id=\1",
    ),
)
"""orcad's refusals that name a CLI command or flag, by error code: what a model reads instead."""


def in_tool_terms(code: str, message: str) -> str:
    """orcad's refusal `message` (error `code`) with the CLI's terms put in the tools'."""
    for refused_with, cli, tools in CLI_TERMS:
        if code == refused_with:
            message = cli.sub(tools, message)
    return message


# --------------------------------------------------------------------------- a run


def run_view(found: StatusResult) -> Json:
    """The run a `Status(tree=True)` was asked for, as a model reads it: its status, sessions,
    tasks, child runs, every question it or a child run waits on (and how to answer it), and,
    once a fan-out has ended, its synthesis (the task file's text)."""
    run, descendants = found.runs[0], found.runs[1:]
    sessions = {session.session_id: session for session in found.sessions}
    view: Json = {
        "run_id": run.run_id,
        "title": run.title,
        "kind": run.kind,
        "status": run.status,
        "terminal": run.status in TERMINAL_STATUSES,
        "reason": run.reason,
        "cwd": run.cwd,
        "repo": run.repo,
        "created_at": when(run.created_at),
        "updated_at": when(run.updated_at),
        "result": run.result,
        "task_file": run.task_file,
        "parent_run_id": run.parent_run_id,
        "cost_usd": run.cost_usd,
        "sessions": [_session_view(session) for session in sessions_of(run, sessions)],
    }
    if run.tasks:
        view["tasks"] = [drop_empty(msgspec.to_builtins(task)) for task in run.tasks]
    if descendants:
        view["child_runs"] = [_child_view(child, sessions) for child in descendants]
    pending = []
    for member in found.runs:
        requests = pending_of(member, sessions)
        pending += [pending_view(member.run_id, p, several=len(requests) > 1) for p in requests]
    if pending:
        view["pending"] = pending
    if run.kind == "fanout" and run.task_file and run.status in TERMINAL_STATUSES:
        view["synthesis"] = _read_synthesis(run.task_file)
    return drop_empty(view)


def _child_view(child: RunInfo, sessions: dict[str, SessionInfo]) -> Json:
    return drop_empty(
        {
            "run_id": child.run_id,
            "parent_run_id": child.parent_run_id,
            "repo": child.repo,
            "status": child.status,
            "reason": child.reason,
            "cwd": child.cwd,
            "sessions": [_session_view(session) for session in sessions_of(child, sessions)],
        }
    )


def _session_view(session: SessionInfo) -> Json:
    return drop_empty(
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


def sessions_of(run: RunInfo, sessions: dict[str, SessionInfo]) -> list[SessionInfo]:
    return [sessions[s] for s in run.session_ids if s in sessions]


def pending_of(run: RunInfo, sessions: dict[str, SessionInfo]) -> list[PendingQuestion]:
    """The question requests the run's own sessions wait on (not its child runs')."""
    return [s.pending for s in sessions_of(run, sessions) if s.pending is not None]


def pending_view(run_id: str, request: PendingQuestion, several: bool) -> Json:
    """A request run `run_id` waits on (`several`: one of several): its questions and the
    orca_answer call that answers it."""
    questions = []
    for question in request.questions:
        shown: Json = {"id": question.id, "header": question.header, "question": question.question}
        if question.options:
            shown["options"] = [drop_empty(msgspec.to_builtins(o)) for o in question.options]
            shown["other_answers_allowed"] = question.is_other
        if question.is_secret:
            shown["secret"] = True
        questions.append(drop_empty(shown))
    return {
        "run_id": run_id,
        "session_id": request.session_id,
        "request_id": request.request_id,
        "asked_at": when(request.asked_at),
        "questions": questions,
        "answer_with": answer_with(run_id, request, several),
    }


def answer_with(run_id: str, request: PendingQuestion, several: bool) -> str:
    """How this request is answered: the orca_answer call, or (secret) by a person only."""
    if any(question.is_secret for question in request.questions):
        return (
            "a person only (it is secret: a password, token or key): ask the user to answer it "
            f"with `{person_answers(run_id, request, several)}` in a terminal or in their "
            "editor; never orca_answer"
        )
    which = f', session_id="{request.session_id}"' if several else ""
    if len(request.questions) == 1:
        [question] = request.questions
        what = (
            "one option's label or number"
            if question.options and not question.is_other
            else "an option's label or your own answer"
            if question.options
            else "your answer"
        )
        return f'orca_answer with run_id="{run_id}"{which}, text=<{what}>'
    ids = ", ".join(f'"{question.id}": <answer>' for question in request.questions)
    return f'orca_answer with run_id="{run_id}"{which}, answers={{{ids}}}'


def person_answers(run_id: str, request: PendingQuestion, several: bool) -> str:
    """The `orca answer` command with which a person answers this request (a secret one)."""
    session = request.session_id.removeprefix(f"{run_id}.")
    return f"orca answer {run_id}" + (f" --session {session}" if several else "")


# --------------------------------------------------------------------------- what to do next


def next_after_wait(view: Json, position: int) -> str:
    """What a model does once orca_wait returned `view`, the run at log position `position`."""
    if view["terminal"]:
        return ended(view)
    if "pending" in view:
        return (
            "the run waits for an answer: each entry of run.pending says how to answer it "
            "(answer_with: orca_answer with that run_id, or the user for a secret question); "
            f"then call orca_wait again with after={position}"
        )
    return f"not ended yet: call orca_wait again with after={position}"


def ended(view: Json) -> str:
    """Where the outcome of an ended run is in its view."""
    found = []
    if "synthesis" in view:
        found.append("run.synthesis, the orchestrator's synthesis (the text of run.task_file)")
    if "result" in view:
        found.append("run.result, its outcome")
    if "tasks" in view:
        found.append("run.tasks, each task's status and summary")
    if "child_runs" in view:
        found.append("run.child_runs, each child run's status and its sessions' summaries")
    if view.get("sessions"):
        found.append("run.sessions, each session's status, summary and last output line")
    logs = (
        "with a child run's run_id" if "child_runs" in view else f'with run_id="{view["run_id"]}"'
    )
    found.append(f"orca_logs {logs} for the whole output")
    why = f" ({view['reason']})" if "reason" in view else ""
    return f"the run has ended {view['status']}{why}: see " + "; ".join(found)


# --------------------------------------------------------------------------- small parts


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


def when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def drop_empty(values: Json) -> Json:
    return {key: value for key, value in values.items() if value not in (None, "", [])}
