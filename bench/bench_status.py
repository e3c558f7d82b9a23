"""`status` on a daemon with a long history (issue 14): 100k ended runs (`--quick`: 10k).

The log is written as orcad writes it (bench/big_log.py: 10 events per run) and orcad is started
on it (from its snapshot, after a first start that folds it). Measured against a real orcad:
- the floor: `hello`, the smallest request orcad answers (no projection work);
- `status` as `orca status` asks it (live runs and the 50 newest ended ones);
- `status --all` paged: every page's round trip (each is work orcad does in one go, so the
  slowest page bounds how long one status request can hold orcad's loop), and the whole.
Each request's round trip is timed in this process; p50/p99 over repeated requests.

Goals (issue 14): `status --all` on 100k runs works, paged, never holding the loop more than
50 ms; orcad's peak RSS at 100k runs <= 150 MiB.

    python bench/bench_status.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # modules beside this file

from bench_restart import prepared, stop, timed_start

from orca_client.client import Client, fetch_status
from orca_client.views import StatusResult
from orca_client.wire import Status

GOAL_PAGE_MS = 50.0
GOAL_RSS_MIB = 150.0


@dataclass(frozen=True)
class StatusFigures:
    runs: int
    rss_mib: float
    hello: list[float]
    recent: list[float]
    pages: list[float]
    whole: float
    fetched: float
    """`fetch_status`, as `orca status --all` gets the whole listing."""

    @staticmethod
    def p(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def timed(client: Client, request: Status) -> tuple[float, StatusResult]:
    started = time.perf_counter()
    reply: StatusResult = client.request(request)
    return time.perf_counter() - started, reply


def run(quick: bool = False) -> StatusFigures:
    runs = 10_000 if quick else 100_000
    daemon = prepared(runs * 10, runs)
    try:
        timed_start(daemon)  # folds the whole log and saves the snapshot at its stop
        stop(daemon)
        start = timed_start(daemon)
        hello: list[float] = []
        recent: list[float] = []
        pages: list[float] = []
        with daemon.client(timeout=60) as client:
            for _ in range(100):
                started = time.perf_counter()
                client.hello()
                hello.append(time.perf_counter() - started)
                recent.append(timed(client, Status())[0])
            started = time.perf_counter()
            seconds, page = timed(client, Status(ended=None))
            pages.append(seconds)
            seen = {run.run_id for run in page.runs}  # ids only: this process's garbage
            while page.next_cursor is not None:  # collector would time a pile of views
                seconds, page = timed(client, Status(ended=None, cursor=page.next_cursor))
                pages.append(seconds)
                seen |= {run.run_id for run in page.runs}
            total = time.perf_counter() - started
            started = time.perf_counter()
            whole = fetch_status(client, Status(ended=None))  # as `orca status --all` does
            fetched = time.perf_counter() - started
        assert len(seen) == len(whole.runs) == runs, f"{len(seen)}, {len(whole.runs)} of {runs}"
    finally:
        daemon.stop()
    return StatusFigures(runs, start.rss_mib, hello, recent, pages, total, fetched)


def report(figures: StatusFigures) -> str:
    p = StatusFigures.p
    floor = statistics.median(figures.hello)
    recent = statistics.median(figures.recent)
    return "\n".join(
        [
            f"status with {figures.runs:,} ended runs (bench/bench_status.py)",
            f"  floor: hello                      p50 {floor * 1000:7.2f} ms"
            f"  p99 {p(figures.hello, 0.99):7.2f} ms",
            f"  status (live + 50 ended)          p50 {recent * 1000:7.2f} ms"
            f"  p99 {p(figures.recent, 0.99):7.2f} ms  ({recent / floor:.1f}x the floor)",
            f"  status --all: {len(figures.pages)} pages in {figures.whole:.2f} s;"
            f" slowest page {max(figures.pages) * 1000:.1f} ms"
            f" (goal <= {GOAL_PAGE_MS:.0f} ms), p50 {p(figures.pages, 0.5):.1f} ms;"
            f" fetch_status (as orca status --all): {figures.fetched:.2f} s",
            f"  orcad's peak RSS once ready: {figures.rss_mib:.1f} MiB"
            f" (goal <= {GOAL_RSS_MIB:.0f} MiB)",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k runs instead of 100k")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
