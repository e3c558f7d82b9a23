"""The pump owns what it starts: a stop runs inside it; a cancel of its owner, or a record that
fails, ends the agent and everything it started, and reaches the owner."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import anyio
import pytest
from support.processes import live_members, wait_for_line

from orca_daemon.agents.base import Identified, PhaseChanged, QuestionsAsked, QuestionsWithdrawn
from orca_daemon.agents.base import Usage as UsageEffect
from orca_daemon.agents.command import CommandTranslator
from orca_daemon.sessions.output import StreamName
from orca_daemon.sessions.process import PumpSettings, SessionProcess, SessionSpec


class Facts:
    """A recorder that keeps what the pump tells it; `failing` makes recording a phase fail,
    as when the log refuses a record."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.pid: int | None = None
        self.outputs: list[tuple[StreamName, str]] = []
        self.spoke = anyio.Event()

    async def started(self, pid: int, process_start_ticks: int | None) -> None:
        self.pid = pid

    async def output(self, stream: StreamName, text: str) -> None:
        self.outputs.append((stream, text))
        self.spoke.set()

    async def question_asked(self, asked: QuestionsAsked) -> None:
        pass

    async def question_withdrawn(self, withdrawn: QuestionsWithdrawn) -> None:
        pass

    async def usage(self, usage: UsageEffect) -> None:
        pass

    async def phase(self, changed: PhaseChanged) -> None:
        if self.failing:
            raise RuntimeError("the log refused the record")

    async def identified(self, identified: Identified) -> None:
        pass


def session(tmp_path: Path, script: str, facts: Facts) -> SessionProcess:
    spec = SessionSpec("run-1", f"s-{uuid.uuid4().hex}", ["/bin/sh", "-c", script], str(tmp_path))
    return SessionProcess(spec, CommandTranslator(), facts, PumpSettings())


async def test_a_cancel_of_its_owner_ends_the_agent_and_all_it_started(tmp_path: Path) -> None:
    child = tmp_path / "child"
    facts = Facts()
    process = session(tmp_path, f"sleep 60 & echo $! > {child}; wait", facts)
    returned = False
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:

            async def cancel_once_started() -> None:
                await wait_for_line(child)
                scope.cancel()

            tasks.start_soon(cancel_once_started)
            await process.run()
            returned = True
    assert scope.cancelled_caught and not returned
    assert facts.pid is not None and live_members(facts.pid) == []
    assert not process.alive()


async def test_a_record_that_fails_reaches_the_owner_and_ends_the_agent(tmp_path: Path) -> None:
    """Not lost in a reader that dies alone while the agent runs on."""
    phase = '{"type": "phase", "phase": "running"}'
    facts = Facts(failing=True)
    process = session(tmp_path, f"sleep 30 & echo '{phase}'; wait", facts)
    with pytest.raises(ExceptionGroup) as raised:
        await process.run()
    assert raised.group_contains(RuntimeError, match="the log refused the record")
    assert facts.pid is not None and live_members(facts.pid) == []


async def test_a_stop_runs_inside_the_pump_which_waits_for_it(tmp_path: Path) -> None:
    facts = Facts()
    process = session(tmp_path, "echo ready; exec sleep 60", facts)
    async with anyio.create_task_group() as tasks:

        async def stop_once_ready() -> None:
            await facts.spoke.wait()
            process.stop(grace=30)

        tasks.start_soon(stop_once_ready)
        outcome = await process.run()
    assert facts.outputs == [("stdout", "ready\n")]
    assert outcome.exit_code == -signal.SIGTERM
    await process.wait_stopped()  # (nothing left to wait for)
    process.stop(grace=30)  # after its end: nothing to stop
    assert facts.pid is not None and live_members(facts.pid) == []


async def test_a_stop_before_it_starts_means_it_never_starts(tmp_path: Path) -> None:
    facts = Facts()
    process = session(tmp_path, "exec sleep 60", facts)
    process.stop(grace=30)
    outcome = await process.run()
    assert (outcome.exit_code, outcome.spawn_error) == (None, "stopped before it started")
    assert facts.pid is None
    await process.wait_stopped()
