"""The session holder under stress, against real holder processes and small agents: it refuses
who does not know its secret, ends an agent nobody attends, exits once its exit is collected,
serves output again from any offsets, keeps its memory bounded whatever the agent or the client
does, and loses no byte when the disk is full."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import parent_of, process_exists
from support.holders import Holders, read_all
from support.homes import small_tmpfs

from orca_daemon.sessions import holder, stopping
from orca_daemon.sessions.held import (
    HeldAgent,
    HolderPlaces,
    attach_holder,
    read_exit,
)
from orca_daemon.sessions.procs import children_of, pid_exited, process_start_ticks

PATIENCE = 30.0
"""Seconds to wait for what another process does before failing."""
RSS_BOUND_KIB = 40 << 10
"""What a holder may use, whatever its agent prints or its client sends (it needs ~10 MB)."""


# -- agents (python -c), each told its files by argv


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


WAIT = """
import os, sys, time
def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.01)
"""

ECHO = """
import sys
print("hello", flush=True)
for line in sys.stdin:
    print("echo " + line, end="", flush=True)
sys.exit(3)
"""

STAGES = (
    WAIT
    + """
out, err = sys.stdout, sys.stderr
for stage, gate in enumerate(sys.argv[1:]):
    for n in range(1, 301):
        out.write(f"out {stage}.{n}\\n")
        if n % 6 == 0:
            err.write(f"err {stage}.{n}\\n")
    out.flush(); err.flush()
    wait_for(gate)
"""
)


def staged(stage: int) -> tuple[bytes, bytes]:
    """What STAGES prints in one stage: stdout, stderr."""
    out = "".join(f"out {stage}.{n}\n" for n in range(1, 301))
    err = "".join(f"err {stage}.{n}\n" for n in range(6, 301, 6))
    return out.encode(), err.encode()


UNATTENDED = """
import signal, subprocess, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "120"])
for n in range(1, 101):
    print(f"line {n}")
sys.stdout.flush()
print(f"child {child.pid}", file=sys.stderr, flush=True)
time.sleep(120)
"""

GATED_EXIT = (
    WAIT
    + """
print("working", flush=True)
wait_for(sys.argv[1])
if sys.argv[3:] != ["quietly"]:
    print("done", flush=True)
sys.exit(int(sys.argv[2]))
"""
)

CHUNKS = """
import os, sys
count, progress = int(sys.argv[1]), os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o600)
for n in range(count):
    os.write(1, bytes([n % 251]) * 65536)
    os.pwrite(progress, f"{(n + 1) * 65536:>20}".encode(), 0)
os.write(1, b"done\\n")
"""


def chunks_digest(count: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    for n in range(count):
        digest.update(bytes([n % 251]) * 65536)
    digest.update(b"done\n")
    return count * 65536 + 5, digest.hexdigest()


SLOW_READER = (
    WAIT
    + """
wait_for(sys.argv[1])
digest, total = __import__("hashlib").sha256(), 0
while data := os.read(0, 65536):
    digest.update(data)
    total += len(data)
print(total, digest.hexdigest(), flush=True)
"""
)

PAGES = (
    WAIT
    + """
import fcntl
lines, gate, progress_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
progress = os.open(progress_path, os.O_WRONLY | os.O_CREAT, 0o600)
os.pwrite(progress, f"{fcntl.fcntl(1, fcntl.F_GETPIPE_SZ):>20}{0:>20}".encode(), 0)
wait_for(gate)
for n in range(1, lines + 1):
    os.write(1, f"line {n:06}".encode().ljust(4095, b".") + b"\\n")
    os.pwrite(progress, f"{n * 4096:>20}".encode(), 20)
