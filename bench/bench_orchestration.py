"""Orchestration overhead: a fan-out and a plan of no-op command agents against a real orcad.

Every agent is `bench/agents/noop_agent.py` (`python -I`): it reads its prompt line and prints a
`done` result at once, so what is measured is orcad's own work between sessions. It is
configured in the private ORCA_HOME's config.toml as `[agents.noop]`, a command agent.

- Fan-out (`StartDebug`, agents = ["noop"] * N): N workers at once, then the built-in
  `synthesizer` orchestrator. Figures: the gap from the last worker's end (its
  `session_terminated`, by `recorded_at`) to the orchestrator's start (`session_started`), the
  wall time (request sent -> the run's terminal `run_status_changed`), and orcad's peak RSS
  (`VmHWM`). Several rounds on one orcad.
- Plans (`StartPlan`), each on a fresh orcad: C chains of L tasks, each task depending on the
  one before it in its chain, with max_parallel = C, so that a ready task never waits for a free
  slot, only for its dependency. Two shapes: a wide one (500 tasks in 20 chains of 25: the
  throughput case, which saturates a small machine's CPUs) and a single chain (100 tasks one at a
  time: orcad's overhead on an otherwise idle machine). Figures, over every task with a
  dependency: its dependency's `task_status_changed` -> `done` to its own `session_started`
  (p50/p99), the same from the dependency's `session_terminated`, and how that splits; the wall
  time; orcad's peak RSS and CPU time.

Events are read back through the socket (`ReadEvents` pages), as any client reads them. Every
session must complete with its result line seen by orcad, or the report prints a PROBLEM line.

Baselines, measured in the same invocation, with the same agent spawned the way orcad spawns it
(asyncio subprocess, three pipes, a new session, the prompt line written to stdin):

- one at a time (the single chain with no scheduler): spawn -> first output line read, the
  baseline every ratio of a latency is taken against; spawn -> exec returned, the part of it
  that orcad's `session_started` also contains; and the wall time of the chain;
- the fan-out's shape: N agents at once, then one more; wall time;
- the wide plan's graph under a minimal scheduler: C asyncio tasks, each running its chain's
  agents one after another; wall time, and a dependency's exit seen -> the next agent exec'd.

The rounds go: bare chain, bare fan-out, orcad fan-outs, bare fan-out, bare graph, orcad wide
plan, bare graph, bare chain, orcad chain plan, bare chain. The latency baseline pools the three
bare chains; the chain plan's wall time is compared with the two around it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from bench_questions import _cpu, _rss_kb, percentiles
from bench_roundtrip import OrcaDaemon

from orca_client.client import Client
from orca_client.events import decode_event
from orca_client.plan import Plan, PlanTask
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import EventsPage, ReadEvents, RunStarted, StartDebug, StartPlan

AGENT = Path(__file__).resolve().parent / "agents" / "noop_agent.py"
AGENT_NAME = "noop"
PROMPT = "do nothing"
PROMPT_LINE = json.dumps({"type": "prompt", "text": PROMPT}).encode() + b"\n"
RESULT_MARKER = b'"type":"result"'
DONE_REASON = "the agent reported done"
"""A session's end reason when orcad saw the agent's `done` result line."""
POLL_SECONDS = 0.05
READ_LIMIT = 10_000


@dataclass(frozen=True)
class Shape:
    """A plan of `chains` chains of `length` tasks; each task depends on the one before it in
    its chain. max_parallel is `chains`, so a ready task never waits for a free slot."""

    chains: int
    length: int

    @property
    def tasks(self) -> int:
        return self.chains * self.length

    @property
    def max_parallel(self) -> int:
        return self.chains

    def describe(self) -> str:
        if self.chains == 1:
            return f"plan of {self.tasks} tasks in one chain (one at a time)"
        return (
            f"plan of {self.tasks} tasks in {self.chains} chains of {self.length},"
            f" max_parallel {self.max_parallel}"
        )

    def plan(self) -> Plan:
        tasks = [
            PlanTask(
                id=f"c{chain}-{link}",
                prompt=PROMPT,
                agent=AGENT_NAME,
                depends_on=[f"c{chain}-{link - 1}"] if link else [],
            )
            for chain in range(self.chains)
            for link in range(self.length)
        ]
        return Plan(title="bench", tasks=tasks)


@dataclass(frozen=True)
class Workload:
    """The fan-out's width and rounds, and the two plans: a wide one and a single chain (whose
    bare baseline, the same agents one at a time, is also the latency baseline)."""

    workers: int
    fanout_rounds: int
    wide: Shape
    chain: Shape

    @classmethod
    def of(cls, quick: bool) -> Workload:
        if quick:
            return cls(workers=20, fanout_rounds=2, wide=Shape(5, 10), chain=Shape(1, 15))
        return cls(workers=100, fanout_rounds=3, wide=Shape(20, 25), chain=Shape(1, 100))


def agent_argv() -> list[str]:
    """`-I`: the agent needs only the standard library, so skip site-packages at start-up."""
    return [sys.executable, "-I", str(AGENT)]


def config_toml() -> str:
    """The daemon's config.toml: the no-op agent as a command agent (JSON strings are valid
    TOML basic strings)."""
    command = ", ".join(json.dumps(part) for part in agent_argv())
    return f'[agents.{AGENT_NAME}]\nadapter = "command"\ncommand = [{command}]\n'


class ConfiguredDaemon(OrcaDaemon):
    """A real orcad, as in bench_roundtrip, whose ORCA_HOME holds a config.toml before it starts."""

    def __init__(self, config: str) -> None:
        super().__init__()
        try:
            self.home.mkdir(mode=0o700)
            self.paths.config_file.write_text(config)
        except BaseException:
            shutil.rmtree(self.base, ignore_errors=True)
            raise

    def __enter__(self) -> ConfiguredDaemon:
        super().__enter__()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


@dataclass(frozen=True)
class Timed:
    """One event of the run, with its `recorded_at` (set as its batch is planned, just before
    the commit)."""

    at: float
    event: dict[str, Any]


def collect_run(
    daemon: OrcaDaemon, client: Client, run_id: str, after: int, timeout: float
) -> list[Timed]:
    """Every event of `run_id` after position `after`, read in `ReadEvents` pages, up to and
    including the run's terminal `run_status_changed`."""
    events: list[Timed] = []
    deadline = time.monotonic() + timeout
    while True:
        page: EventsPage = client.request(ReadEvents(after=after, limit=READ_LIMIT))
        for record in page.events:
            after = record.position
            event = msgspec.to_builtins(decode_event(record.event))
            if event.get("run_id") != run_id:
                continue
            events.append(Timed(record.recorded_at, event))
            if event["type"] == "run_status_changed" and event["status"] in TERMINAL_STATUSES:
                return events
        if not page.events:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"run {run_id} did not end within {timeout:.0f} s ({len(events)} events "
                    f"seen):\n{daemon.output()[-3000:]}"
                )
            time.sleep(POLL_SECONDS)


