"""What a notification says, decided from the event that triggers it (pure).

A run waiting for an answer (each `question_asked`: exactly one per question request; the
runner leaves out one answered before it got to it) and a top-level run that ended completed or
failed are notified. A cancelled run is not (a person
cancelled it); a child run's end is not (its parent's end is), but its questions are: only a
person answers them. Texts are short and bounded, and never carry an answer.
"""

from __future__ import annotations

import shlex

import msgspec

from orca_client.events import AnyEvent, NotificationKind, QuestionAsked, RunStatusChanged
from orca_client.views import Question, RunInfo

TITLE_CHARS = 120
QUESTION_CHARS = 400
OPTION_CHARS = 120
REASON_CHARS = 600
SHOWN_QUESTIONS = 3
SHOWN_OPTIONS = 6
TEXT_CHARS = 1000
"""The whole body at most: 4,000 bytes in UTF-8 (ntfy takes a longer one as an attachment)."""


class Notice(msgspec.Struct, frozen=True):
    """One notification, before it goes to any channel."""

    kind: NotificationKind
    title: str
    summary: str
    text: str
    answer_command: str | None = None
    request_id: str | None = None


def notice_for(
    event: AnyEvent,
    run: RunInfo | None,
    other_requests: int = 0,
    summary: str | None = None,
    home: str | None = None,
) -> Notice | None:
    """The notification `event` triggers for `run`, or None. `other_requests`: how many other
    question requests of the run wait for an answer (then the command names this one);
    `summary`: what the run's last session said it did, for an end; `home`: orcad's ORCA_HOME,
    if set (a command pasted into another shell must reach this orcad)."""
    if run is None:
        return None
    title = clip(run.title, TITLE_CHARS)
    if isinstance(event, QuestionAsked):
        command = answer_command(run.run_id, event.questions, event.session_id, other_requests)
        if home:
            command = f"ORCA_HOME={shlex.quote(home)} {command}"
        answer = f"answer: {command}"
        asked = "\n".join(describe_questions(event.questions))
        room = TEXT_CHARS - len(title) - len(answer) - 2
        if len(asked) > room:
            asked = asked[: room - 1] + "…"
        return Notice(
            "waiting",
            title,
            f"orca: run {run.run_id} waits for an answer",
            f"{title}\n{asked}\n{answer}",
            command,
            event.request_id,
        )
    if isinstance(event, RunStatusChanged) and event.status in ("completed", "failed"):
        if run.parent_run_id is not None:
            return None
        outcome = clip(event.reason or event.status, REASON_CHARS)
        lines = [title, outcome]
        if summary and summary != event.reason:
            lines.append(clip(summary, REASON_CHARS))
        if run.task_file is not None and event.status == "completed":
            lines.append(f"synthesis: {clip(run.task_file, REASON_CHARS)}")
        details = f"details: orca status {run.run_id}"
        told = "\n".join(lines)
        room = TEXT_CHARS - len(details) - 1
        if len(told) > room:
            told = told[: room - 1] + "…"
        return Notice(
            event.status,
            title,
            f"orca: run {run.run_id} {event.status}",
            f"{told}\n{details}",
        )
    return None


def describe_questions(questions: list[Question]) -> list[str]:
    """Each question (at most SHOWN_QUESTIONS) with its header and numbered options."""
    lines: list[str] = []
    for question in questions[:SHOWN_QUESTIONS]:
        header = f"[{clip(question.header, OPTION_CHARS)}] " if question.header else ""
        secret = " (secret: answered on a terminal, unechoed)" if question.is_secret else ""
        lines.append(f"{header}{clip(question.question, QUESTION_CHARS)}{secret}")
        options = question.options or []
        for number, option in enumerate(options[:SHOWN_OPTIONS], 1):
            detail = f" — {option.description}" if option.description else ""
            lines.append(f"  {number}. {clip(option.label + detail, OPTION_CHARS)}")
        if len(options) > SHOWN_OPTIONS:
            lines.append(f"  … and {len(options) - SHOWN_OPTIONS} more options")
    if len(questions) > SHOWN_QUESTIONS:
        lines.append(f"… and {len(questions) - SHOWN_QUESTIONS} more questions")
    return lines


def answer_command(
    run_id: str, questions: list[Question], session_id: str, other_requests: int
) -> str:
    """The exact `orca answer` command for this request: `'TEXT'` for one plain question;
    without an answer (the CLI asks each question, secrets unechoed) otherwise. With other
    sessions of the run waiting too, it names the session (its id after the run's)."""
    session = session_id.removeprefix(f"{run_id}.")
    which = f" --session {shlex.quote(session)}" if other_requests else ""
    if len(questions) == 1 and not questions[0].is_secret:
        return f"orca answer {run_id}{which} 'TEXT'"
    return f"orca answer {run_id}{which}"


def clip(text: str, limit: int) -> str:
    """`text` on one line, control characters shown as U+FFFD, cut to `limit` characters."""
    cleaned = "".join(
        " " if char in "\n\r\t" else char if char.isprintable() else "\ufffd" for char in text
    )
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
