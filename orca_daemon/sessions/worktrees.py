"""Git worktrees for sessions: one per session, on a branch named after its run and session.

Blocking (they run `git`): call them off the event loop.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
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
    if not Path(cwd).is_dir():  # else subprocess's FileNotFoundError reads as "no git"
        raise WorktreeError(f"{cwd} is not a directory (any more)")
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


def create_worktree(
    cwd: str, root: Path, run_id: str, session_id: str, bases: Sequence[str] = ()
) -> Worktree:
    """`git worktree add -b orca/RUN/SESSION ROOT/RUN/SESSION HEAD` for the repo of `cwd`.

    With `bases` (branches: a plan task's dependencies' work), the worktree starts from the
    first and merges the others; a merge that conflicts removes the worktree and says so.
    """
    repo = repository_of(cwd)
    path = root / run_id / session_id
    branch = branch_name(run_id, session_id)
    inside = Path(cwd).resolve().relative_to(Path(repo).resolve())
    if path.exists():  # made before a restart, not yet recorded: only if it is that worktree
        if not _is_worktree_on(path, branch):
            raise WorktreeError(f"{path} exists but is not the worktree of branch {branch}")
        _abort_merge(str(path))  # a crash in the middle of one
    else:
        _check_head(repo, inside)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _git(["worktree", "add", "-b", branch, str(path), bases[0] if bases else "HEAD"], repo)
    try:
        for other in bases[1:]:
            if not _contains(str(path), other):  # (merged before a crash: not again)
                _merge(str(path), other)
    except WorktreeError as exc:
        _git(["worktree", "remove", "--force", str(path)], repo)
        _git(["branch", "-D", branch], repo)
        raise WorktreeError(
            f"the work of the tasks it depends on ({', '.join(bases)}) could not be merged: {exc}"
        ) from None
    return Worktree(repo=repo, path=str(path), branch=branch, cwd=str(path / inside))


QUIET_COMMIT = ["-c", "commit.gpgsign=false"]
"""orcad's own commits and merges are bookkeeping: never signed (no passphrase prompt), and run
with --no-verify (the user's hooks are for the user's commits)."""


def _merge(path: str, other: str) -> None:
    try:
        _git(
            [*_identity(path), *QUIET_COMMIT, "merge", "--no-edit", "--no-verify", "-q", other],
            path,
        )
    except WorktreeError as exc:
        conflicted = _git(["diff", "--name-only", "--diff-filter=U"], path).split()
        _abort_merge(path)
        if conflicted:
            raise WorktreeError(f"merging {other} conflicts in {', '.join(conflicted)}") from None
        raise exc


def _contains(path: str, other: str) -> bool:
    try:
        _git(["merge-base", "--is-ancestor", other, "HEAD"], path)
        return True
    except WorktreeError:
        return False


def _abort_merge(path: str) -> None:
    try:
        _git(["rev-parse", "--verify", "--quiet", "MERGE_HEAD"], path)
    except WorktreeError:
        return
    _git(["merge", "--abort"], path)


def commit_all(path: str, message: str) -> str | None:
    """Commit everything changed in the worktree at `path` (new files too) on its branch;
    the new commit's id, or None when nothing changed."""
    _git(["add", "-A"], path)
    if not _git(["status", "--porcelain"], path):
        return None
    _git([*_identity(path), *QUIET_COMMIT, "commit", "--no-verify", "-q", "-m", message], path)
    return _git(["rev-parse", "HEAD"], path)


def _identity(where: str) -> list[str]:
    """The git config that names a committer: none when the user has one, else Orca's."""
    try:
        _git(["config", "user.email"], where)
        return []
    except WorktreeError:
        return ["-c", "user.name=Orca", "-c", "user.email=orca@localhost"]


def _check_head(repo: str, inside: Path) -> None:
    """A worktree is a checkout of HEAD: there must be one, holding the session's directory."""
    try:
        _git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], repo)
    except WorktreeError:
        raise WorktreeError(f"{repo} has no commit yet; a worktree needs one") from None
    if inside == Path("."):
        return
    try:
        kind = _git(["cat-file", "-t", f"HEAD:{inside.as_posix()}"], repo)
    except WorktreeError:
        kind = ""
    if kind != "tree":
        raise WorktreeError(
            f"{inside} is not a directory in the HEAD commit of {repo} (untracked or ignored?), "
            "so a worktree would not have it"
        )


def _is_worktree_on(path: Path, branch: str) -> bool:
    try:
        top = _git(["rev-parse", "--show-toplevel"], str(path))
        head = _git(["rev-parse", "--abbrev-ref", "HEAD"], str(path))
    except WorktreeError:
        return False
    return Path(top).resolve() == path.resolve() and head == branch


def remove_unrecorded(folder: Path, recorded: set[str]) -> list[str]:
    """Remove the git worktrees in a run's folder that the log does not name (made just
    before a crash); their paths."""
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        if str(path) in recorded or not (path / ".git").is_file():
            continue
        common = Path(_git(["rev-parse", "--path-format=absolute", "--git-common-dir"], str(path)))
        _git(["worktree", "remove", "--force", str(path)], str(common.parent))
        removed.append(str(path))
    return removed


def remove_worktree(repo: str, path: str) -> bool:
    """Remove a worktree (its branch stays); False when it was already gone."""
    if not Path(repo).is_dir():
        if Path(path).exists():
            raise WorktreeError(f"its repository {repo} no longer exists; remove {path} by hand")
        return False
    if not Path(path).exists():
        _git(["worktree", "prune"], repo)
        return False
    _git(["worktree", "remove", "--force", path], repo)
    return True
