"""orcad's restart on a big log, against a plain sqlite3 read of the same log (issue 14).

A log of 1M events in 10k runs (`--quick`: 100k events in 1k runs) is written as orcad writes
it (bench/big_log.py). Then, on the same file:
- the floor: Python's sqlite3 stepping through every row of the log, in a process of its own;
- replay: orcad started with no snapshot, until it answers `hello` (it folds the whole log);
- snapshot: orcad started again after a clean stop (it loads the snapshot it saved, folds 0);
- tail: 50k more events (quick: 10k) written behind orcad's back, then a start (it loads the
  snapshot and folds only those): the start grows with the tail, not with the log.
Each start reports orcad's peak RSS (VmHWM) once ready. Then (full run only) the same for a log
of 100k runs (1M events): the projection's memory grows with the runs it keeps.

Goals (issue 14): ready <= 2 s and peak RSS <= 150 MiB at 1M events / 10k runs; at 100k runs
RSS <= 150 MiB.

    python bench/bench_restart.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # modules beside this file

import big_log
from bench_roundtrip import OrcaDaemon

GOAL_READY_SECONDS = 2.0
GOAL_RSS_MIB = 150.0
PLAIN_STEP = """
import sqlite3, sys
rows = 0
for row in sqlite3.connect(sys.argv[1]).execute("SELECT * FROM events ORDER BY position"):
    rows += 1
print(rows)
"""


@dataclass(frozen=True)
class Start:
    seconds: float
    rss_mib: float


@dataclass(frozen=True)
class RestartResult:
    events: int
    runs: int
    tail: int
    floor: float
    replay: Start
    snapshot: Start
    with_tail: Start
    many_runs: tuple[int, Start] | None


def timed_start(daemon: OrcaDaemon) -> Start:
    started = time.perf_counter()
    daemon.start(timeout=600)
    seconds = time.perf_counter() - started
    assert daemon.process is not None
    status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    peak = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return Start(seconds, int(peak.split()[1]) / 1024)


def stop(daemon: OrcaDaemon) -> None:
    """SIGTERM and wait: orcad saves its snapshot as it stops."""
    assert daemon.process is not None
    daemon.process.terminate()
    daemon.process.wait(120)


def prepared(events: int, runs: int) -> OrcaDaemon:
    daemon = OrcaDaemon()
    daemon.paths.state_dir.mkdir(parents=True, mode=0o700)
    big_log.write(daemon.paths.log_file, events, runs)
    return daemon


def run(quick: bool = False) -> RestartResult:
    events, runs, tail = (100_000, 1_000, 10_000) if quick else (1_000_000, 10_000, 50_000)
    daemon = prepared(events, runs)
    try:
        plain = [sys.executable, "-c", PLAIN_STEP, str(daemon.paths.log_file)]
        started = time.perf_counter()
        subprocess.run(plain, check=True, stdout=subprocess.DEVNULL, timeout=600)
        floor = time.perf_counter() - started
        replay = timed_start(daemon)
        stop(daemon)
        snapshot = timed_start(daemon)
        stop(daemon)
        big_log.write(daemon.paths.log_file, tail, max(1, tail // 100))
        with_tail = timed_start(daemon)
    finally:
        daemon.stop()
    many_runs = None
    if not quick:
        daemon = prepared(1_000_000, 100_000)
        try:
            timed_start(daemon)
            stop(daemon)
            many_runs = (100_000, timed_start(daemon))
        finally:
            daemon.stop()
    return RestartResult(events, runs, tail, floor, replay, snapshot, with_tail, many_runs)


def _start(name: str, start: Start, floor: float) -> str:
    return (
        f"  {name:<34} ready {start.seconds:6.2f} s ({start.seconds / floor:5.2f}x the floor)"
        f"  peak RSS {start.rss_mib:6.1f} MiB"
    )


def report(result: RestartResult) -> str:
    lines = [
        f"restart: {result.events:,} events in {result.runs:,} runs (bench/bench_restart.py)",
        f"  floor: plain sqlite3 steps through every row   {result.floor:6.2f} s",
        _start("no snapshot (folds the whole log)", result.replay, result.floor),
        _start("from the snapshot (folds 0)", result.snapshot, result.floor),
        _start(f"snapshot + {result.tail:,} new events", result.with_tail, result.floor),
    ]
    if result.many_runs is not None:
        count, start = result.many_runs
        lines.append(_start(f"{count:,} runs, from the snapshot", start, result.floor))
    lines.append(
        f"  goal (issue 14): ready <= {GOAL_READY_SECONDS:.0f} s,"
        f" peak RSS <= {GOAL_RSS_MIB:.0f} MiB"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k events instead of 1M")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
