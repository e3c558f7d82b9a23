"""Questions under load: many concurrent command sessions that each print output, then ask once.

Every session runs `bench/agents/asking_agent.py`. It prints SIZE bytes of plain output in lines,
then one question line whose text carries the wall-clock time at which it was printed. It waits
for the answer on stdin and prints a `done` result. The benchmark starts all the runs at once
from a few client threads against a real orcad. A thread of its own follows the log with
`Client.follow` from the current head, and every question is answered (`Answer(text=...)`) as
soon as it appears there.

Figures, for orcad:

- latency from the agent printing its question to `run_status_changed` → `waiting_for_answer`
  being visible to the subscriber (p50/p99). It is split at the event's `recorded_at`, which the
  store sets when it plans the batch, just before the commit;
- orcad's peak RSS (`VmHWM`, read before it is stopped), its RSS once every run has ended, and
  the CPU time of orcad, of this process and of the rest of the machine (the holders and their
  agents, which are nobody's children here);
- output throughput: stdout bytes recorded / (first `StartRun` sent → `recorded_at` of the last
  output event).

Baseline, measured in the same invocation: the same agents, all at once, as plain asyncio
subprocesses. Their stdout pipes are read to EOF, and each question is answered as soon as its
line is read. Its latency is question printed → question line read; its throughput is bytes read
/ (first spawn → last byte read). The rounds alternate: pipes, orcad, pipes, ..., pipes. One
more round after the first also writes every read to SQLite as it reads (`_RecordingLog`): what
no recorder of every byte can do without, beside the raw pipes the figures are measured against.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from bench_roundtrip import OrcaDaemon

from orca_client.client import OrcaClientError
from orca_client.events import decode_event
from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import Answer, EventRecord, StartRun

AGENT = Path(__file__).resolve().parent / "agents" / "asking_agent.py"
STARTER_THREADS = 8
ANSWER_THREADS = 4
PIPE_READ_BYTES = 65_536
"""What the baseline reads at a time: the same as orcad's pump (`sessions.READ_SIZE`)."""
PROMPT_LINE = b'{"type":"prompt","text":""}\n'
ANSWER_LINE = b'{"type":"answer","answers":{"q1":{"answers":["yes"]}}}\n'
QUESTION_MARKER = b'{"type":"question"'
PRINTED_AT = "printed at "
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1 << 20
FLUSH_DELAY = 0.05
"""How often the recording baseline commits: orcad's output flush delay."""


@dataclass(frozen=True)
class Workload:
    """How many sessions, how much output each prints (in lines of what size), how many rounds."""

    sessions: int
    output_bytes: int
    rounds: int
    line_bytes: int = 128

    @classmethod
    def of(cls, quick: bool) -> Workload:
        return cls(40, 256 << 10, rounds=2) if quick else cls(200, 1 << 20, rounds=3)

    def agent_argv(self) -> list[str]:
        """`-I`: the agent needs only the standard library, so skip site-packages at start-up."""
        return [sys.executable, "-I", str(AGENT), str(self.output_bytes), str(self.line_bytes)]

    @property
    def total_bytes(self) -> int:
        return self.sessions * self.output_bytes


def printed_at(question_text: str) -> float | None:
    """The agent's wall-clock time from its question text, if it is there."""
    if not question_text.startswith(PRINTED_AT):
        return None
    return float(question_text[len(PRINTED_AT) :])


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds (NaN without samples)."""
    if len(seconds) < 2:
        value = seconds[0] * 1000 if seconds else float("nan")
        return value, value
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _machine_cpu() -> float:
    """CPU seconds every process on the machine has used (all but idle and iowait): the holders
    and their agents are nobody's children here, so their CPU is found as the machine's less
    orcad's and this process's."""
    with open("/proc/stat") as handle:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, handle.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


# --------------------------------------------------------------------------- orcad


@dataclass
class Observed:
    """What the subscriber saw, by run id. Only the subscriber thread writes it."""

    printed: dict[str, float] = field(default_factory=dict)
    """The agent's wall-clock time when it printed the question (from the question text)."""
    asked_seen: dict[str, float] = field(default_factory=dict)
    waiting_seen: dict[str, float] = field(default_factory=dict)
    waiting_recorded: dict[str, float] = field(default_factory=dict)
    terminal: dict[str, str] = field(default_factory=dict)
    output_bytes: int = 0
    last_output_recorded: float = 0.0
    events: int = 0

    def delays(self) -> dict[str, list[float]]:
        """Each delay in seconds, over the runs whose timestamps were all seen."""
        ids = [r for r in self.waiting_seen if r in self.printed]
        return {
            "waiting": [self.waiting_seen[r] - self.printed[r] for r in ids],
            "to_batch": [self.waiting_recorded[r] - self.printed[r] for r in ids],
            "to_subscriber": [self.waiting_seen[r] - self.waiting_recorded[r] for r in ids],
            "asked": [self.asked_seen[r] - self.printed[r] for r in self.asked_seen if r in ids],
        }


