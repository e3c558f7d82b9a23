"""Chaos on a shared PostgreSQL log: two daemons, one of them killed with SIGKILL at random
moments, 20 times, while fan-outs and plans run on both.

A killed daemon is started again after a random pause: shorter than its lease (it takes its own
sessions back from their holders) or longer (the other daemon adopts its runs meanwhile). At the
end every acknowledged run is in the log once and has ended, every fan-out with exactly one
orchestrator and every plan with each task done once; every run that completed fired its
`on_complete` hook once; and each daemon's status is a replay of the log.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, two_daemons, wait_until
from support.fanouts import fan_agent, start_debug
from support.hooks import calls, hook, hooks_config
from support.snapshots import read_log

from orca_client.client import DaemonUnavailable, RequestFailed
from orca_client.events import OrchestratorTriggered, RunAdopted, RunCreated, TaskStatusChanged
from orca_client.plan import Plan, PlanTask
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import RunStarted, StartPlan
from orca_daemon.state.projection import replay

SEED = 20261203
KILLS = 20
LEASE = 3.0
PLAN = Plan(
    title="chaos",
    tasks=[
        PlanTask(id="first", prompt="do first", agent="quick"),
        PlanTask(id="second", prompt="do second", agent="slow", depends_on=["first"]),
    ],
)
SLOW = (
    'sleep 1.5; echo \'{"type":"output","text":"slow finding\\n"}\';'
    ' echo \'{"type":"result","outcome":"done","summary":"slow"}\''
)


pytestmark = pytest.mark.shared_log


def chaos_config(hook_log: Path) -> str:
    quick = fan_agent(say=["finding: quick"], summary="quick")
    lines = [
        f"[daemon]\nlease_seconds = {LEASE}",
        hooks_config(on_complete=hook(hook_log)),
        "[agents.quick]",
        'adapter = "command"',
        f"command = {json.dumps(quick)}",
        "[agents.slow]",
        'adapter = "command"',
        f"command = {json.dumps(['/bin/sh', '-c', SLOW])}",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_kill9_of_either_daemon_at_random_moments_decides_everything_once(
    make_daemon: Callable[..., DaemonProcess], other_home: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    hook_log = tmp_path / "hooks.jsonl"
    a, b = two_daemons(make_daemon, other_home, chaos_config(hook_log))
    daemons = [a, b]
    acknowledged: list[str] = []

    for _ in range(KILLS):
        for daemon in daemons:  # a fan-out and a plan on each, acknowledged before the kill
            with contextlib.suppress(DaemonUnavailable, RequestFailed):  # (not acknowledged)
                acknowledged.append(start_debug(daemon, ["quick", "slow"]).run_id)
            with contextlib.suppress(DaemonUnavailable, RequestFailed), daemon.client() as client:
                started: RunStarted = client.request(StartPlan(cwd=str(tmp_path), plan=PLAN))
                acknowledged.append(started.run_id)
        time.sleep(rng.uniform(0.0, 1.0))  # the random moment of the kill, not a condition
        victim = rng.choice(daemons)
        victim.kill()
        time.sleep(rng.uniform(0.0, 2 * LEASE))  # before or after its lease runs out
        victim.start(timeout=30)

    def all_ended() -> bool:
        return all(
            {r.run_id: r.status for r in d.status().runs}.get(run_id) in TERMINAL_STATUSES
            for d in daemons
            for run_id in acknowledged
        )

    wait_until(all_ended, "every acknowledged fan-out to end, on both daemons", timeout=120)
    wait_until(
        lambda: len({d.status().head_position for d in daemons}) == 1, "both daemons at the head"
    )

    events = read_log(a.log_source)
    decoded = [(stored, stored.decode()) for stored in events]
    created = [e.run_id for _, e in decoded if isinstance(e, RunCreated)]
    assert all(created.count(run_id) == 1 for run_id in acknowledged)
    fanouts = {e.run_id for _, e in decoded if isinstance(e, RunCreated) and e.kind == "fanout"}
    triggers = [e.run_id for _, e in decoded if isinstance(e, OrchestratorTriggered)]
    assert sorted(triggers) == sorted(fanouts), "one orchestrator per fan-out"
    adopted = [e.run_id for _, e in decoded if isinstance(e, RunAdopted)]
    assert adopted, "no kill outlasted a lease: nothing was adopted"

    plans = {e.run_id for _, e in decoded if isinstance(e, RunCreated) and e.kind == "plan"}
    done = [
        (e.run_id, e.task_id)
        for _, e in decoded
        if isinstance(e, TaskStatusChanged) and e.status == "done"
    ]
    assert sorted(done) == sorted((run_id, t.id) for run_id in plans for t in PLAN.tasks)

    replayed = replay(events)
    for daemon in daemons:
        status = daemon.status()
        assert status.head_position == replayed.position
        shown = {r.run_id: (r.status, r.owner) for r in status.runs}
        assert shown == {r.run_id: (r.status, r.owner) for r in replayed.runs.values()}

    completed = [r.run_id for r in replayed.runs.values() if r.status == "completed"]
    wait_until(lambda: len(calls(hook_log)) >= len(completed), "every on_complete hook")
    fired = [call["run_id"] for call in calls(hook_log) if call["hook"] == "on_complete"]
    assert sorted(fired) == sorted(completed), "on_complete once per completed run"
    for daemon in daemons:
        assert daemon.stop() == 0