def _first(events: list[Timed], kind: str) -> Timed:
    for timed in events:
        if timed.event["type"] == kind:
            return timed
    raise RuntimeError(f"no {kind} event in the run")


def _by_session(events: list[Timed], kind: str) -> dict[str, Timed]:
    found: dict[str, Timed] = {}
    for timed in events:
        if timed.event["type"] == kind:
            found.setdefault(timed.event["session_id"], timed)
    return found


def _unrecognised(ends: list[Timed]) -> list[str]:
    """Problems with sessions that did not complete, or whose result line orcad did not see."""
    problems = []
    failed = [t for t in ends if t.event["status"] != "completed"]
    if failed:
        problems.append(
            f"{len(failed)} of {len(ends)} sessions did not complete, e.g. {failed[0].event}"
        )
    unseen = [
        t for t in ends if t.event["status"] == "completed" and t.event["reason"] != DONE_REASON
    ]
    if unseen:
        problems.append(
            f"{len(unseen)} of {len(ends)} sessions completed without orcad seeing their result "
            f"line (reason {unseen[0].event['reason']!r}, summary {unseen[0].event['summary']!r})"
        )
    return problems


# --------------------------------------------------------------------------- orcad: fan-out


@dataclass(frozen=True)
class FanOutRound:
    """One fan-out, by `recorded_at` (the request's send time by this process's clock)."""

    sent: float
    last_worker_end: float
    triggered: float
    orchestrator_started: float
    orchestrator_ended: float
    run_ended: float
    events: int
    problems: list[str]

    @property
    def gap(self) -> float:
        """Last worker's end -> the orchestrator's `session_started`."""
        return self.orchestrator_started - self.last_worker_end

    @property
    def wall(self) -> float:
        return self.run_ended - self.sent


