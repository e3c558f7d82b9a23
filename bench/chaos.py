"""Chaos: kill -9 orcad at random moments under load, restart it, and check that nothing was lost.

    python bench/chaos.py                          # 10 kills in about a minute
    python bench/chaos.py --kills 3 --seconds 10   # a short run (tests/test_chaos.py)

A real orcad runs on a private ORCA_HOME under /tmp. Four clients start runs over its socket as
fast as it acknowledges them (small command agents, tests/fakes/dur_agent.py: quick, failing,
without a result, a little slower, one minute long). At a random moment orcad gets SIGKILL; it is
started again on the same home, and then:
  - every run whose start a client was told of is in its status, at the acknowledged position;
  - the status orcad serves equals a fresh replay of the SQLite log (also checked under load);
  - sessions in flight at the kill ended `failed` and every agent process started before the kill
    is gone (orcad stops the orphans it finds on start-up); none is left after the final stop;
  - a run or session seen terminal never changes afterwards.
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
    AGENT,
    CLIENT_TIMEOUT,
    MIN_ACKS_PER_ROUND,
    Load,
    check_after_restart,
    check_live_projection_matches_log,
    dur_agent,
    kill_leftover_agents,
    process_running,
    replay_file,
)

from orca_client.views import TERMINAL_STATUSES, RunInfo, SessionInfo, StatusResult  # noqa: E402
from orca_client.wire import RunStarted, StartRun, Status  # noqa: E402
from orca_daemon.log.records import StoredEvent  # noqa: E402
from orca_daemon.state.projection import State  # noqa: E402

Info = TypeVar("Info", RunInfo, SessionInfo)
ORPHAN_WAIT = 10.0
"""How long a restarted orcad has to stop the agents of the killed one."""


@dataclass
class Figures:
    kills: int = 0
    acknowledged: int = 0
    present: int = 0
    in_flight_at_kills: int = 0
    agents_started: int = 0
    mismatches: int = 0
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
                f"  agent processes        {self.agents_started} started",
                f"  status != replay       {self.mismatches} runs or sessions",
                f"  orphaned agents        {len(self.orphans)}",
                f"  terminal ones changed  {self.terminal_changed}",
                f"  violations             {len(self.violations)}",
            ]
        )


def differences(status: StatusResult, state: State) -> int:
    """Runs and sessions that orcad's status and a replay of the log disagree on."""
    runs = {r.run_id: r for r in status.runs}
    sessions = {s.session_id: s for s in status.sessions}
    return sum(runs.get(k) != state.runs.get(k) for k in runs.keys() | state.runs.keys()) + sum(
        sessions.get(k) != state.sessions.get(k) for k in sessions.keys() | state.sessions.keys()
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


def agent_running(pid: int) -> bool:
    """True while `pid` is one of our agents (not a reused pid) and not a zombie."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return str(AGENT).encode() in cmdline and process_running(pid)


def agents_running(pid_dir: Path) -> list[int]:
    """Pids of our agents (by their pid files) that are still running."""
    running = []
    for pid_file in pid_dir.glob("*.pid"):
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        if agent_running(pid):
            running.append(pid)
    return running


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
        status = self.daemon.status()
        state, _ = replay_file(self.daemon.paths.log_file, upto=status.head_position)
        wrong = differences(status, state)
        self.figures.mismatches += wrong
        if wrong:
            self.figures.violation(f"{wrong} runs or sessions differ from a replay of the log")
        present = {r.run_id for r in status.runs}
        self.figures.present = sum(started.run_id in present for started, _ in self.acked)
        if self.figures.present != len(self.acked):
            self.figures.violation(f"{len(self.acked) - self.figures.present} runs lost")
        self.note_terminal(status)

    def wait_for_orphans(self, before_kill: list[int]) -> None:
        """Every agent that ran when orcad was killed is stopped by the restarted orcad."""
        deadline = time.monotonic() + ORPHAN_WAIT
        while time.monotonic() < deadline and any(agent_running(p) for p in before_kill):
            time.sleep(0.05)
        left = [p for p in before_kill if agent_running(p)]
        if left:
            self.figures.orphans.update(left)
            self.figures.violation(f"agents {left} outlived the killed orcad by {ORPHAN_WAIT} s")

    def check(self, what: str, check: Callable[..., object], *args: object) -> None:
        """Run one of the durability checks, recording a failed assertion as a violation."""
        try:
            check(*args)
        except AssertionError as error:
            self.figures.violation(f"{what}: {error}")

    def round(self, seconds: float, seed: int) -> tuple[State, list[StoredEvent], list[int]]:
        """Load for about `seconds`, kill -9 at a random moment; the log and agents at the kill."""
        load = Load(self.daemon, self.pid_dir, seed)
        started = time.monotonic()
        load.start()

        def enough() -> bool:
            with load.lock:
                count = len(load.acked)
            if count < MIN_ACKS_PER_ROUND:
                return False
            return any(s.status == "running" for s in self.daemon.status().sessions)

        self.check("load", wait_until, enough, "runs acknowledged and sessions running", 30.0)
        self.check("under load", check_live_projection_matches_log, self.daemon)
        moment = self.rng.uniform(0.3, 1.0) * seconds  # the random moment of the kill
        time.sleep(max(0.0, moment - (time.monotonic() - started)))
        with self.daemon.client(timeout=CLIENT_TIMEOUT) as client:
            snapshot: StatusResult = client.request(Status(ended=None))
        self.note_terminal(snapshot)
        load.killed.set()
        self.daemon.kill()
        self.figures.kills += 1
        running = agents_running(self.pid_dir)
        self.check("load", load.join)
        for error in load.errors:
            self.figures.violation(f"client: {error}")
        self.acked.extend(load.acked)
        self.figures.acknowledged = len(self.acked)
        before, before_events = replay_file(self.daemon.paths.log_file)
        self.figures.in_flight_at_kills += len(before.live_sessions())
        return before, before_events, running

    def run(self, kills: int, seconds: float, seed: int) -> None:
        before: tuple[State, list[StoredEvent], list[int]] | None = None
        for index in range(kills + 1):
            self.daemon.start(timeout=60)
            if before is not None:
                state, events, running = before
                self.check(
                    "after restart",
                    check_after_restart,
                    self.daemon,
                    state,
                    events,
                    None,
                    self.acked,
                )
                self.compare_with_replay()
                self.wait_for_orphans(running)
            if index < kills:
                before = self.round(seconds / kills, seed + index)
        self.finish()

    def finish(self) -> None:
        """A new run still completes; a clean stop leaves no agent behind."""
        with self.daemon.client() as client:
            started: RunStarted = client.request(
                StartRun(command=dur_agent("--lines", "2"), cwd=str(self.pid_dir))
            )
        self.check("a run after the chaos", self.daemon.wait_for_run, started.run_id)
        self.compare_with_replay()
        if self.daemon.stop() != 0:
            self.figures.violation(f"orcad's clean stop failed:\n{self.daemon.output()[-2000:]}")
        left = agents_running(self.pid_dir)
        self.figures.orphans.update(left)
        if left:
            self.figures.violation(f"agents {left} outlived orcad's clean stop")
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
    home.mkdir(mode=0o700)
    # Quick restarts: an orphan that exits on SIGTERM may linger as a zombie, and orcad waits
    # the whole grace for it.
    (home / "config.toml").write_text("[daemon]\ncancel_grace_seconds = 0.3\n")
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
    print(chaos.figures.report(time.monotonic() - started))
    if chaos.figures.violations:
        print(f"kept for a look: {base} (orcad's output: {chaos.daemon.stderr_path})")
        return 1
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
