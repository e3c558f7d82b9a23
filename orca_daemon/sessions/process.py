"""The subprocess pump: runs one agent process in its own process group and drives a translator.

It reads stdout and stderr, feeds stdout lines to the agent's translator, writes the translator's
lines to stdin from a task of its own (so that an agent that does not read never stalls the pump),
coalesces output into bounded chunks for the recorder, and reports how the process ended. It
decides no statuses. Every task it starts belongs to its one task group (`SessionProcess.run`).
"""

from __future__ import annotations

import asyncio
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
from orca_daemon.sessions.input import InputWriter
from orca_daemon.sessions.lines import LineSplitter, join_outputs, without_terminal_escapes
from orca_daemon.sessions.output import OutputBuffer, StreamName
from orca_daemon.sessions.procs import (
    ProcessTable,
    child_env,
    exited,
    prepare_agent_process,
    process_start_ticks,
)
from orca_daemon.sessions.stopping import Stopper

__all__ = [
    "PumpSettings",
    "SessionOutcome",
    "SessionProcess",
    "SessionRecorder",
    "SessionSpec",
    "StreamName",
]

log = logging.getLogger(__name__)

READ_SIZE = 65_536


class SessionRecorder(Protocol):
    """Where a session's facts go; `runs/recorder.Recorder` turns them into events."""

    async def started(self, pid: int, process_start_ticks: int | None) -> None: ...

    async def output(self, stream: StreamName, text: str) -> None: ...

    async def question_asked(self, asked: QuestionsAsked) -> None: ...

    async def question_withdrawn(self, withdrawn: QuestionsWithdrawn) -> None: ...

    async def usage(self, usage: Usage) -> None: ...

    async def phase(self, changed: PhaseChanged) -> None: ...

    async def identified(self, identified: Identified) -> None: ...


@dataclass(frozen=True)
class SessionSpec:
    run_id: str
    session_id: str
    command: list[str]
    cwd: str
    prompt: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the agent (from its configuration)."""


@dataclass(frozen=True)
class PumpSettings:
    output_chunk_chars: int = 16_384
    output_flush_seconds: float = 0.05
    max_line_bytes: int = 1 << 20
    result_exit_grace_seconds: float = 10.0
    pipe_drain_seconds: float = 2.0
    interrupt_grace_seconds: float = 5.0
    """How long a cancelled agent that was asked to end its turn (`Interrupting`) may take to
    end it and exit before its process group is signalled."""


@dataclass
class SessionOutcome:
    """How a session's process ended, and what its agent said about it."""

    exit_code: int | None
    result: Result | None = None
    spawn_error: str | None = None


MAX_ENV_PROMPT_BYTES = 64 * 1024


