"""Session holders (issue 12): what running an agent under a holder costs, and how long a new
orcad takes to re-attach to the sessions an earlier one left running.

a) Output. `agents/flood_agent.py` prints 100-byte lines as fast as it can; the figure is MB/s
   from the first byte read to the last, through a holder (`start_holder`, then
   `HeldAgent.read` until the exit) against the same agent's stdout pipe read directly by asyncio
   (`asyncio.create_subprocess_exec`, 64 KiB reads), and the CPU each process spent on it.
   Latency: `agents/stamp_agent.py` prints a line every 2 ms that starts with the CLOCK_MONOTONIC
   time it was printed at (the clock every process shares); each line's arrival minus that time,
   p50 and p99, through a holder against direct pipes. Goals (the issue's): >= 0.8x the
   throughput, < 1 ms added per line at p50.
b) Memory. K holders, each holding an idle `sleep`: the mean VmRSS and Pss (smaps_rollup) of the
   holder processes, against K bare interpreters (`python -I`) started and measured the same way.
   Goal ("a few MB"): PSS <= 5 MiB per holder.
c) Re-attach. Three real orcads, each on its own home: one empty, one whose N sessions of
   `agents/ticking_agent.py` (a line a second) have ended, one whose N such sessions run. Each
   round kills (-9) and starts each orcad again in turn, and times from the start until it
   answers `hello`, and until every live session shows running and was re-attached (its holder's
   log says a new client attached). For information (the issue sets no goal).

Every holder and agent is started under a fresh directory in /tmp; at the end, on success or
error, every process whose working directory or environment is under it is killed (its process
group with it), and the directory removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench_roundtrip import OrcaDaemon

from orca_client.client import DaemonUnavailable, fetch_status
from orca_client.wire import Shutdown, StartRun, Status
from orca_daemon.sessions.held import HeldAgent, HolderLaunch, HolderPlaces, start_holder

AGENTS = Path(__file__).resolve().parent / "agents"
FLOOD_AGENT = AGENTS / "flood_agent.py"
STAMP_AGENT = AGENTS / "stamp_agent.py"
TICKING_AGENT = AGENTS / "ticking_agent.py"
READ_SIZE = 65_536
STAMP_INTERVAL = 0.002
TICK_SECONDS = "1.0"
GOAL_THROUGHPUT_RATIO = 0.8
GOAL_ADDED_P50_MS = 1.0
GOAL_PSS_MB = 5.0
MARKER = "ORCA_BENCH_HOLDER"
"""Set in the environment of every agent this benchmark starts itself (to find leftovers)."""


@dataclass(frozen=True)
class Settings:
    flood_lines: int
    flood_rounds: int
    stamp_lines: int
    stamp_rounds: int
    holders: int
    sessions: int
    restarts: int


FULL = Settings(500_000, 5, 1500, 2, 50, 200, 5)
QUICK = Settings(100_000, 3, 300, 1, 10, 20, 3)


# -- leftovers


def _under(pid: str, base: str) -> bool:
    """True when the process works in `base` or has a variable pointing into it."""
    try:
        if os.readlink(f"/proc/{pid}/cwd").startswith(base):
            return True
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"={base}".encode() in handle.read()
    except OSError:
        return False


def processes_under(base: Path) -> list[int]:
    """Processes (but this one) working in `base` or whose environment points into it: the
    holders and agents started for a measurement (and an orcad on a home in it)."""
    return [
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and int(pid) != os.getpid() and _under(pid, str(base))
    ]


def kill_processes_under(base: Path) -> int:
    """SIGKILL every process `processes_under` finds, and its process group (unless it is
    ours). Returns how many there were."""
    found = processes_under(base)
    for pid in found:
        with contextlib.suppress(OSError):
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return len(found)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A fresh directory in /tmp; on leaving, its processes are killed and it is removed."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield base
    finally:
        kill_processes_under(base)
        shutil.rmtree(base, ignore_errors=True)


def agent_env(base: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), MARKER: str(base)}


async def launch_held(base: Path, name: str, command: list[str]) -> HeldAgent:
    places = HolderPlaces(base / "run" / name, base / "spool" / name)
    launch = HolderLaunch(command, str(base), agent_env(base), close_input=True)
    return await start_holder(places, launch)


async def launch_direct(base: Path, command: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        cwd=base,
        env=agent_env(base),
        start_new_session=True,
    )


def _clock() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


async def chunks_held(agent: HeldAgent) -> list[tuple[int, bytes]]:
    """Every stdout piece with its arrival time (ns), until the agent's exit; then let go."""
    pieces = []
    while (piece := await agent.read()) is not None:
        pieces.append((_clock(), piece[1]))
    await agent.acknowledge()
    return pieces


