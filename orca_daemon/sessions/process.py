"""The session pump: runs one agent through its holder and drives its translator.

The holder (`sessions/holder.py`) starts the agent in its own process group, owns its pipes and
spools what it prints; the pump reads that output from the holder's connection, feeds stdout lines
to the translator, sends the translator's lines to the agent from a task of its own (so that an
agent that does not read never stalls the pump), coalesces output into bounded chunks for the
recorder, and reports how the agent ended. Every recorded fact carries how far into the spool it
reaches, so an orcad that re-attaches (`run(resume=...)`) reads on from exactly there, with the
translator rebuilt from the spool. It decides no statuses. Every task it starts belongs to its one
task group (`SessionProcess.run`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import anyio
import anyio.abc

from orca_daemon.agents.base import (
    CloseInput,
    Effect,
    Identified,
    Interrupting,
    Note,
    Output,
    PhaseChanged,
    QuestionsAsked,
    QuestionsWithdrawn,
    Result,
    Send,
    Translator,
    Usage,
)
from orca_daemon.sessions.held import (
    HolderError,
    HolderGone,
    HolderLaunch,
    HolderPlaces,
    remove_places,
    spool_bytes,
    start_holder,
)
from orca_daemon.sessions.input import InputWriter
from orca_daemon.sessions.lines import LineSplitter, join_outputs, without_terminal_escapes
from orca_daemon.sessions.link import AgentLink
from orca_daemon.sessions.output import OutputBuffer, OutputClock, StreamName
from orca_daemon.sessions.procs import ProcessTable, child_env, pid_exited, running_since
from orca_daemon.sessions.stopping import Stopper

__all__ = [
    "PumpSettings",
    "Resumption",
    "SessionOutcome",
    "SessionProcess",
    "SessionRecorder",
    "SessionSpec",
    "StreamName",
]

log = logging.getLogger(__name__)

REPLAY_READ_BYTES = 1 << 20


class SessionRecorder(Protocol):
    """Where a session's facts go; `runs/recorder.Recorder` turns them into events. `at` is
    how far into the agent's stdout spool the fact reaches (None: not from its output)."""

    async def started(self, agent: AgentLink) -> None: ...

    def output(self, stream: StreamName, text: str, at: int | None) -> None:
        """Queue a chunk of output, without waiting."""

    async def output_room(self) -> None:
        """Wait while too much of the session's output waits to be written."""

    async def read_to(self, at: int) -> None: ...

    async def question_asked(self, asked: QuestionsAsked, at: int | None) -> None: ...

    async def question_withdrawn(self, withdrawn: QuestionsWithdrawn, at: int | None) -> None: ...

    async def usage(self, usage: Usage, at: int | None) -> None: ...

    async def phase(self, changed: PhaseChanged, at: int | None) -> None: ...

    async def identified(self, identified: Identified, at: int | None) -> None: ...


@dataclass(frozen=True)
class SessionSpec:
    run_id: str
    session_id: str
    command: list[str]
    cwd: str
    prompt: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the agent (from its configuration)."""
    note: str | None = None
    """Said in the session's log (stream `orca`) when its agent starts."""


@dataclass(frozen=True)
class PumpSettings:
    output_chunk_chars: int = 16_384
    output_flush_seconds: float = 0.05
    max_line_bytes: int = 1 << 20
    result_exit_grace_seconds: float = 10.0
    interrupt_grace_seconds: float = 5.0
    """How long a cancelled agent that was asked to end its turn (`Interrupting`) may take to
    end it and exit before its process group is signalled."""
    orphan_timeout_seconds: float = 86_400.0
    """How long a holder keeps its agent running with no orcad attached."""
    exit_drain_seconds: float = 2.0
    """How long the holder reads pipes that something the exited agent left still holds."""


@dataclass(frozen=True)
class Resumption:
    """A session whose holder kept it running while orcad was away: where the log stopped."""

    agent: AgentLink
    stdout: int
    stderr: int
    pending_request_id: str | None
    """The question the log shows waiting for an answer, if any."""
    started_recorded: bool = True
    """False when orcad stopped before it recorded the agent's start."""


@dataclass
class SessionOutcome:
    """How a session's process ended, and what its agent said about it."""

    exit_code: int | None
    result: Result | None = None
    spawn_error: str | None = None
    lost: str | None = None
    """Why nothing is known of how the agent ended (its holder died, say)."""
    detached: bool = False
    """orcad let go of the session (it stops): the agent runs on in its holder."""


