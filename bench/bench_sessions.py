"""Many live sessions at once (issue 14): orcad's CPU per printed line against a bare asyncio
supervisor of the same agents, its threads, and the `status` round trip while they all run.

SESSIONS command sessions (1,000; `--quick`: 100) of `agents/counted_agent.py` each print LINES
lines of plain output, one every INTERVAL seconds, then their result. orcad runs with the open
files limit of its systemd unit (`LimitNOFILE`, when this process may raise its own to it).

- orcad: the runs are started from a few client threads; once all are running, `status` (the
  default view: every live run, first page) and `hello` are timed from a client, back to back;
  then the runs are waited for. Its CPU (user + system, its own, not its holders' or agents')
  from the first `StartRun` to the last run's end, over the lines printed; its peak thread count.
- the floor, in the same invocation: a bare asyncio supervisor in a process of its own starts
  the same agents with pipes (`subprocess.Popen`, the loop reading each pipe as it becomes
  readable and counting lines), and waits for their exits. Its CPU over the same lines.

Goals (issue 14): orcad's CPU per line within 2x of the floor; threads not growing with the
sessions; `status` p99 <= 10 ms; no crash under the unit's limits.

    python bench/bench_sessions.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench_questions import CLOCK_TICKS, percentiles
from bench_roundtrip import OrcaDaemon

from orca_client.client import Client, fetch_status
from orca_client.events import OutputAppended, decode_event
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import Hello, StartRun, Status

AGENT = Path(__file__).resolve().parent / "agents" / "counted_agent.py"
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "orcad.service"
STARTER_THREADS = 8
STATUS_SAMPLES = 200
GOAL_CPU_RATIO = 2.0
GOAL_STATUS_P99_MS = 10.0

SUPERVISOR = r"""
import asyncio, json, os, resource, subprocess, sys

async def main(argv, sessions):
    loop = asyncio.get_running_loop()
    lines = 0
    open_pipes = 0
    done = loop.create_future()
    children = []

    def readable(fd):
        nonlocal lines, open_pipes
        data = os.read(fd, 65536)
        if data:
            lines += data.count(b"\n")
            return
        loop.remove_reader(fd)
        os.close(fd)
        open_pipes -= 1
        if open_pipes == 0:
            done.set_result(None)

    for _ in range(sessions):
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        fd = os.dup(child.stdout.fileno())
        child.stdout.close()
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable, fd)
        open_pipes += 1
        children.append(child)
        await asyncio.sleep(0)
    await asyncio.sleep(1.0)
    cpu_before, lines_before = cpu(), lines
    await asyncio.sleep(window)
    window_cpu, window_lines = cpu() - cpu_before, lines - lines_before
    await done
    for child in children:
        child.wait()
    print(json.dumps({
        "lines": lines, "cpu": cpu(), "window_cpu": window_cpu, "window_lines": window_lines
    }))

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