os.write(2, b"stderr too\\n")
"""
)


def page_lines(lines: int) -> bytes:
    """What PAGES prints on stdout: lines of one page (4096 bytes) each."""
    return b"".join(f"line {n:06}".encode().ljust(4095, b".") + b"\n" for n in range(1, lines + 1))


# -- holders


async def eventually(condition: Callable[[], Any], what: str) -> Any:
    """Poll `condition` (another process changes what it reads) until it is truthy."""
    deadline = time.monotonic() + PATIENCE
    while True:
        if value := condition():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {PATIENCE} s waiting for {what}")
        await asyncio.sleep(0.02)


async def read_until(held: HeldAgent, wanted: bytes, got: bytearray) -> None:
    """Read into `got` until its stdout ends with `wanted`."""
    while not got.endswith(wanted):
        piece = await held.read()
        assert piece is not None, f"the agent exited; its stdout was {bytes(got)[-200:]!r}"
        if piece[0] == "stdout":
            got += piece[1]


def holder_log(places: HolderPlaces) -> str:
    return (places.spool_dir / "holder.log").read_text()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


def spool_size(places: HolderPlaces, stream: str = "stdout") -> int:
    return (places.spool_dir / stream).stat().st_size


def numbers_in(path: Path) -> list[int]:
    """The 20-character numbers an agent keeps in its progress file."""
    text = path.read_text() if path.exists() else ""
    return [int(text[i : i + 20]) for i in range(0, len(text) - 19, 20)]


def holder_gone(held: HeldAgent) -> bool:
    return not process_exists(held.holder_pid)


# -- a client that speaks the wire by hand


class RawClient:
    """A blocking connection to a holder's socket that sends whatever it is told."""

    def __init__(self, places: HolderPlaces) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(str(places.socket_dir / "sock"))
        self.secret = (places.socket_dir / "secret").read_text().strip()

    def send(self, kind: bytes, payload: bytes) -> None:
        self.sock.sendall(kind + len(payload).to_bytes(4, "big") + payload)

    def hello(self, secret: str | None = None, stdout: int = 0, stderr: int = 0) -> None:
        hello = {"version": 1, "secret": secret or self.secret, "nonce": "ab"}
        self.send(b"h", json.dumps({**hello, "stdout": stdout, "stderr": stderr}).encode())

    def frame(self) -> tuple[bytes, bytes] | None:
        """The next frame; None when the holder closed the connection."""
        header = self.exactly(5)
        if header is None:
            return None
        payload = self.exactly(int.from_bytes(header[1:], "big"))
        assert payload is not None
        return header[:1], payload

    def exactly(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            more = self.sock.recv(size - len(data))
            if not more:
                return None
            data += more
        return data

    def closed(self) -> bool:
        """Whether the holder closes it (what it sends before is dropped)."""
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
        return True

    def open_now(self) -> bool:
        """Whether it is still open, without waiting."""
        self.sock.setblocking(False)
        try:
            self.sock.recv(1)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(30)
        return False


# -- who may connect


async def test_a_wrong_secret_is_refused_unlogged_and_the_right_client_reads_on(
    holders: Holders,
) -> None:
    places = holders.places()
    held = await holders.start(places, python(ECHO))
    held.detach()
    secret = (places.socket_dir / "secret").read_text().strip()
    impostor = RawClient(places)
    impostor.hello(secret="0" * len(secret))
    assert impostor.closed()
    log = holder_log(places)
    assert "refused a connection: wrong secret" in log
    assert secret not in log and "0" * len(secret) not in log
    assert process_exists(held.pid)

    again = await attach_holder(places, 0, 0)
    got = bytearray()
    await read_until(again, b"hello\n", got)
    again.stdin.write(b"ping\n")
    await read_until(again, b"echo ping\n", got)
    again.stdin.close()
    assert await read_all(again) == (b"", b"")
    assert again.returncode == 3
    await again.acknowledge()


async def test_a_connection_that_never_says_hello_is_closed_after_the_hello_timeout(
    holders: Holders,
) -> None:
    places = holders.places()
    held = await holders.start(places, python(ECHO), hello_timeout=0.3)
    silent = RawClient(places)
    assert silent.closed()
    assert "refused a connection: no hello in time" in holder_log(places)
    got = bytearray()
    await read_until(held, b"hello\n", got)  # the client attached before is still served
    assert process_exists(held.pid)


async def test_more_unauthenticated_connections_than_allowed_are_refused(
    holders: Holders,
) -> None:
    places = holders.places()
    held = await holders.start(places, python(ECHO))
    held.detach()
    waiting = [RawClient(places) for _ in range(holder.UNAUTHENTICATED_AT_ONCE)]
    one_too_many = RawClient(places)
    assert one_too_many.closed()
    assert all(client.open_now() for client in waiting)
    assert "refused a connection: too many unauthenticated connections" in holder_log(places)

    for client in waiting:
        client.sock.close()
    await eventually(
        lambda: (
            holder_log(places).count("refused a connection: connection closed")
            == holder.UNAUTHENTICATED_AT_ONCE
        ),
        "the holder to see them go",
    )
    again = await attach_holder(places, 0, 0)
    await read_until(again, b"hello\n", bytearray())


async def test_a_frame_over_1_mib_drops_that_client_only(holders: Holders) -> None:
    places = holders.places()
    held = await holders.start(places, python(ECHO))
    got = bytearray()
    await read_until(held, b"hello\n", got)
    stranger = RawClient(places)  # not attached yet: its first frame may not be long at all
    stranger.sock.sendall(b"h" + (holder.MAX_HELLO + 1).to_bytes(4, "big"))
    assert stranger.closed()
    held.stdin.write(b"still here\n")
    await read_until(held, b"echo still here\n", got)
    held.detach()

    client = RawClient(places)
    client.hello()
    welcome = client.frame()
    assert welcome is not None and welcome[0] == b"w"
    client.sock.sendall(b"i" + (holder.MAX_PAYLOAD + 1).to_bytes(4, "big") + b"x" * 4096)
    assert client.closed()
    log = holder_log(places)
    assert "a hello longer than 4 KiB" in log and "client left: a frame longer than 1 MiB" in log

    again = await attach_holder(places, len(got), 0)
    again.stdin.write(b"after\n")
    await read_until(again, b"echo after\n", bytearray())
    again.stdin.close()
    assert await read_all(again) == (b"", b"") and again.returncode == 3


# -- an agent nobody attends; the end of a holder


@pytest.mark.parametrize(("sigterm", "ended_by"), [("obey", signal.SIGTERM), ("ignore", 9)])
async def test_with_no_client_for_its_orphan_timeout_the_agent_is_ended_and_its_exit_left(
    holders: Holders, sigterm: str, ended_by: int
) -> None:
    places = holders.places()
    held = await holders.start(
        places, python(UNATTENDED, sigterm), orphan_timeout=2.0, kill_grace=1.0
    )
    held.detach()

    ended = await eventually(lambda: read_exit(places), "the holder to end its agent")
    assert ended.exit_code == -ended_by
    stdout = (places.spool_dir / "stdout").read_bytes()
    stderr = (places.spool_dir / "stderr").read_bytes()
    assert stdout == "".join(f"line {n}\n" for n in range(1, 101)).encode()
    assert stderr.startswith(b"child ") and stderr.endswith(b"\n")
    assert (ended.stdout, ended.stderr) == (len(stdout), len(stderr))
    assert not process_exists(int(stderr.split()[1]))  # SIGTERM went to the agent's group
    if ended_by == signal.SIGKILL:
        assert "killing it" in holder_log(places)

    # It waits a further orphan_timeout for an orcad to collect the exit; this one does not.
    late = await attach_holder(places, ended.stdout, ended.stderr)
    assert late.exit == ended
    late.detach()
    await eventually(lambda: holder_gone(held), "the holder to exit")
    assert not (places.socket_dir / "sock").exists()
    assert read_exit(places) == ended
    assert "exit not acknowledged in time: leaving exit.json" in holder_log(places)


async def test_an_acknowledged_exit_ends_the_holder_and_removes_its_socket(
    holders: Holders,
) -> None:
    places = holders.places()
    gate = holders.base / "gate"
    held = await holders.start(places, python(GATED_EXIT, str(gate), "4"))
    gate.touch()
    assert await read_all(held) == (b"working\ndone\n", b"")
    assert held.returncode == 4 and read_exit(places) == held.exit
    await held.acknowledge()
    await eventually(lambda: holder_gone(held), "the holder to exit")
    assert not (places.socket_dir / "sock").exists()


async def test_an_ack_before_the_exit_ends_the_holder_once_the_exit_is_sent(
    holders: Holders,
) -> None:
    places = holders.places()
    gate = holders.base / "gate"
    held = await holders.start(places, python(GATED_EXIT, str(gate), "0"))
    held.detach()
    client = RawClient(places)
    client.hello()
    client.send(b"a", b"")
    frames = []
    gate.touch()
    while (received := client.frame()) is not None:
        frames.append(received)
    kinds = [kind for kind, _ in frames]
    assert kinds[0] == b"w" and kinds[-1] == b"x"  # the exit came, then the end
    assert b"".join(payload for kind, payload in frames if kind == b"o") == b"working\ndone\n"
    await eventually(lambda: holder_gone(held), "the holder to exit")
    assert not (places.socket_dir / "sock").exists()


async def test_an_ack_before_the_exit_from_a_client_that_left_ends_the_holder_at_the_exit(
    holders: Holders,
) -> None:
    places = holders.places()
    gate = holders.base / "gate"
    held = await holders.start(places, python(GATED_EXIT, str(gate), "0"))
    await read_until(held, b"working\n", bytearray())
    await held.acknowledge()
    assert process_exists(held.holder_pid) and process_exists(held.pid)
    gate.touch()
    await eventually(lambda: holder_gone(held), "the holder to exit")
    assert not (places.socket_dir / "sock").exists()
    assert read_exit(places) is not None


# -- re-attaching


async def test_a_client_that_attaches_again_gets_exactly_the_bytes_after_its_offsets(
    holders: Holders,
) -> None:
    places = holders.places()
    gates = [holders.base / "gate1", holders.base / "gate2"]
    held = await holders.start(places, python(STAGES, *map(str, gates)))
    out1, err1 = staged(0)
    got = bytearray()
    await read_until(held, out1[-12:], got)
    assert bytes(got) == out1
    held.detach()

    gates[0].touch()  # it prints its second stage while nobody is attached
    out2, err2 = staged(1)
    await eventually(lambda: spool_size(places) == len(out1 + out2), "the second stage")
    await eventually(lambda: spool_size(places, "stderr") == len(err1 + err2), "its stderr")
    middle = await attach_holder(places, 1234, 77)  # (mid-line: offsets are bytes)
    middle.detach()
    again = await attach_holder(places, len(out1), 77)
    gates[1].touch()
    assert await read_all(again) == (out2, (err1 + err2)[77:])
    assert again.returncode == 0

    last = await attach_holder(places, len(out1) - 5, len(err1 + err2))
    assert await read_all(last) == (out1[-5:] + out2, b"")
    assert last.exit == again.exit
    await last.acknowledge()


# -- bounded memory


async def test_an_agent_printing_with_nobody_reading_blocks_and_the_holder_stays_small(
    holders: Holders,
) -> None:
    places = holders.places()
    count, progress = 3 * holder.SPOOL_AHEAD // 65536, holders.base / "progress"
    held = await holders.start(places, python(CHUNKS, str(count), str(progress)))
    held.detach()
    await eventually(lambda: spool_size(places) >= holder.SPOOL_AHEAD, "the spool to fill")
    await asyncio.sleep(0.5)  # a moment in which a holder that reads on would (not a condition)
    spooled = spool_size(places)
    assert spooled <= holder.SPOOL_AHEAD + holder.SPLICE_SIZE
    [printed] = numbers_in(progress)
    assert printed <= spooled + holder.PIPE_SIZE + 65536  # it is blocked on its pipe
    assert rss_kib(held.holder_pid) < RSS_BOUND_KIB

    again = await attach_holder(places, 0, 0)
    digest, total, most = hashlib.sha256(), 0, 0
    while (piece := await again.read()) is not None:
        digest.update(piece[1])
        total += len(piece[1])
        most = max(most, rss_kib(again.holder_pid))
    assert (total, digest.hexdigest()) == chunks_digest(count)
    assert again.returncode == 0 and most < RSS_BOUND_KIB
    assert "could not" not in holder_log(places)
    await again.acknowledge()


async def test_input_sent_faster_than_the_agent_reads_is_back_pressured(
    holders: Holders,
) -> None:
    places = holders.places()
    gate = holders.base / "gate"
    held = await holders.start(places, python(SLOW_READER, str(gate)))
    block = os.urandom(1 << 20)
    sent = 48 * len(block)
    for _ in range(48):
        held.stdin.write(block)  # without waiting: orcad's side keeps what the holder does not
    reading = asyncio.create_task(read_all(held))
    await eventually(lambda: held.stdin.buffered() < sent, "the holder to fill the pipe")
    await asyncio.sleep(0.5)  # a moment in which a holder that reads on would (not a condition)
    assert rss_kib(held.holder_pid) < RSS_BOUND_KIB
    assert held.stdin.buffered() >= sent - 2 * 65536  # the agent has not read: not "written"

    gate.touch()
    await held.stdin.drain()  # returns once the holder wrote everything into the pipe
    assert held.stdin.buffered() == 0
    assert rss_kib(held.holder_pid) < RSS_BOUND_KIB
    held.stdin.close()
    stdout, _ = await reading
    digest = hashlib.sha256(block * 48).hexdigest()
    assert stdout == f"{sent} {digest}\n".encode()
    await held.acknowledge()


# -- how far the agent's stdin got


async def test_stdin_progress_tells_what_is_in_the_agents_pipe_as_a_pipe_of_its_own_would(
    holders: Holders,
) -> None:
    places = holders.places()
    gate = holders.base / "gate"
    held = await holders.start(places, python(SLOW_READER, str(gate)))
    reading = asyncio.create_task(read_all(held))  # (it takes in the holder's reports too)
    held.stdin.write(b"x" * 10)
    await held.stdin.settle()
    assert held.stdin.buffered() == 0  # in the pipe, though the agent has not read it
    held.stdin.write(b"y" * 200_000)
    await held.stdin.settle()
    assert 200_010 - 65536 <= held.stdin.buffered() < 200_000  # the pipe is full

    gate.touch()
    await held.stdin.drain()
    assert held.stdin.buffered() == 0
    held.stdin.close()
    digest = hashlib.sha256(b"x" * 10 + b"y" * 200_000).hexdigest()
    assert await reading == (f"200010 {digest}\n".encode(), b"")
    await held.acknowledge()


async def test_stdin_an_agent_never_read_stays_unwritten_and_draining_it_breaks(
    holders: Holders,
) -> None:
    places = holders.places()
    gate = holders.base / "gate"
    held = await holders.start(
        places, python(GATED_EXIT, str(gate), "0"), initial_input=b"p" * 100_000
    )
    reading = asyncio.create_task(read_all(held))
    held.stdin.write(b"answer\n")
    await held.stdin.settle()
    assert held.stdin.buffered() >= 100_007 - 65536  # what the pipe did not take
    gate.touch()
    await reading
    unread = held.stdin.buffered()
    assert held.exit is not None and held.exit.stdin_dropped == unread > 0
    with pytest.raises(BrokenPipeError):
        await held.stdin.drain()
    assert held.stdin.is_closing()
    await held.acknowledge()


# -- a full disk


@pytest.fixture
def small_spool(holders: Holders) -> Iterator[Path]:
    """A 1 MiB tmpfs for the spool files (needs the privilege to mount, e.g. root)."""
    with small_tmpfs(holders.base / "spool", "1m", "nothing else fills a holder's disk") as root:
        try:
            yield root
        finally:
            holders.end()


def fill(path: Path) -> None:
    """Write `path` until the file system is full."""
    with open(path, "wb", buffering=0) as ballast:
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):  # ENOSPC
                while True:
                    ballast.write(b"\0" * block)


