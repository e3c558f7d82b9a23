"""Requests relayed through the log, carried out by the daemon that owns their run.

With a log several daemons share, a client may ask any daemon to cancel a run or to answer its
question; a daemon that does not own the run appends the request to the run's stream
(`CancelRequested`, `AnswerRequested`: the only appends to another daemon's run that the
database lets through). The owner's reactor marks the run, and its reaction carries the request
out as if a client had asked it directly, then records `RelayedRequestSettled` with the reply,
which the asking daemon passes on to its client. A request still pending when the owner dies is
carried out by the daemon that adopts the run (the projection keeps it until it is settled).
"""

from __future__ import annotations

import msgspec

from orca_client.events import AnswerRequested, CancelRequested, RelayedRequestSettled
from orca_client.wire import Answer, AnswerResult, CancelResult, WireError
from orca_daemon.runs import answers
from orca_daemon.runs.lifecycle import Lifecycle
from orca_daemon.runs.run_log import RunLog
from orca_daemon.runs.supervisor import Supervisor


class RelayedRequests:
    """Carries out the requests other daemons relayed to this one for its runs."""

    def __init__(
        self, runs: RunLog, lifecycle: Lifecycle, supervisor: Supervisor, daemon: str
    ) -> None:
        self._runs = runs
        self._lifecycle = lifecycle
        self._supervisor = supervisor
        self._daemon = daemon

    async def settle(self, run_id: str) -> None:
        """Carry out each request pending for the run, and record how each went."""
        pending = [r for r in self._runs.state.relayed.values() if r.run_id == run_id]
        for request in pending:
            settled = RelayedRequestSettled(run_id, request.request_id, self._daemon)
            try:
                result = await self._carry_out(request)
            except WireError as exc:
                settled = msgspec.structs.replace(settled, error_code=exc.code, message=exc.message)
            else:
                result_json = msgspec.json.encode(result).decode()
                settled = msgspec.structs.replace(settled, result_json=result_json)
            await self._runs.append(run_id, [settled])

    async def _carry_out(
        self, request: CancelRequested | AnswerRequested
    ) -> CancelResult | AnswerResult:
        if isinstance(request, CancelRequested):
            return await self._lifecycle.cancel(request.run_id, request.reason, request.session_id)
        answer = Answer(
            run_id=request.run_id,
            answers=request.answers,
            request_id=request.question_request_id,
            answered_by=request.answered_by,
            session_id=request.session_id,
        )
        return await answers.answer(self._runs, self._supervisor, answer)
