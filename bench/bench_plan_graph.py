"""Plan graph work at 1,000 and 10,000 tasks: linear work takes ~10x as long for 10x the tasks.

Pure parts (orcad's own code, in this process), for each plan shape:

- validate: `parse_plan` (decode, ids, dependencies, cycle check), what `orca plan validate` and
  orcad's `StartPlan` run;
- cascade: the graph orcad indexes for the run (`PlanGraph`) and the dependants of the task
  that failed, which orcad cancels;
- fold: the projection folding the run's events (created, the root failing, every dependant
  cancelled, the run failed): what orcad does as it records them, and again on every start;
- and once, a chain whose every task is done one after another (as before a last task that
  fails): each event folded and the next ready task taken (`PlanProgress.first_ready`), as
  orcad's coordinator does after each change.

End to end (a real orcad, unless --no-daemon; one try each, so noisier): a plan whose root
task's agent fails at once; the wall time from `StartPlan` sent to the run's end seen by
`Status` (an agent's start included), the slowest `hello` round trip meanwhile (orcad answering
while it cancels the rest), and a restart after it (SIGTERM, start, replay, first `hello`).

Shapes: a chain listed last task first (the order that made the old `dependants_of` take one
pass over the plan per task) and a fan (one root, every other task depends on it). Each figure
is the fastest of several repeats; the ratio is 10,000 over 1,000 (linear: about 10).
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_* modules beside this file

from bench_orchestration import ConfiguredDaemon, agent_argv

from orca_client.client import Client
from orca_client.events import (
    SCHEMA_VERSION,
    AnyEvent,
    PlanSpec,
    RunCreated,
    RunStatusChanged,
    TaskStatusChanged,
    encode_event,
    event_type,
    run_stream,
)
from orca_client.plan import Plan, PlanGraph, PlanTask, parse_plan
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import RunStarted, StartPlan, Status
from orca_daemon.log.records import StoredEvent
from orca_daemon.state.projection import State, apply, replay

SIZES = (1_000, 10_000)
FAILING_AGENT = "fail"
FAIL_AT_ONCE = (
    "import sys; sys.stdin.readline(); "
    'print(\'{"type":"result","outcome":"failed","error":"it broke"}\', flush=True)'
)


def chain_backwards(n: int) -> list[dict[str, Any]]:
    tasks = [
        {"id": f"t{i}", "prompt": "p", "depends_on": [f"t{i - 1}"] if i else []} for i in range(n)
    ]
    return tasks[::-1]


def fan(n: int) -> list[dict[str, Any]]:
    return [{"id": "t0", "prompt": "p"}] + [
        {"id": f"t{i}", "prompt": "p", "depends_on": ["t0"]} for i in range(1, n)
    ]


SHAPES: dict[str, Callable[[int], list[dict[str, Any]]]] = {
    "chain (listed last first)": chain_backwards,
    "fan (1 root)": fan,
}


def plan_text(shape: Callable[[int], list[dict[str, Any]]], n: int) -> bytes:
    return json.dumps({"title": "bench", "tasks": shape(n)}).encode()


def stored(events: list[AnyEvent]) -> list[StoredEvent]:
    """The events as the log would hand them to the projection."""
    versions: dict[str, int] = {}
    out = []
    for position, event in enumerate(events, 1):
        stream = run_stream(event.run_id)
        versions[stream] = versions.get(stream, 0) + 1
        out.append(
            StoredEvent(
                position,
                stream,
                versions[stream],
                event_type(event),
                SCHEMA_VERSION,
                float(position),
                encode_event(event),
            )
        )
    return out


def best_seconds(work: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` runs (each after a full garbage collection, with the collector
    on, as in orcad): the least the machine's other load added."""
    times = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def pure_figures(
    shape: Callable[[int], list[dict[str, Any]]], n: int, repeats: int
) -> dict[str, float]:
    text = plan_text(shape, n)
    plan = parse_plan(text)
    graph = PlanGraph(plan.tasks)
    root = graph.index["t0"]
    cancelled = [graph.ids[i] for i in graph.dependants_of(root)]
    failure = stored(
        [
            RunCreated("r", title="bench", cwd="/", kind="plan", plan=PlanSpec(plan, 4)),
            TaskStatusChanged("r", "t0", "in_progress", attempt=1, session_id="r.t0.1"),
            TaskStatusChanged("r", "t0", "failed", "it broke"),
            *(TaskStatusChanged("r", t, "cancelled", "t0 failed") for t in cancelled),
            RunStatusChanged("r", "failed", "tasks failed"),
        ]
    )
    return {
        "validate": best_seconds(lambda: parse_plan(text), repeats),
        "cascade": best_seconds(lambda: PlanGraph(plan.tasks).dependants_of(root), repeats),
        "fold": best_seconds(lambda: replay(failure), repeats),
    }


