"""Run every Orca benchmark and print each result with its ratio to a baseline from the same run.

    python bench/run_all.py            # the full run (about three minutes)
    python bench/run_all.py --quick    # a smaller run (about a minute)

The figures and what they mean are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench_* modules beside this file

import bench_append
import bench_bridge
import bench_cli_startup
import bench_holder
import bench_logs
import bench_orchestration
import bench_questions
import bench_restart
import bench_roundtrip
import bench_sessions
import bench_status


def machine() -> str:
    """One line naming the machine and the interpreter the figures come from."""
    return (
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({sys.executable})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    quick = parser.parse_args().quick
    print(machine())
    print(f"mode: {'quick' if quick else 'full'}\n", flush=True)
    started = time.perf_counter()
    print(bench_append.report(bench_append.run(quick)), end="\n\n", flush=True)
    print(bench_roundtrip.report(bench_roundtrip.run(quick)), end="\n\n", flush=True)
    print(bench_cli_startup.report(bench_cli_startup.run(quick)), end="\n\n", flush=True)
    print(bench_questions.report(bench_questions.run(quick)), end="\n\n", flush=True)
    print(bench_orchestration.report(bench_orchestration.run(quick)), end="\n\n", flush=True)
    print(bench_holder.report(bench_holder.run(quick)), end="\n\n", flush=True)
    print(bench_bridge.report(bench_bridge.run(quick)), end="\n\n", flush=True)
    print(bench_logs.report(bench_logs.run(quick)), end="\n\n", flush=True)
    print(bench_restart.report(bench_restart.run(quick)), end="\n\n", flush=True)
    print(bench_status.report(bench_status.run(quick)), end="\n\n", flush=True)
    print(bench_sessions.report(bench_sessions.run(quick)), end="\n\n", flush=True)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