async def test_output_the_disk_refuses_waits_in_the_holder_and_arrives_once(
    holders: Holders, small_spool: Path
) -> None:
    places = holders.places(spool_root=small_spool)
    gate, progress, lines = holders.base / "gate", holders.base / "progress", 160
    held = await holders.start(places, python(PAGES, str(lines), str(gate), str(progress)))
    reading = asyncio.create_task(read_all(held))
    await eventually(lambda: numbers_in(progress), "the agent to start")
    fill(small_spool / "ballast")
    gate.touch()

    def refused() -> bool:  # printed, not spooled: it waits in the agent's pipe
        return numbers_in(progress)[1] > spool_size(places)

    await eventually(refused, "the disk to refuse what the agent prints")
    assert not reading.done()
    (small_spool / "ballast").unlink()
    stdout, stderr = await reading
    assert stdout == page_lines(lines) and stderr == b"stderr too\n"
    assert held.returncode == 0 and held.exit is not None
    assert (held.exit.stdout, held.exit.stderr) == (len(stdout), len(stderr))
    assert read_exit(places) == held.exit
    await held.acknowledge()


async def test_the_exit_is_final_only_once_all_the_agent_printed_is_spooled(
    holders: Holders, small_spool: Path
) -> None:
    places = holders.places(spool_root=small_spool)
    gate, progress, lines = holders.base / "gate", holders.base / "progress", 8
    held = await holders.start(
        places, python(PAGES, str(lines), str(gate), str(progress)), exit_drain=0.2
    )
    reading = asyncio.create_task(read_all(held))
    await eventually(lambda: numbers_in(progress), "the agent to start")
    fill(small_spool / "ballast")
    gate.touch()
    await eventually(lambda: not process_exists(held.pid), "the agent to exit")
    await asyncio.sleep(1.0)  # past its exit drain and a retry (a moment, not a condition)
    assert held.exit is None and not reading.done() and read_exit(places) is None
    (small_spool / "ballast").unlink()
    stdout, stderr = await reading
    assert (stdout, stderr) == (page_lines(lines), b"stderr too\n")
    assert held.exit is not None and (held.exit.stdout, held.exit.stderr) == (
        len(stdout),
        len(stderr),
    )
    await held.acknowledge()


