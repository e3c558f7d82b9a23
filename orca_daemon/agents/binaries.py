"""Finding an agent CLI: an explicit path, the configured command, or the newest on PATH.

Every `codex` on the search path is a candidate (not just the first); each is asked its version
and the newest wins. The chosen binary's label (path and version) appears in every error.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

VERSION_TIMEOUT_SECONDS = 10.0
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


class BinaryNotFound(Exception):
    """No usable binary; the message says where orca looked and how to point it at one."""


@dataclass(frozen=True)
class Binary:
    command: list[str]
    version: tuple[int, int, int] | None
    version_text: str

    @property
    def label(self) -> str:
        return f"{self.command[0]} ({self.version_text})"


def version_of(program: str) -> tuple[tuple[int, int, int] | None, str]:
    """The parsed version and the text `program --version` printed."""
    try:
        completed = subprocess.run(
            [program, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return None, f"version unknown: {exc}"
    text = (completed.stdout or completed.stderr).strip().splitlines()
    first = text[0] if text else "version unknown"
    match = _VERSION.search(first)
    parsed = (int(match[1]), int(match[2]), int(match[3])) if match else None
    return parsed, first


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


def select_binary(
    name: str, *, override: str | None, configured: list[str] | None, search_path: str
) -> Binary:
    """The binary to run: `override` (e.g. ORCA_CODEX_PATH), else `configured`, else the newest."""
    if override:
        usable = "\0" not in override and os.path.isabs(override) and os.access(override, os.X_OK)
        if not usable:
            raise BinaryNotFound(
                f"{override!r} (from the environment) is not the absolute path of an executable"
            )
        return Binary([override], *version_of(override))
    if configured:
        return Binary(list(configured), *version_of(configured[0]))
    found = candidates(name, search_path)
    if not found:
        raise BinaryNotFound(
            f"no `{name}` found on PATH ({search_path or 'empty'}); install it, or set its path "
            f'with [agents.{name}] command = ["/path/to/{name}"] in config.toml'
        )
    binaries = [Binary([path], *version_of(path)) for path in found]
    return max(binaries, key=lambda b: b.version or (-1, -1, -1))
