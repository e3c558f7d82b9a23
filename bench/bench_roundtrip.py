"""Request round trip: `Client.request(Status())` against a real orcad vs a bare pyzmq echo.

The daemon is a real `python -m orca_daemon` subprocess on a private ORCA_HOME under /tmp, with a
few finished runs so that status has content. The baseline is a ROUTER in another Python process
that answers each DEALER message at once with frames of exactly the sizes of orcad's real status
reply, over an `ipc://` socket in the same kind of directory. The two are measured in alternating
blocks so that drift on the machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import zmq

from orca_client.client import Client, DaemonUnavailable, RequestFailed
from orca_client.paths import OrcaPaths, read_token, resolve_paths
from orca_client.views import TERMINAL_STATUSES, StatusResult
from orca_client.wire import Shutdown, StartRun, Status, encode_request

GOAL_P50_RATIO = 2.0
RUNS = 5
BLOCK = 100

ECHO_SERVER = """
import sys, zmq
endpoint, sizes = sys.argv[1], [int(size) for size in sys.argv[2:]]
reply = [b"x" * size for size in sizes]
context = zmq.Context()
socket = context.socket(zmq.ROUTER)
socket.setsockopt(zmq.LINGER, 0)
socket.bind(endpoint)
print("ready", flush=True)
while True:
    frames = socket.recv_multipart()
    socket.send_multipart([frames[0], *reply])