async def test_an_exit_json_the_disk_refuses_is_written_once_there_is_space(
    holders: Holders, small_spool: Path
) -> None:
    places = holders.places(spool_root=small_spool)
    gate = holders.base / "gate"
    command = python(GATED_EXIT, str(gate), "5", "quietly")
    held = await holders.start(places, command, orphan_timeout=60.0)
    await read_until(held, b"working\n", bytearray())
    fill(small_spool / "ballast")
    gate.touch()
    assert await held.read() is None  # the exit is final: all it printed is spooled
    assert held.returncode == 5 and read_exit(places) is None  # but the disk refused exit.json
    held.detach()
    (small_spool / "ballast").unlink()
    ended = await eventually(lambda: read_exit(places), "the holder to write exit.json")
    assert ended == held.exit and process_exists(held.holder_pid)
    again = await attach_holder(places, ended.stdout, ended.stderr)
    assert again.exit == ended
    await again.acknowledge()
    await eventually(lambda: holder_gone(again), "the holder to exit")


def test_the_holders_proof_is_hmac_sha256() -> None:
    """The holder computes its proof without hmac (which loads OpenSSL): the same digests."""
    for key, message in [
        (b"", b""),
        (b"k" * 64, b"a nonce"),
        (secrets.token_hex(32).encode(), secrets.token_hex(16).encode()),
        (b"a key longer than one block of sha-256, " * 3, b"x" * 1000),
    ]:
        assert holder.hmac_sha256(key, message) == hmac.new(key, message, "sha256").hexdigest()


