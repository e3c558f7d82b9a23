"""Processes seen from /proc: the live members of a process group, those an orcad started (by
their environment); waiting for a file that a test's shell script writes."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import anyio


def live_members(pgid: int) -> list[int]:
    """The processes of group `pgid` that run (zombies, which nobody may reap, left out)."""
    members = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


async def wait_for_line(path: Path) -> str:
    """The text of `path` once it holds a whole line."""
    file = anyio.Path(path)
    while True:  # another process writes it: nothing to wait on but the file
        if await file.exists() and (text := await file.read_text()).endswith("\n"):
            return text
        await anyio.sleep(0.02)


def processes_with_env(name: str, value: str) -> list[int]:
    """Live processes (zombies left out) whose environment sets `name` to `value`: those an
    orcad on one ORCA_HOME started (its session holders and their agents) carry its home."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except (OSError, IndexError):
            continue
        if state != b"Z" and wanted in environ:
            found.append(int(entry))
    return found


def kill_processes_with_env(name: str, value: str) -> list[int]:
    """SIGKILL every process `processes_with_env` finds; returns their pids."""
    pids = processes_with_env(name, value)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return pids
