"""Turns one session's facts (what its process and translator report) into events on its run's
stream: its start, its output (queued without waiting, dropped and counted while the log cannot
be written), its questions, phases, usage and the agent's own session id."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from orca_client.events import (
    AgentSessionIdentified,
    Event,
    OutputAppended,
    OutputRead,
    QuestionAsked,
    QuestionCleared,
    RunStatusChanged,
    SessionStarted,
    UsageRecorded,
)
from orca_client.views import TERMINAL_STATUSES
from orca_daemon.agents.base import (
    Identified,
    PhaseChanged,
    QuestionsAsked,
    QuestionsWithdrawn,
    Usage,
)
from orca_daemon.log.records import LogUnavailable, StoredEvent, StoreError
from orca_daemon.runs.rules import resume_events
from orca_daemon.runs.run_log import RunLog
from orca_daemon.sessions.link import AgentLink
from orca_daemon.sessions.process import SessionSpec, StreamName

log = logging.getLogger(__name__)

MAX_OUTPUT_IN_FLIGHT = 8
"""Output chunks a session may have queued for the log before its pump waits for them."""


@dataclass
class _QueuedOutput:
    """An output chunk on its way to the log, and the earlier loss its append reports."""

    future: asyncio.Future[list[StoredEvent]]
    stream: StreamName
    text: str
    reported: dict[StreamName, int]


class Recorder:
    """Turns one session's facts into events on its run's stream.

    Output is dropped while the log cannot be written; what was lost (bytes per stream) is
    recorded as an `orca` output line as soon as the log can be written again (`report_loss`),
    and at the latest before the session's end."""

    def __init__(self, runs: RunLog, spec: SessionSpec) -> None:
        self._runs = runs
        self._spec = spec
        self._in_flight: deque[_QueuedOutput] = deque()
        self._lost: dict[StreamName, int] = {}
        self._lost_reason = ""
        self._settling = False

    async def started(self, agent: AgentLink) -> None:
        spec = self._spec
        state = self._runs.state
        run, session = state.runs[spec.run_id], state.sessions[spec.session_id]
        started = SessionStarted(
            spec.run_id,
            spec.session_id,
            agent.pid,
            agent.start_ticks,
            agent.holder_pid,
            agent.holder_start_ticks,
            command=None if spec.command == session.command else spec.command,
        )
        await self._runs.record_if_live(
            spec.run_id,
            spec.session_id,
            [started],
            # The first session moves a queued run on; a later one (a plan task, a worker or an
            # orchestrator that starts late) leaves a waiting or reviewing run as it is.
            run_status="running" if run.status == "queued" else None,
        )

    def output(self, stream: StreamName, text: str, at: int | None) -> None:
        """Queue the chunk without waiting for its commit (the log keeps queue order), so the
        pump goes on reading (`output_room` bounds how many are in flight)."""
        self._forget_written()
        spec = self._spec
        events: list[Event] = []
        reported: dict[StreamName, int] = {}
        if self._lost and self._runs.store.unwritable() is None:
            reported, self._lost = self._lost, {}
            events.append(self._loss_note(reported))
        offset = at if stream != "orca" else None
        events.append(OutputAppended(spec.run_id, spec.session_id, stream, text, offset))
        try:
            future = self._runs.append_nowait(spec.run_id, events, mode="drop")
        except LogUnavailable as exc:
            self._count_lost(stream, text, reported, exc)
        except StoreError:
            log.exception("session %s: output could not be queued", spec.session_id)
        else:
            self._in_flight.append(_QueuedOutput(future, stream, text, reported))

    async def output_room(self) -> None:
        """Wait while too many of the session's output chunks are queued for the log."""
        self._forget_written()
        while len(self._in_flight) > MAX_OUTPUT_IN_FLIGHT:
            await self._settle_one()

    def _forget_written(self) -> None:
        """Account for the chunks at the head of the queue whose appends have ended."""
        in_flight = self._in_flight
        while in_flight and in_flight[0].future.done():
            self._account(in_flight.popleft())

    async def settle(self) -> None:
        """Wait until every queued output chunk is written or dropped; then record what was
        dropped (this waits for the log, so it comes before the session's end)."""
        self._settling = True
        while self._in_flight:
            await self._settle_one()
        if self._lost:
            lost, self._lost = self._lost, {}
            await self._runs.append(self._spec.run_id, [self._loss_note(lost)])

    def report_loss(self) -> None:
        """The log can be written again: queue the note of what was dropped now (an idle
        session may print nothing more for a long time)."""
        if self._settling:
            return  # `settle` records it
        for queued in [q for q in self._in_flight if q.future.done()]:
            self._in_flight.remove(queued)
            self._account(queued)
        if not self._lost:
            return
        reported, self._lost = self._lost, {}
        try:
            future = self._runs.append_nowait(
                self._spec.run_id, [self._loss_note(reported)], mode="drop"
            )
        except LogUnavailable as exc:  # full again already
            self._count_lost("orca", "", reported, exc)
        else:
            self._in_flight.append(_QueuedOutput(future, "orca", "", reported))

    async def _settle_one(self) -> None:
        queued = self._in_flight.popleft()
        await asyncio.wait([queued.future])
        self._account(queued)

    def _account(self, queued: _QueuedOutput) -> None:
        """A chunk whose append has ended: if it was dropped, it is still to report."""
        error = None if queued.future.cancelled() else queued.future.exception()
        if isinstance(error, LogUnavailable):
            self._count_lost(queued.stream, queued.text, queued.reported, error)
        elif error is not None:
            log.error(
                "session %s: output could not be written", self._spec.session_id, exc_info=error
            )

    def _count_lost(
        self, stream: StreamName, text: str, reported: dict[StreamName, int], exc: LogUnavailable
    ) -> None:
        """A dropped append: its chunk, and the loss it was to report, are still to report."""
        for name, size in [*reported.items(), (stream, len(text.encode()))]:
            if size:
                self._lost[name] = self._lost.get(name, 0) + size
        self._lost_reason = exc.reason

    def _loss_note(self, lost: dict[StreamName, int]) -> OutputAppended:
        spec = self._spec
        amounts = " and ".join(f"{size} bytes of {name}" for name, size in lost.items())
        text = (
            f"orcad: {amounts} were not recorded because the log could not be "
            f"written ({self._lost_reason})\n"
        )
        return OutputAppended(spec.run_id, spec.session_id, "orca", text)

    def _read(self, at: int | None) -> list[Event]:
        """With a fact the agent's output caused: how far its stdout is read, for a re-attach."""
        spec = self._spec
        return [] if at is None else [OutputRead(spec.run_id, spec.session_id, "stdout", at)]

    async def read_to(self, at: int) -> None:
        """The agent's stdout is handled up to `at` (before orcad answers a line of it)."""
        await self._runs.append(self._spec.run_id, self._read(at))

    async def question_asked(self, asked: QuestionsAsked, at: int | None) -> None:
        """The agent asked: record the request and put the run in `waiting_for_answer`."""
        spec = self._spec
        event = QuestionAsked(spec.run_id, spec.session_id, asked.request_id, asked.questions)
        await self._runs.record_if_live(
            spec.run_id, spec.session_id, [event, *self._read(at)], "waiting_for_answer"
        )

    async def question_withdrawn(self, withdrawn: QuestionsWithdrawn, at: int | None) -> None:
        """The agent withdrew its question: clear it; the run resumes if nothing else waits."""
        spec, request_id = self._spec, withdrawn.request_id
        async with self._runs.lock(spec.run_id):
            session = self._runs.state.sessions.get(spec.session_id)
            if (
                session is None
                or session.pending is None
                or session.pending.request_id != request_id
            ):
                return
            events: list[Event] = [
                QuestionCleared(spec.run_id, spec.session_id, request_id, withdrawn.reason)
            ]
            events += resume_events(self._runs.state, spec.run_id, spec.session_id)
            await self._runs.append(spec.run_id, [*events, *self._read(at)])

    async def phase(self, changed: PhaseChanged, at: int | None) -> None:
        """The agent moved to another phase; a waiting or ended run keeps its status."""
        spec, phase = self._spec, changed.phase
        async with self._runs.lock(spec.run_id):
            session = self._runs.state.sessions.get(spec.session_id)
            run = self._runs.state.runs[spec.run_id]
            if session is None or session.status in TERMINAL_STATUSES:
                return
            if run.status in TERMINAL_STATUSES or run.status in ("waiting_for_answer", phase):
                return
            changed_to = RunStatusChanged(spec.run_id, phase)
            await self._runs.append(spec.run_id, [changed_to, *self._read(at)])

    async def usage(self, usage: Usage, at: int | None) -> None:
        spec = self._spec
        await self._runs.append(
            spec.run_id,
            [
                UsageRecorded(
                    spec.run_id,
                    spec.session_id,
                    usage.data,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.cost_usd,
                ),
                *self._read(at),
            ],
        )

    async def identified(self, identified: Identified, at: int | None) -> None:
        spec = self._spec
        event = AgentSessionIdentified(spec.run_id, spec.session_id, identified.agent_session_id)
        await self._runs.append(spec.run_id, [event, *self._read(at)])
