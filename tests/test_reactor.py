"""The reactor: each run's orchestration decided again after every change that can matter, one
pass at a time per run, coalesced, and retried with backoff until it succeeds — never dropped.

The first tests drive the real `Reactor` with a reaction of their own; the last drives a real
orcad whose reactions are made to fail (`ORCA_TEST_REACTION_FAULTS_FILE`, a test hook like the
store's page limit) and shows the run still finishes.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel
from conftest import DaemonProcess, agent, wait_until
from support.homes import write_config
from support.timeline import Timeline

from orca_client.events import (
    OutputAppended,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionTerminated,
)
from orca_client.plan import Plan, PlanTask
from orca_client.wire import RunStarted, StartPlan
from orca_daemon.orchestration.reactions import TEST_FAULTS_VARIABLE
from orca_daemon.orchestration.reactor import Reactor
from orca_daemon.state.projection import State


async def test_a_failing_reaction_is_retried_with_backoff_until_it_succeeds() -> None:
    calls: list[float] = []
    succeeded = anyio.Event()

    async def react(run_id: str) -> None:
        calls.append(anyio.current_time())
        if len(calls) <= 6:  # more failures than the retry schedule has steps
            raise RuntimeError(f"the log is not there yet ({run_id})")
        succeeded.set()

    reactor = Reactor(State(), react, retry_seconds=(0.01, 0.02, 0.04))
    async with anyio.create_task_group() as tg:
        await tg.start(reactor.run)
        reactor.mark("r1")
        with anyio.fail_after(10):
            await succeeded.wait()
        await anyio.sleep(0.1)  # nothing more once it succeeded
        tg.cancel_scope.cancel()
    assert len(calls) == 7
    waits = [later - earlier for earlier, later in itertools.pairwise(calls)]
    for waited, planned in zip(waits, [0.01, 0.02, 0.04, 0.04, 0.04, 0.04], strict=True):
        assert waited >= planned  # the last step of the schedule repeats: it never gives up


async def test_changes_during_a_reaction_are_coalesced_into_one_more_pass() -> None:
    passes: list[str] = []
    release = anyio.Event()

    async def react(run_id: str) -> None:
        passes.append(run_id)
        if len(passes) == 1:
            await release.wait()

    reactor = Reactor(State(), react)
    async with anyio.create_task_group() as tg:
        await tg.start(reactor.run)
        reactor.mark("r1")
        await anyio.sleep(0.05)
        for _ in range(10):  # ten changes while the first pass runs
            reactor.mark("r1")
        release.set()
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()
    assert passes == ["r1", "r1"]


async def test_one_run_failing_does_not_hold_up_another() -> None:
    done: list[str] = []
    good = anyio.Event()

    async def react(run_id: str) -> None:
        if run_id == "bad":
            raise RuntimeError("always")
        done.append(run_id)
        good.set()

    reactor = Reactor(State(), react, retry_seconds=(0.01,))
    async with anyio.create_task_group() as tg:
        await tg.start(reactor.run)
        reactor.mark("bad")
        reactor.mark("good")
        with anyio.fail_after(5):
            await good.wait()
        tg.cancel_scope.cancel()
    assert done == ["good"]


def test_what_commits_mark_a_run_and_its_parent_and_what_marks_nothing() -> None:
    timeline = Timeline()
    timeline.record(RunCreated("p", title="parent", cwd="/", kind="parent"))
    timeline.record(RunCreated("c", title="child", cwd="/", parent_run_id="p"))
    timeline.record(RunCreated("f", title="fan-out", cwd="/", kind="fanout"))
    state = timeline.state()
    marked: list[str] = []
    reactor = Reactor(state, lambda run_id: anyio.lowlevel.checkpoint())
    reactor.mark = marked.append  # type: ignore[method-assign]
    created = SessionCreated("c", "c.1", agent="command", command=["true"], cwd="/")
    reactor.on_commit(timeline.record(created))
    reactor.on_commit(timeline.record(OutputAppended("c", "c.1", "stdout", "hello\n")))
    reactor.on_commit(timeline.record(SessionTerminated("c", "c.1", "completed", "done")))
    assert marked == []  # a single run decides nothing until its status changes
    reactor.on_commit(timeline.record(RunStatusChanged("c", "completed")))
    assert marked == ["c", "p"]
    marked.clear()
    worker = SessionCreated("f", "f.1", agent="command", command=["true"], cwd="/")
    reactor.on_commit(timeline.record(worker, OutputAppended("f", "f.1", "stdout", "x\n")))
    assert marked == []
    reactor.on_commit(timeline.record(SessionTerminated("f", "f.1", "completed", "done")))
    assert marked == ["f"]


def test_a_plan_whose_reactions_fail_again_and_again_still_finishes(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    """The plan's first task is started by the request; every decision after that (settle it,
    start the second, end the run) is the reactor's, and its first five attempts fail."""
    command = json.dumps(agent("q_ask.py", json.dumps({"steps": []})))
    write_config(orca_home, f'[agents.task]\nadapter = "command"\ncommand = {command}\n')
    faults = tmp_path / "faults"
    faults.write_text("0\n")
    daemon = make_daemon(extra_env={TEST_FAULTS_VARIABLE: str(faults)}).start()
    work = tmp_path / "work"
    work.mkdir()
    plan = Plan(
        title="two steps",
        tasks=[
            PlanTask(id="first", prompt="do first"),
            PlanTask(id="second", prompt="do second", depends_on=["first"]),
        ],
    )
    faults.write_text("5\n")
    with daemon.client() as client:
        started: RunStarted = client.request(StartPlan(cwd=str(work), plan=plan, agent="task"))
    run = daemon.wait_for_run(started.run_id, timeout=60)
    assert run.status == "completed", run.reason
    assert [t.status for t in run.tasks] == ["done", "done"]
    assert faults.read_text().strip() == "0"
    failures = re.findall(r"failed \(attempt (\d+)\); trying again in ([\d.]+)s", daemon.output())
    assert [int(attempt) for attempt, _ in failures] == [1, 2, 3, 4, 5]
    delays = [float(delay) for _, delay in failures]
    assert delays == sorted(delays) and delays[0] < delays[-1]  # backing off
    wait_until(lambda: "carried on after 5 failures" in daemon.output(), what="the recovery")