"""


class OrcaDaemon:
    """A real orcad subprocess on a fresh ORCA_HOME under /tmp; a context manager that stops it."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="orca-bench-", dir="/tmp"))
        self.home = self.base / "h"
        self.env = {**os.environ, "ORCA_HOME": str(self.home), "PYTHONUNBUFFERED": "1"}
        self.env.pop("NOTIFY_SOCKET", None)
        self.paths: OrcaPaths = resolve_paths(self.env)
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.base / "orcad.stderr"

    def __enter__(self) -> OrcaDaemon:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 15.0) -> None:
        """Start orcad and wait until it answers `hello`."""
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "orca_daemon"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"orcad exited with {self.process.returncode}:\n{self.output()}")
            if self.paths.socket_file.exists():
                try:
                    with self.client(timeout=1.0) as client:
                        client.hello()
                    return
                except DaemonUnavailable:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"orcad not ready after {timeout}s:\n{self.output()}")

    def client(self, timeout: float = 10.0) -> Client:
        return Client(self.paths, timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def create_runs(self, count: int, timeout: float = 30.0) -> None:
        """Start `count` runs of `true` and wait until they have all finished."""
        try:
            with self.client() as client:
                for index in range(count):
                    client.request(
                        StartRun(command=["true"], cwd=str(self.base), title=f"bench {index}")
                    )
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    result: StatusResult = client.request(Status())
                    if all(run.status in TERMINAL_STATUSES for run in result.runs):
                        return
                    time.sleep(0.05)
        except DaemonUnavailable as exc:
            raise RuntimeError(f"orcad stopped answering: {exc}\n{self.output()}") from None
        raise RuntimeError(f"bench runs did not finish within {timeout}s:\n{self.output()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop orcad ending its sessions (SIGTERM if it does not answer; SIGKILL if it hangs),
        end whatever of its home still runs (session holders outlive orcad), and remove its
        directory."""
        try:
            if self.process is not None and self.process.poll() is None:
                try:
                    with self.client(timeout=5.0) as client:
                        client.request(Shutdown(cancel_sessions=True))
                except (DaemonUnavailable, RequestFailed):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        finally:
            kill_processes_of_home(self.home)
            shutil.rmtree(self.base, ignore_errors=True)


def kill_processes_of_home(home: Path) -> None:
    """SIGKILL every process that carries ORCA_HOME=home (holders and agents left running)."""
    wanted = f"ORCA_HOME={home}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                found = wanted in handle.read().split(b"\0")
            if found:
                os.kill(int(entry), signal.SIGKILL)
        except OSError:
            continue


@dataclass(frozen=True)
class Latencies:
    """Round-trip times in microseconds."""

    samples: list[float]

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.samples, n=100, method="inclusive")[p - 1]


@dataclass(frozen=True)
class RoundTripResult:
    """Both latency samples and the frame sizes they were measured with."""

    ours: Latencies
    bare: Latencies
    request_sizes: list[int]
    reply_sizes: list[int]
    runs: int

    @property
    def p50_ratio(self) -> float:
        return self.ours.percentile(50) / self.bare.percentile(50)


class EchoServer:
    """The baseline: a bare ROUTER echo in its own Python process; a context manager."""

    def __init__(self, reply_sizes: list[int]) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="orca-echo-", dir="/tmp"))
        self.endpoint = f"ipc://{self.base / 'echo.sock'}"
        self.process = subprocess.Popen(
            [sys.executable, "-c", ECHO_SERVER, self.endpoint, *map(str, reply_sizes)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    def __enter__(self) -> EchoServer:
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            self.__exit__(None, None, None)
            raise RuntimeError("the echo server did not start")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            if self.process.stdout is not None:
                self.process.stdout.close()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def _time_ours(client: Client, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        client.request(Status())
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def _time_bare(sock: zmq.Socket[bytes], frames: list[bytes], count: int) -> list[float]:
    samples = []
    for _ in range(count):
        start = time.perf_counter_ns()
        sock.send_multipart(frames)
        sock.recv_multipart()
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def _dealer(endpoint: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    sock.connect(endpoint)
    return sock


def _frame_sizes(daemon: OrcaDaemon) -> tuple[list[int], list[int]]:
    """The frame sizes of a signed Status() request and of orcad's reply, off a raw DEALER."""
    request = encode_request(read_token(daemon.paths.token_file), Status())[1]
    sock = _dealer(daemon.paths.socket_endpoint)
    try:
        sock.send_multipart(request)
        reply = sock.recv_multipart()
    finally:
        sock.close()
    return [len(frame) for frame in request], [len(frame) for frame in reply]


def run(quick: bool = False) -> RoundTripResult:
    """Measure both round trips in alternating blocks, after a warm-up of each."""
    iterations = 500 if quick else 2000
    with OrcaDaemon() as daemon:
        daemon.create_runs(RUNS)
        request_sizes, reply_sizes = _frame_sizes(daemon)
        request = [b"r" * size for size in request_sizes]
        ours: list[float] = []
        bare: list[float] = []
        with EchoServer(reply_sizes) as echo, daemon.client() as client:
            sock = _dealer(echo.endpoint)
            try:
                _time_bare(sock, request, 200)
                _time_ours(client, 200)
                while len(ours) < iterations:
                    block = min(BLOCK, iterations - len(ours))
                    bare += _time_bare(sock, request, block)
                    ours += _time_ours(client, block)
            finally:
                sock.close()
    return RoundTripResult(Latencies(ours), Latencies(bare), request_sizes, reply_sizes, RUNS)


def report(result: RoundTripResult) -> str:
    """The percentiles and the p50 ratio as printable lines."""

    def line(name: str, lat: Latencies) -> str:
        p50, p90, p99 = (lat.percentile(p) for p in (50, 90, 99))
        return f"  {name:30} p50 {p50:7.0f} us   p90 {p90:7.0f} us   p99 {p99:7.0f} us"

    ok = result.p50_ratio <= GOAL_P50_RATIO
    return "\n".join(
        [
            f"request round trip ({len(result.ours.samples)} each; status of {result.runs} runs,"
            f" request frames {result.request_sizes} B, reply frames {result.reply_sizes} B)",
            line("ours (Client.request(Status))", result.ours),
            line("bare pyzmq ROUTER/DEALER echo", result.bare),
            f"  p50 ours / bare                {result.p50_ratio:7.2f}"
            f"   (goal <= {GOAL_P50_RATIO:.0f}: {'met' if ok else 'NOT MET'})",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    print(report(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
