"""`orca logs` of a big run against a plain sqlite3 read of the same rows (issue 14).

A run of `agents/flood_agent.py` leaves its output in the log of a real orcad (64 MB; `--quick`:
8 MB and 2 rounds), beside a second, small run whose events interleave with it. Then, alternating:
- ours: the whole `orca logs RUN` process, its output to /dev/null (it pages through the run's
  events with `read` requests, 512 KiB a page, asking for the next before it prints one);
- the floor: Python's sqlite3 reading the run's rows (`data`, in version order) from the same
  file, in another process started the same way.
The figure is the median of ours over the median of the floor. Goal (issue 14): within 2x.

    python bench/bench_logs.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_roundtrip beside this file

from bench_bridge import flood
from bench_roundtrip import OrcaDaemon

from orca_client.views import StatusResult
from orca_client.wire import StartRun, Status

GOAL_RATIO = 2.0
PLAIN_READ = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
total = 0
for (data,) in db.execute(
    "SELECT data FROM events WHERE stream = ? ORDER BY version", (sys.argv[2],)
):
    total += len(data)
print(total)
"""


@dataclass(frozen=True)
class LogsResult:
    megabytes: float
    ours: list[float]
    floor: list[float]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ours) / statistics.median(self.floor)


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True, timeout=600)
    return time.perf_counter() - started


def run(quick: bool = False) -> LogsResult:
    lines, rounds = (80_000, 2) if quick else (640_000, 3)
    with OrcaDaemon() as daemon:
        with daemon.client() as client:  # a second run, so the big one's events interleave
            client.request(StartRun(command=["true"], cwd=str(daemon.base), title="beside"))
        flood(daemon, lines)
        with daemon.client() as client:
            status: StatusResult = client.request(Status())
        run_id = next(r.run_id for r in status.runs if r.title != "beside")
        logs = [sys.executable, "-m", "orca_client.cli", "logs", run_id, "--raw"]
        plain = [sys.executable, "-c", PLAIN_READ, str(daemon.paths.log_file), f"run-{run_id}"]
        ours: list[float] = []
        floor: list[float] = []
        for _ in range(rounds):
            floor.append(timed(plain, daemon.env))
            ours.append(timed(logs, daemon.env))
    return LogsResult(lines * 100 / 1e6, ours, floor)


def report(result: LogsResult) -> str:
    met = "met" if result.ratio <= GOAL_RATIO else "NOT met"
    return "\n".join(
        [
            "orca logs of a big run (issue 14)",
            f"  {result.megabytes:.0f} MB of output, median of {len(result.ours)}: orca logs "
            f"{statistics.median(result.ours):.2f} s   plain sqlite3 read "
            f"{statistics.median(result.floor):.2f} s   ratio {result.ratio:.2f}x   "
            f"goal <= {GOAL_RATIO:g}x: {met}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
