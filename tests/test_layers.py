"""The layout follows the data: agents -> sessions -> log -> state -> reactions -> socket ->
client, and imports only go down. Checked from the source (every import statement, including
those inside functions), so a new upward import fails here, not in review."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

UPPER = {
    "orca_daemon.runs",
    "orca_daemon.orchestration",
    "orca_daemon.socket",
    "orca_daemon.main",
}
"""Runs, reactions, the socket and the composition root: nothing below them may import them."""
LOWER = ["orca_daemon/agents", "orca_daemon/sessions", "orca_daemon/log", "orca_daemon/state"]
LOWER += ["orca_daemon/limits.py"]


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def files(*places: str) -> list[Path]:
    found: list[Path] = []
    for place in places:
        path = REPO / place
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def test_the_client_never_imports_the_daemon() -> None:
    upward = {
        str(path.relative_to(REPO)): sorted(m for m in imports_of(path) if "orca_daemon" in m)
        for path in files("orca_client")
    }
    assert {path: found for path, found in upward.items() if found} == {}


def test_agents_sessions_the_log_and_the_state_never_import_what_sits_above_them() -> None:
    upward = {
        str(path.relative_to(REPO)): sorted(
            m for m in imports_of(path) if any(m == u or m.startswith(u + ".") for u in UPPER)
        )
        for path in files(*LOWER)
    }
    assert {path: found for path, found in upward.items() if found} == {}


def test_the_checks_see_real_imports() -> None:
    """Guard the guard: the parser finds what these modules do import, nested ones included."""
    assert "orca_client.events" in imports_of(REPO / "orca_daemon/log/store.py")
    assert "orca_daemon.runs.launcher" in imports_of(REPO / "orca_daemon/orchestration/fanout.py")