@dataclass(frozen=True)
class FanOutResult:
    rounds: list[FanOutRound]
    idle_kb: int
    peak_first_kb: int
    """`VmHWM` after the first round."""
    peak_kb: int
    """`VmHWM` after the last round."""
    end_rss_kb: int
    daemon_cpu: float


def _fanout_round(daemon: OrcaDaemon, workload: Workload, timeout: float) -> FanOutRound:
    with daemon.client(timeout=60.0) as client:
        after = client.hello().head_position
        sent = time.time()
        started: RunStarted = client.request(
            StartDebug(cwd=str(daemon.base), agents=[AGENT_NAME] * workload.workers, prompt=PROMPT)
        )
        events = collect_run(daemon, client, started.run_id, after, timeout)
    triggered = _first(events, "orchestrator_triggered")
    orchestrator = triggered.event["session_id"]
    ends = _by_session(events, "session_terminated")
    worker_ends = [t for s, t in ends.items() if s != orchestrator]
    starts = _by_session(events, "session_started")
    problems = _unrecognised(list(ends.values()))
    if len(worker_ends) != workload.workers:
        problems.append(f"{len(worker_ends)} workers ended, not {workload.workers}")
    run_end = events[-1]
    if run_end.event["status"] != "completed":
        problems.append(f"the fan-out ended {run_end.event}")
    return FanOutRound(
        sent=sent,
        last_worker_end=max(t.at for t in worker_ends),
        triggered=triggered.at,
        orchestrator_started=starts[orchestrator].at,
        orchestrator_ended=ends[orchestrator].at,
        run_ended=run_end.at,
        events=len(events),
        problems=problems,
    )


def run_fanouts(workload: Workload, timeout: float) -> FanOutResult:
    """The fan-out rounds, one after another, on one fresh orcad."""
    with ConfiguredDaemon(config_toml()) as daemon:
        idle = _rss_kb(daemon.pid, "VmHWM")
        cpu_before = _cpu(daemon.pid)[0]
        rounds = [_fanout_round(daemon, workload, timeout)]
        peak_first = _rss_kb(daemon.pid, "VmHWM")
        rounds += [
            _fanout_round(daemon, workload, timeout) for _ in range(workload.fanout_rounds - 1)
        ]
        return FanOutResult(
            rounds=rounds,
            idle_kb=idle,
            peak_first_kb=peak_first,
            peak_kb=_rss_kb(daemon.pid, "VmHWM"),
            end_rss_kb=_rss_kb(daemon.pid, "VmRSS"),
            daemon_cpu=_cpu(daemon.pid)[0] - cpu_before,
        )


# --------------------------------------------------------------------------- orcad: plan


@dataclass(frozen=True)
class PlanResult:
    """One plan run; latencies in seconds, one per task with a dependency unless noted."""

    shape: Shape
    done_to_started: list[float]
    """The (last) dependency's `task_status_changed` -> done, to the task's `session_started`."""
    terminated_to_started: list[float]
    """The dependency's `session_terminated` to the task's `session_started`."""
    terminated_to_done: list[float]
    """Per task: its session's `session_terminated` -> its `task_status_changed` -> done."""
    done_to_in_progress: list[float]
    """The dependency done -> the task's `task_status_changed` -> in_progress."""
    in_progress_to_started: list[float]
    """The task in_progress -> its `session_started` (the spawn is in here)."""
    life: list[float]
    """Per task: `session_started` -> `session_terminated`."""
    request_seconds: float
    """`StartPlan` sent -> its reply."""
    wall: float
    events: int
    idle_kb: int
    peak_kb: int
    end_rss_kb: int
    daemon_cpu: float
    problems: list[str]