window = float(sys.argv[3])
asyncio.run(main(json.loads(sys.argv[1]), int(sys.argv[2])))
"""


@dataclass(frozen=True)
class Workload:
    sessions: int
    lines: int
    interval: float
    window: float
    """Seconds of steady state (every session started, none ended) whose CPU is measured."""

    @classmethod
    def of(cls, quick: bool) -> Workload:
        return cls(100, 30, 0.25, 3.0) if quick else cls(1000, 120, 0.5, 15.0)

    def agent_argv(self) -> list[str]:
        return [sys.executable, "-I", "-S", str(AGENT), str(self.lines), str(self.interval)]

    @property
    def total_lines(self) -> int:
        """Printed by all the agents, their result lines included."""
        return self.sessions * (self.lines + 1)


@dataclass(frozen=True)
class OrcadRound:
    cpu: float
    wall: float
    window_cpu: float
    window_lines: int
    peak_threads: int
    status_ms: list[float]
    hello_ms: list[float]
    ended: dict[str, int]
    nofile: int
    failures: list[str]


@dataclass(frozen=True)
class FloorRound:
    cpu: float
    lines: int
    wall: float
    window_cpu: float
    window_lines: int


@dataclass(frozen=True)
class SessionsResult:
    workload: Workload
    orcad: OrcadRound
    floors: list[FloorRound]

    @property
    def orcad_cpu_per_line(self) -> float:
        """In the steady state: every session running, printing."""
        return self.orcad.window_cpu / max(1, self.orcad.window_lines)

    @property
    def floor_cpu_per_line(self) -> float:
        return statistics.median(f.window_cpu / max(1, f.window_lines) for f in self.floors)


def unit_nofile() -> int:
    for line in UNIT.read_text().splitlines():
        if line.startswith("LimitNOFILE="):
            return int(line.split("=", 1)[1])
    raise RuntimeError(f"no LimitNOFILE in {UNIT}")


def raise_nofile(wanted: int) -> int:
    """Give this process (and so orcad, its child) the unit's open files limit if it may."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in ((wanted, max(wanted, hard)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return limit[0]
        except (ValueError, OSError):
            continue
    return soft


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _start(daemon: OrcaDaemon, workload: Workload, count: int, failures: list[str]) -> None:
    with daemon.client(timeout=120.0) as client:
        for _ in range(count):
            try:
                client.request(StartRun(cwd=str(daemon.base), command=workload.agent_argv()))
            except Exception as exc:
                failures.append(f"start: {exc}")


def _timed(call: Callable[[], object], samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def run_orcad(workload: Workload, timeout: float) -> OrcadRound:
    nofile = raise_nofile(unit_nofile())
    failures: list[str] = []
    with OrcaDaemon() as daemon:
        assert daemon.process is not None
        pid = daemon.process.pid
        before, started = _cpu(pid), time.perf_counter()
        share = [workload.sessions // STARTER_THREADS] * STARTER_THREADS
        share[0] += workload.sessions - sum(share)
        starters = [
            threading.Thread(target=_start, args=(daemon, workload, n, failures), daemon=True)
            for n in share
        ]
        for thread in starters:
            thread.start()
        peak_threads = 0
        deadline = time.monotonic() + timeout
        with daemon.client(timeout=60.0) as client:
            while any(t.is_alive() for t in starters) or not all_started(client, workload):
                peak_threads = max(peak_threads, _threads(pid))
                time.sleep(0.2)
            time.sleep(1.0)
            window_start, window_before = time.time(), _cpu(pid)
            time.sleep(workload.window)
            window_cpu, window_end = _cpu(pid) - window_before, time.time()
            peak_threads = max(peak_threads, _threads(pid))
            status_ms = [s * 1000 for s in _timed(lambda: client.request(Status()), STATUS_SAMPLES)]
            hello_ms = [s * 1000 for s in _timed(lambda: client.request(Hello()), STATUS_SAMPLES)]
            while time.monotonic() < deadline:
                peak_threads = max(peak_threads, _threads(pid))
                runs = fetch_status(client, Status(ended=None)).runs
                if sum(r.status in TERMINAL_STATUSES for r in runs) >= workload.sessions:
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError(f"the runs did not end within {timeout:.0f} s")
        cpu, wall = _cpu(pid) - before, time.perf_counter() - started
        window_lines = lines_recorded(daemon, window_start, window_end)
        if daemon.process.poll() is not None:
            failures.append(f"orcad exited with {daemon.process.returncode}")
        ended: dict[str, int] = {}
        for run in runs:
            ended[run.status] = ended.get(run.status, 0) + 1
    return OrcadRound(
        cpu,
        wall,
        window_cpu,
        window_lines,
        peak_threads,
        status_ms,
        hello_ms,
        ended,
        nofile,
        failures,
    )


def all_started(client: Client, workload: Workload) -> bool:
    """Whether every session has its agent running (a pid), or has already ended."""
    sessions = fetch_status(client, Status(ended=None)).sessions
    return len(sessions) >= workload.sessions and all(
        s.pid is not None or s.status in TERMINAL_STATUSES for s in sessions
    )


def lines_recorded(daemon: OrcaDaemon, since: float, until: float) -> int:
    """Lines of output that orcad recorded between two wall-clock times (read from its log)."""
    lines = 0
    with daemon.client(timeout=60.0) as client:
        for page in client.read_pages(after=0):
            for record in page:
                if since <= record.recorded_at <= until:
                    event = decode_event(bytes(record.event))
                    if isinstance(event, OutputAppended):
                        lines += event.text.count("\n")
    return lines


def run_floor(workload: Workload) -> FloorRound:
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            SUPERVISOR,
            json.dumps(workload.agent_argv()),
            str(workload.sessions),
            str(workload.window),
        ],
        capture_output=True,
        check=True,
        text=True,
        timeout=600,
    )
    figures = json.loads(done.stdout)
    return FloorRound(
        figures["cpu"],
        figures["lines"],
        time.perf_counter() - started,
        figures["window_cpu"],
        figures["window_lines"],
    )


