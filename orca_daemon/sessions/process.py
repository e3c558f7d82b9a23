"""The subprocess pump: runs one agent process in its own process group and drives a translator.

It reads stdout and stderr, feeds stdout lines to the agent's translator, writes the translator's
lines to stdin from a task of its own (so that an agent that does not read never stalls the pump),
coalesces output into bounded chunks for the recorder, and reports how the process ended. It
decides no statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

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
from orca_daemon.sessions.coalesce import OutputCoalescer
from orca_daemon.sessions.input import MAX_UNREAD_INPUT_BYTES, InputWriter
from orca_daemon.sessions.lines import LineSplitter, join_outputs, without_terminal_escapes
from orca_daemon.sessions.procs import (
    ProcessTable,
    child_env,
    descendants,
    exited,
    group_exists,
    prepare_agent_process,
    process_start_ticks,
    process_table,
    processes_of_sessions,
    running_since,
    stop_group,
    stop_processes,
)

log = logging.getLogger(__name__)

StreamName = Literal["stdout", "stderr", "orca"]
"""`orca` carries orcad's own notes about a session (a malformed line it ignored, say)."""
READ_SIZE = 65_536


class SessionRecorder(Protocol):
    """Where a session's facts go; the run manager turns them into events."""

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
        self._coalescers: dict[StreamName, OutputCoalescer] = {
            name: OutputCoalescer(settings.output_chunk_chars, settings.output_flush_seconds)
            for name in ("stdout", "stderr", "orca")
        }
        self._buffered = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._input: InputWriter | None = None
        self._dropped_input = 0
        """Lines orcad had for the agent but dropped while it ran (too much waited unread)."""
        self._stopping: asyncio.Task[None] | None = None
        self._stop_grace: float | None = None
        self._result: Result | None = None
        self._result_seen = asyncio.Event()
        self._recording = 0
        """Effects the pump is recording now (they wait for the log, which may be full)."""
        self._recorded = asyncio.Event()
        """Set whenever the pump is not recording."""
        self._recorded.set()
        self._descendants: dict[int, int] = {}
        """The agent's descendants seen so far (pid -> start ticks), stopped with it."""

    async def run(self) -> SessionOutcome:
        """Run the process to its end; returns how it ended. Output is recorded as it comes."""
        if self._stop_grace is not None:
            return SessionOutcome(exit_code=None, spawn_error="stopped before it started")
        try:
            process = await self._spawn()
        except OSError as exc:
            return SessionOutcome(
                exit_code=None, spawn_error=f"could not start {self.spec.command[0]!r}: {exc}"
            )
        self._process = process
        if self._stop_grace is not None:  # stop() came while the process was being spawned
            self.stop(self._stop_grace)
        await self._recorder.started(process.pid, process_start_ticks(process.pid))
        assert process.stdin is not None and process.stdout is not None
        assert process.stderr is not None
        self._input = InputWriter(process.stdin)
        flusher = asyncio.ensure_future(self._flush_when_due())
        writer = asyncio.ensure_future(self._input.run())
        # Read first: an agent that prints before it reads its prompt must never stall orcad.
        pumps = asyncio.ensure_future(self._pump_both(process.stdout, process.stderr))
        try:
            start = self._translator.start(self.spec.prompt or "")
            await self._carry_out(start, "stdout", force=True)
            await self._wait_for_exit(process, pumps)
        finally:
            for task in (flusher, writer, pumps):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._note_unread_input(*self._input.abandon())
            await self._flush(force=True)
        return SessionOutcome(exit_code=process.returncode, result=self._result)

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
        and exit (its result closes its input, which ends it) before the signal."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(Exception):
                effects = self._translator.cancel(reason)
                await self._carry_out(effects, "stdout", force=True)
                if any(isinstance(effect, Interrupting) for effect in effects):
                    await asyncio.wait_for(exited(process), self._settings.interrupt_grace_seconds)
                elif self._input is not None:  # a moment to read it before the signal
                    await asyncio.wait_for(self._input.wait_written(), 1.0)
        self.stop(grace)

    def stop(self, grace: float) -> None:
        """Begin stopping the process group: SIGTERM now, SIGKILL after `grace` seconds.

        Before the process exists, it makes sure it is stopped as soon as it does (or never starts).
        """
        if self._stop_grace is None:
            self._stop_grace = grace
        process = self._process
        if process is None or process.returncode is not None or self._stopping is not None:
            return
        self._stopping = asyncio.ensure_future(self._stop_now(process, grace))

    async def _stop_now(self, process: asyncio.subprocess.Process, grace: float) -> None:
        await self._track_descendants()  # while the agent lives, they are all below it
        await stop_group(process.pid, grace, lambda: exited(process))

    def note_descendants(self, table: ProcessTable) -> None:
        """Remember the agent's descendants in `table` (a `process_table()`), and forget those
        that have ended. Those it remembers are stopped when the session ends, even after the
        agent's exit has re-parented them away from it."""
        known = {
            pid: ticks
            for pid, ticks in self._descendants.items()
            if running_since(pid) == ticks  # (a table taken earlier may miss it)
        }
        roots = set(known)
        if self._process is not None and self._process.returncode is None:  # not reaped: its pid
            roots.add(self._process.pid)  # is still its own
        found = descendants(table, roots) - roots
        self._descendants = {**known, **{pid: table[pid][1] for pid in found}}

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
        if self._stopping is not None:
            await self._stopping

    async def _track_descendants(self) -> None:
        self.note_descendants(await asyncio.to_thread(process_table))

    async def _spawn(self) -> asyncio.subprocess.Process:
        prompt = self.spec.prompt or ""
        env = child_env(
            self.spec.env,
            ORCA_RUN_ID=self.spec.run_id,
            ORCA_SESSION_ID=self.spec.session_id,
            # One environment string may not exceed 128 KiB on Linux, nor hold a NUL: such a
            # prompt is only on stdin, and ORCA_PROMPT_ON_STDIN_ONLY says so.
            **(
                {"ORCA_PROMPT": prompt}
                if len(prompt.encode()) <= MAX_ENV_PROMPT_BYTES and "\0" not in prompt
                else {"ORCA_PROMPT": "", "ORCA_PROMPT_ON_STDIN_ONLY": "1"}
            ),
        )
        return await asyncio.create_subprocess_exec(
            *self.spec.command,
            cwd=self.spec.cwd,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            # Only a ctypes call and setrlimit between fork and exec: safe with orcad's threads.
            preexec_fn=prepare_agent_process,
        )

    def _send(self, line: bytes, force: bool) -> bool:
        """Queue a line for the agent's stdin; False when it was dropped."""
        if self._input is None:
            return False
        if self._input.send(line, force):
            return True
        if self._input.has_room() or force:
            log.info("session %s: its stdin is closed; dropped a line", self.spec.session_id)
            return False
        self._dropped_input += 1
        if self._dropped_input == 1:
            log.warning(
                "session %s: the agent does not read its input; dropping lines for it",
                self.spec.session_id,
            )
        return False

    async def _note_unread_input(self, lines: int, unread: int) -> None:
        """The agent has exited: say in its log what it was sent and never read."""
        if self._dropped_input:
            await self._buffer(
                "orca",
                f"orcad dropped {self._dropped_input} line(s) for the agent: it did not read "
                f"its input (at most {MAX_UNREAD_INPUT_BYTES} bytes wait for it)\n",
            )
        if unread:
            log.info("session %s: the agent never read %d bytes", self.spec.session_id, unread)
            await self._buffer(
                "orca",
                f"the agent exited without reading up to {unread} bytes of its input "
                f"({lines} more line(s) queued); orcad dropped them\n",
            )

    async def _wait_for_exit(
        self, process: asyncio.subprocess.Process, pumps: asyncio.Future[None]
    ) -> None:
        """Wait for the process; stop one that lingers after its result; leave nothing behind."""
        waiter = asyncio.ensure_future(exited(process))
        result_seen = asyncio.ensure_future(self._result_seen.wait())
        try:
            await asyncio.wait({waiter, result_seen}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():  # the agent gave its result: it has a grace period to exit
                grace = self._settings.result_exit_grace_seconds
                done, _ = await asyncio.wait({waiter}, timeout=grace)
                if not done:
                    log.info(
                        "session %s lingers after its result; stopping it", self.spec.session_id
                    )
                    self.stop(grace=2.0)
                    await waiter
            await self._end_leftovers(process.pid)
            await self._drain(pumps)
        finally:
            for task in (waiter, result_seen, pumps):
                if not task.done():
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumps

    async def _drain(self, pumps: asyncio.Future[None]) -> None:
        """Let the pump finish what the exited agent wrote. Whatever still holds the pipes (it
        left the group and the session) is not waited for; but a pump that waits for the log
        to take a record (a question, while the disk is full) is, for what follows it in the
        agent's output (its result, say) decides how the session ended."""
        said = False
        while True:
            drained, _ = await asyncio.wait({pumps}, timeout=self._settings.pipe_drain_seconds)
            if drained:
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
            recorded = asyncio.ensure_future(self._recorded.wait())
            try:
                waited: set[asyncio.Future[Any]] = {pumps, recorded}
                await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            finally:
                recorded.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await recorded

    async def _end_leftovers(self, pgid: int) -> None:
        """Stop what the agent left running: its process group, any process that carries this
        session's id in its environment (children that left the group included), and every
        descendant of the agent seen while it ran (those that left its session too)."""
        leftovers = {pgid} if group_exists(pgid) else set()
        found = await asyncio.to_thread(processes_of_sessions, {self.spec.session_id})
        for pid in found.get(self.spec.session_id, []):
            with contextlib.suppress(OSError):
                leftovers.add(os.getpgid(pid))
        leftovers.discard(os.getpgrp())
        await self._track_descendants()  # and what those started since
        strays = dict(self._descendants)
        strays.pop(os.getpid(), None)
        if leftovers or strays:
            log.info(
                "session %s: stopping leftover process groups %s and processes %s",
                self.spec.session_id,
                sorted(leftovers),
                sorted(strays),
            )
            await asyncio.gather(
                stop_processes(strays, 2.0), *(stop_group(group, 2.0) for group in leftovers)
            )

    async def _pump_both(self, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        await asyncio.gather(self._pump(stdout, "stdout"), self._pump(stderr, "stderr"))
        await self._carry_out(self._translator.finish(), "stdout")

    async def _pump(self, reader: asyncio.StreamReader, stream: StreamName) -> None:
        splitter = LineSplitter(self._settings.max_line_bytes)
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            await self._handle_lines(stream, splitter.feed(data))
        await self._handle_lines(stream, splitter.finish())

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
                await self._buffer(stream, effect.text)
            elif isinstance(effect, Send):
                self._send(effect.line, force)
            elif isinstance(effect, CloseInput):
                if self._input is not None:
                    self._input.close()
            elif isinstance(effect, Interrupting):
                continue  # for `cancel`, which waits
            elif isinstance(effect, Note):
                await self._buffer("orca", effect.text.rstrip("\n") + "\n")
            elif isinstance(effect, Result):
                if self._result is None:
                    self._result = effect
                    self._result_seen.set()
                    if self._input is not None:
                        self._input.close()
                    await self._track_descendants()  # before the agent exits and they leave it
            else:
                self._recording += 1
                self._recorded.clear()
                try:
                    await self._flush(force=True)
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

    async def _buffer(self, stream: StreamName, text: str) -> None:
        async with self._flush_lock:  # keeps a stream's chunks in order against the flusher
            for chunk in self._coalescers[stream].add(text, time.monotonic()):
                await self._recorder.output(stream, chunk)
        self._buffered.set()

    async def _flush_when_due(self) -> None:
        while True:
            await self._buffered.wait()
            self._buffered.clear()
            deadlines = [d for c in self._coalescers.values() if (d := c.deadline()) is not None]
            if deadlines:
                await asyncio.sleep(max(0.0, min(deadlines) - time.monotonic()))
                await self._flush(force=False)
                if any(c.deadline() is not None for c in self._coalescers.values()):
                    self._buffered.set()

    async def _flush(self, force: bool) -> None:
        async with self._flush_lock:
            now = time.monotonic()
            for name, coalescer in self._coalescers.items():
                if force or coalescer.due(now):
                    text = coalescer.take()
                    if text:
                        await self._recorder.output(name, text)
