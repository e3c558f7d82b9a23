"""Processes on Linux: the process table, start times (to tell a reused pid apart), process
groups and how to stop them, the environment orcad gives a child, and waiting for an exit."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

import anyio

from orca_daemon.limits import restore_inherited_limit

log = logging.getLogger(__name__)

T = TypeVar("T")

PAGE = 4096
"""What the kernel hands over of a /proc file per read."""


def _read_proc(path: str, whole: bool = False) -> bytes | None:
    """A /proc file, None when it is gone: one read of at most a page (all of a small file
    such as stat), or with `whole` every page to its end. A plain descriptor: a scan reads a
    file of every process, and `open()`'s buffered file costs a third more."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(descriptor, PAGE)
        while whole and (more := os.read(descriptor, PAGE)):
            data += more
        return data
    except OSError:
        return None
    finally:
        os.close(descriptor)


def _stat_fields(pid: int | str) -> list[bytes]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ...; [] when it is gone."""
    stat = _read_proc(f"/proc/{pid}/stat")
    return [] if stat is None else stat[stat.rfind(b")") + 2 :].split()


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return int(_stat_fields(pid)[19])
    except (IndexError, ValueError):
        return None


def children_of(pid: int, start_ticks: int | None) -> set[int] | None:
    """The pids of the children of `pid` (started at `start_ticks`), zombies included; None
    when that cannot be told: it is gone or names another process now, or the kernel has no
    /proc/PID/task/TID/children."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    children: set[int] = set()
    for thread in threads:
        listed = _read_proc(f"/proc/{pid}/task/{thread}/children", whole=True)
        if listed is None:
            return None
        children.update(int(child) for child in listed.split())
    if start_ticks is None or process_start_ticks(pid) != start_ticks:
        return None  # (checked after the read: the children listed were its own)
    return children


def running_since(pid: int) -> int | None:
    """The start ticks of a process that runs (None when it is gone or a zombie)."""
    fields = _stat_fields(pid)
    return process_start_ticks(pid) if fields and fields[0] != b"Z" else None


class ProcessTable:
    """Live processes at one moment: pid -> (parent pid, start ticks), and which pids each
    one started (built once, for every session that looks below its agent)."""

    def __init__(self, entries: dict[int, tuple[int, int]] | None = None) -> None:
        self.entries = entries or {}
        self._children: dict[int, list[int]] | None = None

    def ticks(self, pid: int) -> int | None:
        """The start ticks of `pid` in the table (None: it was not running then)."""
        entry = self.entries.get(pid)
        return None if entry is None else entry[1]

    def descendants(self, roots: Iterable[int]) -> set[int]:
        """The pids below `roots` (not the roots themselves), by parent links."""
        if self._children is None:
            self._children = {}
            for pid, (parent, _) in self.entries.items():
                self._children.setdefault(parent, []).append(pid)
        children = self._children
        found: set[int] = set()
        pending = list(roots)
        while pending:
            for child in children.get(pending.pop(), []):
                if child not in found:
                    found.add(child)
                    pending.append(child)
        return found


