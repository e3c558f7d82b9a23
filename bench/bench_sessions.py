"""Many live sessions at once (issue 14): orcad's CPU per printed line against a bare asyncio
supervisor of the same agents, its threads, and the `status` round trip while they all run.

SESSIONS command sessions (1,000; `--quick`: 100) of `agents/counted_agent.py` each print a
line of plain output every INTERVAL seconds until the round's stop file exists (made once the
round has measured what it measures), then their result. So every session is live throughout
the measurements, however long the starts take: starting 1,000 sessions took orcad ~150 s,
longer than a fixed number of lines would last. orcad runs with the open files limit of its
systemd unit (`LimitNOFILE`, when this process may raise its own to it).

- orcad: the runs are started from a few client threads; the start phase lasts from the first
  `StartRun` until every session is live (an agent pid, not ended: polled every 0.2 s once the
  starters are done, and a session that has already ended is a failure). Then a second to settle
  and the window: orcad's CPU (user + system, its own, not its holders' or agents') over the
  lines it recorded in the window (read from its log); its peak thread count. Then `status` (the
  default view: every live run, first page) and `hello` are timed from a client, back to back;
  then the stop file is made and the runs are waited for.
- the floor, in the same invocation: a bare asyncio supervisor in a process of its own starts
  the same agents with pipes (`subprocess.Popen`, the loop reading each pipe as it becomes
  readable and counting lines: its start phase), waits a second, measures its window, makes its
  own stop file and waits for their exits. Its CPU over the lines it read in the window. One
  more round of it also writes each read to SQLite (a row like an `output_appended` event in
  a table like the log's, WAL and synchronous=FULL as orcad's defaults, committed every 50 ms
  in its loop): what no recorder of every line can do without, next to what the goal is
  measured against.

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
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench_questions import CLOCK_TICKS, FLUSH_DELAY, percentiles
from bench_roundtrip import OrcaDaemon

from orca_client.client import Client, fetch_status
from orca_client.events import OutputAppended, decode_event
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import Hello, StartRun, Status

AGENT = Path(__file__).resolve().parent / "agents" / "counted_agent.py"
UNIT = Path(__file__).resolve().parent.parent / "systemd" / "orcad.service"
STARTER_THREADS = 8
STATUS_SAMPLES = 200
SETTLE = 1.0
"""Seconds between the start phase's end and the window."""
GOAL_CPU_RATIO = 2.0
GOAL_STATUS_P99_MS = 10.0

SUPERVISOR = r"""
import asyncio, json, os, resource, sqlite3, subprocess, sys, time

SCHEMA = (
    "CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version INTEGER "
    "NOT NULL, type TEXT NOT NULL, recorded_at REAL NOT NULL, data BLOB NOT NULL, "
    "UNIQUE (stream, version))"
)
INSERT = "INSERT INTO events (stream, version, type, recorded_at, data) VALUES (?, ?, ?, ?, ?)"

def open_log(path):
    log = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=FULL"):
        log.execute("PRAGMA " + pragma)
    log.execute(SCHEMA)
    return log

async def commit_every(log, rows, delay):
    while True:
        await asyncio.sleep(delay)
        if rows:
            log.execute("BEGIN")
            log.executemany(INSERT, rows)
            log.execute("COMMIT")
            rows.clear()

async def main(argv, sessions, settle, window, stop_file, log_path, delay):
    loop = asyncio.get_running_loop()
    lines = 0
    open_pipes = 0
    done = loop.create_future()
    children = []
    log, rows, versions = (open_log(log_path), [], {}) if log_path else (None, None, None)
    committer = loop.create_task(commit_every(log, rows, delay)) if log else None

    def readable(fd):
        nonlocal lines, open_pipes
        data = os.read(fd, 65536)
        if data:
            lines += data.count(b"\n")
            if log is not None:
                versions[fd] = version = versions.get(fd, 0) + 1
                rows.append((str(fd), version, "output_appended", time.time(), data))
            return
        loop.remove_reader(fd)
        os.close(fd)
        open_pipes -= 1
        if open_pipes == 0:
            done.set_result(None)

    started, cpu_started = time.perf_counter(), cpu()
    for _ in range(sessions):
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        fd = os.dup(child.stdout.fileno())
        child.stdout.close()
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable, fd)
        open_pipes += 1
        children.append(child)
        await asyncio.sleep(0)
    start_wall, start_cpu = time.perf_counter() - started, cpu() - cpu_started
    await asyncio.sleep(settle)
    cpu_before, lines_before = cpu(), lines
    await asyncio.sleep(window)
    window_cpu, window_lines = cpu() - cpu_before, lines - lines_before
    ended_early = sum(child.poll() is not None for child in children)
    open(stop_file, "x").close()
    await done
    for child in children:
        child.wait()
    if committer is not None:
        committer.cancel()
    print(json.dumps({
        "lines": lines, "cpu": cpu(), "start_wall": start_wall, "start_cpu": start_cpu,
        "window_cpu": window_cpu, "window_lines": window_lines, "ended_early": ended_early,
    }))

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

argv, sessions = json.loads(sys.argv[1]), int(sys.argv[2])
settle, window, stop_file = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
log_path, delay = sys.argv[6], float(sys.argv[7])
asyncio.run(main(argv, sessions, settle, window, stop_file, log_path, delay))
"""