MAX_ENV_PROMPT_BYTES = 64 * 1024


def agent_env(spec: SessionSpec) -> dict[str, str]:
    """The agent's environment: orcad's, its configuration's, and the session's."""
    prompt = spec.prompt or ""
    return child_env(
        spec.env,
        ORCA_RUN_ID=spec.run_id,
        ORCA_SESSION_ID=spec.session_id,
        # One environment string may not exceed 128 KiB on Linux, nor hold a NUL: such a
        # prompt is only on stdin, and ORCA_PROMPT_ON_STDIN_ONLY says so.
        **(
            {"ORCA_PROMPT": prompt}
            if len(prompt.encode()) <= MAX_ENV_PROMPT_BYTES and "\0" not in prompt
            else {"ORCA_PROMPT": "", "ORCA_PROMPT_ON_STDIN_ONLY": "1"}
        ),
    )


async def first_of(*waits: Callable[[], Awaitable[object]]) -> None:
    """Return once one of `waits` has returned; the others are cancelled."""
    async with anyio.create_task_group() as race:

        async def wait_then_end(wait: Callable[[], Awaitable[object]]) -> None:
            await wait()
            race.cancel_scope.cancel()

        for wait in waits:
            race.start_soon(wait_then_end, wait)


class SessionProcess:
    """One agent, held by its holder: start it (or re-attach to it), pump its output through
    its translator, stop it on request, or let go of it when orcad stops (`detach`)."""

    def __init__(
        self,
        spec: SessionSpec,
        translator: Translator,
        recorder: SessionRecorder,
        settings: PumpSettings,
        places: HolderPlaces,
        clock: OutputClock | None = None,
    ) -> None:
        """`clock` sends this session's due output with other sessions' (without one, the
        session runs a clock of its own)."""
        self.spec = spec
        self._translator = translator
        self._recorder = recorder
        self._settings = settings
        self.places = places
        self._agent: AgentLink | None = None
        self._own_clock: OutputClock | None = None
        if clock is None:
            clock = self._own_clock = OutputClock.for_delay(settings.output_flush_seconds)
        self._output = OutputBuffer(
            recorder.output, settings.output_chunk_chars, settings.output_flush_seconds, clock
        )
        self._splitters: dict[StreamName, LineSplitter] = {}
        self._stopper = Stopper(spec.session_id)
        self._input: InputWriter | None = None
        self._result: Result | None = None
        self._result_seen = anyio.Event()
        self._marked = -1
        """The stdout position last recorded as read before a line went to the agent."""
        self._lost: str | None = None
        self._scope: anyio.CancelScope | None = None
        self._detaching = False
        self._exited = False

    async def run(self, resume: Resumption | None = None) -> SessionOutcome:
        """Run the agent to its end (started now, or `resume`d); returns how it ended. Output
        is recorded as it comes.

        When it fails or is cancelled, it stops the agent and all it started before it raises;
        after `detach`, it returns at once and leaves the agent to its holder."""
        with anyio.CancelScope() as self._scope:
            if self._detaching:
                return SessionOutcome(exit_code=None, detached=True)
            if resume is None:
                started = await self._start()
                if isinstance(started, SessionOutcome):
                    return started
                agent, later = started
                offsets = (0, 0)
            else:
                agent, later = resume.agent, []
                self._agent = agent
                await anyio.to_thread.run_sync(self._replay, resume)
                if self._result is not None:
                    self._result_seen.set()
                offsets = (resume.stdout, resume.stderr)
            max_bytes = self._settings.max_line_bytes
            self._splitters.setdefault("stdout", LineSplitter(max_bytes, offsets[0]))
            self._splitters["stderr"] = LineSplitter(max_bytes, offsets[1])
            try:
                async with anyio.create_task_group() as tasks:
                    holder = (agent.holder_pid, agent.holder_start_ticks)
                    self._stopper.attach(
                        agent.pid, agent.start_ticks, tasks, holder if agent.holder_pid else None
                    )
                    try:
                        fresh = resume is None or not resume.started_recorded
                        await self._pump(agent, tasks, later, fresh)
                    finally:
                        self._stopper.detach()
                    tasks.cancel_scope.cancel()  # the flusher, the stdin writer, the reader
            except BaseException:
                if not self._detaching:  # (a detach is this scope's own cancel: caught below)
                    await self._stopper.abandon(agent.pid)
                    shielded = anyio.CancelScope(shield=True)
                    with shielded, anyio.move_on_after(2.0), contextlib.suppress(HolderError):
                        await agent.acknowledge()  # nothing is left for its holder to keep
                raise
            finally:
                notes = self._input.abandon() if self._input is not None else []
            dropped = agent.exit.stdin_dropped if agent.exit is not None else 0
            if dropped and not agent.stdin.buffered():  # (else the input's note says it)
                notes.append(
                    f"the agent exited without reading {dropped} bytes of its input; they were "
                    "dropped\n"
                )
            for note in notes:
                self._output.add("orca", note)
            self._output.flush()
            return SessionOutcome(exit_code=agent.returncode, result=self._result, lost=self._lost)
        held = self._agent
        self._output.flush()  # what is buffered: the next orcad need not read it
        if held is not None:
            held.detach()
        return SessionOutcome(exit_code=None, detached=True)

    async def _start(self) -> tuple[AgentLink, list[Effect]] | SessionOutcome:
        """Start the agent in a new holder, its first input (the translator's start) handed to
        the holder with it; returns the agent and the start's other effects."""
        if self._stopper.requested is not None:
            return SessionOutcome(exit_code=None, spawn_error="stopped before it started")
        first = self._translator.start(self.spec.prompt or "")
        launch = HolderLaunch(
            command=self.spec.command,
            cwd=self.spec.cwd,
            env=agent_env(self.spec),
            initial_input=b"".join(e.line for e in first if isinstance(e, Send)),
            close_input=any(isinstance(e, CloseInput) for e in first),
            orphan_timeout=self._settings.orphan_timeout_seconds,
            exit_drain=self._settings.exit_drain_seconds,
        )
        try:
            with anyio.CancelScope(shield=True):  # a cancel comes after, when it can end all
                agent = await start_holder(self.places, launch)
        except HolderError as exc:
            return SessionOutcome(exit_code=None, spawn_error=str(exc))
        self._agent = agent
        return agent, [e for e in first if not isinstance(e, Send | CloseInput)]

    def _replay(self, resume: Resumption) -> None:
        """Rebuild the translator as the earlier orcad left it: its start, then every stdout
        line it had handled (read from the spool), with their effects dropped (they happened)
        but for the agent's result; then it forgets the questions the log shows settled."""
        self._translator.start(self.spec.prompt or "")
        splitter = LineSplitter(self._settings.max_line_bytes)
        asked: dict[str, None] = {}
        position = 0
        while position < resume.stdout:
            end = min(resume.stdout, position + REPLAY_READ_BYTES)
            data = spool_bytes(self.places, "stdout", position, end)
            if not data:
                raise HolderError(f"its spool ends at byte {position}, before {resume.stdout}")
            position += len(data)
            for text, complete, _ in splitter.feed(data):
                for effect in self._translator.feed_line(text) if complete else []:
                    if isinstance(effect, Result) and self._result is None:
                        self._result = effect
                    elif isinstance(effect, QuestionsAsked):
                        asked[effect.request_id] = None
                    elif isinstance(effect, QuestionsWithdrawn):
                        asked.pop(effect.request_id, None)
        for request_id in asked:
            if request_id != resume.pending_request_id:
                self._translator.answered(request_id)
        self._splitters["stdout"] = splitter

    def detach(self) -> None:
        """orcad stops: let go of the agent (its holder keeps it running for the next orcad);
        `run` returns a detached outcome."""
        self._detaching = True
        if self._scope is not None:
            self._scope.cancel()

    async def _pump(
        self, agent: AgentLink, tasks: anyio.abc.TaskGroup, first: list[Effect], fresh: bool
    ) -> None:
        """Pump until the agent has exited and its output is read; leave nothing behind."""
        if fresh:
            await self._recorder.started(agent)
            if self.spec.note is not None:
                self._output.add("orca", self.spec.note.rstrip("\n") + "\n")
        else:
            self._output.add("orca", "orcad re-attached to this session; it ran on\n")
        self._input = InputWriter(agent.stdin, self.spec.session_id)
        read = anyio.Event()
        if self._own_clock is not None:
            tasks.start_soon(self._own_clock.run)
        tasks.start_soon(self._input.run)
        tasks.start_soon(self._read, agent, read)
        tasks.start_soon(self._stop_if_lingering)
        await self._carry_out(first, "stdout", force=True)
        await pid_exited(agent.pid, agent.start_ticks)
        self._exited = True
        self._stopper.exited()
        await self._stopper.end_leftovers(agent.pid)
        with anyio.move_on_after(self._settings.exit_drain_seconds + 1.0):
            await read.wait()
        if not read.is_set():  # its holder bounds how long it waits for the pipes
            log.info(
                "session %s: its agent has exited; the rest of its output waits to be recorded "
                "(for the log to be written?)",
                self.spec.session_id,
            )
            await read.wait()

    async def _stop_if_lingering(self) -> None:
        """The agent gave its result: it has a grace period to exit."""
        await self._result_seen.wait()
        await anyio.sleep(self._settings.result_exit_grace_seconds)
        log.info("session %s lingers after its result; stopping it", self.spec.session_id)
        self.stop(grace=2.0)

    def reply_for(self, request_id: str, answers: dict[str, list[str]]) -> list[Effect] | None:
        """The agent's reply lines for these answers, or None when the agent no longer waits
        for that request (it withdrew it, or its turn ended, since the log last said so). The
        request stays pending until `answered`."""
        effects = self._translator.answer(request_id, answers)
        return effects or None

    def answered(self, request_id: str) -> bool:
        """The answer is recorded: the translator forgets the request (False when the agent
        stopped waiting for it meanwhile)."""
        return self._translator.answered(request_id)

    def accepts_input(self) -> bool:
        """False while too much of what orcad sent the agent waits for it to read."""
        return self._input is None or self._input.has_room()

    async def deliver(self, effects: list[Effect]) -> bool:
        """Send reply lines from `reply_for` to the agent without waiting for it to read them;
        True when they are in its stdin pipe, False when they wait (in orcad or its holder)."""
        await self._carry_out(effects, "stdout", force=True)
        if self._input is None:
            return False
        with anyio.move_on_after(2.0):  # a holder says at once (one that is stopped is not waited)
            await self._input.settle()
        return self._input.unwritten()[1] == 0

    async def cancel(self, reason: str, grace: float) -> None:
        """Tell the agent it is cancelled (in its protocol), then stop its process group.

        An agent asked to end its turn (`Interrupting`) gets `interrupt_grace_seconds` to do so
        and exit (its result closes its input, which ends it) before the signal. Never raises
        but for a cancel of its caller."""
        agent = self._agent
        if agent is not None and not self._exited:
            try:
                effects = self._translator.cancel(reason)
                await self._carry_out(effects, "stdout", force=True)
                if any(isinstance(effect, Interrupting) for effect in effects):
                    with anyio.move_on_after(self._settings.interrupt_grace_seconds):
                        await pid_exited(agent.pid, agent.start_ticks)
                elif self._input is not None:  # a moment to read it before the signal
                    with anyio.move_on_after(1.0):
                        await self._input.wait_written()
            except Exception:
                log.exception("session %s: could not tell its agent to stop", self.spec.session_id)
        self.stop(grace)

    def stop(self, grace: float) -> None:
        """Begin stopping the process group: SIGTERM now, SIGKILL after `grace` seconds.

        Before the process exists, it makes sure it is stopped as soon as it does (or never
        starts); after `run` has returned, nothing of it is left to stop."""
        self._stopper.stop(grace)

    def note_descendants(self, table: ProcessTable) -> None:
        """Remember the agent's descendants in `table` (a `process_table()`), and forget those
        that have ended. Those it remembers are stopped when the session ends, even after the
        agent's exit has re-parented them away from it."""
        self._stopper.note_descendants(table)

    @property
    def pid(self) -> int | None:
        return self._agent.pid if self._agent is not None else None

    def alive(self, table: ProcessTable | None = None) -> bool:
        """True while the agent's process runs (a zombie not yet reaped counts as ended); with
        `table`, whether it ran when that table was taken."""
        agent = self._agent
        if agent is None or self._exited:
            return False
        ticks = running_since(agent.pid) if table is None else table.ticks(agent.pid)
        return ticks is not None and ticks == (agent.start_ticks or ticks)

    async def release(self) -> None:
        """The session's end is recorded: its holder may exit, and its files go."""
        agent = self._agent
        if agent is not None and self._lost is None:
            with anyio.move_on_after(5.0), contextlib.suppress(HolderError, OSError):
                await agent.acknowledge()
        if agent is not None:
            agent.detach()
        await anyio.to_thread.run_sync(remove_places_quietly, self.places)

    async def wait_stopped(self) -> None:
        """Return once the stop that `stop` began has ended (when `run` has returned, it has)."""
        await self._stopper.wait_stopped()

    async def _read(self, agent: AgentLink, read: anyio.Event) -> None:
        """Read the agent's output to its end; then finish the translator's input. A holder
        that dies first ends the agent with it (it is the agent's parent): the session is lost."""
        try:
            plain = self._translator.plain_mark
            while (piece := await agent.read()) is not None:
                stream, data = piece
                splitter = self._splitters[stream]
                before = splitter.offset
                if stream == "stdout" and plain is not None:  # plain output, unlooked at
                    lines = splitter.feed_plain(data, plain)
                else:
                    lines = splitter.feed(data)
                await self._handle_lines(stream, lines, before)
                await self._recorder.output_room()
        except HolderGone as exc:
            self._lost = f"its holder ended unexpectedly ({exc})"
            log.warning("session %s: %s", self.spec.session_id, self._lost)
            self.stop(2.0)
        for stream in ("stdout", "stderr"):
            splitter = self._splitters[stream]
            before = splitter.offset
            await self._handle_lines(stream, splitter.finish(), before)
        last = self._translator.finish()
        end = self._splitters["stdout"].offset
        await self._carry_out(last, "stdout", ends=[end] * len(last))
        read.set()

    async def _handle_lines(
        self, stream: StreamName, lines: list[tuple[str, bool, int]], before: int
    ) -> None:
        """One read's lines (the first begins at `before`): their effects, with adjacent output
        joined into one piece."""
        effects: list[Effect] = []
        ends: list[int] = []
        for text, complete, end in lines:
            if stream == "stderr":  # a log line: its colours stay behind
                text = without_terminal_escapes(text)
            if stream == "stderr" or not complete:
                effects.append(Output(text + "\n" if complete else text))
                ends.append(end)
            else:
                produced = self._translator.feed_line(text)
                effects += produced
                # Only the line's last effect says it was read whole: a restart that finds
                # the others recorded but not the last reads the line again.
                ends += [before] * (len(produced) - 1) + [end] if produced else []
            before = end
        joined, joined_ends = join_outputs(effects, ends)
        await self._carry_out(joined, stream, ends=joined_ends)

    async def _carry_out(
        self,
        effects: list[Effect],
        stream: StreamName,
        force: bool = False,
        ends: list[int] | None = None,
    ) -> None:
        """Do what the translator said, in order; output before a question stays before it.

        Lines for the agent are queued, never waited for; `force` queues them even when much
        waits unread (the prompt, an answer, a cancel: bounded by what clients may send). With
        `ends` (the effects came from the agent's output), a line answering the agent goes out
        only once the log says how far its output was read: a re-attached orcad never sends
        it twice."""
        for index, effect in enumerate(effects):
            at = ends[index] if ends is not None else None
            if isinstance(effect, Output):
                self._output.add(stream, effect.text, at)
            elif isinstance(effect, Send):
                if at is not None and at > self._marked:
                    self._output.flush()
                    await self._recorder.read_to(at)
                    self._marked = at
                if self._input is not None:
                    self._input.offer(effect.line, force)
            elif isinstance(effect, CloseInput):
                if self._input is not None:
                    self._input.close()
            elif isinstance(effect, Interrupting):
                continue  # for `cancel`, which waits
            elif isinstance(effect, Note):
                self._output.add("orca", effect.text.rstrip("\n") + "\n")
            elif isinstance(effect, Result):
                if self._result is None:
                    self._result = effect
                    self._result_seen.set()
                    if self._input is not None:
                        self._input.close()
                    await self._stopper.result_given()
            else:
                self._output.flush()
                await self._record(effect, at)

    async def _record(self, effect: Effect, at: int | None) -> None:
        if isinstance(effect, QuestionsAsked):
            await self._recorder.question_asked(effect, at)
        elif isinstance(effect, QuestionsWithdrawn):
            await self._recorder.question_withdrawn(effect, at)
        elif isinstance(effect, Usage):
            await self._recorder.usage(effect, at)
        elif isinstance(effect, PhaseChanged):
            await self._recorder.phase(effect, at)
        elif isinstance(effect, Identified):
            await self._recorder.identified(effect, at)


def remove_places_quietly(places: HolderPlaces) -> None:
    try:
        remove_places(places)
    except OSError as exc:
        log.warning("could not remove a session's holder files: %s", exc)