def run_plan(shape: Shape, timeout: float) -> PlanResult:
    """The plan on a fresh orcad, read back once the run has ended."""
    plan = shape.plan()
    with ConfiguredDaemon(config_toml()) as daemon:
        idle = _rss_kb(daemon.pid, "VmHWM")
        cpu_before = _cpu(daemon.pid)[0]
        with daemon.client(timeout=60.0) as client:
            after = client.hello().head_position
            sent = time.time()
            started: RunStarted = client.request(
                StartPlan(cwd=str(daemon.base), plan=plan, max_parallel=shape.max_parallel)
            )
            replied = time.time()
            events = collect_run(daemon, client, started.run_id, after, timeout)
        peak, end_rss = _rss_kb(daemon.pid, "VmHWM"), _rss_kb(daemon.pid, "VmRSS")
        daemon_cpu = _cpu(daemon.pid)[0] - cpu_before
    in_progress: dict[str, Timed] = {}
    done: dict[str, Timed] = {}
    session_of: dict[str, str] = {}
    for timed in events:
        event = timed.event
        if event["type"] == "task_status_changed":
            if event["status"] == "in_progress":
                in_progress[event["task_id"]] = timed
                session_of[event["task_id"]] = event["session_id"]
            elif event["status"] == "done":
                done[event["task_id"]] = timed
    starts = _by_session(events, "session_started")
    ends = _by_session(events, "session_terminated")
    problems = _unrecognised(list(ends.values()))
    if len(done) != len(plan.tasks):
        problems.append(f"{len(done)} of {len(plan.tasks)} tasks done")
    if events[-1].event["status"] != "completed":
        problems.append(f"the plan ended {events[-1].event}")
    latencies: dict[str, list[float]] = {
        name: []
        for name in (
            "done_to_started",
            "terminated_to_started",
            "terminated_to_done",
            "done_to_in_progress",
            "in_progress_to_started",
            "life",
        )
    }
    for task in plan.tasks:
        if task.id not in done:
            continue
        session = session_of[task.id]
        start, end = starts[session].at, ends[session].at
        latencies["terminated_to_done"].append(done[task.id].at - end)
        latencies["life"].append(end - start)
        latencies["in_progress_to_started"].append(start - in_progress[task.id].at)
        if not task.depends_on:
            continue
        dependency = max(task.depends_on, key=lambda dep: done[dep].at)
        latencies["done_to_started"].append(start - done[dependency].at)
        latencies["terminated_to_started"].append(start - ends[session_of[dependency]].at)
        latencies["done_to_in_progress"].append(in_progress[task.id].at - done[dependency].at)
    return PlanResult(
        shape=shape,
        **latencies,
        request_seconds=replied - sent,
        wall=events[-1].at - sent,
        events=len(events),
        idle_kb=idle,
        peak_kb=peak,
        end_rss_kb=end_rss,
        daemon_cpu=daemon_cpu,
        problems=problems,
    )


# --------------------------------------------------------------------------- baselines


@dataclass(frozen=True)
class BareRun:
    """One bare agent process, by `time.perf_counter()`."""

    spawned: float
    """Just before `create_subprocess_exec`."""
    execed: float
    """`create_subprocess_exec` returned (the exec succeeded)."""
    first_line: float
    """Its first stdout line (the result) was read."""
    exited: float
    """Its pipes were at EOF and its exit was reaped."""