@dataclass(frozen=True)
class Workload:
    sessions: int
    interval: float
    window: float
    """Seconds of steady state (every session live, printing) whose CPU is measured."""
    agent_cap: float
    """Seconds after which an agent stops even without its stop file (a bench that died)."""

    @classmethod
    def of(cls, quick: bool) -> Workload:
        return cls(100, 0.25, 3.0, 600.0) if quick else cls(1000, 0.5, 15.0, 1800.0)

    def agent_argv(self, stop_file: Path) -> list[str]:
        return [
            *(sys.executable, "-I", "-S", str(AGENT)),
            *(str(stop_file), str(self.interval), str(self.agent_cap)),
        ]

    @property
    def window_lines_printed(self) -> float:
        """About how many lines the agents print in the window, every one of them live."""
        return self.sessions * self.window / self.interval


@dataclass(frozen=True)
class Phase:
    """orcad's CPU and the wall time of a phase of a round, and the lines it recorded then."""

    cpu: float
    wall: float
    lines: int


@dataclass(frozen=True)
class OrcadRound:
    sessions: int
    """Sessions that orcad accepted (`StartRun` answered)."""
    start: Phase
    """First `StartRun` until every session is live."""
    window: Phase
    stop: Phase
    """The stop file made until the last run ended."""
    whole: Phase
    """First `StartRun` until the last run ended."""
    ended_early: int
    """Sessions that had ended before the stop file (each one a failure)."""
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
    start_cpu: float
    start_wall: float
    window_cpu: float
    window_lines: int
    ended_early: int
    """Agents that had exited by the end of the window, before the stop file."""


@dataclass(frozen=True)
class SessionsResult:
    workload: Workload
    orcad: OrcadRound
    floors: list[FloorRound]
    recording_floor: FloorRound
    """The bare supervisor that also writes each read to SQLite: no recorder costs less."""

    @property
    def orcad_cpu_per_line(self) -> float:
        """In the steady state: every session live, printing."""
        return self.orcad.window.cpu / max(1, self.orcad.window.lines)

    @property
    def floor_cpu_per_line(self) -> float:
        return statistics.median(f.window_cpu / max(1, f.window_lines) for f in self.floors)

    @property
    def orcad_start_per_session(self) -> tuple[float, float]:
        """CPU and wall seconds of the start phase, per session."""
        sessions = max(1, self.orcad.sessions)
        return self.orcad.start.cpu / sessions, self.orcad.start.wall / sessions

    @property
    def recording_floor_cpu_per_line(self) -> float:
        floor = self.recording_floor
        return floor.window_cpu / max(1, floor.window_lines)

    @property
    def floor_start_per_session(self) -> tuple[float, float]:
        sessions = self.workload.sessions
        return (
            statistics.median(f.start_cpu / sessions for f in self.floors),
            statistics.median(f.start_wall / sessions for f in self.floors),
        )

    @property
    def all_live(self) -> bool:
        """Whether every session was live from the start phase's end to the stop file."""
        floors = [*self.floors, self.recording_floor]
        return not self.orcad.ended_early and not any(f.ended_early for f in floors)

    @property
    def failures(self) -> list[str]:
        """orcad's, then each floor round's."""
        return self.orcad.failures + [
            f"floor round {index}: {f.ended_early} agents had ended before the stop file"
            for index, f in enumerate(self.floors, 1)
            if f.ended_early
        ]


