"""Processes seen from /proc: the live members of a process group; waiting for a file that a
test's shell script writes."""

from __future__ import annotations

import os
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
