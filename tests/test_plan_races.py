"""A plan's decisions while the run's stream is busy: a task that prints a lot must not keep
the others from being settled, verified and started (each decision is checked and recorded
under the run's lock, not at a stream version that every line of output moves), and nothing
that goes wrong while verifying a task may leave the run live for ever."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from conftest import DaemonProcess, agent, events_of
from support.homes import write_config

from orca_client.plan import Plan, PlanTask
from orca_client.wire import RunStarted, StartPlan


def test_a_task_printing_a_lot_does_not_hold_up_the_others(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, tmp_path: Path
) -> None:
    firehose = ["/bin/sh", "-c", f"yes '{'x' * 60}' | head -n 600000"]  # 36 MB, at once
    steady = json.dumps(firehose)
    quick = json.dumps(agent("q_ask.py", json.dumps({"steps": []})))
    write_config(
        orca_home,
        f'[agents.steady]\nadapter = "command"\ncommand = {steady}\n'
        f'[agents.quick]\nadapter = "command"\ncommand = {quick}\n',
    )
    daemon = make_daemon().start()
    plan = Plan(
        title="busy",
        tasks=[
            PlanTask(id="talker", prompt="talk", agent="steady"),
            PlanTask(id="checked", prompt="check", agent="quick", verify=["true"]),
            PlanTask(id="after", prompt="then", agent="quick", depends_on=["checked"]),
        ],
    )
    work = tmp_path / "work"
    work.mkdir()
    with daemon.client() as client:
        started: RunStarted = client.request(StartPlan(cwd=str(work), plan=plan, max_parallel=3))
    began = time.monotonic()
    run = daemon.wait_for_run(started.run_id, timeout=60)
    assert run.status == "completed", run.reason
    # `after` was settled done while `talker` still printed: nothing waited for it to go quiet.
    done = {
        e["task_id"]: e["at"] for e in _task_moves(daemon, started.run_id) if e["status"] == "done"
    }
    assert done["after"] < done["talker"], done
    assert time.monotonic() - began < 30
    output = daemon.output()
    assert "kept changing" not in output and "inside orcad" not in output, output[-3000:]


def _task_moves(daemon: DaemonProcess, run_id: str) -> list[dict[str, object]]:
    """Task status changes, each with the log position it was recorded at (as "at")."""
    moves = []
    for position, event in enumerate(events_of(daemon, run_id)):
        if event["type"] == "task_status_changed":
            moves.append({**event, "at": position})
    return moves