@dataclass(frozen=True)
class Census:
    """The sessions orcad knows of: live (an agent pid, not ended), ended, or neither yet."""

    sessions: int
    live: int
    ended: int

    def all_started(self, expected: int) -> bool:
        """Whether every session is live or has ended (an ended one is a failure)."""
        return self.sessions >= expected and self.live + self.ended >= self.sessions


def census(client: Client) -> Census:
    sessions = fetch_status(client, Status(ended=None)).sessions
    ended = sum(s.status in TERMINAL_STATUSES for s in sessions)
    live = sum(s.pid is not None and s.status not in TERMINAL_STATUSES for s in sessions)
    return Census(len(sessions), live, ended)


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


def _start(daemon: OrcaDaemon, argv: list[str], count: int, failures: list[str]) -> None:
    with daemon.client(timeout=120.0) as client:
        for _ in range(count):
            try:
                client.request(StartRun(cwd=str(daemon.base), command=argv))
            except Exception as exc:
                failures.append(f"start: {exc}")


def _timed(call: Callable[[], object], samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


@dataclass(frozen=True)
class _Mark:
    """A moment of a round: orcad's CPU, the monotonic clock, the wall clock (as in the log)."""

    cpu: float
    clock: float
    wall: float

    @classmethod
    def now(cls, pid: int) -> _Mark:
        return cls(_cpu(pid), time.perf_counter(), time.time())


def run_orcad(workload: Workload, timeout: float) -> OrcadRound:
    nofile = raise_nofile(unit_nofile())
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="orca-bench-stop-") as stop_dir:
        stop_file = Path(stop_dir) / "stop"
        argv = workload.agent_argv(stop_file)
        with OrcaDaemon() as daemon:
            assert daemon.process is not None
            pid = daemon.process.pid
            first = _Mark.now(pid)
            share = [workload.sessions // STARTER_THREADS] * STARTER_THREADS
            share[0] += workload.sessions - sum(share)
            starters = [
                threading.Thread(target=_start, args=(daemon, argv, n, failures), daemon=True)
                for n in share
            ]
            for thread in starters:
                thread.start()
            peak_threads = 0
            deadline = time.monotonic() + timeout
            accepted, now = 0, Census(0, 0, 0)
            with daemon.client(timeout=60.0) as client:
                while True:
                    peak_threads = max(peak_threads, _threads(pid))
                    if not any(t.is_alive() for t in starters):
                        accepted = workload.sessions - len(failures)  # start failures only, so far
                        now = census(client)
                        if now.all_started(accepted):
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the sessions did not all start within {timeout:.0f} s")
                    time.sleep(0.2)
                live = _Mark.now(pid)
                if now.ended:
                    failures.append(
                        f"{now.ended} of {now.sessions} sessions had ended before every one was "
                        "live: the window's figures include their ends"
                    )
                time.sleep(SETTLE)
                window_start = _Mark.now(pid)
                time.sleep(workload.window)
                window_end = _Mark.now(pid)
                peak_threads = max(peak_threads, _threads(pid))
                after_window = census(client)
                status_ms = [
                    s * 1000 for s in _timed(lambda: client.request(Status()), STATUS_SAMPLES)
                ]
                hello_ms = [
                    s * 1000 for s in _timed(lambda: client.request(Hello()), STATUS_SAMPLES)
                ]
                after_samples = census(client)
                for when, before, seen in (
                    ("the window (or the second before it)", now, after_window),
                    ("the status and hello samples", after_window, after_samples),
                ):
                    if seen.ended > before.ended:
                        failures.append(
                            f"{seen.ended - before.ended} sessions ended during {when}, before "
                            "the stop file"
                        )
                stop = _Mark.now(pid)
                stop_file.touch()
                while time.monotonic() < deadline:
                    peak_threads = max(peak_threads, _threads(pid))
                    runs = fetch_status(client, Status(ended=None)).runs
                    if len(runs) >= accepted and all(r.status in TERMINAL_STATUSES for r in runs):
                        break
                    time.sleep(0.5)
                else:
                    raise RuntimeError(f"the runs did not end within {timeout:.0f} s")
            last = _Mark.now(pid)
            spans = [(first, live), (window_start, window_end), (stop, last), (first, last)]
            start, window, stopping, whole = (
                Phase(b.cpu - a.cpu, b.clock - a.clock, lines)
                for (a, b), lines in zip(
                    spans, lines_recorded(daemon, [(a.wall, b.wall) for a, b in spans]), strict=True
                )
            )
            if daemon.process.poll() is not None:
                failures.append(f"orcad exited with {daemon.process.returncode}")
            ended: dict[str, int] = {}
            for run in runs:
                ended[run.status] = ended.get(run.status, 0) + 1
    return OrcadRound(
        accepted,
        start,
        window,
        stopping,
        whole,
        after_samples.ended,
        peak_threads,
        status_ms,
        hello_ms,
        ended,
        nofile,
        failures,
    )


def lines_recorded(daemon: OrcaDaemon, spans: Sequence[tuple[float, float]]) -> list[int]:
    """Lines of output that orcad recorded within each span of wall-clock times (read from its
    log, once)."""
    lines = [0] * len(spans)
    with daemon.client(timeout=60.0) as client:
        for page in client.read_pages(after=0):
            for record in page:
                event = decode_event(bytes(record.event))
                if not isinstance(event, OutputAppended):
                    continue
                count = event.text.count("\n")
                for index, (since, until) in enumerate(spans):
                    if since <= record.recorded_at <= until:
                        lines[index] += count
    return lines


def run_floor(workload: Workload, recording: bool = False) -> FloorRound:
    """A round of the bare supervisor; `recording`: it also writes what it reads to SQLite."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="orca-bench-stop-") as stop_dir:
        stop_file = Path(stop_dir) / "stop"
        log_path = str(Path(stop_dir) / "log.db") if recording else ""
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                SUPERVISOR,
                json.dumps(workload.agent_argv(stop_file)),
                str(workload.sessions),
                str(SETTLE),
                str(workload.window),
                str(stop_file),
                log_path,
                str(FLUSH_DELAY),
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
        figures["start_cpu"],
        figures["start_wall"],
        figures["window_cpu"],
        figures["window_lines"],
        figures["ended_early"],
    )


def run(quick: bool = False) -> SessionsResult:
    workload = Workload.of(quick)
    timeout = 120.0 if quick else 600.0
    raise_nofile(unit_nofile())  # for the floor's rounds too
    floors = [run_floor(workload)]
    recording = run_floor(workload, recording=True)
    orcad = run_orcad(workload, timeout)
    floors.append(run_floor(workload))
    return SessionsResult(workload, orcad, floors, recording)


def report(result: SessionsResult) -> str:
    w, o = result.workload, result.orcad
    ratio = result.orcad_cpu_per_line / result.floor_cpu_per_line
    r, recording = result.recording_floor, result.recording_floor_cpu_per_line
    (o_start_cpu, o_start_wall), (f_start_cpu, f_start_wall) = (
        result.orcad_start_per_session,
        result.floor_start_per_session,
    )
    status50, status99 = percentiles([ms / 1000 for ms in o.status_ms])
    hello50, hello99 = percentiles([ms / 1000 for ms in o.hello_ms])
    cpu_met = "met" if ratio <= GOAL_CPU_RATIO else "NOT met"
    status_met = "met" if status99 <= GOAL_STATUS_P99_MS else "NOT met"
    failures = result.failures
    crashed = "none" if not failures else "; ".join(failures[:3])
    if len(failures) > 3:
        crashed += f" (and {len(failures) - 3} more)"
    printed = w.window_lines_printed
    if o.window.lines < 0.9 * printed:
        versus = "; fewer: orcad fell behind, and the holders spooled the rest"
    elif o.window.lines > 1.1 * printed:
        versus = "; more: orcad recorded lines printed before the window too"
    else:
        versus = ""
    start_output = o.start.lines * result.orcad_cpu_per_line
    start_net = (o.start.cpu - start_output) / max(1, o.sessions)
    leaves = f", which leaves about {start_net * 1e3:.1f} ms a session" if start_net > 0 else ""
    caveat = (
        []
        if result.all_live
        else [
            "  NOT every session was live until the stop file (see failures): the window's "
            "figures are not the steady state they claim to be"
        ]
    )
    return "\n".join(
        [
            f"many sessions at once (issue 14): {w.sessions} sessions, each printing a line "
            f"every {w.interval:g} s until its round's stop file; orcad's open files limit "
            f"{o.nofile}",
            *caveat,
            f"  start, first StartRun until every session is live: orcad {o.start.cpu:.2f} s of "
            f"CPU ({o_start_cpu * 1e3:.1f} ms a session), wall {o.start.wall:.1f} s "
            f"({o_start_wall * 1e3:.1f} ms a session)   bare asyncio supervisor, Popen of every "
            f"agent: {f_start_cpu * 1e3:.2f} ms of CPU and {f_start_wall * 1e3:.2f} ms of wall a "
            "session (rounds: "
            + ", ".join(f"{f.start_cpu:.2f} s / {f.start_wall:.2f} s" for f in result.floors)
            + f")   ratio CPU {o_start_cpu / max(f_start_cpu, 1e-9):.1f}x, wall "
            f"{o_start_wall / max(f_start_wall, 1e-9):.1f}x",
            f"    orcad's start CPU includes the {o.start.lines} lines it recorded meanwhile from "
            f"the sessions already started: about {start_output:.2f} s at the window's CPU per "
            f"line{leaves}",
            f"  CPU per line, every session live ({w.window:g} s, after {SETTLE:g} s): orcad "
            f"{result.orcad_cpu_per_line * 1e6:.0f} us ({o.window.cpu:.2f} s / {o.window.lines} "
            f"lines recorded)   bare asyncio supervisor {result.floor_cpu_per_line * 1e6:.0f} us "
            f"(rounds: "
            + ", ".join(
                f"{f.window_cpu:.2f} s / {f.window_lines} lines read" for f in result.floors
            )
            + f")   ratio {ratio:.2f}x   goal <= {GOAL_CPU_RATIO:g}x: {cpu_met}",
            f"    the same supervisor writing each read to SQLite as a row, committed every "
            f"{FLUSH_DELAY * 1e3:.0f} ms (the least a recorder of every line does): "
            f"{recording * 1e6:.0f} us ({r.window_cpu:.2f} s / {r.window_lines} lines read), "
            f"{recording / result.floor_cpu_per_line:.2f}x the bare floor; orcad / it "
            f"{result.orcad_cpu_per_line / recording:.2f}x",
            f"  lines in that window: orcad recorded {o.window.lines}; the agents printed about "
            f"{printed:.0f} (an estimate: {w.sessions} sessions x {w.window:g} s / "
            f"{w.interval:g} s, every one live throughout{versus})",
            f"  whole round, orcad: {o.whole.cpu:.1f} s of CPU, wall {o.whole.wall:.0f} s, for "
            f"{o.sessions} session starts and ends and {o.whole.lines} lines recorded; from the "
            f"stop file to the last run's end: {o.stop.cpu:.2f} s of CPU, wall {o.stop.wall:.1f} "
            f"s, lines recorded: {o.stop.lines} (the ends, and any output it had fallen behind on)",
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
