"""What every agent translator emits and accepts: the effects the subprocess pump carries out.

A translator is sans-I/O: lines from the agent in, effects out; answers and cancels in, lines for
the agent out (as `Send` effects). `validate_questions` is shared by every protocol.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

from orca_client.views import Question

MAX_QUESTIONS = 20


class Output(msgspec.Struct, frozen=True):
    """Text the agent produced."""

    text: str


class Note(msgspec.Struct, frozen=True):
    """orcad's own remark about the session (a malformed line, a protocol mismatch)."""

    text: str


class Result(msgspec.Struct, frozen=True):
    """The agent's own verdict at its terminal marker."""

    outcome: Literal["done", "failed"]
    summary: str | None = None
    error: str | None = None


class QuestionsAsked(msgspec.Struct, frozen=True):
    request_id: str
    questions: list[Question]


class QuestionsWithdrawn(msgspec.Struct, frozen=True):
    """The agent cleared its question request itself (or its turn ended)."""

    request_id: str
    reason: str


Phase = Literal["planning", "running", "reviewing"]


class PhaseChanged(msgspec.Struct, frozen=True):
    """The agent says which phase of its work it is in; the run's status follows."""

    phase: Phase


class Send(msgspec.Struct, frozen=True):
    """A line (with its newline) to write to the agent's stdin."""

    line: bytes


class CloseInput(msgspec.Struct, frozen=True):
    """Close the agent's stdin: it has everything it will get."""


class Interrupting(msgspec.Struct, frozen=True):
    """From `cancel`: the agent was asked to end its turn (Codex `turn/interrupt`, Claude's
    interrupt request). Cancel then waits a short while for it to end on its own (its result,
    its exit) before it signals the process group."""


class Usage(msgspec.Struct, frozen=True):
    """Token usage or cost the agent reported (`data`, as it reported it) and, where its
    protocol says them, the session's totals so far: tokens read (cached ones included) and
    written, and what it cost in US dollars."""

    data: dict[str, Any]
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None


def usage_of(value: Any, input_key: str = "", output_key: str = "") -> list[Effect]:
    """A Usage effect for an agent's usage object, its totals read from `input_key` and
    `output_key` when given; anything that is not an object is a note."""
    if isinstance(value, dict):
        data = {str(k): v for k, v in value.items()}
        return [Usage(data, count_of(data.get(input_key)), count_of(data.get(output_key)))]
    return [Note(f"ignored usage that is not an object: {str(value)[:200]}")]


def count_of(value: Any) -> int | None:
    """A token count an agent reported, or None when it is not a count."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def sum_of(*values: Any) -> int | None:
    """The sum of the counts among `values` (None when none is a count)."""
    counts = [c for c in map(count_of, values) if c is not None]
    return sum(counts) if counts else None


def text_of(value: Any) -> str | None:
    """An agent-supplied field as text (None stays None), whatever JSON type it came as."""
    if value is None or isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


class Identified(msgspec.Struct, frozen=True):
    """The agent's own id for this conversation (a Codex thread, a Claude session)."""

    agent_session_id: str


Effect = (
    Output
    | Note
    | Result
    | QuestionsAsked
    | QuestionsWithdrawn
    | PhaseChanged
    | Send
    | CloseInput
    | Interrupting
    | Usage
    | Identified
)


class Translator(Protocol):
    """One agent protocol, without I/O."""

    plain_mark: bytes | None
    """A stdout line without this byte is plain output: `feed_line` would give exactly
    `[Output(line + "\n")]` and change nothing, so lines read without it may go to the log
    as they are, unlooked at. None: every line is the protocol's."""

    def start(self, prompt: str) -> list[Effect]:
        """Effects at start-up (typically the first lines to send)."""
        ...

    def feed_line(self, line: str) -> list[Effect]:
        """One complete stdout line (without its newline) in; its effects out."""
        ...

    def answer(self, request_id: str, answers: dict[str, list[str]]) -> list[Effect]:
        """The user's answers to a pending request, as lines for the agent; [] when the agent
        no longer waits for it. The request stays pending until `answered`."""
        ...

    def answered(self, request_id: str) -> bool:
        """The answer is recorded and goes to the agent now: forget the request. False when
        the agent no longer waits for it."""
        ...

    def cancel(self, reason: str) -> list[Effect]:
        """What to tell the agent before its process group is signalled; `Interrupting` among
        them gives the agent a moment to end its turn first."""
        ...

    def finish(self) -> list[Effect]:
        """Stdout has ended: any last effects (a protocol that never finished, say)."""
        ...


def validate_questions(questions: list[Question]) -> str | None:
    """Why a question request cannot be accepted, or None when it can."""
    if not questions:
        return "a question request needs at least one question"
    if len(questions) > MAX_QUESTIONS:
        return f"a question request may have at most {MAX_QUESTIONS} questions"
    ids = [q.id for q in questions]
    if any(not qid.strip() for qid in ids):
        return "every question needs a non-empty id"
    duplicates = sorted({qid for qid in ids if ids.count(qid) > 1})
    if duplicates:
        return f"duplicate question ids: {', '.join(duplicates)}"
    if any(not q.question.strip() for q in questions):
        return "every question needs its text in `question`"
    return None