def process_table() -> ProcessTable:
    """Every live process (Linux /proc; zombies left out), with its parent and start time."""
    entries: dict[int, tuple[int, int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return ProcessTable(entries)
    for name in names:
        fields = _stat_fields(name) if name.isdigit() else []
        try:
            if fields and fields[0] != b"Z":
                entries[int(name)] = (int(fields[1]), int(fields[19]))
        except (IndexError, ValueError):
            continue
    return ProcessTable(entries)


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _libc_prctl()
PR_SET_CHILD_SUBREAPER = 36


def prepare_agent_process() -> None:
    """Run in the agent's process just before exec. It becomes a subreaper (the bit survives
    exec): a descendant whose parent exits re-parents to the agent, so all it starts stays in
    its tree while it runs, even a process that calls setsid and clears its environment. And it
    gets the open-files limit orcad was started with, not orcad's raised one."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    restore_inherited_limit()


DAEMON_ONLY_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "INVOCATION_ID",
    "ORCA_LOG_URL",
    "PGPASSWORD",
    "PGPASSFILE",
)
"""What orcad's environment holds for orcad alone: systemd's notify socket and watchdog, and the
log's database and its credentials (an agent must not reach the log but through orcad)."""


def child_env(extra: dict[str, str] | None = None, **orca: str) -> dict[str, str]:
    """The environment for a process orcad starts (an agent, a hook): orcad's own, without
    what belongs to orcad alone (`DAEMON_ONLY_VARIABLES`), with NO_COLOR=1 (its
    output goes to a log, not a terminal), plus `extra` and `orca`."""
    env = {k: v for k, v in os.environ.items() if k not in DAEMON_ONLY_VARIABLES}
    env.pop("ORCA_PROMPT_ON_STDIN_ONLY", None)
    return {**env, "NO_COLOR": "1", **(extra or {}), **orca}


async def exited(process: asyncio.subprocess.Process) -> None:
    """Return once the process has exited, even while something else still holds its pipes
    (`Process.wait()` also waits for the pipes to close)."""
    if process.returncode is not None:
        return
    try:
        descriptor = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel, or already reaped)
        while process.returncode is None:  # noqa: ASYNC110 - nothing to wait on but the watcher
            await asyncio.sleep(0.05)
        return
    try:
        await _readable(descriptor)
    finally:
        os.close(descriptor)
    for attempt in range(2000):  # the child watcher reaps it and sets returncode just after
        if process.returncode is not None:
            return
        await asyncio.sleep(0 if attempt < 20 else 0.001)


async def pid_exited(pid: int, start_ticks: int | None) -> None:
    """Return once the process `pid` (started at `start_ticks`; not necessarily our child)
    has exited, all its threads: a pidfd becomes readable then, whoever its parent is. (Its
    main thread alone may have exited: /proc shows a zombie while the others run on, and its
    children stay with them.)"""
    try:
        descriptor = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (old kernel), or it is gone already
        while _still(pid, start_ticks):  # noqa: ASYNC110 - nothing to wait on
            await asyncio.sleep(0.05)
        return
    try:
        if start_ticks is None or process_start_ticks(pid) == start_ticks:  # (else the pid
            await _readable(descriptor)  # names another process now, or it was reaped)
    finally:
        os.close(descriptor)


async def _readable(descriptor: int) -> None:
    """Return once `descriptor` is readable (a pidfd is once its process has exited)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(descriptor, readable.set)
    try:
        await readable.wait()
    finally:
        loop.remove_reader(descriptor)


def _still(pid: int, start_ticks: int | None) -> bool:
    ticks = running_since(pid)
    return ticks is not None and (start_ticks is None or ticks == start_ticks)


def processes_of_sessions(session_ids: set[str]) -> dict[str, list[int]]:
    """Live processes (Linux /proc) whose environment names one of these sessions.

    Finds an agent even when the daemon died before recording its pid, and its children too.
    """
    if not session_ids:
        return {}
    found = session_processes()
    return {session_id: found[session_id] for session_id in session_ids & found.keys()}


def session_processes() -> dict[str, list[int]]:
    """Every process (Linux /proc) whose environment carries an ORCA_SESSION_ID, by session."""
    found: dict[str, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue
        for variable in environ.split(b"\0"):
            if variable.startswith(b"ORCA_SESSION_ID="):
                session_id = variable[len(b"ORCA_SESSION_ID=") :].decode(errors="replace")
                found.setdefault(session_id, []).append(int(entry))
                break
    return found


def signal_group(pgid: int, signum: signal.Signals) -> bool:
    """Send `signum` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to signal process group %d", pgid)
        return False
    return True


async def stop_group(
    pgid: int, grace: float, exited: Callable[[], Awaitable[object]] | None = None
) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after `grace` seconds."""
    if not signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    if exited is not None:
        with anyio.move_on_after(grace):
            await exited()
    # Other members of the group (or an orphan from an earlier daemon) are not our children,
    # so there is nothing to wait on: poll until they are gone or the grace period ends.
    while time.monotonic() < deadline and group_exists(pgid):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    signal_group(pgid, signal.SIGKILL)


async def stop_processes(processes: dict[int, int], grace: float) -> None:
    """SIGTERM these processes (pid -> start ticks; a reused pid is left alone), then SIGKILL
    whatever is left after `grace` seconds. They need not be our children."""

    def still(pid: int) -> bool:
        return running_since(pid) == processes[pid]

    def signal_each(pids: Iterable[int], signum: signal.Signals) -> list[int]:
        signalled = []
        for pid in pids:
            if still(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signum)
                    signalled.append(pid)
        return signalled

    left = signal_each(processes, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:  # not our children: nothing to wait on
        await asyncio.sleep(0.05)
        left = [pid for pid in left if still(pid)]
    signal_each(left, signal.SIGKILL)


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_running(pgid: int) -> bool:
    """True while a process of group `pgid` runs (zombies, which nobody may reap, left out)."""
    if not group_exists(pgid):
        return False
    member = str(pgid).encode()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True  # (no way to tell zombies apart)
    for entry in entries:
        fields = _stat_fields(entry) if entry.isdigit() else []
        if len(fields) > 2 and fields[0] != b"Z" and fields[2] == member:
            return True
    return False


class SharedScan(Generic[T]):
    """One /proc scan (a function of no arguments) run in a worker thread, one at a time, its
    result shared: a caller gets the result of a scan that began after it asked (so it sees
    every process that existed then), with everyone who asked meanwhile. Each scan reads a file
    of every process, mostly holding the GIL: many sessions that end together (a stop) cost a
    few scans, not one each."""

    def __init__(self, scan: Callable[[], T]) -> None:
        self._scan = scan
        self._lock = anyio.Lock()
        self._started = 0
        self._latest: tuple[int, T] | None = None
        """The number of the latest scan that finished, and its result."""

    async def __call__(self) -> T:
        asked = self._started  # any scan numbered above this began after we asked
        async with self._lock:
            if self._latest is not None and self._latest[0] > asked:
                return self._latest[1]
            self._started += 1
            number = self._started
            result = await anyio.to_thread.run_sync(self._scan)
            self._latest = (number, result)
            return result


_shared_scans: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[Callable[[], Any], SharedScan[Any]]
] = weakref.WeakKeyDictionary()


async def scan_in_thread(scan: Callable[[], T]) -> T:
    """`scan()` (`process_table`, `session_processes`), as a `SharedScan` of this event loop."""
    scans = _shared_scans.setdefault(asyncio.get_running_loop(), {})
    shared: SharedScan[T] = scans.setdefault(scan, SharedScan(scan))
    return await shared()