def chain_done_seconds(n: int, repeats: int) -> float:
    """A chain run to its end, one task after another: each event folded, then the next ready
    task taken, as orcad's coordinator does after every change."""
    chain = parse_plan(plan_text(chain_backwards, n))
    steps: list[AnyEvent] = [
        RunCreated("r", title="b", cwd="/", kind="plan", plan=PlanSpec(chain, 1))
    ]
    for i in range(n):
        steps.append(TaskStatusChanged("r", f"t{i}", "in_progress", attempt=1))
        steps.append(TaskStatusChanged("r", f"t{i}", "done"))
    events = stored(steps)

    def run_chain() -> None:
        state = State()
        for event in events:
            apply(state, event)
            state.plans["r"].first_ready(1)

    return best_seconds(run_chain, repeats)


def config_toml() -> str:
    command = ", ".join(json.dumps(part) for part in [sys.executable, "-I", "-c", FAIL_AT_ONCE])
    noop = ", ".join(json.dumps(part) for part in agent_argv())
    return (
        f'[agents.{FAILING_AGENT}]\nadapter = "command"\ncommand = [{command}]\n'
        f'[agents.noop]\nadapter = "command"\ncommand = [{noop}]\n'
    )


def daemon_figures(
    shape: Callable[[int], list[dict[str, Any]]], n: int
) -> tuple[float, float, float]:
    """On a fresh orcad: seconds from StartPlan to the run's end seen by `Status`, the slowest
    `hello` meanwhile, and a restart (stop, start, first `hello` answered) after it."""
    plan = parse_plan(plan_text(shape, n))
    tasks = [
        task if task.id != "t0" else PlanTask(id="t0", prompt="p", agent=FAILING_AGENT)
        for task in plan.tasks
    ]
    request = StartPlan(cwd="/tmp", plan=Plan(title="bench", tasks=tasks), agent="noop")
    with ConfiguredDaemon(config_toml()) as daemon:
        with Client(daemon.paths, timeout=120) as client:
            slowest = 0.0
            started_at = time.perf_counter()
            started: RunStarted = client.request(request)
            while client.request(Status(run_id=started.run_id)).runs[0].status not in (
                TERMINAL_STATUSES
            ):
                asked = time.perf_counter()
                client.hello()
                slowest = max(slowest, time.perf_counter() - asked)
            wall = time.perf_counter() - started_at
        assert daemon.process is not None
        restarted_at = time.perf_counter()
        daemon.process.send_signal(signal.SIGTERM)
        daemon.process.wait(60)
        daemon.start(timeout=120)
        return wall, slowest, time.perf_counter() - restarted_at


DAEMON_FIGURES = ("orcad: start to end", "orcad: slowest hello", "orcad: restart")


@dataclass
class Row:
    shape: str
    what: str
    small: float
    large: float

    def line(self) -> str:
        ratio = self.large / self.small if self.small else float("inf")
        return (
            f"  {self.shape:<26} {self.what:<22} {self.small * 1000:>9.1f} ms "
            f"{self.large * 1000:>10.1f} ms   x{ratio:5.1f}"
        )


def run(quick: bool, with_daemon: bool = True) -> list[Row]:
    repeats = 5 if quick else 15
    rows: list[Row] = []
    for name, shape in SHAPES.items():
        small, large = (pure_figures(shape, n, repeats) for n in SIZES)
        rows += [Row(name, what, small[what], large[what]) for what in small]
        if with_daemon:
            figures = [daemon_figures(shape, n) for n in SIZES]
            for index, what in enumerate(DAEMON_FIGURES):
                rows.append(Row(name, what, figures[0][index], figures[1][index]))
    small_done, large_done = (chain_done_seconds(n, repeats) for n in SIZES)
    rows.append(Row("chain, every task done", "fold + next ready", small_done, large_done))
    return rows


def report(rows: list[Row]) -> str:
    header = f"  {'shape':<26} {'work':<22} {'1,000 tasks':>12} {'10,000 tasks':>13}   ratio"
    lines = ["plan graph work: 10,000 tasks vs 1,000 (linear: about x10)", header]
    lines += [row.line() for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-daemon", action="store_true", help="only the pure parts")
    args = parser.parse_args()
    print(report(run(args.quick, not args.no_daemon)), flush=True)


if __name__ == "__main__":
    main()
