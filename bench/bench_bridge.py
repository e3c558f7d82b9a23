"""The stdio bridge (`orca bridge --stdio`) against the socket it wraps, on a real orcad.

a) Catch-up. A run of `agents/flood_agent.py` leaves its output in the log (about 1,000 events
   of 16 KiB when full); a subscriber then reads every event from position 0. The baseline is
   `Client.follow` on the socket in this process; the figure is the bridge's time (its JSON-RPC
   lines read and parsed by this process) over the baseline's, measured in alternating rounds.
b) Request latency: `hello` through the bridge (one JSON line each way) against `hello` with
   `Client.request` on the socket, in alternating blocks: what the bridge adds at p50, and the
   ratio.

    python bench/bench_bridge.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_roundtrip beside this file

from bench_roundtrip import OrcaDaemon

from orca_client.views import TERMINAL_STATUSES
from orca_client.wire import RunStarted, StartRun, Status

AGENTS = Path(__file__).resolve().parent / "agents"
GOAL_CATCH_UP_RATIO = 3.0
"""Each event is read from the socket, decoded and written again as a JSON-RPC line to a pipe."""
GOAL_ADDED_MS = 2.0
"""What the bridge may add to a request at p50: well under what a person notices in an editor."""


class Bridge:
    """`orca bridge --stdio` as a subprocess on a daemon's home, spoken to line by line."""

    def __init__(self, daemon: OrcaDaemon) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orca_client.cli", "bridge", "--stdio"],
            env=daemon.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._next_id = 0

    def send(self, method: str, params: dict[str, Any] | None = None) -> int:
        assert self.process.stdin is not None
        self._next_id += 1
        line = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or {}}
        self.process.stdin.write(json.dumps(line).encode() + b"\n")
        self.process.stdin.flush()
        return self._next_id

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the bridge exited")
        message: dict[str, Any] = json.loads(line)
        return message

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        call_id = self.send(method, params)
        while True:
            message = self.read()
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True)
class BridgeResult:
    events: int
    megabytes: float
    bridge_catch_up: list[float]
    direct_catch_up: list[float]
    bridge_hello_us: list[float]
    direct_hello_us: list[float]

    @property
    def catch_up_ratio(self) -> float:
        return statistics.median(self.bridge_catch_up) / statistics.median(self.direct_catch_up)

    @property
    def latency_ratio(self) -> float:
        return statistics.median(self.bridge_hello_us) / statistics.median(self.direct_hello_us)

    @property
    def added_ms(self) -> float:
        added = statistics.median(self.bridge_hello_us) - statistics.median(self.direct_hello_us)
        return added / 1000


def flood(daemon: OrcaDaemon, lines: int) -> int:
    """One run that prints `lines` lines; the log's head once it has ended."""
    agent = [sys.executable, str(AGENTS / "flood_agent.py"), str(lines)]
    with daemon.client() as client:
        started: RunStarted = client.request(StartRun(command=agent, cwd=str(daemon.base)))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.request(Status(run_id=started.run_id))
            if status.runs[0].status in TERMINAL_STATUSES:
                return int(client.hello().head_position)
            time.sleep(0.1)
    raise RuntimeError(f"the flood run did not end:\n{daemon.output()}")


def direct_catch_up(daemon: OrcaDaemon, head: int) -> float:
    with daemon.client() as client:
        client.hello()
        started = time.perf_counter()
        for record in client.follow(after=0):  # ends its subscription with the connection
            if record.position >= head:
                break
    return time.perf_counter() - started


def bridge_catch_up(daemon: OrcaDaemon, head: int) -> float:
    bridge = Bridge(daemon)
    try:
        bridge.call("hello")  # started and connected: what is measured is the catch-up
        started = time.perf_counter()
        bridge.send("subscribe", {"after": 0})
        while True:
            message = bridge.read()
            if message.get("method") == "event" and message["params"]["position"] >= head:
                break
    finally:
        bridge.close()
    return time.perf_counter() - started


def hello_latencies(daemon: OrcaDaemon, count: int) -> tuple[list[float], list[float]]:
    bridge = Bridge(daemon)
    through_bridge: list[float] = []
    direct: list[float] = []
    try:
        with daemon.client() as client:
            bridge.call("hello")
            client.hello()
            for _ in range(4):  # alternating blocks
                for _ in range(count // 4):
                    started = time.perf_counter()
                    bridge.call("hello")
                    through_bridge.append((time.perf_counter() - started) * 1e6)
                for _ in range(count // 4):
                    started = time.perf_counter()
                    client.hello()
                    direct.append((time.perf_counter() - started) * 1e6)
    finally:
        bridge.close()
    return through_bridge, direct


def run(quick: bool = False) -> BridgeResult:
    lines, rounds, hellos = (50_000, 2, 200) if quick else (150_000, 3, 1000)
    with OrcaDaemon() as daemon:
        head = flood(daemon, lines)
        bridge_times: list[float] = []
        direct_times: list[float] = []
        for _ in range(rounds):
            direct_times.append(direct_catch_up(daemon, head))
            bridge_times.append(bridge_catch_up(daemon, head))
        through_bridge, direct = hello_latencies(daemon, hellos)
    return BridgeResult(head, lines * 100 / 1e6, bridge_times, direct_times, through_bridge, direct)


def report(result: BridgeResult) -> str:
    def verdict(ratio: float, goal: float) -> str:
        return f"goal <= {goal:g}x: {'met' if ratio <= goal else 'NOT met'}"

    added = result.added_ms
    added_verdict = f"goal < {GOAL_ADDED_MS:g} ms: {'met' if added < GOAL_ADDED_MS else 'NOT met'}"

    def p50(samples: list[float]) -> float:
        return statistics.median(samples)

    return "\n".join(
        [
            "orca bridge --stdio (issue 13)",
            f"  catch-up of {result.events} events ({result.megabytes:.0f} MB of output), "
            f"median of {len(result.direct_catch_up)}: bridge "
            f"{p50(result.bridge_catch_up):.2f} s   socket (Client.follow) "
            f"{p50(result.direct_catch_up):.2f} s   ratio {result.catch_up_ratio:.2f}x   "
            + verdict(result.catch_up_ratio, GOAL_CATCH_UP_RATIO),
            f"  hello round trip, p50: bridge {p50(result.bridge_hello_us):.0f} us   "
            f"socket {p50(result.direct_hello_us):.0f} us   ratio {result.latency_ratio:.2f}x",
            f"    added by the bridge at p50 {added:.2f} ms   {added_verdict}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
