"""Finding an agent CLI: an explicit path, the configured command, or the newest on PATH.

Every `codex` on the search path is a candidate (not just the first); each is asked its version
(at once, each bounded by a timeout) and the newest wins. The chosen binary's label (path and
version) appears in every error; one older than Orca supports (`MINIMUM_VERSIONS`) is refused.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

VERSION_TIMEOUT_SECONDS = 10.0
MAX_VERSION_OUTPUT = 64 * 1024
"""What of a binary's `--version` output is read; the rest is left unread."""
MAX_VERSION_TEXT = 200
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")

Version = tuple[int, int, int]
MINIMUM_VERSIONS: dict[str, Version] = {"codex": (0, 131, 0), "claude": (2, 0, 0)}
"""The oldest CLI of each kind Orca supports (README "Supported agent versions" says why)."""
TESTED_VERSIONS: dict[str, str] = {"codex": "0.169.0", "claude": "2.1.332"}
"""What the test suite pins and runs end to end (tests/npm/package-lock.json)."""


class BinaryNotFound(Exception):
    """No usable binary; the message says where orca looked and how to point it at one."""


class BinaryTooOld(BinaryNotFound):
    """The binary runs, but it is older than Orca supports; the message names it, its version
    and the minimum."""


@dataclass(frozen=True)
class Binary:
    command: list[str]
    version: Version | None
    version_text: str
    runnable: bool = True
    """False when `--version` could not run, timed out or exited with an error."""

    @property
    def label(self) -> str:
        return f"{self.command[0]} ({self.version_text})"


def version_name(version: Version) -> str:
    return ".".join(str(part) for part in version)


def too_old(kind: str, binary: Binary) -> str | None:
    """Why `binary` is too old to be Orca's `kind` agent, or None (also for an unknown version:
    a run then finds out from the agent itself)."""
    minimum = MINIMUM_VERSIONS.get(kind)
    if minimum is None or binary.version is None or binary.version >= minimum:
        return None
    return (
        f"{binary.label} is too old: Orca needs {kind} {version_name(minimum)} or newer "
        f"(tested with {TESTED_VERSIONS[kind]}); upgrade it, or point Orca at a newer one "
        f"(ORCA_{kind.upper()}_PATH or [agents.NAME] command in config.toml)"
    )


def require_supported(kind: str, binary: Binary) -> Binary:
    """`binary`, unless it is older than Orca supports (`BinaryTooOld` says so)."""
    problem = too_old(kind, binary)
    if problem is not None:
        raise BinaryTooOld(problem)
    return binary


def version_of(
    program: str, timeout: float = VERSION_TIMEOUT_SECONDS
) -> tuple[Version | None, str]:
    """The parsed version and the text `program --version` printed (or why there is none)."""
    version, text, _ = check_version(program, timeout)
    return version, text


def check_version(
    program: str, timeout: float = VERSION_TIMEOUT_SECONDS
) -> tuple[Version | None, str, bool]:
    """`program --version`, bounded: the parsed version, the first line it printed (or why
    there is none), and whether it ran and exited 0 within `timeout` seconds. A program that
    does not end in time is killed with everything it started in its own session."""
    try:
        process = subprocess.Popen(
            [program, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return None, f"version unknown: {exc}", False
    try:
        stdout, stderr, ended = _read_bounded(process, time.monotonic() + timeout)
    finally:
        _stop(process)
    if not ended:
        return None, f"version unknown: `--version` did not finish within {timeout:g}s", False
    lines = (stdout or stderr).decode("utf-8", "replace").strip().splitlines()
    first = lines[0].strip()[:MAX_VERSION_TEXT] if lines else "version unknown"
    match = _VERSION.search(first)
    parsed = (int(match[1]), int(match[2]), int(match[3])) if match else None
    if process.returncode != 0:
        return parsed, f"version unknown: `--version` exited {process.returncode}: {first}", False
    return parsed, first, True


def _read_bounded(process: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bytes, bool]:
    """Both pipes until each ends (or holds MAX_VERSION_OUTPUT) and the process exits, or
    until `deadline`; returns what was read and whether all of it happened in time."""
    assert process.stdout is not None and process.stderr is not None
    buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    with selectors.DefaultSelector() as selector:
        for descriptor in buffers:
            selector.register(descriptor, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(buffers[process.stdout.fileno()]), b"", False
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 4096)
                buffer = buffers[key.fd]
                buffer += chunk[: MAX_VERSION_OUTPUT - len(buffer)]
                if not chunk or len(buffer) >= MAX_VERSION_OUTPUT:
                    selector.unregister(key.fd)
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return bytes(buffers[process.stdout.fileno()]), b"", False
    return bytes(buffers[process.stdout.fileno()]), bytes(buffers[process.stderr.fileno()]), True


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of the `--version` process's session and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def candidates(name: str, search_path: str) -> list[str]:
    """Every executable called `name` on `search_path`, in path order, without duplicates."""
    found: list[str] = []
    seen: set[str] = set()
    for directory in search_path.split(os.pathsep):
        if not directory:
            continue
        path = Path(directory) / name
        try:
            usable = path.is_file() and os.access(path, os.X_OK)
        except (OSError, ValueError):  # unreadable, too long, a NUL byte: not a candidate
            continue
        if usable:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                found.append(str(path))
    return found


def binary_at(command: list[str], timeout: float = VERSION_TIMEOUT_SECONDS) -> Binary:
    version, text, runnable = check_version(command[0], timeout)
    return Binary(list(command), version, text, runnable)


def select_binary(
    name: str,
    *,
    override: str | None,
    configured: list[str] | None,
    search_path: str,
    timeout: float = VERSION_TIMEOUT_SECONDS,
) -> Binary:
    """The binary to run: `override` (e.g. ORCA_CODEX_PATH), else `configured`, else the newest."""
    if override:
        usable = "\0" not in override and os.path.isabs(override) and os.access(override, os.X_OK)
        if not usable:
            raise BinaryNotFound(
                f"{override!r} (from the environment) is not the absolute path of an executable"
            )
        return binary_at([override], timeout)
    if configured:
        return binary_at(configured, timeout)
    found = candidates(name, search_path)
    if not found:
        raise BinaryNotFound(
            f"no `{name}` found on PATH ({search_path or 'empty'}); install it, or set its path "
            f'with [agents.{name}] command = ["/path/to/{name}"] in config.toml'
        )
    if len(found) == 1:
        return binary_at([found[0]], timeout)
    with ThreadPoolExecutor(max_workers=min(len(found), 8)) as pool:
        binaries = list(pool.map(lambda path: binary_at([path], timeout), found))
    return max(binaries, key=lambda b: b.version or (-1, -1, -1))
