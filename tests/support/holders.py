"""Session holders a test starts for real (`start_holder`), in a short /tmp directory, and ended
with their agents when it is done (the `holders` fixture in conftest.py)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orca_daemon.sessions.held import HeldAgent, HolderLaunch, HolderPlaces, start_holder


@dataclass
class Holders:
    """Holders a test started (ended at its end, with their agents), in a short /tmp dir."""

    base: Path
    started: list[HeldAgent] = field(default_factory=list)

    def places(self, name: str = "s1", spool_root: Path | None = None) -> HolderPlaces:
        spool = (spool_root or self.base / "spool") / name
        return HolderPlaces(self.base / "run" / name, spool)

    async def start(self, places: HolderPlaces, command: list[str], **launch: Any) -> HeldAgent:
        launch.setdefault("hello_timeout", 30.0)
        launch.setdefault("exit_drain", 0.5)
        env = {"PATH": os.environ["PATH"]}
        held = await start_holder(places, HolderLaunch(command, str(self.base), env, **launch))
        self.started.append(held)
        return held

    def end(self) -> None:
        """Kill every holder started and its agent's group; remove the directory."""
        for held in self.started:
            for pid, kill in ((held.holder_pid, os.kill), (held.pid, os.killpg)):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


async def read_all(held: HeldAgent) -> tuple[bytes, bytes]:
    """Everything the holder sends until the exit: stdout, stderr."""
    got = {"stdout": bytearray(), "stderr": bytearray()}
    while (piece := await held.read()) is not None:
        got[piece[0]] += piece[1]
    return bytes(got["stdout"]), bytes(got["stderr"])
