"""Git worktrees for sessions: one per session, on a branch named after its run and session.

Blocking (they run `git`): call them off the event loop.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT_SECONDS = 60.0


class WorktreeError(Exception):
    """git could not create or remove a worktree; the message has git's own words."""


@dataclass(frozen=True)
class Worktree:
    repo: str
    """The repository's top-level directory."""
    path: str
    """The worktree's directory; a session in a subdirectory of the repository runs in the
    same subdirectory of its worktree."""
    branch: str
    cwd: str


def branch_name(run_id: str, session_id: str) -> str:
    return f"orca/{run_id}/{session_id}"


def _git(args: list[str], cwd: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        raise WorktreeError("git is not installed (needed for --worktree)") from None
    except subprocess.TimeoutExpired:
        raise WorktreeError(f"git {args[0]} timed out after {GIT_TIMEOUT_SECONDS:g}s") from None
    if done.returncode != 0:
        raise WorktreeError(f"git {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout.strip()


def repository_of(cwd: str) -> str:
    """The top-level directory of the git repository that holds `cwd`."""
    try:
        return _git(["rev-parse", "--show-toplevel"], cwd)
    except WorktreeError:
        raise WorktreeError(f"{cwd} is not inside a git repository; a worktree needs one") from None


def create_worktree(cwd: str, root: Path, run_id: str, session_id: str) -> Worktree:
    """`git worktree add -b orca/RUN/SESSION ROOT/RUN/SESSION HEAD` for the repo of `cwd`."""
    repo = repository_of(cwd)
    path = root / run_id / session_id
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    branch = branch_name(run_id, session_id)
    if not path.exists():
        _git(["worktree", "add", "-b", branch, str(path), "HEAD"], repo)
    inside = Path(cwd).resolve().relative_to(Path(repo).resolve())
    return Worktree(repo=repo, path=str(path), branch=branch, cwd=str(path / inside))


def remove_worktree(repo: str, path: str) -> bool:
    """Remove a worktree (its branch stays); False when it was already gone."""
    if not Path(path).exists():
        if Path(repo).is_dir():
            _git(["worktree", "prune"], repo)
        return False
    _git(["worktree", "remove", "--force", path], repo)
    return True
