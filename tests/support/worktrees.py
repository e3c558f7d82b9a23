"""Git repositories for tests of per-session worktrees."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Orca Test",
    "GIT_AUTHOR_EMAIL": "orca@example.invalid",
    "GIT_COMMITTER_NAME": "Orca Test",
    "GIT_COMMITTER_EMAIL": "orca@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **GIT_ENV, "HOME": str(repo.parent)}
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=check
    )


def make_repo(path: Path) -> Path:
    """A repository on branch `main` with one commit: README and sub/notes.txt."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README").write_text("main checkout\n")
    (path / "sub").mkdir()
    (path / "sub" / "notes.txt").write_text("notes\n")
    git(path, "add", "README", "sub/notes.txt")
    git(path, "commit", "-q", "-m", "first")
    return path.resolve()


def gate_checkout(repo: Path, gate: Path) -> None:
    """Make `git worktree add` in `repo` wait until `gate` exists (its post-checkout hook,
    which then makes `gate.passed`)."""
    hook = repo / ".git" / "hooks" / "post-checkout"
    passed = gate.with_name(gate.name + ".passed")
    hook.write_text(f"#!/bin/sh\nwhile [ ! -e '{gate}' ]; do sleep 0.02; done\ntouch '{passed}'\n")
    hook.chmod(0o755)
