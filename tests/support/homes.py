"""What a test puts in an ORCA_HOME before orcad starts: its config.toml, or the log an earlier
orcad left; and a small file system to fill."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from orca_client.events import Event, RunCreated, run_stream
from orca_client.paths import resolve_paths
from orca_daemon.config import Config
from orca_daemon.log.store import DaemonIdentity, EventStore
from orca_daemon.main import daemon_name


def write_config(home: Path, text: str) -> None:
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    (home / "config.toml").write_text(text)


def write_log(home: Path, events: list[Event], log_env: dict[str, str] | None = None) -> None:
    """Append events to a fresh home's log as an earlier orcad would have (one stream each):
    its SQLite file, or with `ORCA_LOG_URL` in `log_env`, the PostgreSQL log as that home's
    daemon (its runs are its own)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    url = (log_env or {}).get("ORCA_LOG_URL")

    async def open_log() -> EventStore:
        if url is None:
            return await EventStore.open(home / "events.sqlite3")
        paths = resolve_paths({"ORCA_HOME": str(home)})
        name = daemon_name(Config(), paths)
        nonlocal events
        events = [
            msgspec.structs.replace(e, daemon=name)
            if isinstance(e, RunCreated) and e.daemon is None
            else e
            for e in events
        ]
        return await EventStore.open_postgres(
            url, daemon=DaemonIdentity(name, str(paths.state_dir), lease_seconds=15.0)
        )

    async def write() -> None:
        store = await open_log()
        writer = asyncio.create_task(store.run_writer())
        for event in events:
            await store.append(run_stream(event.run_id), [event])
        await store.close()
        await writer

    asyncio.run(write())


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str, otherwise: str) -> Iterator[Path]:
    """`directory` (made 0700) as a tmpfs of `size` (e.g. "32m") while in the block. Mounting
    needs the privilege (root, as in CI); without it the test is skipped, saying `otherwise`
    (what covers the case then)."""
    directory.mkdir(mode=0o700, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)]
    try:
        subprocess.run(mount, check=True, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"cannot mount a small tmpfs here ({otherwise})")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False, timeout=10)
