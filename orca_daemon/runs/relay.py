"""The asking side of a request relayed through the log (with a log several daemons share).

A client asks this daemon to cancel a run, or to answer its question, and another daemon owns
the run: its sessions run there. The request is checked here as the owner would check it, then
appended to the run's stream (`CancelRequested`, `AnswerRequested`); the owner carries it out
and records `RelayedRequestSettled` (orchestration/relayed), whose reply goes back to the
client. A secret answer is never relayed: it would reach the log; it is refused, naming the
daemon to answer on.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TypeVar, get_args

import msgspec

from orca_client.events import AnswerRequested, CancelRequested, RelayedRequestSettled
from orca_client.wire import Answer, AnswerResult, Cancel, CancelResult, ErrorCode, WireError
from orca_daemon.log.records import StoredEvent
from orca_daemon.runs.launcher import MAX_TITLE_CHARS
from orca_daemon.runs.questions import resolve_answers, split_secrets
from orca_daemon.runs.rules import pending_request
from orca_daemon.runs.run_log import RunLog

RELAY_WAIT_SECONDS = 30.0
"""How long a relayed request's client waits for the owner to carry it out."""

R = TypeVar("R", CancelResult, AnswerResult)


class Relay:
    """Relays clients' requests for other daemons' runs, and waits for their owners' replies."""

    def __init__(self, runs: RunLog, daemon: str) -> None:
        self._runs = runs
        self._daemon = daemon
        self._waiting: dict[str, asyncio.Future[RelayedRequestSettled]] = {}

    def on_commit(self, events: list[StoredEvent]) -> None:
        """A store listener: an owner's reply to a request relayed from here."""
        if not self._waiting:
            return
        for stored in events:
            if stored.type != "relayed_request_settled":
                continue
            settled = stored.decode()
            assert isinstance(settled, RelayedRequestSettled)
            waiting = self._waiting.get(settled.request_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(settled)

    async def cancel(self, run_id: str, request: Cancel) -> CancelResult:
        event = CancelRequested(
            run_id,
            request_id=secrets.token_hex(8),
            from_daemon=self._daemon,
            reason=request.reason,
            session_id=request.session_id,
        )
        return await self._relay(event, "cancel", CancelResult)

    async def answer(self, run_id: str, request: Answer) -> AnswerResult:
        """Relay the answer once it fits the question pending (as the owner checks it), and
        unless a question it answers is secret."""
        session_id = request.session_id
        if session_id is not None and not session_id.startswith(f"{run_id}."):
            session_id = f"{run_id}.{session_id}"
        pending = pending_request(self._runs.state, run_id, request.request_id, session_id)
        answers = resolve_answers(pending.questions, request.text, request.answers)
        _, secret = split_secrets(pending.questions, answers)
        if secret:
            raise WireError(
                "invalid_state",
                f"question {', '.join(secret)} of run {run_id} is secret, and a secret answer "
                f"never goes through the log: answer it on orcad {self._runs.owner_of(run_id)}, "
                "which owns the run (orca daemon status there names it)",
            )
        event = AnswerRequested(
            run_id,
            request_id=secrets.token_hex(8),
            from_daemon=self._daemon,
            session_id=pending.session_id,
            question_request_id=pending.request_id,
            answers=answers,
            answered_by=request.answered_by[:MAX_TITLE_CHARS],
        )
        return await self._relay(event, "answer", AnswerResult)

    async def _relay(
        self, event: CancelRequested | AnswerRequested, what: str, result_type: type[R]
    ) -> R:
        """Append the request, and wait (at most `RELAY_WAIT_SECONDS`) for its reply."""
        owner = self._runs.owner_of(event.run_id)
        waiting: asyncio.Future[RelayedRequestSettled] = asyncio.get_running_loop().create_future()
        self._waiting[event.request_id] = waiting
        try:
            await self._runs.append(event.run_id, [event], mode="refuse")
            try:
                settled = await asyncio.wait_for(waiting, RELAY_WAIT_SECONDS)
            except TimeoutError:
                raise WireError(
                    "busy",
                    f"run {event.run_id} is owned by orcad {owner}, which has not carried out "
                    f"the {what} within {RELAY_WAIT_SECONDS:.0f} s; it is recorded, and {owner} "
                    "(or the daemon that takes the run over) carries it out when it can",
                ) from None
        finally:
            self._waiting.pop(event.request_id, None)
        if settled.error_code is not None or settled.result_json is None:
            code = settled.error_code if settled.error_code in get_args(ErrorCode) else "internal"
            message = settled.message or "no reply"
            raise WireError(code, f"orcad {settled.daemon}, which owns the run: {message}")  # type: ignore[arg-type]
        return msgspec.json.decode(settled.result_json, type=result_type)
