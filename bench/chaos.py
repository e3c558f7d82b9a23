"""Chaos: kill -9 orcad at random moments under load, restart it, and check that nothing was lost.

    python bench/chaos.py                          # 10 kills in about a minute
    python bench/chaos.py --kills 3 --seconds 10   # a short run (tests/test_chaos.py)

A real orcad runs on a private ORCA_HOME under /tmp. Four clients start runs over its socket as
fast as it acknowledges them (small command agents printing numbered lines,
tests/fakes/dur_agent.py: quick, failing, without a result, a little slower, one minute long).
At a random moment orcad gets SIGKILL; its sessions' agents run on in their holders; after a
random pause it is started again on the same home, and then:
  - every run whose start a client was told of is in its status, at the acknowledged position;
  - the status orcad serves equals a fresh replay of the SQLite log (also checked under load),
    and the log at the kill is the beginning of the log after it;
  - each session in flight at the kill is re-attached (same agent, still running) or has ended
    by its agent's own end; no session ends lost, restarted or stopped, nor starts twice;
  - each session's recorded stdout is what its agent printed, every line once and in order;
  - no agent or holder of a session the log shows ended runs a few seconds later;
  - a run or session seen terminal never changes afterwards.
At the end a new run completes, every line of the sessions still running is recorded, and a stop
that ends those sessions (`Shutdown(cancel_sessions)`) leaves no process of the home behind.
The load, the log replay and the checks are those of tests/test_durability.py, reused here from
tests/support/durability.py.
Prints its figures; exits 1 on any violation (keeping the home for a look), else 0.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the daemon fixture and durability checks, reused

from conftest import DaemonProcess, short_tempdir, wait_until  # noqa: E402
from support.durability import (  # noqa: E402
    MIN_ACKS_PER_ROUND,
    Carried,
    Load,
    check_after_restart,
    check_live_projection_matches_log,
    dur_agent,
    facts_of,
    kill_leftover_agents,
    leftovers_of_ended,
    output_problems,
    page_differences,
    replay_file,
    status_pages,
    stop_ending_sessions,
    wait_for_all_output,
    whole_status,
)
from support.processes import kill_processes_with_env, processes_with_env  # noqa: E402

from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo, StatusResult  # noqa: E402
from orca_client.wire import RunStarted, StartRun  # noqa: E402
from orca_daemon.log.records import StoredEvent  # noqa: E402
from orca_daemon.state.projection import State  # noqa: E402

Info = TypeVar("Info", RunInfo, SessionInfo)
T = TypeVar("T")
AWAY_SECONDS = 1.0
"""orcad stays dead up to this long after a kill (some agents end meanwhile)."""


@dataclass
class Figures:
    kills: int = 0
    acknowledged: int = 0
    present: int = 0
    in_flight_at_kills: int = 0
    carried: Carried = field(default_factory=Carried)
    agents_started: int = 0
    mismatches: int = 0
    wrong_output: int = 0
    orphans: set[int] = field(default_factory=set)
    terminal_changed: int = 0
    violations: list[str] = field(default_factory=list)

    def violation(self, what: str) -> None:
        self.violations.append(what)
        print(f"VIOLATION: {what}", flush=True)

    def report(self, seconds: float) -> str:
        return "\n".join(
            [
                f"chaos: {self.kills} kill -9s of orcad under load in {seconds:.0f} s",
                f"  acknowledged runs      {self.acknowledged}",
                f"  runs present           {self.present}",
                f"  sessions in flight     {self.in_flight_at_kills} at the kills",
                f"  re-attached            {self.carried.reattached} of them, agent running",
                f"  ended by their agent   {self.carried.ended} of them, before the check",
                f"  started after restart  {self.carried.started} of them, start not recorded",
                f"  agent processes        {self.agents_started} started",
                f"  status != replay       {self.mismatches} runs or sessions",
                f"  output wrong           {self.wrong_output} sessions at the end",
                f"  orphaned processes     {len(self.orphans)}",
                f"  terminal ones changed  {self.terminal_changed}",
                f"  violations             {len(self.violations)}",
            ]
        )


def terminal_changes(known: dict[str, Info], now: dict[str, Info]) -> list[str]:
    """Add what is terminal in `now` to `known`; say which of `known` changed since."""
    changes = []
    for key, info in now.items():
        was = known.get(key)
        if was is not None and was != info:
            changes.append(f"terminal {key} changed: {was} -> {info}")
        if info.status in TERMINAL_STATUSES:
            known[key] = info
    return changes


@dataclass
class Chaos:
    daemon: DaemonProcess
    pid_dir: Path
    rng: random.Random
    figures: Figures = field(default_factory=Figures)
    acked: list[tuple[RunStarted, str]] = field(default_factory=list)
    terminal_runs: dict[str, RunInfo] = field(default_factory=dict)
    terminal_sessions: dict[str, SessionInfo] = field(default_factory=dict)

    def note_terminal(self, status: StatusResult) -> None:
        """Remember what was terminal; count any that changed since it was first seen."""
        changed = terminal_changes(self.terminal_runs, {r.run_id: r for r in status.runs})
        changed += terminal_changes(
            self.terminal_sessions, {s.session_id: s for s in status.sessions}
        )
        self.figures.terminal_changed += len(changed)
        for change in changed:
            self.figures.violation(change)

    def compare_with_replay(self) -> None:
        pages = status_pages(self.daemon)
        status = whole_status(pages)
        wrong = len(page_differences(pages, self.daemon.paths.log_file)[0])
        self.figures.mismatches += wrong
        if wrong:
            self.figures.violation(f"{wrong} runs or sessions differ from a replay of the log")
        present = {r.run_id for r in status.runs}
        self.figures.present = sum(started.run_id in present for started, _ in self.acked)
        if self.figures.present != len(self.acked):
            self.figures.violation(f"{len(self.acked) - self.figures.present} runs lost")
        self.note_terminal(status)

    def check_leftovers(self) -> None:
        """No agent or holder of a session the log shows ended runs a few seconds later."""
        left = leftovers_of_ended(self.daemon)
        if left:
            self.figures.orphans.update(left)
            self.figures.violation(f"processes {left} of ended sessions still run")

    def check(self, what: str, check: Callable[..., T], *args: object) -> T | None:
        """Run one of the durability checks, recording a failed assertion as a violation."""
        try:
            return check(*args)
        except AssertionError as error:
            self.figures.violation(f"{what}: {error}")
            return None

    def round(self, seconds: float, seed: int) -> tuple[State, list[StoredEvent]]:
        """Load for about `seconds`, kill -9 at a random moment; the log at the kill."""
        load = Load(self.daemon, self.pid_dir, seed)
        started = time.monotonic()
        load.start()

        def enough() -> bool:
            with load.lock:
                count = len(load.acked)
            if count < MIN_ACKS_PER_ROUND:
                return False
            return any(
                s.status == "running" for s in whole_status(status_pages(self.daemon)).sessions
            )

        self.check("load", wait_until, enough, "runs acknowledged and sessions running", 30.0)
        self.check("under load", check_live_projection_matches_log, self.daemon)
        moment = self.rng.uniform(0.3, 1.0) * seconds  # the random moment of the kill
        time.sleep(max(0.0, moment - (time.monotonic() - started)))
        snapshot = whole_status(status_pages(self.daemon))
        self.note_terminal(snapshot)
        load.killed.set()
        self.daemon.kill()
        self.figures.kills += 1
        self.check("load", load.join)
        for error in load.errors:
            self.figures.violation(f"client: {error}")
        self.acked.extend(load.acked)
        self.figures.acknowledged = len(self.acked)
        before, before_events = replay_file(self.daemon.paths.log_file)
        self.figures.in_flight_at_kills += len(before.live_sessions())
        time.sleep(self.rng.uniform(0.0, AWAY_SECONDS))  # orcad stays away a random while
        return before, before_events

    def run(self, kills: int, seconds: float, seed: int) -> None:
        before: tuple[State, list[StoredEvent]] | None = None
        for index in range(kills + 1):
            self.daemon.start(timeout=60)
            if before is not None:
                state, events = before
                carried = self.check(
                    "after restart",
                    check_after_restart,
                    self.daemon,
                    state,
                    events,
                    None,
                    self.acked,
                )
                if carried is not None:
                    self.figures.carried.add(carried)
                self.compare_with_replay()
                self.check_leftovers()
            if index < kills:
                before = self.round(seconds / kills, seed + index)
        self.finish()

    def finish(self) -> None:
        """A new run still completes; every line is recorded; a stop that ends the sessions still
        running leaves no process behind."""
        with self.daemon.client() as client:
            started: RunStarted = client.request(
                StartRun(command=dur_agent("--lines", "2"), cwd=str(self.pid_dir))
            )
        self.check("a run after the chaos", self.daemon.wait_for_run, started.run_id)
        self.compare_with_replay()
        self.check("output", wait_for_all_output, self.daemon)
        for problem in stop_ending_sessions(self.daemon):
            self.figures.violation(f"at the end: {problem}")
        state, events = replay_file(self.daemon.paths.log_file)
        wrong = output_problems(state.sessions.values(), facts_of(events), complete=True)
        self.figures.wrong_output = len(wrong)
        self.figures.orphans.update(processes_with_env("ORCA_HOME", str(self.daemon.home)))
        self.figures.agents_started = len(list(self.pid_dir.glob("*.pid")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kill -9s (default 10)")
    parser.add_argument(
        "--seconds", type=float, default=50.0, help="time under load, all rounds (default 50)"
    )
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args(argv)
    if not 1 <= args.kills <= 1000 or not 0 < args.seconds <= 3600:
        parser.error("--kills must be 1..1000 and --seconds 0..3600")

    base = short_tempdir("orca-chaos-")
    home = base / "h"
    pid_dir = base / "pids"
    pid_dir.mkdir()
    chaos = Chaos(DaemonProcess(home), pid_dir, random.Random(args.seed))
    print(
        f"chaos: {args.kills} kills over {args.seconds:g} s of load, seed {args.seed}", flush=True
    )
    started = time.monotonic()
    try:
        chaos.run(args.kills, args.seconds, args.seed)
    except Exception as error:  # a crash of the script itself is a failure too, with figures
        chaos.figures.violation(f"{type(error).__name__}: {error}")
    finally:
        process = chaos.daemon.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
        kill_leftover_agents(pid_dir)
        kill_processes_with_env("ORCA_HOME", str(home))  # holders, when it failed
    print(chaos.figures.report(time.monotonic() - started))
    if chaos.figures.violations:
        print(f"kept for a look: {base} (orcad's output: {chaos.daemon.stderr_path})")
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
