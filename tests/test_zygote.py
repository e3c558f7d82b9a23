"""Holders forked by the zygote (orca_daemon/sessions/zygote.py), against real processes: a
holder so started is nobody's child here and works as one started on its own, a zygote that
died is replaced at the next launch, and a zygote ends with the process that started it (the
holders it forked do not)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import parent_of, process_exists, short_tempdir
from support.holders import Holders, read_all

from orca_daemon.sessions import held
from orca_daemon.sessions.zygote import HOLDER_PROGRAM, ZYGOTE, HolderZygote, ZygoteError

PATIENCE = 30.0


def gone(pid: int) -> bool:
    """No such process, not even a zombie: whoever started it has reaped it."""
    return not os.path.exists(f"/proc/{pid}")


def cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


COUNT_STDIN = "import sys; data = sys.stdin.buffer.read(); print(len(data), data[-6:-1].decode())"


async def test_a_forked_holder_is_nobodys_child_here_and_takes_a_spec_bigger_than_a_pipe(
    holders: Holders,
) -> None:
    """The spec (here with 300 KiB of input for the agent) goes down a pipe that holds 64 KiB
    while the holder reads it: it comes whole."""
    given = b"x" * (300 << 10) + b"-last\n"
    command = [sys.executable, "-c", COUNT_STDIN]
    held = await holders.start(holders.places(), command, initial_input=given, close_input=True)
    zygote = ZYGOTE.pid
    assert zygote is not None and parent_of(zygote) == os.getpid()
    assert parent_of(held.holder_pid) not in (os.getpid(), zygote)
    assert cmdline(held.holder_pid) == cmdline(zygote)  # a fork of it, not a new interpreter
    assert os.getsid(held.holder_pid) != os.getsid(0)
    stdout, _ = await read_all(held)
    assert stdout == f"{len(given)} -last\n".encode()
    assert held.returncode == 0
    log = (holders.places().spool_dir / "holder.log").read_text()
    assert "started agent" in log


async def test_a_zygote_that_died_is_replaced_at_the_next_launch(holders: Holders) -> None:
    first = await holders.start(holders.places("s1"), ["sleep", "60"])
    dead = ZYGOTE.pid
    assert dead is not None
    os.kill(dead, signal.SIGKILL)
    second = await holders.start(holders.places("s2"), [sys.executable, "-c", "print('hi')"])
    assert ZYGOTE.pid not in (None, dead)
    assert gone(dead)  # reaped, not left a zombie
    stdout, _ = await read_all(second)
    assert stdout == b"hi\n"
    assert process_exists(first.holder_pid)  # what the old one forked runs on


STARTER = """
import asyncio, os, signal, sys
from pathlib import Path
from orca_daemon.sessions.held import HolderLaunch, HolderPlaces, start_holder
from orca_daemon.sessions.zygote import ZYGOTE

async def main():
    base = Path(sys.argv[1])
    places = HolderPlaces(base / "run", base / "spool")
    env = {"PATH": os.environ["PATH"]}
    held = await start_holder(places, HolderLaunch(["sleep", "60"], str(base), env))
    print(ZYGOTE.pid, held.holder_pid, held.pid, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


def test_the_zygote_ends_with_the_process_that_started_it_and_its_holders_do_not() -> None:
    base = short_tempdir("orca-z-")
    starter = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STARTER), str(base)],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert starter.returncode == -signal.SIGKILL, starter.stderr
    zygote, holder, agent = map(int, starter.stdout.split())
    try:
        eventually(lambda: not process_exists(zygote), "the zygote to end")
        assert process_exists(holder) and process_exists(agent)
    finally:
        for pid, kill in ((holder, os.kill), (agent, os.killpg)):
            with contextlib.suppress(ProcessLookupError):
                kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


FORK_FAILS = """
import os, sys
sys.path.insert(0, sys.argv[1])
import holder
def fork():
    raise BlockingIOError(11, "Resource temporarily unavailable")
os.fork = fork
sys.exit(holder.zygote())
"""


def test_a_zygote_that_cannot_fork_says_so_and_serves_on() -> None:
    """When fork fails (a pids limit), the zygote answers 0 and takes the next request; it
    never goes on as a holder itself."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = subprocess.Popen(
        [sys.executable, "-c", FORK_FAILS, str(HOLDER_PROGRAM.parent)],
        stdin=theirs.fileno(),
        stderr=subprocess.PIPE,
    )
    theirs.close()
    ours.settimeout(PATIENCE)
    pipes = [os.pipe() for _ in range(3)]
    try:
        for _ in range(2):
            socket.send_fds(ours, [b"/tmp"], [pipes[0][0], pipes[1][1], pipes[2][1]])
            assert ours.recv(4) == bytes(4)
        assert zygote.poll() is None
    finally:
        ours.close()
        for pipe in pipes:
            for descriptor in pipe:
                os.close(descriptor)
        _, stderr = zygote.communicate(timeout=PATIENCE)
    assert zygote.returncode == 0
    assert stderr.decode().count("zygote: could not fork a holder") == 2


SILENT = """
import os, socket, sys
requests = socket.socket(fileno=0)
count = 0
while True:
    message, fds, _, _ = socket.recv_fds(requests, 4096, 3)
    if not message:
        break
    count += 1
    with open(sys.argv[1], "w") as handle:
        handle.write(f"{count} {os.getpid()}")
"""


def test_a_request_the_zygote_took_without_answering_is_not_sent_again(tmp_path: Path) -> None:
    """Whether it forked is not known: asked again, two holders could share one session's
    pipes. The launch fails instead, and the silent zygote is killed (and reaped)."""
    taken = tmp_path / "taken"
    zygote = HolderZygote([sys.executable, "-c", SILENT, str(taken)], reply_timeout=0.5)
    pipes = [os.pipe() for _ in range(3)]
    try:
        with pytest.raises(ZygoteError, match="did not answer"):
            zygote.fork(tmp_path, pipes[0][0], pipes[1][1], pipes[2][1])
    finally:
        for pipe in pipes:
            for descriptor in pipe:
                os.close(descriptor)
    count, pid = map(int, taken.read_text().split())
    assert count == 1
    assert zygote.pid is None
    assert gone(pid)


DIES_ONCE = """
import os, socket, sys
marker, holder = sys.argv[1], sys.argv[2]
if os.path.exists(marker):
    os.execv(sys.executable, [sys.executable, "-I", "-S", holder, "--zygote"])
open(marker, "w").close()
socket.recv_fds(socket.socket(fileno=0), 4096, 3)  # takes the request, then dies
"""


async def test_a_launch_whose_zygote_died_as_it_was_asked_is_made_again_with_new_pipes(
    holders: Holders, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = holders.base / "died once"
    program = [sys.executable, "-c", DIES_ONCE, str(marker), str(HOLDER_PROGRAM)]
    zygote = HolderZygote(program, reply_timeout=PATIENCE)
    monkeypatch.setattr(held, "ZYGOTE", zygote)
    try:
        started = await holders.start(holders.places(), [sys.executable, "-c", "print('hi')"])
        assert marker.exists()
        stdout, _ = await read_all(started)
        assert stdout == b"hi\n"
    finally:
        zygote.close()
