"""`orca answer` helpers: parse answers given as JSON, or ask them on the terminal."""

from __future__ import annotations

import getpass
import json
import os
import select
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orca_client.client import Client
    from orca_client.views import Question


def parse_answers_json(text: str) -> dict[str, list[str]]:
    """`{"q1": "a", "q2": ["b", "c"]}` or `{"answers": {"q1": {"answers": ["a"]}}}` → by id."""
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("expected an object mapping question ids to answers")
    if _is_long_form(value):
        value = {qid: body["answers"] for qid, body in value["answers"].items()}
    answers: dict[str, list[str]] = {}
    for qid, answer in value.items():
        if isinstance(answer, str):
            answers[qid] = [answer]
        elif isinstance(answer, list) and all(isinstance(a, str) for a in answer):
            answers[qid] = list(answer)
        else:
            raise ValueError(f"the answer to {qid!r} must be a string or a list of strings")
    return answers


def _is_long_form(value: dict[str, Any]) -> bool:
    inner = value.get("answers")
    return (
        len(value) == 1
        and isinstance(inner, dict)
        and all(isinstance(body, dict) and set(body) == {"answers"} for body in inner.values())
    )


def who(tool: str = "orca-cli") -> str:
    """How the log names this client: `tool`, and the user it runs as."""
    try:
        return f"{tool}:{getpass.getuser()}"
    except (KeyError, OSError):
        return tool


def ask_on_terminal(
    client: Client, run_id: str, session_id: str | None, request_id: str | None
) -> tuple[str, str, dict[str, list[str]]]:
    """Show each pending question with its options and read the answers (secrets without echo);
    returns the session and request answered, so the answer cannot land on a question that
    replaced it.

    An empty answer, or one that is not an option of a question that allows only its options,
    is refused on the terminal and asked again. End of input (Ctrl-D) raises EOFError and
    Ctrl-C KeyboardInterrupt: nothing has been sent then, and the caller says so."""
    from orca_client.views import StatusResult
    from orca_client.wire import Status

    status: StatusResult = client.request(Status(run_id=run_id))
    pending = [s.pending for s in status.sessions if s.pending is not None]
    if session_id is not None:  # its full id, or the part after the run's (given as a prefix)
        full_run_id = status.runs[0].run_id if status.runs else run_id
        wanted = (session_id, f"{full_run_id}.{session_id}")
        pending = [p for p in pending if p.session_id in wanted]
    if request_id is not None:
        pending = [p for p in pending if p.request_id == request_id]
    if len(pending) != 1:
        if not pending:
            raise SystemExit(
                f"orca answer: no pending question request; see `orca status {run_id}`"
            )
        ids = ", ".join(f"{p.session_id} (request {p.request_id})" for p in pending)
        raise SystemExit(
            f"orca answer: several sessions are waiting; pick one with --session: {ids}"
        )
    request = pending[0]
    return request.session_id, request.request_id, {q.id: [_ask(q)] for q in request.questions}


def _ask(question: Question) -> str:
    from orca_client.terminal_text import one_line, visible

    title = f"[{question.id}] {question.header}: " if question.header else f"[{question.id}] "
    print(visible(f"{one_line(title)}{question.question}"), file=sys.stderr)
    options = question.options or []
    for number, option in enumerate(options, 1):
        detail = f" — {option.description}" if option.description else ""
        print(f"  {number}. {one_line(option.label + detail)}", file=sys.stderr)
    while True:
        if question.is_secret:
            reply = getpass.getpass("secret answer (not echoed): ")
        else:
            reply = read_line(f"{_prompt(question)}> ")
        answer, problem = choose(question, reply)
        if answer is not None:
            return answer
        print(visible(f"  {problem}"), file=sys.stderr)


def _prompt(question: Question) -> str:
    if not question.options:
        return "answer"
    return "number or text" if question.is_other else "number or option"


def choose(question: Question, reply: str) -> tuple[str | None, str]:
    """The answer a terminal reply gives to `question`, or None and why it is refused: an
    empty reply; for a question with options and no other answers (`isOther: false`), anything
    but an option's number or label. A number picks an option; other text is kept verbatim."""
    from orca_client.terminal_text import one_line
    from orca_client.views import option_named

    options = question.options or []
    labels = [option.label for option in options]
    if not reply.strip():
        return None, (
            f"an empty answer is not accepted; type one{' (or its number)' if labels else ''}. "
            f'To send an empty answer: orca answer RUN_ID --json \'{{"{question.id}": ""}}\''
        )
    if labels and (not question.is_other or reply.strip().isdigit()):
        named = option_named(question, reply)
        if named is not None:
            return named, ""
    if not labels or question.is_other:
        return reply, ""
    valid = ", ".join(f"{n}. {one_line(label)}" for n, label in enumerate(labels, 1))
    return None, f"{question.id} takes one of its options, by number or label: {valid}"


def answer_hint(run_id: str, questions: list[Question]) -> str:
    """The `orca answer` command that answers these pending questions of `run_id`."""
    if not questions:
        return f"orca answer {run_id}"
    if len(questions) == 1 and not questions[0].is_secret:
        return f"orca answer {run_id} 'TEXT'"
    if any(q.is_secret for q in questions):
        return f"orca answer {run_id}   (asks each question here; secrets unechoed)"
    shape = ", ".join(f'"{q.id}": "…"' for q in questions)
    return f"orca answer {run_id}   (asks each in turn), or --json '{{{shape}}}'"


READ_SLICE_SECONDS = 0.2


def read_line(prompt: str) -> str:
    """`input(prompt)` on a terminal, but one that Ctrl-C always interrupts. `input()` blocks in
    read(2), where a SIGINT that came just before the read is only acted on once Enter is
    pressed; this waits for the line in short slices, so Python handles the signal at once
    (KeyboardInterrupt). End of input (Ctrl-D) raises EOFError, as `input()` does."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    descriptor = sys.stdin.fileno()
    line = b""
    while not line.endswith(b"\n"):
        if not select.select([descriptor], [], [], READ_SLICE_SECONDS)[0]:
            continue
        chunk = os.read(descriptor, 4096)
        if not chunk:  # end of input
            if line:
                break
            raise EOFError
        line += chunk
    return line.decode(errors="replace").rstrip("\n")
