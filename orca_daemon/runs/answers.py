"""Answers to the questions agents ask: checked against the pending request, recorded, then
handed to the agent.

The order matters: the agent's reply is worked out first (nothing changes yet), the answer is
recorded durably, and only then does the translator forget the request and the reply go to the
agent's stdin. An answer the log could not take leaves the question pending, to be answered again.
"""

from __future__ import annotations

import logging

from orca_client.events import Event, QuestionAnswered
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import Answer, AnswerResult, WireError
from orca_daemon.runs.launcher import MAX_TITLE_CHARS
from orca_daemon.runs.questions import resolve_answers, split_secrets
from orca_daemon.runs.rules import pending_request, resume_events
from orca_daemon.runs.run_log import RunLog
from orca_daemon.runs.supervisor import Supervisor

log = logging.getLogger(__name__)


async def answer(runs: RunLog, supervisor: Supervisor, request: Answer) -> AnswerResult:
    """Record the answer to a pending question request, then hand it to the agent.

    Nothing reaches the agent unless the answer names exactly the pending ids; secret answers
    are delivered but never recorded. The reply lines are queued for the agent's stdin, never
    waited for: `delivered` says whether they are in its pipe yet. A client's request: when
    the log cannot be written it is refused at once (`LogUnavailable`), the question still
    pending.
    """
    run_id = request.run_id
    async with runs.lock(run_id):
        run = runs.state.runs[run_id]
        if run.status in TERMINAL_STATUSES:
            raise WireError(
                "invalid_state", f"run {run_id} has ended ({run.status}); nothing to answer"
            )
        session_id = request.session_id
        if session_id is not None and not session_id.startswith(f"{run_id}."):
            session_id = f"{run_id}.{session_id}"  # the part after the run id: "2", "build.1"
        pending = pending_request(runs.state, run_id, request.request_id, session_id)
        answers = resolve_answers(pending.questions, request.text, request.answers)
        process = supervisor.process_of(pending.session_id)
        if process is not None and not process.accepts_input():
            raise WireError(
                "invalid_state",
                f"the agent has not read what orcad already sent it; nothing was recorded: "
                f"answer {pending.request_id} again once it reads its input",
            )
        reply = process.reply_for(pending.request_id, answers) if process else None
        if process is None or reply is None:
            raise WireError(
                "invalid_state",
                f"the agent no longer waits for request {pending.request_id}; nothing was sent",
            )
        kept, redacted = split_secrets(pending.questions, answers)
        events: list[Event] = [
            QuestionAnswered(
                run_id,
                pending.session_id,
                pending.request_id,
                answered_by=request.answered_by[:MAX_TITLE_CHARS],
                answers=kept,
                redacted_ids=redacted,
            )
        ]
        events.extend(resume_events(runs.state, run_id, resolved_session=pending.session_id))
        await runs.append(run_id, events, mode="refuse")
        still_waits = process.answered(pending.request_id)
        status = runs.state.runs[run_id].status
    if not still_waits:  # it withdrew the request while the answer was being recorded
        log.info("session %s stopped waiting for %s", pending.session_id, pending.request_id)
        raise WireError(
            "invalid_state",
            f"the agent stopped waiting for request {pending.request_id} while the answer was "
            "being recorded: the answer is in the run's log, but it was not sent",
        )
    delivered = await process.deliver(reply)
    return AnswerResult(run_id, pending.session_id, pending.request_id, status, delivered)