def run(quick: bool = False) -> SessionsResult:
    workload = Workload.of(quick)
    timeout = 120.0 if quick else 600.0
    raise_nofile(unit_nofile())  # for the floor's rounds too
    floors = [run_floor(workload)]
    orcad = run_orcad(workload, timeout)
    floors.append(run_floor(workload))
    return SessionsResult(workload, orcad, floors)


def report(result: SessionsResult) -> str:
    w, o = result.workload, result.orcad
    ratio = result.orcad_cpu_per_line / result.floor_cpu_per_line
    status50, status99 = percentiles([ms / 1000 for ms in o.status_ms])
    hello50, hello99 = percentiles([ms / 1000 for ms in o.hello_ms])
    cpu_met = "met" if ratio <= GOAL_CPU_RATIO else "NOT met"
    status_met = "met" if status99 <= GOAL_STATUS_P99_MS else "NOT met"
    crashed = "none" if not o.failures else "; ".join(o.failures[:3])
    return "\n".join(
        [
            f"many sessions at once (issue 14): {w.sessions} sessions x {w.lines} lines, one "
            f"every {w.interval:g} s; orcad's open files limit {o.nofile}",
            f"  CPU per printed line, all sessions running ({w.window:g} s): orcad "
            f"{result.orcad_cpu_per_line * 1e6:.0f} us ({o.window_cpu:.2f} s / {o.window_lines} "
            f"lines)   bare asyncio supervisor {result.floor_cpu_per_line * 1e6:.0f} us (rounds: "
            + ", ".join(f"{f.window_cpu:.2f} s / {f.window_lines} lines" for f in result.floors)
            + f")   ratio {ratio:.2f}x   goal <= {GOAL_CPU_RATIO:g}x: {cpu_met}",
            f"  recorded in that window: {o.window_lines} of about "
            f"{w.sessions * w.window / w.interval:.0f} lines printed (fewer: orcad fell behind, "
            f"and the holders spooled the rest)",
            f"  whole round, orcad: {o.cpu:.1f} s of CPU over {w.total_lines} lines and "
            f"{w.sessions} session starts and ends ({o.cpu / w.total_lines * 1e6:.0f} us a "
            f"line), wall {o.wall:.0f} s",
            f"  orcad's threads, peak: {o.peak_threads}",
            f"  status with every session live (first page): p50 {status50:.2f} ms  p99 "
            f"{status99:.2f} ms   (hello p50 {hello50:.2f} ms  p99 {hello99:.2f} ms)   goal p99 "
            f"<= {GOAL_STATUS_P99_MS:g} ms: {status_met}",
            f"  runs ended: {o.ended}   failures: {crashed}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 sessions instead of 1,000")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
