"""Stopping orcad with busy agents, ending their sessions (`orca daemon stop --cancel-sessions`):
the stop → every agent gone, and the stop → orcad exited.

Every session runs `bench/agents/busy_agent.py`, which prints lines without end. Once all of
them are running, orcad is asked to stop and end its sessions (a plain stop or SIGTERM lets
them run on in their holders instead); the figures are the time until the last agent process is
gone and until orcad has exited (it has then recorded every session's end). Each is the median of
a few rounds.

Baseline, measured in the same invocation: the same with one agent. The goal: orcad with 40 agents
exits in at most 10x the time it takes with one (they are signalled at once and their ends are
recorded in one transaction; when each end was recorded before anything was signalled, it was
over 100x: 9 s against 0.07 s), and well within systemd's `TimeoutStopSec=60`.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench_roundtrip import OrcaDaemon

from orca_client.views import StatusResult
from orca_client.wire import Shutdown, StartRun, Status

AGENT = Path(__file__).resolve().parent / "agents" / "busy_agent.py"
PAUSE_SECONDS = "0.005"
GOAL_RATIO = 10.0
TIMEOUT_STOP_SECONDS = 60.0


@dataclass(frozen=True)
class Stop:
    """Seconds from the stop until the last agent was gone, and until orcad had exited."""

    agents_gone: float
    exited: float


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def stop_once(agents: int) -> Stop:
    with OrcaDaemon() as daemon:
        argv = [sys.executable, "-I", str(AGENT), PAUSE_SECONDS]
        with daemon.client() as client:
            for _ in range(agents):
                client.request(StartRun(command=argv, cwd=str(daemon.base)))
            deadline = time.monotonic() + 60
            pids: list[int] = []
            while time.monotonic() < deadline and len(pids) < agents:
                status: StatusResult = client.request(Status())
                pids = [s.pid for s in status.sessions if s.status == "running" and s.pid]
                time.sleep(0.05)
        if len(pids) < agents:
            raise RuntimeError(f"only {len(pids)} of {agents} agents started:\n{daemon.output()}")
        time.sleep(1.0)  # let them fill the log for a while
        assert daemon.process is not None
        start = time.monotonic()
        with daemon.client() as client:
            client.request(Shutdown(cancel_sessions=True))
        gone = None
        while daemon.process.poll() is None or gone is None:
            if gone is None and not any(alive(pid) for pid in pids):
                gone = time.monotonic() - start
            if time.monotonic() - start > 2 * TIMEOUT_STOP_SECONDS:
                raise RuntimeError(f"orcad did not stop:\n{daemon.output()}")
            time.sleep(0.005)
        exited = time.monotonic() - start
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        return Stop(gone, exited)


def run(quick: bool) -> tuple[int, list[Stop], list[Stop]]:
    agents = 40
    rounds = 2 if quick else 3
    one: list[Stop] = []
    many: list[Stop] = []
    for _ in range(rounds):
        one.append(stop_once(1))
        many.append(stop_once(agents))
    return agents, one, many


def report(result: tuple[int, list[Stop], list[Stop]]) -> str:
    agents, one, many = result

    def median(stops: list[Stop], field: str) -> float:
        return float(statistics.median(float(getattr(s, field)) for s in stops))

    lines = ["shutdown ending busy agents (Shutdown cancel_sessions), median of rounds"]
    for field, what in (("agents_gone", "last agent gone"), ("exited", "orcad exited")):
        base, ours = median(one, field), median(many, field)
        lines.append(
            f"  {what:16s} 1 agent {base:6.2f} s   {agents} agents {ours:6.2f} s   "
            f"ratio {ours / base:5.2f}x"
        )
    ratio = median(many, "exited") / median(one, "exited")
    met = ratio <= GOAL_RATIO and median(many, "exited") < TIMEOUT_STOP_SECONDS / 4
    lines.append(
        f"  goal: {agents} agents <= {GOAL_RATIO:g}x one, < {TIMEOUT_STOP_SECONDS / 4:g} s: "
        f"{'met' if met else 'NOT met'}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