async def chunks_direct(process: asyncio.subprocess.Process) -> list[tuple[int, bytes]]:
    """Every stdout read with its arrival time (ns), until EOF."""
    assert process.stdout is not None
    pieces = []
    while chunk := await process.stdout.read(READ_SIZE):
        pieces.append((_clock(), chunk))
    await process.wait()
    return pieces


# -- a) output


@dataclass(frozen=True)
class Flow:
    """One flood: bytes read; seconds from the first byte to the last, and from the launch;
    CPU seconds of the agent, the holder (none: direct) and this process reading."""

    size: int
    streaming: float
    wall: float
    agent_cpu: float
    reader_cpu: float
    holder_cpu: float = 0.0
    holder_peak_kb: int = 0

    @property
    def mb_per_s(self) -> float:
        return self.size / self.streaming / 1e6


def _stat_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a live process itself, and of its children it has reaped."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _status_kb(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


async def flood_held(base: Path, lines: int) -> Flow:
    launched, reader = _clock(), time.process_time()
    agent = await launch_held(base, "flood", [sys.executable, "-I", str(FLOOD_AGENT), str(lines)])
    pieces = []
    while (piece := await agent.read()) is not None:
        pieces.append((_clock(), piece[1]))
    reader = time.process_time() - reader
    holder_cpu, agent_cpu = _stat_cpu(agent.holder_pid)  # the holder reaped the agent
    peak = _status_kb(agent.holder_pid, "VmHWM")  # before it is let go (and exits)
    await agent.acknowledge()
    first, last = pieces[0][0], pieces[-1][0]
    size = sum(len(data) for _, data in pieces)
    return Flow(
        size, (last - first) / 1e9, (last - launched) / 1e9, agent_cpu, reader, holder_cpu, peak
    )


async def flood_direct(base: Path, lines: int) -> Flow:
    launched, reader, children = _clock(), time.process_time(), os.times()
    process = await launch_direct(base, [sys.executable, "-I", str(FLOOD_AGENT), str(lines)])
    pieces = await chunks_direct(process)
    reader = time.process_time() - reader
    after = os.times()
    agent_cpu = after.children_user + after.children_system
    agent_cpu -= children.children_user + children.children_system
    first, last = pieces[0][0], pieces[-1][0]
    size = sum(len(data) for _, data in pieces)
    return Flow(size, (last - first) / 1e9, (last - launched) / 1e9, agent_cpu, reader)


def line_delays(pieces: list[tuple[int, bytes]]) -> list[float]:
    """Arrival minus print time (ms) of every whole line, from the stamp that starts it."""
    delays, rest = [], b""
    for arrived, data in pieces:
        *whole, rest = (rest + data).split(b"\n")
        delays += [(arrived - int(line.split(b" ", 1)[0])) / 1e6 for line in whole]
    return delays


async def stamps_held(base: Path, count: int) -> list[float]:
    command = [sys.executable, "-I", str(STAMP_AGENT), str(count), str(STAMP_INTERVAL)]
    return line_delays(await chunks_held(await launch_held(base, "stamps", command)))


async def stamps_direct(base: Path, count: int) -> list[float]:
    command = [sys.executable, "-I", str(STAMP_AGENT), str(count), str(STAMP_INTERVAL)]
    return line_delays(await chunks_direct(await launch_direct(base, command)))


@dataclass(frozen=True)
class Output:
    held: list[Flow]
    direct: list[Flow]
    held_delays: list[float]
    direct_delays: list[float]


async def measure_output(settings: Settings) -> Output:
    """Floods and stamped lines, holder and direct alternating, each in a fresh directory."""
    held: list[Flow] = []
    direct: list[Flow] = []
    held_delays: list[float] = []
    direct_delays: list[float] = []
    for _ in range(settings.flood_rounds):
        with scratch("orca-bench-flood-") as base:
            direct.append(await flood_direct(base, settings.flood_lines))
            held.append(await flood_held(base, settings.flood_lines))
    for _ in range(settings.stamp_rounds):
        with scratch("orca-bench-stamps-") as base:
            direct_delays += await stamps_direct(base, settings.stamp_lines)
            held_delays += await stamps_held(base, settings.stamp_lines)
    return Output(held, direct, held_delays, direct_delays)


# -- b) memory


