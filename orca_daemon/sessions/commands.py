"""One-shot shell commands (a plan's verify command): each runs in a process group of its own, to
its end or its time limit; a cancel of the caller kills the group and goes on up."""

from __future__ import annotations

import asyncio
import signal
from typing import NamedTuple

import anyio

from orca_daemon.limits import restore_inherited_limit
from orca_daemon.sessions.procs import child_env, exited, group_running, signal_group

TAIL_CHARS = 2000
"""How much of a command's output (its end) `run_command` returns by default."""
READ_SIZE = 65_536
KILL_WAIT_SECONDS = 5.0
"""How long a killed command's group may take to end (at once, unless the kernel holds one of
its processes in an uninterruptible wait)."""


class CommandResult(NamedTuple):
    """How a one-shot command ended."""

    passed: bool
    exit_code: int | None
    """None when it did not end in time or could not start."""
    tail: str
    """The end of its output (stderr included), or why it could not start."""
    timed_out: bool = False


async def run_command(
    command: str,
    cwd: str,
    limit: float,
    env: dict[str, str],
    *,
    tail_chars: int = TAIL_CHARS,
) -> CommandResult:
    """Run `command` with `/bin/sh -c` in its own process group for at most `limit` seconds.
    It has ended when its shell has exited and nothing holds its output any more; one that did
    not is killed with its group (`timed_out`), and so is one whose caller is cancelled (the
    cancel then goes on up). `env` is added to orcad's environment for children."""
    try:
        with anyio.CancelScope(shield=True):  # a cancel comes after, when it can end its group
            process = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                command,
                cwd=cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=child_env(env),
                start_new_session=True,
                preexec_fn=restore_inherited_limit,
            )
    except OSError as exc:
        return CommandResult(False, None, f"could not start: {exc}")
    assert process.stdout is not None
    tail = bytearray()
    ended = False
    try:
        with anyio.move_on_after(limit):
            while data := await process.stdout.read(READ_SIZE):
                tail += data
                del tail[: -4 * tail_chars]  # (a character takes at most 4 bytes)
            await exited(process)
            ended = True
    finally:
        if not ended:  # out of time, or the caller was cancelled
            signal_group(process.pid, signal.SIGKILL)
            with anyio.move_on_after(KILL_WAIT_SECONDS, shield=True):
                await exited(process)
                while group_running(process.pid):  # noqa: ASYNC110 - not our children
                    await anyio.sleep(0.02)
    text = tail.decode("utf-8", "replace")[-tail_chars:]
    if not ended:
        return CommandResult(False, None, text, timed_out=True)
    return CommandResult(process.returncode == 0, process.returncode, text)