# -- what an agent leaves behind, told from its holder

LEAVER = """
import os, sys
read_end, write_end = os.pipe()
middle = os.fork()
if middle == 0:
    if os.fork() == 0:  # a grandchild that leaves every other way: setsid, no environment
        os.setsid()
        for descriptor in range(3):
            os.dup2(os.open(os.devnull, os.O_RDWR), descriptor)
        with open(sys.argv[1] + ".tmp", "w") as handle:
            handle.write(str(os.getpid()))
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
        os.close(write_end)  # (the agent reads its end once the pid file is there)
        os.execve("/bin/sleep", ["sleep", "300"], {})
    os._exit(0)
os.close(write_end)
os.waitpid(middle, 0)
os.read(read_end, 1)
"""

THREADED_LEAVER = """
import ctypes, subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(300,)).start()
child = subprocess.Popen(["sleep", "300"])
with open(sys.argv[1] + ".tmp", "w") as handle:
    handle.write(str(child.pid))
import os
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
ctypes.CDLL(None).pthread_exit(None)  # the main thread ends; the other runs on, and its child
"""


async def _end_of(held: HeldAgent, scans: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the pump does as `held`'s agent gives its result and exits: end what it left,
    counting /proc scans."""
    real_scan = stopping.scan_in_thread

    async def counted(scan: Callable[[], Any]) -> Any:
        scans.append(scan.__name__)
        return await real_scan(scan)

    monkeypatch.setattr(stopping, "scan_in_thread", counted)
    stopper = stopping.Stopper("s1")
    async with anyio.create_task_group() as tasks:
        holder_of = (held.holder_pid, held.holder_start_ticks)
        stopper.attach(held.pid, held.start_ticks, tasks, holder_of)
        await stopper.result_given()
        await pid_exited(held.pid, held.start_ticks)
        stopper.exited()
        await stopper.end_leftovers(held.pid)
        stopper.detach()


async def test_an_agent_that_left_nothing_is_ended_without_a_scan_of_every_process(
    holders: Holders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions end one after another under load, and a /proc scan reads a file of every
    process on the machine: the holder's children tell that there is nothing to look for (nor
    anything to remember when the agent gives its result: it all stays below the holder)."""
    held = await holders.start(holders.places(), python("print('bye')"))
    scans: list[str] = []
    await _end_of(held, scans, monkeypatch)
    assert scans == []
    assert await read_all(held) == (b"bye\n", b"")


async def test_a_grandchild_that_left_the_agents_session_is_the_holders_and_is_stopped(
    holders: Holders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder is a subreaper: whatever the agent left is re-parented to it by the time the
    agent's exit is seen, so its children are all there is to look for."""
    pid_file = holders.base / "grandchild"
    held = await holders.start(holders.places(), python(LEAVER, str(pid_file)))
    grandchild = int(await eventually(lambda: pid_file.exists() and pid_file.read_text(), "it"))
    try:
        await pid_exited(held.pid, held.start_ticks)
        assert parent_of(grandchild) == held.holder_pid
        assert grandchild in (children_of(held.holder_pid, held.holder_start_ticks) or set())
        scans: list[str] = []
        await _end_of(held, scans, monkeypatch)
        assert "session_processes" in scans and "process_table" in scans
        await eventually(lambda: not process_exists(grandchild), "the grandchild's end")
    finally:
        with contextlib.suppress(OSError):
            os.kill(grandchild, signal.SIGKILL)


def test_the_children_of_a_pid_that_names_another_process_now_are_not_told() -> None:
    with subprocess.Popen(["sleep", "30"]) as child:
        child_ticks = process_start_ticks(child.pid)
        assert child_ticks is not None
        try:
            ticks = process_start_ticks(os.getpid())
            assert child.pid in (children_of(os.getpid(), ticks) or set())
            assert children_of(os.getpid(), (ticks or 0) + 1) is None
            assert children_of(os.getpid(), None) is None
        finally:
            child.kill()
    assert children_of(child.pid, child_ticks) is None  # gone


async def test_an_agent_whose_main_thread_ended_has_not_exited_while_its_other_threads_run(
    holders: Holders, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/proc shows such an agent as a zombie, and its children stay with its other threads, not
    yet the holder's: its exit is seen, and what it left looked for, once all have ended."""
    pid_file = holders.base / "child"
    held = await holders.start(holders.places(), python(THREADED_LEAVER, str(pid_file)))
    child = int(await eventually(lambda: pid_file.exists() and pid_file.read_text(), "it"))
    try:
        await eventually(lambda: process_state(held.pid) == "Z", "the main thread's end")
        with anyio.move_on_after(1.0) as waited:
            await pid_exited(held.pid, held.start_ticks)
        assert waited.cancelled_caught, "its exit was seen while a thread of it ran"
        os.kill(held.pid, signal.SIGKILL)  # the other thread too
        scans: list[str] = []
        await _end_of(held, scans, monkeypatch)
        assert "process_table" in scans
        await eventually(lambda: not process_exists(child), "its child's end")
    finally:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0]