@dataclass(frozen=True)
class Memory:
    rss_kb: int
    pss_kb: int


def memory_of(pid: int) -> Memory:
    """Rss and Pss from /proc/PID/smaps_rollup."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                fields[name] = int(rest.split()[0])
    return Memory(fields["Rss"], fields["Pss"])


async def holders_memory(base: Path, count: int) -> list[Memory]:
    """Start `count` holders of `sleep` at once, measure each holder, then end them."""
    sleep = shutil.which("sleep") or "/bin/sleep"
    agents = await asyncio.gather(
        *(launch_held(base, f"idle{n}", [sleep, "3600"]) for n in range(count))
    )
    try:
        await asyncio.sleep(0.2)  # let every holder reach its loop
        return [memory_of(agent.holder_pid) for agent in agents]
    finally:
        for agent in agents:
            with contextlib.suppress(OSError):
                os.killpg(agent.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(_let_go(a) for a in agents)), 10)


async def _let_go(agent: HeldAgent) -> None:
    """Take the agent's exit and acknowledge it, so that its holder exits."""
    await agent.wait_exited()
    await agent.acknowledge()


def bare_memory(base: Path, count: int) -> list[Memory]:
    """`count` bare interpreters (`python -I`) waiting on stdin, measured like the holders."""
    code = "import sys; print('ready', flush=True); sys.stdin.read()"
    processes = [
        subprocess.Popen(
            [sys.executable, "-I", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=base,
            env=agent_env(base),
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            process.stdout.readline()
        return [memory_of(process.pid) for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


@dataclass(frozen=True)
class Memories:
    holders: list[Memory]
    bare: list[Memory]


async def measure_memory(settings: Settings) -> Memories:
    with scratch("orca-bench-memory-") as base:
        holders = await holders_memory(base, settings.holders)
    with scratch("orca-bench-bare-") as base:
        bare = bare_memory(base, settings.holders)
    return Memories(holders, bare)


# -- c) re-attach


@dataclass(frozen=True)
class Start:
    """Seconds from orcad's launch until it answered `hello`, and until every session showed
    running and re-attached (the same when there were none)."""

    ready: float
    attached: float


def kill_orcad(daemon: OrcaDaemon) -> None:
    """kill -9 orcad, and remove the socket it left (so that a new one shows it is ready)."""
    assert daemon.process is not None
    daemon.process.kill()
    daemon.process.wait()
    with contextlib.suppress(FileNotFoundError):
        daemon.paths.socket_file.unlink()


def launch_orcad(daemon: OrcaDaemon) -> float:
    """Start orcad; return the time (monotonic) it was launched at once it answers `hello`."""
    with open(daemon.log, "ab") as log:
        launched = time.monotonic()
        daemon.process = subprocess.Popen(
            [sys.executable, "-m", "orca_daemon"],
            env=daemon.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    deadline = launched + 120
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"orcad exited with {daemon.process.returncode}:\n{daemon.output()}")
        if daemon.paths.socket_file.exists():
            with daemon.client(timeout=60) as client:
                client.hello()
            return launched
        time.sleep(0.002)
    raise RuntimeError(f"orcad not ready:\n{daemon.output()}")


def holder_logs(daemon: OrcaDaemon) -> list[Path]:
    return sorted(daemon.paths.state_dir.glob("runs/*/spool/*/holder.log"))


def attaches(logs: list[Path]) -> list[int]:
    """How many times a client attached to each holder, by its log."""
    return [path.read_bytes().count(b" client attached at ") for path in logs]


def timed_restart(daemon: OrcaDaemon, sessions: int) -> Start:
    """kill -9 orcad, start it again; time until ready, and until all `sessions` run again and
    each holder saw the new orcad attach."""
    logs = holder_logs(daemon)
    before = attaches(logs)
    kill_orcad(daemon)
    launched = launch_orcad(daemon)
    ready = time.monotonic() - launched
    deadline = time.monotonic() + 120
    with daemon.client(timeout=30) as client:
        while time.monotonic() < deadline:
            live = fetch_status(client, Status(ended=0)).sessions
            running = sum(session.status == "running" for session in live)
            again = all(now > then for now, then in zip(attaches(logs), before, strict=True))
            if running == sessions and again:
                return Start(ready, time.monotonic() - launched)
            time.sleep(0.002)
    raise RuntimeError(f"{sessions} sessions not re-attached:\n{daemon.output()[-3000:]}")


def start_sessions(daemon: OrcaDaemon, count: int) -> None:
    """Start `count` ticking agents and wait until every one runs and has printed."""
    command = [sys.executable, "-I", str(TICKING_AGENT), TICK_SECONDS]
    with daemon.client(timeout=30) as client:
        for index in range(count):
            client.request(StartRun(command=command, cwd=str(daemon.base), title=f"tick {index}"))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            live = fetch_status(client, Status(ended=0)).sessions
            if sum(s.status == "running" and s.output_events > 0 for s in live) == count:
                return
            time.sleep(0.1)
    raise RuntimeError(f"{count} sessions did not all start:\n{daemon.output()[-3000:]}")


@dataclass(frozen=True)
class Stopped:
    """`Shutdown(cancel_sessions=True)` with N sessions: seconds until orcad exited, and the
    holders and other processes still there LEFTOVER_WAIT seconds later (then killed)."""

    seconds: float
    holders_left: int
    others_left: int


LEFTOVER_WAIT = 30.0


def end_sessions(daemon: OrcaDaemon) -> Stopped:
    """Stop orcad with its sessions (they end); wait until their processes are gone, and kill
    what is left after a while (the next orcad would collect it: not what is measured)."""
    assert daemon.process is not None
    started = time.monotonic()
    with daemon.client(timeout=30) as client:
        client.request(Shutdown(cancel_sessions=True))
    daemon.process.wait(120)
    seconds = time.monotonic() - started
    deadline = time.monotonic() + LEFTOVER_WAIT
    while processes_under(daemon.base) and time.monotonic() < deadline:
        time.sleep(0.05)
    holders = sum(_is_holder(pid) for pid in processes_under(daemon.base))
    others = kill_processes_under(daemon.base) - holders
    return Stopped(seconds, holders, others)


def _is_holder(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return b"holder.py" in handle.read()
    except OSError:
        return False


@dataclass(frozen=True)
class Reattach:
    sessions: int
    stopped: Stopped
    empty: list[Start]
    ended: list[Start]
    live: list[Start]


def measure_reattach(settings: Settings) -> Reattach:
    """Three homes, one orcad on each: empty, N sessions that have ended, N live sessions.
    Each round kills (-9) and restarts each orcad in turn."""
    count = settings.sessions
    empty, ended, live = OrcaDaemon(), OrcaDaemon(), OrcaDaemon()
    try:
        for daemon in (empty, ended, live):
            launch_orcad(daemon)
        start_sessions(ended, count)
        stopped = end_sessions(ended)
        launch_orcad(ended)
        start_sessions(live, count)
        time.sleep(1.0)  # a tick or so from every session while orcad runs
        starts: tuple[list[Start], list[Start], list[Start]] = ([], [], [])
        for _ in range(settings.restarts):
            for daemon, sessions, times in zip(
                (empty, ended, live), (0, 0, count), starts, strict=True
            ):
                times.append(timed_restart(daemon, sessions))
    finally:
        for daemon in (empty, ended, live):
            _stop(daemon)
    return Reattach(count, stopped, *starts)


def _stop(daemon: OrcaDaemon) -> None:
    """Stop orcad (SIGTERM, as OrcaDaemon does), kill whatever it left, remove its home."""
    try:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.process.terminate()
            try:
                daemon.process.wait(30)
            except subprocess.TimeoutExpired:
                daemon.process.kill()
                daemon.process.wait()
        kill_processes_under(daemon.base)
    finally:
        daemon.stop()


# -- the whole


@dataclass(frozen=True)
class HolderResult:
    output: Output
    memory: Memories
    reattach: Reattach
    settings: Settings


def run(quick: bool) -> HolderResult:
    settings = QUICK if quick else FULL
    output = asyncio.run(measure_output(settings))
    memory = asyncio.run(measure_memory(settings))
    try:
        reattach = measure_reattach(settings)
    except DaemonUnavailable as exc:
        raise RuntimeError(f"orcad stopped answering: {exc}") from None
    return HolderResult(output, memory, reattach, settings)


def _percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _cpu(flows: list[Flow]) -> str:
    """CPU seconds per 100 MB of the agent, the holder (if any) and the reader, summed."""
    per = 1e8 / sum(f.size for f in flows)
    agent, holder, reader = (per * sum(getattr(f, n) for f in flows) for n in _CPU_FIELDS)
    parts = [f"agent {agent:.2f}", *([f"holder {holder:.2f}"] if holder else [])]
    return " + ".join([*parts, f"reader {reader:.2f}"]) + f" = {agent + holder + reader:.2f} s"


_CPU_FIELDS = ("agent_cpu", "holder_cpu", "reader_cpu")


def report_output(output: Output, settings: Settings) -> list[str]:
    held = statistics.median(f.mb_per_s for f in output.held)
    direct = statistics.median(f.mb_per_s for f in output.direct)
    ratio = held / direct
    wall_held = statistics.median(f.wall for f in output.held)
    wall_direct = statistics.median(f.wall for f in output.direct)
    peak = max(f.holder_peak_kb for f in output.held) / 1024
    size = output.held[0].size / 1e6
    lines = [
        f"  throughput ({settings.flood_lines} lines, {size:.0f} MB, median of "
        f"{settings.flood_rounds}): holder {held:6.0f} MB/s   direct {direct:6.0f} MB/s   "
        f"ratio {ratio:4.2f}x   goal >= {GOAL_THROUGHPUT_RATIO}x: "
        f"{_met(ratio >= GOAL_THROUGHPUT_RATIO)}",
        f"    launch to last byte: holder {wall_held * 1000:5.0f} ms   direct "
        f"{wall_direct * 1000:5.0f} ms   holder's peak RSS {peak:.1f} MiB",
    ]
    lines.append(f"    CPU per 100 MB: {_cpu(output.held)}  against direct: {_cpu(output.direct)}")
    held_p50, direct_p50 = (_percentile(d, 50) for d in (output.held_delays, output.direct_delays))
    added = held_p50 - direct_p50
    for name, delays in (("holder", output.held_delays), ("direct", output.direct_delays)):
        lines.append(
            f"  line latency, {name} ({len(delays)} lines): p50 {_percentile(delays, 50):6.3f} ms"
            f"   p99 {_percentile(delays, 99):6.3f} ms"
        )
    lines.append(
        f"    added at p50 {added:6.3f} ms   goal < {GOAL_ADDED_P50_MS:g} ms: "
        f"{_met(added < GOAL_ADDED_P50_MS)}"
    )
    return lines


def report_memory(memory: Memories) -> list[str]:
    def mean_mb(samples: list[Memory], field: str) -> float:
        return statistics.fmean(float(getattr(m, field)) for m in samples) / 1024

    pss = mean_mb(memory.holders, "pss_kb")
    return [
        f"  memory, {len(memory.holders)} holders of `sleep`: RSS "
        f"{mean_mb(memory.holders, 'rss_kb'):5.1f} MiB   PSS {pss:5.1f} MiB per holder;   "
        f"bare `python -I`: RSS {mean_mb(memory.bare, 'rss_kb'):5.1f} MiB   PSS "
        f"{mean_mb(memory.bare, 'pss_kb'):5.1f} MiB",
        f"    PSS ratio {pss / mean_mb(memory.bare, 'pss_kb'):4.2f}x   goal PSS <= "
        f"{GOAL_PSS_MB:g} MiB: {_met(pss <= GOAL_PSS_MB)}",
    ]


def report_reattach(reattach: Reattach) -> list[str]:
    def median(starts: list[Start], field: str) -> float:
        return float(statistics.median(float(getattr(s, field)) for s in starts))

    live = median(reattach.live, "attached")
    lines = [f"  orcad restarted after kill -9, median of {len(reattach.live)}:"]
    for name, starts in (
        ("empty home", reattach.empty),
        (f"{reattach.sessions} ended sessions", reattach.ended),
        (f"{reattach.sessions} live sessions", reattach.live),
    ):
        spread = ", ".join(f"{s.attached:.2f}" for s in starts)
        lines.append(
            f"    {name:20s} ready {median(starts, 'ready'):5.2f} s   all re-attached "
            f"{median(starts, 'attached'):5.2f} s   (rounds: {spread})"
        )
    lines.append(
        f"    re-attached / ended-sessions start {live / median(reattach.ended, 'ready'):4.2f}x"
        f"   / empty start {live / median(reattach.empty, 'ready'):4.2f}x   (no goal set)"
    )
    stopped = reattach.stopped
    lines.append(
        f"  stop with --cancel-sessions, {reattach.sessions} sessions: orcad exited after "
        f"{stopped.seconds:.1f} s; still there {LEFTOVER_WAIT:g} s after: "
        f"{stopped.holders_left} holders, {stopped.others_left} other processes (then killed)"
    )
    return lines


def report(result: HolderResult) -> str:
    return "\n".join(
        [
            "session holders (issue 12)",
            *report_output(result.output, result.settings),
            *report_memory(result.memory),
            *report_reattach(result.reattach),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