@dataclass(frozen=True)
class OrcadRound:
    """One run of the workload against a fresh orcad."""

    observed: Observed
    output_seconds: float
    wall_seconds: float
    idle_rss_kb: int
    peak_rss_kb: int
    end_rss_kb: int
    daemon_cpu: float
    agents_cpu: float
    client_cpu: float
    failures: list[str]

    @property
    def throughput(self) -> float:
        return self.observed.output_bytes / self.output_seconds


class Subscriber(threading.Thread):
    """Follows the whole log from `after`, timestamps what matters and queues runs to answer.

    It ends once `expected` runs are terminal, or with the error that stopped it (`error`).
    """

    def __init__(self, daemon: OrcaDaemon, after: int, expected: int) -> None:
        super().__init__(name="subscriber", daemon=True)
        self._daemon = daemon
        self._after = after
        self._expected = expected
        self.observed = Observed()
        self.to_answer: queue.Queue[str | None] = queue.Queue()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self._daemon.client() as client:
                for record in client.follow(after=self._after, reconnect_for=0.0):
                    self._see(record, time.time())
                    if len(self.observed.terminal) >= self._expected:
                        break
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def _see(self, record: EventRecord, now: float) -> None:
        seen = self.observed
        seen.events += 1
        event = msgspec.to_builtins(decode_event(record.event))
        kind, run_id = event["type"], event["run_id"]
        if kind == "output_appended":
            if event["stream"] == "stdout":
                seen.output_bytes += len(event["text"].encode())
                seen.last_output_recorded = max(seen.last_output_recorded, record.recorded_at)
        elif kind == "question_asked":
            seen.asked_seen.setdefault(run_id, now)
            at = printed_at(event["questions"][0]["question"])
            if at is not None:
                seen.printed[run_id] = at
        elif kind == "run_status_changed":
            status = event["status"]
            if status == "waiting_for_answer" and run_id not in seen.waiting_seen:
                seen.waiting_seen[run_id] = now
                seen.waiting_recorded[run_id] = record.recorded_at
                self.to_answer.put(run_id)
            elif status in TERMINAL_STATUSES:
                seen.terminal[run_id] = status


def _answer_all(daemon: OrcaDaemon, runs: queue.Queue[str | None], failures: list[str]) -> None:
    """Answer each queued run with plain text until a None arrives."""
    with daemon.client(timeout=30.0) as client:
        while (run_id := runs.get()) is not None:
            try:
                client.request(Answer(run_id, text="yes", answered_by="bench"))
            except OrcaClientError as exc:
                failures.append(f"answer {run_id}: {exc}")


def _start_runs(
    daemon: OrcaDaemon, workload: Workload, count: int, first: list[float], failures: list[str]
) -> None:
    """Start `count` runs of the asking agent; notes when its first request was sent."""
    with daemon.client(timeout=60.0) as client:
        for index in range(count):
            if index == 0:
                first.append(time.time())
            try:
                client.request(
                    StartRun(cwd=str(daemon.base), command=workload.agent_argv(), title="bench")
                )
            except OrcaClientError as exc:
                failures.append(f"start: {exc}")


