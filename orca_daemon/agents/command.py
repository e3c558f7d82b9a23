"""The command-agent protocol (docs/agent-protocol.md) as a pure translator: lines in, effects out.

An agent prints one JSON object a line: `output`, `result`, `question`, `question_cleared`.
Anything else is output. orcad writes `prompt`, `answer` and `cancel` lines to its stdin.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from orca_client.views import Question
from orca_daemon.agents.base import (
    Effect,
    Note,
    Output,
    Phase,
    PhaseChanged,
    QuestionsAsked,
    QuestionsWithdrawn,
    Result,
    Send,
    validate_questions,
)


class _OutputLine(msgspec.Struct, tag="output", tag_field="type"):
    text: str


class _ResultLine(msgspec.Struct, tag="result", tag_field="type"):
    outcome: Literal["done", "failed"]
    summary: str | None = None
    error: str | None = None


class _QuestionLine(msgspec.Struct, tag="question", tag_field="type"):
    questions: list[Question]


class _QuestionClearedLine(msgspec.Struct, tag="question_cleared", tag_field="type"):
    pass


class _PhaseLine(msgspec.Struct, tag="phase", tag_field="type"):
    phase: Phase


_line_decoder = msgspec.json.Decoder(
    _OutputLine | _ResultLine | _QuestionLine | _QuestionClearedLine | _PhaseLine
)


class _PromptLine(msgspec.Struct, tag="prompt", tag_field="type"):
    text: str


class _AnswerBody(msgspec.Struct):
    answers: list[str]


class _AnswerLine(msgspec.Struct, tag="answer", tag_field="type"):
    answers: dict[str, _AnswerBody]


class _CancelLine(msgspec.Struct, tag="cancel", tag_field="type"):
    reason: str


_encoder = msgspec.json.Encoder()


def _line(message: msgspec.Struct) -> Send:
    return Send(_encoder.encode(message) + b"\n")


class CommandTranslator:
    """Translates a command agent's stdout; remembers its first result and pending question."""

    plain_mark: bytes | None = b"{"  # a protocol line is a JSON object: it has a "{"

    def __init__(self) -> None:
        self.result: Result | None = None
        self._pending: str | None = None
        self._asked = 0

    def start(self, prompt: str) -> list[Effect]:
        return [_line(_PromptLine(prompt))]

    def feed_line(self, line: str) -> list[Effect]:
        stripped = line.strip()
        if not stripped.startswith("{"):
            return [Output(line + "\n")]
        try:
            message = _line_decoder.decode(stripped)
        except msgspec.ValidationError as exc:
            if _is_question(stripped):
                return [Output(line + "\n"), Note(f"ignored a malformed question line: {exc}")]
            return [Output(line + "\n")]
        except msgspec.DecodeError:
            return [Output(line + "\n")]
        if isinstance(message, _OutputLine):
            return [Output(message.text)]
        if isinstance(message, _ResultLine):
            if self.result is not None:
                return [Output(line + "\n")]
            self.result = Result(message.outcome, message.summary, message.error)
            return [self.result]
        if isinstance(message, _QuestionLine):
            return self._ask(message.questions, line)
        if isinstance(message, _PhaseLine):
            return [PhaseChanged(message.phase)]
        return self._withdraw("the agent cleared its question")

    def answer(self, request_id: str, answers: dict[str, list[str]]) -> list[Effect]:
        if request_id != self._pending:
            return []
        return [_line(_AnswerLine({qid: _AnswerBody(values) for qid, values in answers.items()}))]

    def answered(self, request_id: str) -> bool:
        if request_id != self._pending:
            return False
        self._pending = None
        return True

    def cancel(self, reason: str) -> list[Effect]:
        self._pending = None
        return [_line(_CancelLine(reason))]

    def finish(self) -> list[Effect]:
        return self._withdraw("the agent's output ended")

    def _ask(self, questions: list[Question], line: str) -> list[Effect]:
        problem = validate_questions(questions)
        if problem is not None:
            return [Output(line + "\n"), Note(f"ignored a malformed question line: {problem}")]
        effects = self._withdraw("the agent asked a new question")
        self._asked += 1
        self._pending = f"q{self._asked}"
        return [*effects, QuestionsAsked(self._pending, questions)]

    def _withdraw(self, reason: str) -> list[Effect]:
        if self._pending is None:
            return []
        request_id, self._pending = self._pending, None
        return [QuestionsWithdrawn(request_id, reason)]


def _is_question(text: str) -> bool:
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False
    return isinstance(value, dict) and value.get("type") == "question"
