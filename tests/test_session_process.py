"""The pump owns what it starts: a stop runs inside it; a cancel of its owner, or a record that
fails, ends the agent and everything it started, and reaches the owner."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import anyio
import pytest
from conftest import process_exists
from support.processes import live_members, wait_for_line

from orca_daemon.agents.base import Identified, PhaseChanged, QuestionsAsked, QuestionsWithdrawn
from orca_daemon.agents.base import Usage as UsageEffect
from orca_daemon.agents.command import CommandTranslator
from orca_daemon.sessions.held import HeldAgent, HolderPlaces
from orca_daemon.sessions.output import StreamName
from orca_daemon.sessions.process import PumpSettings, SessionProcess, SessionSpec
from orca_daemon.sessions.procs import ProcessTable, pid_exited, process_table


class Facts:
    """A recorder that keeps what the pump tells it; `failing` makes recording a phase fail,
    as when the log refuses a record."""

    def __init__(self, failing: bool = False) -> None:
        self.failing = failing
        self.pid: int | None = None
        self.holder_pid: int | None = None
        self.outputs: list[tuple[StreamName, str]] = []
        self.spoke = anyio.Event()

    async def started(self, agent: HeldAgent) -> None:
        self.pid, self.holder_pid = agent.pid, agent.holder_pid

    def output(self, stream: StreamName, text: str, at: int | None) -> None:
        self.outputs.append((stream, text))
        self.spoke.set()

    async def output_room(self) -> None:
        pass

    async def read_to(self, at: int) -> None:
        pass

    async def question_asked(self, asked: QuestionsAsked, at: int | None) -> None:
        pass

    async def question_withdrawn(self, withdrawn: QuestionsWithdrawn, at: int | None) -> None:
        pass

    async def usage(self, usage: UsageEffect, at: int | None) -> None:
        pass

    async def phase(self, changed: PhaseChanged, at: int | None) -> None:
        if self.failing:
            raise RuntimeError("the log refused the record")

    async def identified(self, identified: Identified, at: int | None) -> None:
        pass


async def holder_exits(facts: Facts) -> None:
    assert facts.holder_pid is not None
    with anyio.fail_after(10):
        await pid_exited(facts.holder_pid, None)


def session(tmp_path: Path, script: str, facts: Facts) -> SessionProcess:
    session_id = f"s-{uuid.uuid4().hex[:12]}"
    spec = SessionSpec("run-1", session_id, ["/bin/sh", "-c", script], str(tmp_path))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    places = HolderPlaces.of(runtime, tmp_path / "runs", "run-1", session_id)
    return SessionProcess(spec, CommandTranslator(), facts, PumpSettings(), places)


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
    await holder_exits(facts)  # let go: nothing is left for it to keep


async def test_a_record_that_fails_reaches_the_owner_and_ends_the_agent(tmp_path: Path) -> None:
    """Not lost in a reader that dies alone while the agent runs on."""
    phase = '{"type": "phase", "phase": "running"}'
    facts = Facts(failing=True)
    process = session(tmp_path, f"sleep 30 & echo '{phase}'; wait", facts)
    with pytest.raises(ExceptionGroup) as raised:
        await process.run()
    assert raised.group_contains(RuntimeError, match="the log refused the record")
    assert facts.pid is not None and live_members(facts.pid) == []
    await holder_exits(facts)


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
    assert facts.holder_pid is not None and process_exists(facts.holder_pid)
    await process.release()  # (its end recorded, as the supervisor does): the holder exits
    await holder_exits(facts)


async def test_a_stop_before_it_starts_means_it_never_starts(tmp_path: Path) -> None:
    facts = Facts()
    process = session(tmp_path, "exec sleep 60", facts)
    process.stop(grace=30)
    outcome = await process.run()
    assert (outcome.exit_code, outcome.spawn_error) == (None, "stopped before it started")
    assert facts.pid is None
    await process.wait_stopped()


def test_a_process_table_finds_the_descendants_of_each_root_by_parent_links() -> None:
    """The heartbeat takes one table and asks it for the descendants of every live session."""
    table = ProcessTable({10: (1, 100), 11: (10, 110), 12: (11, 120), 20: (1, 200), 21: (20, 210)})
    assert table.descendants([10]) == {11, 12}
    assert table.descendants([20]) == {21}
    assert table.descendants([10, 20]) == {11, 12, 21}
    assert table.descendants([12, 99]) == set()
    assert table.ticks(11) == 110 and table.ticks(99) is None


def test_the_live_process_table_shows_what_an_agent_started() -> None:
    shell = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & wait"])
    found: set[int] = set()
    try:
        deadline = time.monotonic() + 10
        while not (found := process_table().descendants([shell.pid])):
            assert time.monotonic() < deadline, "the shell's child was never seen"
            time.sleep(0.02)
        (child,) = found
        assert process_table().ticks(child) is not None
    finally:
        for pid in found:
            os.kill(pid, signal.SIGKILL)
        shell.kill()
        shell.wait()