async def spawn_agent(spec: SessionSpec) -> asyncio.subprocess.Process:
    """Start the agent in a process group of its own, its three pipes open to orcad."""
    prompt = spec.prompt or ""
    env = child_env(
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
    return await asyncio.create_subprocess_exec(
        *spec.command,
        cwd=spec.cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        # Only a ctypes call and setrlimit between fork and exec: safe with orcad's threads.
        preexec_fn=prepare_agent_process,
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
    """One agent process: start it, pump its output through its translator, stop it on request."""

    def __init__(
        self,
        spec: SessionSpec,
        translator: Translator,
        recorder: SessionRecorder,
        settings: PumpSettings,
    ) -> None:
        self.spec = spec
        self._translator = translator
        self._recorder = recorder
        self._settings = settings
        self._process: asyncio.subprocess.Process | None = None
        self._output = OutputBuffer(
            recorder.output, settings.output_chunk_chars, settings.output_flush_seconds
        )
        self._stopper = Stopper(spec.session_id)
        self._input: InputWriter | None = None
        self._result: Result | None = None
        self._result_seen = anyio.Event()
        self._recording = 0
        """Effects the pump is recording now (they wait for the log, which may be full)."""
        self._recorded = asyncio.Event()
        """Set whenever the pump is not recording."""
        self._recorded.set()
        self._open_readers = 2

    async def run(self) -> SessionOutcome:
        """Run the process to its end; returns how it ended. Output is recorded as it comes.

        When it fails or is cancelled, it stops the agent and all it started before it raises."""
        if self._stopper.requested is not None:
            return SessionOutcome(exit_code=None, spawn_error="stopped before it started")
        try:
            with anyio.CancelScope(shield=True):  # a cancel comes after, when it can end all
                process = await spawn_agent(self.spec)
        except OSError as exc:
            return SessionOutcome(
                exit_code=None, spawn_error=f"could not start {self.spec.command[0]!r}: {exc}"
            )
        self._process = process
        try:
            async with anyio.create_task_group() as tasks:
                self._stopper.attach(process, tasks)  # (a stop that came while it was spawned)
                try:
                    await self._pump(process, tasks)
                finally:
                    self._stopper.detach()
                tasks.cancel_scope.cancel()  # the flusher, the stdin writer, stuck readers
        except BaseException:
            await self._stopper.abandon(process)
            raise
        finally:
            notes = self._input.abandon() if self._input is not None else []
        for note in notes:
            await self._output.add("orca", note)
        await self._output.flush(force=True)
        return SessionOutcome(exit_code=process.returncode, result=self._result)

    async def _pump(self, process: asyncio.subprocess.Process, tasks: anyio.abc.TaskGroup) -> None:
        """Pump until the agent has exited and its output is read; leave nothing behind."""
        await self._recorder.started(process.pid, process_start_ticks(process.pid))
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        self._input = InputWriter(process.stdin, self.spec.session_id)
        read = anyio.Event()
        tasks.start_soon(self._output.flush_when_due)
        tasks.start_soon(self._input.run)
        # Read first: an agent that prints before it reads its prompt must never stall orcad.
        tasks.start_soon(self._read, process.stdout, "stdout", read)
        tasks.start_soon(self._read, process.stderr, "stderr", read)
        tasks.start_soon(self._stop_if_lingering)
        await self._carry_out(self._translator.start(self.spec.prompt or ""), "stdout", True)
        await exited(process)
        await self._stopper.end_leftovers(process.pid)
        await self._drain(read)

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
        True when they are already in its stdin pipe, False when they wait in orcad (queued)."""
        await self._carry_out(effects, "stdout", force=True)
        return self._input is not None and self._input.unwritten()[1] == 0

    async def cancel(self, reason: str, grace: float) -> None:
        """Tell the agent it is cancelled (in its protocol), then stop its process group.

        An agent asked to end its turn (`Interrupting`) gets `interrupt_grace_seconds` to do so
        and exit (its result closes its input, which ends it) before the signal. Never raises
        but for a cancel of its caller."""
        process = self._process
        if process is not None and process.returncode is None:
            try:
                effects = self._translator.cancel(reason)
                await self._carry_out(effects, "stdout", force=True)
                if any(isinstance(effect, Interrupting) for effect in effects):
                    with anyio.move_on_after(self._settings.interrupt_grace_seconds):
                        await exited(process)
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
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        """True while the agent's process runs (a zombie not yet reaped counts as ended)."""
        process = self._process
        if process is None or process.returncode is not None:
            return False
        return process_start_ticks(process.pid) is not None

    async def wait_stopped(self) -> None:
        """Return once the stop that `stop` began has ended (when `run` has returned, it has)."""
        await self._stopper.wait_stopped()

    async def _drain(self, read: anyio.Event) -> None:
        """Let the readers finish what the exited agent wrote. Whatever still holds the pipes
        (it left the group and the session) is not waited for; but a reader that waits for the
        log to take a record (a question, while the disk is full) is, for what follows it in
        the agent's output (its result, say) decides how the session ended."""
        said = False
        while True:
            with anyio.move_on_after(self._settings.pipe_drain_seconds):
                await read.wait()
            if read.is_set():
                return
            if self._recorded.is_set():
                log.warning(
                    "session %s: something still holds its output pipes", self.spec.session_id
                )
                return
            if not said:
                said = True
                log.info(
                    "session %s: its agent has exited; the rest of its output waits for the "
                    "log to be written",
                    self.spec.session_id,
                )
            await first_of(read.wait, self._recorded.wait)

    async def _read(
        self, reader: asyncio.StreamReader, stream: StreamName, read: anyio.Event
    ) -> None:
        """Read one pipe to its end; the last reader to end finishes the translator's input."""
        splitter = LineSplitter(self._settings.max_line_bytes)
        while data := await reader.read(READ_SIZE):
            await self._handle_lines(stream, splitter.feed(data))
        await self._handle_lines(stream, splitter.finish())
        self._open_readers -= 1
        if not self._open_readers:
            await self._carry_out(self._translator.finish(), "stdout")
            read.set()

    async def _handle_lines(self, stream: StreamName, lines: list[tuple[str, bool]]) -> None:
        """One read's lines: their effects, with adjacent output joined into one piece."""
        effects: list[Effect] = []
        for text, complete in lines:
            if stream == "stderr":  # a log line: its colours stay behind
                text = without_terminal_escapes(text)
            if stream == "stderr" or not complete:
                effects.append(Output(text + "\n" if complete else text))
            else:
                effects.extend(self._translator.feed_line(text))
        await self._carry_out(join_outputs(effects), stream)

    async def _carry_out(
        self, effects: list[Effect], stream: StreamName, force: bool = False
    ) -> None:
        """Do what the translator said, in order; output before a question stays before it.

        Lines for the agent are queued, never waited for; `force` queues them even when much
        waits unread (the prompt, an answer, a cancel: bounded by what clients may send)."""
        for effect in effects:
            if isinstance(effect, Output):
                await self._output.add(stream, effect.text)
            elif isinstance(effect, Send):
                if self._input is not None:
                    self._input.offer(effect.line, force)
            elif isinstance(effect, CloseInput):
                if self._input is not None:
                    self._input.close()
            elif isinstance(effect, Interrupting):
                continue  # for `cancel`, which waits
            elif isinstance(effect, Note):
                await self._output.add("orca", effect.text.rstrip("\n") + "\n")
            elif isinstance(effect, Result):
                if self._result is None:
                    self._result = effect
                    self._result_seen.set()
                    if self._input is not None:
                        self._input.close()
                    await self._stopper.track_descendants()  # before they leave the agent
            else:
                self._recording += 1
                self._recorded.clear()
                try:
                    await self._output.flush(force=True)
                    await self._record(effect)
                finally:
                    self._recording -= 1
                    if not self._recording:
                        self._recorded.set()

    async def _record(self, effect: Effect) -> None:
        if isinstance(effect, QuestionsAsked):
            await self._recorder.question_asked(effect)
        elif isinstance(effect, QuestionsWithdrawn):
            await self._recorder.question_withdrawn(effect)
        elif isinstance(effect, Usage):
            await self._recorder.usage(effect)
        elif isinstance(effect, PhaseChanged):
            await self._recorder.phase(effect)
        elif isinstance(effect, Identified):
            await self._recorder.identified(effect)
