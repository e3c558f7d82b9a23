"""`orca answer` helpers: parse answers given as JSON, or ask them on the terminal."""

from __future__ import annotations

import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orca_client.client import Client
    from orca_client.wire import PendingQuestion, Question


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


def who() -> str:
    """How the log names this client."""
    try:
        return f"orca-cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "orca-cli"


def ask_on_terminal(
    client: Client, run_id: str, request_id: str | None
) -> tuple[str, dict[str, list[str]]]:
    """Show each pending question with its options and read the answers (secrets without echo);
    returns the request answered, so the answer cannot land on a question that replaced it."""
    from orca_client.wire import Status, StatusResult

    status: StatusResult = client.request(Status(run_id=run_id))
    pending = [s.pending for s in status.sessions if s.pending is not None]
    if request_id is not None:
        pending = [p for p in pending if p.request_id == request_id]
    if len(pending) != 1:
        which = "no" if not pending else "more than one"
        raise SystemExit(
            f"orca answer: {which} pending question request; see `orca status {run_id}`"
        )
    request = pending[0]
    return request.request_id, {q.id: [_ask(q, request)] for q in request.questions}


def _ask(question: Question, pending: PendingQuestion) -> str:
    from orca_client.render import one_line, visible

    title = f"[{question.id}] {question.header}: " if question.header else f"[{question.id}] "
    print(visible(f"{one_line(title)}{question.question}"), file=sys.stderr)
    options = question.options or []
    for number, option in enumerate(options, 1):
        detail = f" — {option.description}" if option.description else ""
        print(f"  {number}. {one_line(option.label + detail)}", file=sys.stderr)
    if question.is_secret:
        return getpass.getpass("secret answer (not echoed): ")
    hint = "number or text" if options else "answer"
    reply = input(f"{hint}> ")
    if reply.strip().isdigit() and 1 <= int(reply) <= len(options):
        return options[int(reply) - 1].label
    return reply