async def bare_run() -> BareRun:
    """The no-op agent spawned as orcad spawns it; its prompt written, its result read."""
    spawned = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *agent_argv(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    execed = time.perf_counter()
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(PROMPT_LINE)
    await process.stdin.drain()
    line = await process.stdout.readline()
    first_line = time.perf_counter()
    if RESULT_MARKER not in line:
        raise RuntimeError(f"the no-op agent printed {line!r}, not a result")
    await process.communicate()
    return BareRun(spawned, execed, first_line, time.perf_counter())


@dataclass(frozen=True)
class BareChain:
    """Agents one after another, as one chain of the plan with no scheduler at all."""

    runs: list[BareRun]
    wall: float


async def _bare_chain(length: int) -> BareChain:
    started = time.perf_counter()
    runs = [await bare_run() for _ in range(length)]
    return BareChain(runs, time.perf_counter() - started)


@dataclass(frozen=True)
class BareFanOut:
    wall: float


async def _bare_fanout(workers: int) -> BareFanOut:
    started = time.perf_counter()
    await asyncio.gather(*(bare_run() for _ in range(workers)))
    await bare_run()
    return BareFanOut(time.perf_counter() - started)


@dataclass(frozen=True)
class BareGraph:
    """The plan's graph under a minimal scheduler: every chain at once, each one a `BareChain`."""

    chains: list[BareChain]
    wall: float

    @property
    def runs(self) -> list[BareRun]:
        return [run for chain in self.chains for run in chain.runs]

    @property
    def exit_to_exec(self) -> list[float]:
        """A chain's agent's exit seen -> the next agent's exec returned, in seconds."""
        return [
            b.execed - a.exited for chain in self.chains for a, b in itertools.pairwise(chain.runs)
        ]


async def _bare_graph(shape: Shape) -> BareGraph:
    started = time.perf_counter()
    chains = await asyncio.gather(*(_bare_chain(shape.length) for _ in range(shape.chains)))
    return BareGraph(list(chains), time.perf_counter() - started)


def spawn_to_first_line(runs: list[BareRun]) -> list[float]:
    return [r.first_line - r.spawned for r in runs]


def spawn_to_exec(runs: list[BareRun]) -> list[float]:
    return [r.execed - r.spawned for r in runs]


def exec_to_exit(runs: list[BareRun]) -> list[float]:
    return [r.exited - r.execed for r in runs]


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class OrchestrationResult:
    """Every round of one invocation."""

    workload: Workload
    bare_chains: list[BareChain]
    """The single chain's agents one at a time: the latency baseline (three blocks)."""
    bare_fanouts: list[BareFanOut]
    fanout: FanOutResult
    bare_graphs: list[BareGraph]
    wide: PlanResult
    chain: PlanResult

    @property
    def one_at_a_time(self) -> list[BareRun]:
        return [run for chain in self.bare_chains for run in chain.runs]

    @property
    def problems(self) -> list[str]:
        found = [
            f"fan-out round {index}: {problem}"
            for index, r in enumerate(self.fanout.rounds, 1)
            for problem in r.problems
        ]
        found += [f"wide plan: {problem}" for problem in self.wide.problems]
        return found + [f"chain plan: {problem}" for problem in self.chain.problems]


def run(quick: bool = False) -> OrchestrationResult:
    """Every round, with baselines around each orcad phase."""
    work = Workload.of(quick)
    timeout = 120.0 if quick else 300.0
    bare_chains = [asyncio.run(_bare_chain(work.chain.length))]
    bare_fanouts = [asyncio.run(_bare_fanout(work.workers))]
    fanout = run_fanouts(work, timeout)
    bare_fanouts.append(asyncio.run(_bare_fanout(work.workers)))
    bare_graphs = [asyncio.run(_bare_graph(work.wide))]
    wide = run_plan(work.wide, timeout)
    bare_graphs.append(asyncio.run(_bare_graph(work.wide)))
    bare_chains.append(asyncio.run(_bare_chain(work.chain.length)))
    chain = run_plan(work.chain, timeout)
    bare_chains.append(asyncio.run(_bare_chain(work.chain.length)))
    return OrchestrationResult(work, bare_chains, bare_fanouts, fanout, bare_graphs, wide, chain)


LABEL = 52


def _p50(seconds: list[float]) -> float:
    """The median in milliseconds."""
    return percentiles(seconds)[0]


def _latency(label: str, seconds: list[float]) -> str:
    p50, p99 = percentiles(seconds)
    return f"  {label:{LABEL}} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  (n={len(seconds)})"


def _figure(label: str, text: str) -> str:
    return f"  {label:{LABEL}} {text}"


def _each(values: list[float], scale: float = 1000.0, fmt: str = ".1f") -> str:
    return ", ".join(format(v * scale, fmt) for v in values)


def _mib(kb: int) -> str:
    return f"{kb / 1024:.1f} MiB"


def _plan_lines(plan: PlanResult, baseline_p50: float) -> list[str]:
    """The figures of one plan run (`baseline_p50`: bare spawn -> first output, in ms)."""
    shape = plan.shape
    return [
        f"  {shape.describe()}:",
        _latency("  dependency done -> dependant started", plan.done_to_started),
        _latency("    dependency session ended -> dependant started", plan.terminated_to_started),
        _latency("    session ended -> task done (every task)", plan.terminated_to_done),
        _latency("    dependency done -> dependant in_progress", plan.done_to_in_progress),
        _latency("    in_progress -> session_started (every task)", plan.in_progress_to_started),
        _figure(
            "  p50 / baseline p50 (bare spawn -> first output)",
            f"{_p50(plan.done_to_started) / baseline_p50:7.2f}  (no goal set)",
        ),
        _latency("  session started -> ended (every task)", plan.life),
        _figure(
            "  wall (request -> run completed)",
            f"{plan.wall:7.2f} s  ({shape.tasks / plan.wall:.0f} tasks/s; StartPlan replied after"
            f" {plan.request_seconds * 1000:.0f} ms; {plan.events} events)",
        ),
        _figure(
            "  orcad peak RSS (VmHWM)",
            f"{_mib(plan.peak_kb)}  (idle {_mib(plan.idle_kb)}; at the end {_mib(plan.end_rss_kb)};"
            f" orcad CPU {plan.daemon_cpu:.2f} s, {plan.daemon_cpu / shape.tasks * 1000:.1f} ms"
            " per task)",
        ),
    ]


def report(result: OrchestrationResult) -> str:
    """The latencies, wall times, CPU and memory figures as printable lines."""
    work = result.workload
    fan = result.fanout
    med = statistics.median
    sequential = result.one_at_a_time
    baseline_p50 = _p50(spawn_to_first_line(sequential))
    gaps = [r.gap for r in fan.rounds]
    fan_walls = [r.wall for r in fan.rounds]
    bare_fan = med([b.wall for b in result.bare_fanouts])
    graph_walls = [b.wall for b in result.bare_graphs]
    graph_runs = [run for graph in result.bare_graphs for run in graph.runs]
    chain_walls = [c.wall for c in result.bare_chains[1:]]
    sessions = work.fanout_rounds * (work.workers + 1)
    lines = [
        f"orchestration (no-op command agents: python -I bench/agents/{AGENT.name})",
        _latency(
            "baseline: bare agent, spawn -> first output line", spawn_to_first_line(sequential)
        ),
        _latency("  of which spawn -> exec returned", spawn_to_exec(sequential)),
        _latency("  exec returned -> exit seen", exec_to_exit(sequential)),
        f"  fan-out of {work.workers} workers, then the synthesizer"
        f" ({work.fanout_rounds} rounds on one orcad):",
        _figure(
            "  last worker ended -> orchestrator started",
            f"median {med(gaps) * 1000:6.1f} ms  (rounds: {_each(gaps)} ms)",
        ),
        _figure(
            "    of which -> orchestrator_triggered",
            f"median {med([r.triggered - r.last_worker_end for r in fan.rounds]) * 1000:6.1f} ms",
        ),
        _figure("  gap / baseline p50", f"{med(gaps) * 1000 / baseline_p50:7.2f}  (no goal set)"),
        _figure(
            "  wall (request -> run completed)",
            f"median {med(fan_walls):6.2f} s  (rounds: {_each(fan_walls, 1.0, '.2f')} s; the"
            " synthesizer's session, started -> ended:"
            f" {_each([r.orchestrator_ended - r.orchestrator_started for r in fan.rounds])} ms)",
        ),
        _figure(
            f"  baseline: {work.workers} bare agents at once, then one",
            f"median {bare_fan:6.2f} s  (rounds: "
            f"{_each([b.wall for b in result.bare_fanouts], 1.0, '.2f')} s)",
        ),
        _figure("  wall / baseline", f"{med(fan_walls) / bare_fan:7.2f}"),
        _figure(
            "  orcad peak RSS (VmHWM)",
            f"{_mib(fan.peak_first_kb)} after round 1, {_mib(fan.peak_kb)} after round"
            f" {len(fan.rounds)}  (idle {_mib(fan.idle_kb)}; at the end {_mib(fan.end_rss_kb)};"
            f" orcad CPU {fan.daemon_cpu:.2f} s, {fan.daemon_cpu / sessions * 1000:.1f} ms per"
            " session)",
        ),
        *_plan_lines(result.wide, baseline_p50),
        _latency(
            "  same graph, bare scheduler: exit -> next exec'd",
            [d for graph in result.bare_graphs for d in graph.exit_to_exec],
        ),
        _latency("  same graph, bare: spawn -> first output line", spawn_to_first_line(graph_runs)),
        _figure(
            "  baseline: same graph, bare scheduler",
            f"median {med(graph_walls):6.2f} s  (rounds: {_each(graph_walls, 1.0, '.2f')} s)",
        ),
        _figure("  wall / baseline", f"{result.wide.wall / med(graph_walls):7.2f}"),
        *_plan_lines(result.chain, baseline_p50),
        _figure(
            f"  baseline: the same {work.chain.tasks} agents one at a time",
            f"median {med(chain_walls):6.2f} s  (rounds before and after: "
            f"{_each(chain_walls, 1.0, '.2f')} s)",
        ),
        _figure("  wall / baseline", f"{result.chain.wall / med(chain_walls):7.2f}"),
    ]
    lines += [f"  PROBLEM: {problem}" for problem in result.problems]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="20 workers, 2 rounds; plans of 50 tasks (5 chains) and of 15 (one chain)",
    )
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
