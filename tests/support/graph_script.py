"""`GraphScript`: what tests/agents/graph_agent.py does for each plan task or repository, and
what each of its sessions saw (prompt, ORCA_* environment, cwd, pid)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from conftest import AGENTS


class GraphScript:
    """One test's agent script, record folder and working directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.script = root / "script.json"
        self.record = root / "record"
        self.work = root / "work"
        self.record.mkdir()
        self.work.mkdir()
        self.steps({})

    def steps(self, steps: dict[str, dict[str, list[dict[str, Any]]]]) -> None:
        """What each task (or repository) does, by its id and attempt ("1", "2", … or "*")."""
        self.script.write_text(json.dumps({"record": str(self.record), "steps": steps}))

    def started(self, key: str, attempt: int = 1) -> Path:
        return self.record / f"{key}.{attempt}.json"

    def seen(self, key: str, attempt: int = 1) -> dict[str, Any]:
        """What the agent of this attempt received (its prompt, ORCA_* env, cwd, pid)."""
        found: dict[str, Any] = json.loads(self.started(key, attempt).read_text())
        return found

    @property
    def command(self) -> list[str]:
        return [sys.executable, str(AGENTS / "graph_agent.py"), str(self.script)]
