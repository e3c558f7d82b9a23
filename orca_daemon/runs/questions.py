"""Answer validation and redaction: pure rules for what an answer must name and what is kept.

An answer names every pending question id and no other; a lone pending question also takes
plain text, verbatim — except where a question takes only its options (`isOther: false`): there
an answer must name one, by label or number, and is delivered as its label. Secret answers are
never put in an event. Error messages name ids (and options) only, never a value, so a secret
cannot leak through one.
"""

from __future__ import annotations

from orca_client.views import Question, option_named
from orca_client.wire import WireError

MAX_ANSWER_CHARS = 100_000
SHOWN_OPTIONS = 10
SHOWN_LABEL_CHARS = 80
"""How much of the options a refusal lists (an agent may offer many, and long ones)."""


def resolve_answers(
    questions: list[Question], text: str | None, answers: dict[str, list[str]] | None
) -> dict[str, list[str]]:
    """The answers to deliver, keyed by question id; raises WireError when they do not fit."""
    if text is not None and answers is not None:
        raise WireError("bad_request", "give the answer as text or as answers by id, not both")
    ids = [q.id for q in questions]
    if text is not None:
        if len(questions) != 1:
            raise WireError(
                "bad_request",
                f"{len(questions)} questions are pending ({', '.join(ids)}): "
                'answer each by id (orca answer RUN_ID --json \'{"id": "answer", ...}\')',
            )
        resolved = {ids[0]: [text]}
    elif answers is None:
        raise WireError("bad_request", "no answer given")
    else:
        missing = [qid for qid in ids if qid not in answers]
        unknown = sorted(qid for qid in answers if qid not in ids)
        problems = []
        if unknown:
            problems.append(f"unknown question ids: {', '.join(unknown)}")
        if missing:
            problems.append(f"missing answers for question ids: {', '.join(missing)}")
        if problems:
            raise WireError(
                "bad_request",
                "; ".join(problems)
                + f" (pending question ids: {', '.join(ids)}); nothing was sent",
            )
        resolved = {qid: list(answers[qid]) for qid in ids}
    for question in questions:
        if question.options and not question.is_other:
            resolved[question.id] = [_option(question, v) for v in resolved[question.id]]
    for qid, values in resolved.items():
        if not values:
            raise WireError("bad_request", f"the answer to {qid} is empty")
        if sum(len(v) for v in values) > MAX_ANSWER_CHARS:
            raise WireError(
                "bad_request", f"the answer to {qid} is longer than {MAX_ANSWER_CHARS} characters"
            )
    return resolved


def _option(question: Question, value: str) -> str:
    """The option a value names, for a question that takes only its options (`isOther:
    false`): its label, number or label in another case; refused otherwise (without the value:
    it may be secret)."""
    named = option_named(question, value)
    if named is None:
        labels = [option.label for option in question.options or []]
        valid = ", ".join(
            f"{n}. {label if len(label) <= SHOWN_LABEL_CHARS else label[:SHOWN_LABEL_CHARS] + '…'}"
            for n, label in enumerate(labels[:SHOWN_OPTIONS], 1)
        )
        if len(labels) > SHOWN_OPTIONS:
            valid += f" (and {len(labels) - SHOWN_OPTIONS} more: see orca status)"
        raise WireError(
            "bad_request",
            f"{question.id} takes only one of its options, by label or number: {valid}; "
            "nothing was sent",
        )
    return named


def split_secrets(
    questions: list[Question], answers: dict[str, list[str]]
) -> tuple[dict[str, list[str]], list[str]]:
    """The answers that may be recorded, and the ids of secret ones that must not be."""
    secret = {q.id for q in questions if q.is_secret}
    kept = {qid: values for qid, values in answers.items() if qid not in secret}
    return kept, sorted(secret & answers.keys())
