"""Fan-outs for the tests: the scripted worker agent, and starting a fan-out on a daemon."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from conftest import AGENTS, DaemonProcess

from orca_client.wire import RunStarted, StartDebug

PROMPT = "why does the cache serve stale entries?"


def fan_agent(**script: Any) -> list[str]:
    """The argv of tests/agents/fan_agent.py with this script."""
    return [sys.executable, str(AGENTS / "fan_agent.py"), json.dumps(script)]


def start_debug(daemon: DaemonProcess, agents: Sequence[str], **kwargs: Any) -> RunStarted:
    """Start a fan-out of `agents` on `daemon` (in its home, on `PROMPT`, unless given)."""
    kwargs.setdefault("cwd", str(daemon.home))
    kwargs.setdefault("prompt", PROMPT)
    with daemon.client() as client:
        started: RunStarted = client.request(StartDebug(agents=list(agents), **kwargs))
    return started