def _share(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _rss_kb(pid: int, name: str) -> int:
    """`VmHWM` (peak) or `VmRSS` (now) of a process, in KiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of a process, and of the children it has waited for."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    children = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
    return own, children


def run_orcad(workload: Workload, timeout: float) -> OrcadRound:
    """One round against a fresh orcad: start every run, answer every question, wait for all."""
    failures: list[str] = []
    with OrcaDaemon() as daemon:
        assert daemon.process is not None
        pid = daemon.process.pid
        idle_rss = _rss_kb(pid, "VmHWM")
        daemon_before, _ = _cpu(pid)
        client_before, machine_before = _self_cpu(), _machine_cpu()
        with daemon.client() as client:
            head = client.hello().head_position
        subscriber = Subscriber(daemon, head, workload.sessions)
        subscriber.start()
        answerers = [
            threading.Thread(
                target=_answer_all, args=(daemon, subscriber.to_answer, failures), daemon=True
            )
            for _ in range(ANSWER_THREADS)
        ]
        first: list[float] = []
        starters = [
            threading.Thread(
                target=_start_runs, args=(daemon, workload, count, first, failures), daemon=True
            )
            for count in _share(workload.sessions, STARTER_THREADS)
        ]
        try:
            for thread in [*answerers, *starters]:
                thread.start()
            if not subscriber.done.wait(timeout):
                raise RuntimeError(
                    f"only {len(subscriber.observed.terminal)} of {workload.sessions} runs "
                    f"ended within {timeout:.0f} s:\n{daemon.output()[-3000:]}"
                )
            if subscriber.error is not None:
                raise RuntimeError(
                    f"the subscriber stopped: {subscriber.error!r}\n{daemon.output()[-3000:]}"
                )
            ended = time.time()
            peak_rss, end_rss = _rss_kb(pid, "VmHWM"), _rss_kb(pid, "VmRSS")
            daemon_after, _ = _cpu(pid)
            client_cpu = _self_cpu() - client_before
            machine_cpu = _machine_cpu() - machine_before
        finally:
            for _ in answerers:
                subscriber.to_answer.put(None)
            for thread in [*answerers, *starters]:
                thread.join(10)
    seen = subscriber.observed
    failed = sorted(r for r, status in seen.terminal.items() if status != "completed")
    if failed:
        failures.append(f"{len(failed)} runs did not complete, e.g. {failed[0]}")
    if seen.output_bytes != workload.total_bytes:
        failures.append(f"recorded {seen.output_bytes} output bytes, not {workload.total_bytes}")
    started = min(first)
    return OrcadRound(
        observed=seen,
        output_seconds=seen.last_output_recorded - started,
        wall_seconds=ended - started,
        idle_rss_kb=idle_rss,
        peak_rss_kb=peak_rss,
        end_rss_kb=end_rss,
        daemon_cpu=daemon_after - daemon_before,
        agents_cpu=machine_cpu - (daemon_after - daemon_before) - client_cpu,
        client_cpu=client_cpu,
        failures=failures,
    )


# --------------------------------------------------------------------------- baseline


@dataclass(frozen=True)
class PipeRound:
    """The baseline: every agent's stdout read to EOF straight from its pipe."""

    bytes_read: int
    output_seconds: float
    wall_seconds: float
    delays: list[float]
    """Question printed -> question line read, in seconds, one per agent."""
    agents_cpu: float
    reader_cpu: float

    @property
    def throughput(self) -> float:
        return self.bytes_read / self.output_seconds


@dataclass
class _PipeSession:
    bytes_read: int = 0
    last_read: float = 0.0
    delay: float | None = None


class _RecordingLog:
    """What the recording baseline writes each read to: rows in SQLite (WAL, synchronous=FULL,
    as orcad's log by default), committed every `FLUSH_DELAY` in the loop, as orcad's output
    events are. No recorder of every byte does less."""

    SCHEMA = (
        "CREATE TABLE events (position INTEGER PRIMARY KEY, stream TEXT NOT NULL, version "
        "INTEGER NOT NULL, recorded_at REAL NOT NULL, data BLOB NOT NULL, UNIQUE (stream, version))"
    )
    INSERT = "INSERT INTO events (stream, version, recorded_at, data) VALUES (?, ?, ?, ?)"

    def __init__(self, path: Path) -> None:
        self._log = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            self._log.execute(f"PRAGMA {pragma}")
        self._log.execute(self.SCHEMA)
        self._rows: list[tuple[str, int, float, bytes]] = []
        self._versions: dict[str, int] = {}

    def add(self, stream: str, data: bytes) -> None:
        self._versions[stream] = version = self._versions.get(stream, 0) + 1
        self._rows.append((stream, version, time.time(), data))

    def commit(self) -> None:
        if self._rows:
            self._log.execute("BEGIN")
            self._log.executemany(self.INSERT, self._rows)
            self._log.execute("COMMIT")
            self._rows.clear()

    def close(self) -> None:
        """Commit what is left, and close the log."""
        self.commit()
        self._log.close()

    async def commit_every(self, delay: float) -> None:
        while True:
            await asyncio.sleep(delay)
            self.commit()


async def _pipe_one(argv: list[str], log: _RecordingLog | None, stream: str) -> _PipeSession:
    """One agent as a plain subprocess: prompt in, stdout read to EOF, its question answered."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(PROMPT_LINE)
    await process.stdin.drain()
    session = _PipeSession()
    tail = b""
    question: bytes | None = None  # from the question marker on, until its newline is read
    while data := await process.stdout.read(PIPE_READ_BYTES):
        now = time.time()
        session.bytes_read += len(data)
        session.last_read = now
        if log is not None:
            log.add(stream, data)
        if session.delay is None:
            if question is None:
                window = tail + data
                index = window.find(QUESTION_MARKER)
                question = window[index:] if index >= 0 else None
                tail = window[-len(QUESTION_MARKER) :]
            else:
                question += data
            if question is not None and b"\n" in question:
                line = json.loads(question.split(b"\n", 1)[0])
                session.delay = now - (printed_at(line["questions"][0]["question"]) or now)
                process.stdin.write(ANSWER_LINE)
                await process.stdin.drain()
    process.stdin.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await process.stdin.wait_closed()
    await process.wait()
    return session


async def _pipe_all(
    workload: Workload, log: _RecordingLog | None
) -> tuple[float, list[_PipeSession], float]:
    started = time.time()
    committer = asyncio.create_task(log.commit_every(FLUSH_DELAY)) if log else None
    sessions = await asyncio.gather(
        *(_pipe_one(workload.agent_argv(), log, str(n)) for n in range(workload.sessions))
    )
    if log is not None and committer is not None:
        committer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await committer
        log.close()
    return started, sessions, time.time()


def run_pipes(workload: Workload, recording: bool = False) -> PipeRound:
    """The baseline: all the agents at once as plain subprocesses, their stdout read to EOF
    (`recording`: and written to SQLite as it is read)."""
    self_before, children_before = _self_cpu(), _children_cpu()
    with tempfile.TemporaryDirectory(prefix="orca-bench-log-") as log_dir:
        log = _RecordingLog(Path(log_dir) / "log.db") if recording else None
        started, sessions, ended = asyncio.run(_pipe_all(workload, log))
    return PipeRound(
        bytes_read=sum(s.bytes_read for s in sessions),
        output_seconds=max(s.last_read for s in sessions) - started,
        wall_seconds=ended - started,
        delays=[s.delay for s in sessions if s.delay is not None],
        agents_cpu=_children_cpu() - children_before,
        reader_cpu=_self_cpu() - self_before,
    )


# --------------------------------------------------------------------------- entry points


@dataclass(frozen=True)
class QuestionsResult:
    """Every round of one invocation: pipes, orcad, pipes, ..., pipes."""

    workload: Workload
    orcad: list[OrcadRound]
    pipes: list[PipeRound]
    recording: PipeRound
    """A baseline round that also writes every read to SQLite."""

    @property
    def throughput(self) -> float:
        return statistics.median(r.throughput for r in self.orcad)

    @property
    def pipe_throughput(self) -> float:
        return statistics.median(p.throughput for p in self.pipes)

    def round_ratios(self) -> list[float]:
        """Each orcad round against the mean of the baseline rounds just before and after it."""
        return [
            r.throughput / statistics.mean([before.throughput, after.throughput])
            for r, before, after in zip(self.orcad, self.pipes, self.pipes[1:], strict=False)
        ]


def run(quick: bool = False) -> QuestionsResult:
    """Alternate baseline and orcad rounds, starting and ending with the baseline."""
    workload = Workload.of(quick)
    timeout = 120.0 if quick else 240.0
    pipes = [run_pipes(workload)]
    recording = run_pipes(workload, recording=True)
    orcad = []
    for _ in range(workload.rounds):
        orcad.append(run_orcad(workload, timeout))
        pipes.append(run_pipes(workload))
    return QuestionsResult(workload, orcad, pipes, recording)


def report(result: QuestionsResult) -> str:
    """The latencies, memory, CPU and throughput figures as printable lines."""
    work = result.workload
    rounds = result.orcad
    pooled: dict[str, list[float]] = {}
    for r in rounds:
        for name, values in r.observed.delays().items():
            pooled.setdefault(name, []).extend(values)
    pipe_delays = [d for p in result.pipes for d in p.delays]

    def latency(label: str, seconds: list[float]) -> str:
        p50, p99 = percentiles(seconds)
        return f"  {label:46} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  (n={len(seconds)})"

    def per_round(values: list[float], fmt: str) -> str:
        return ", ".join(format(v, fmt) for v in values)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    ours_p50 = percentiles(pooled["waiting"])[0]
    pipe_p50 = percentiles(pipe_delays)[0]
    ratios = result.round_ratios()
    lines = [
        f"questions under load ({work.sessions} concurrent command sessions, "
        f"{work.output_bytes / MIB:g} MiB of output each in {work.line_bytes}-byte lines, then one "
        f"question; {len(rounds)} orcad rounds of {rounds[0].observed.events} events, "
        f"{len(result.pipes)} baseline rounds)",
        latency("question printed -> waiting_for_answer seen", pooled["waiting"]),
        latency("  printed -> batched for commit (recorded_at)", pooled["to_batch"]),
        latency("  batched -> seen (commit, push, decode)", pooled["to_subscriber"]),
        latency("question printed -> question_asked seen", pooled["asked"]),
        latency("baseline: printed -> question line read", pipe_delays),
        f"  p50 ours / baseline                            {ours_p50 / pipe_p50:7.1f}",
        f"  orcad peak RSS (VmHWM), max of rounds          "
        f"{max(r.peak_rss_kb for r in rounds) / 1024:7.1f} MiB"
        f"  (rounds: {per_round([r.peak_rss_kb / 1024 for r in rounds], '.0f')};"
        f" idle after start {rounds[0].idle_rss_kb / 1024:.0f}; RSS once all ended"
        f" {per_round([r.end_rss_kb / 1024 for r in rounds], '.0f')})",
        f"  CPU per round, median: orcad {med([r.daemon_cpu for r in rounds]):.1f} s,"
        f" holders and agents (the rest of the machine)"
        f" {med([r.agents_cpu for r in rounds]):.1f} s,"
        f" this process {med([r.client_cpu for r in rounds]):.2f} s,"
        f" wall {med([r.wall_seconds for r in rounds]):.1f} s."
        f" Baseline: agents {med([p.agents_cpu for p in result.pipes]):.1f} s,"
        f" reader {med([p.reader_cpu for p in result.pipes]):.2f} s,"
        f" wall {med([p.wall_seconds for p in result.pipes]):.1f} s",
        f"  output throughput, orcad (recorded), median    {result.throughput / MIB:7.1f} MiB/s"
        f"  (rounds: {per_round([r.throughput / MIB for r in rounds], '.1f')})",
        f"  output throughput, raw pipes, median           "
        f"{result.pipe_throughput / MIB:7.1f} MiB/s"
        f"  (rounds: {per_round([p.throughput / MIB for p in result.pipes], '.1f')})",
        f"  throughput orcad / raw pipes                   "
        f"{result.throughput / result.pipe_throughput:7.2f}"
        f"  (each round vs the baselines around it: {per_round(ratios, '.2f')}; no goal set)",
        f"  raw pipes, each read written to SQLite too     "
        f"{result.recording.throughput / MIB:7.1f} MiB/s"
        f"  ({result.recording.throughput / result.pipe_throughput:.2f}x raw pipes: no recorder"
        f" does less; orcad / it {result.throughput / result.recording.throughput:.2f};"
        f" question p50 {percentiles(result.recording.delays)[0]:.1f} ms)",
    ]
    for index, r in enumerate(rounds, 1):
        lines += [f"  PROBLEM in round {index}: {failure}" for failure in r.failures]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 sessions of 256 KiB, 2 rounds")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
