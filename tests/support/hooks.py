"""`[hooks]` configs whose hooks record each call (tests/agents/q_hook.py), and what a test
reads back: the calls, and the hook events in the log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from conftest import AGENTS, DaemonProcess, all_events, wait_until


def hook(log: Path, *args: str) -> list[str]:
    return [sys.executable, str(AGENTS / "q_hook.py"), str(log), *args]


def hooks_config(timeout: float = 10.0, **hooks: list[str] | str) -> str:
    lines = ["[hooks]", f"timeout_seconds = {timeout}"]
    lines += [f"{name} = {json.dumps(command)}" for name, command in hooks.items()]
    return "\n".join(lines) + "\n"


def hook_events(daemon: DaemonProcess, kind: str) -> list[dict[str, Any]]:
    return [e for _, e in all_events(daemon) if e["type"] == kind]


def calls(log: Path) -> list[dict[str, Any]]:
    """Every hook call so far, as q_hook.py recorded it."""
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def wait_hooks_settled(daemon: DaemonProcess, count: int) -> list[dict[str, Any]]:
    """Wait until at least `count` hooks finished and every started hook has finished."""

    def settled() -> bool:
        started = hook_events(daemon, "hook_started")
        finished = hook_events(daemon, "hook_finished")
        return len(finished) >= count and len(started) == len(finished)

    wait_until(settled, what=f"{count} hooks finished")
    return hook_events(daemon, "hook_finished")
