"""Per-session git worktrees against a real orcad: where the session runs, what is recorded,
what a failure looks like, the agent config default, restarts, and `clean`.

Each test makes its own repository (`git init` + one commit); the agent (tests/agents/
wt_agent.py) prints its working directory and `git rev-parse --abbrev-ref HEAD`.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DaemonProcess, agent, events_of, output_of, wait_until
from support.homes import write_config
from support.worktrees import gate_checkout, git, make_repo

from orca_client.client import RequestFailed
from orca_client.views import SessionInfo, WorktreeInfo
from orca_client.wire import Cancel, Clean, CleanResult, RunStarted, StartRun


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


def start(daemon: DaemonProcess, cwd: Path, *args: str, **kwargs: object) -> RunStarted:
    """A run of wt_agent.py with `args`, in `cwd`."""
    request = StartRun(cwd=str(cwd), command=agent("wt_agent.py", *args), **kwargs)  # type: ignore[arg-type]
    with daemon.client() as client:
        started: RunStarted = client.request(request)
    return started


def session_of(daemon: DaemonProcess, run_id: str) -> SessionInfo:
    sessions = daemon.status(run_id).sessions
    assert len(sessions) == 1, sessions
    return sessions[0]


def tree_path(daemon: DaemonProcess, started: RunStarted) -> Path:
    """Where orcad puts the worktree of a run's first session."""
    assert started.session_id is not None
    return daemon.paths.state_dir / "runs" / started.run_id / started.session_id


def reported(daemon: DaemonProcess, run_id: str) -> dict[str, str]:
    """What wt_agent.py printed: its `cwd=` and `branch=` lines."""
    lines = output_of(daemon, run_id).splitlines()
    return dict(line.split("=", 1) for line in lines if line.startswith(("cwd=", "branch=")))


def worktrees_of(repo: Path) -> list[str]:
    listing = git(repo, "worktree", "list", "--porcelain").stdout
    return [line.split(" ", 1)[1] for line in listing.splitlines() if line.startswith("worktree ")]


def branch_exists(repo: Path, branch: str) -> bool:
    return (
        git(
            repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}", check=False
        ).returncode
        == 0
    )


def types_of(daemon: DaemonProcess, run_id: str) -> list[str]:
    return [e["type"] for e in events_of(daemon, run_id)]


def clean(daemon: DaemonProcess, run_id: str) -> CleanResult:
    with daemon.client() as client:
        result: CleanResult = client.request(Clean(run_id=run_id))
    return result


# --------------------------------------------------------------------------- creation


def test_session_runs_in_a_new_worktree_on_its_own_branch(
    daemon: DaemonProcess, repo: Path
) -> None:
    started = start(daemon, repo / "sub", worktree=True)
    assert daemon.wait_for_run(started.run_id).status == "completed"
    path = tree_path(daemon, started)
    branch = f"orca/{started.run_id}/{started.session_id}"

    # The agent ran in the same subdirectory of a new worktree, on the session's branch.
    seen = reported(daemon, started.run_id)
    assert seen == {"cwd": str(path / "sub"), "branch": branch}, output_of(daemon, started.run_id)
    assert str(path) in worktrees_of(repo)
    assert branch_exists(repo, branch)
    assert git(path, "rev-parse", "HEAD").stdout == git(repo, "rev-parse", "HEAD").stdout
    # The main checkout is untouched: still on main.
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip() == "main"

    # WorktreeCreated is recorded, with what was made, before the session started.
    events = events_of(daemon, started.run_id)
    types = [e["type"] for e in events]
    assert types.count("worktree_created") == 1
    assert types.index("worktree_created") < types.index("session_started"), types
    created = events[types.index("worktree_created")]
    assert created["session_id"] == started.session_id
    assert (created["repo"], created["path"], created["branch"]) == (str(repo), str(path), branch)

    # Status shows it.
    session = session_of(daemon, started.run_id)
    assert session.in_worktree
    assert session.worktree == WorktreeInfo(repo=str(repo), path=str(path), branch=branch)
    assert session.cwd == str(repo / "sub")  # what was asked for; the worktree says where


def test_a_file_the_agent_writes_lands_in_the_worktree_not_the_main_checkout(
    daemon: DaemonProcess, repo: Path
) -> None:
    started = start(daemon, repo, "--write", "made-by-agent.txt", worktree=True)
    assert daemon.wait_for_run(started.run_id).status == "completed"
    path = tree_path(daemon, started)
    written = path / "made-by-agent.txt"
    assert written.read_text() == f"written by {started.session_id}\n"
    assert not (repo / "made-by-agent.txt").exists()
    assert git(repo, "status", "--porcelain").stdout == ""
    assert git(path, "status", "--porcelain").stdout == "?? made-by-agent.txt\n"


def test_without_worktree_the_session_runs_in_the_main_checkout(
    daemon: DaemonProcess, repo: Path
) -> None:
    started = start(daemon, repo, "--write", "plain.txt")
    assert daemon.wait_for_run(started.run_id).status == "completed"
    assert reported(daemon, started.run_id) == {"cwd": str(repo), "branch": "main"}
    assert (repo / "plain.txt").exists()
    session = session_of(daemon, started.run_id)
    assert not session.in_worktree and session.worktree is None
    assert "worktree_created" not in types_of(daemon, started.run_id)
    assert worktrees_of(repo) == [str(repo)]


def test_worktree_outside_a_git_repository_fails_the_session_clearly(
    daemon: DaemonProcess, tmp_path: Path, repo: Path
) -> None:
    plain = tmp_path / "not-a-repo"
    plain.mkdir()
    started = start(daemon, plain, "--write", "nope.txt", worktree=True)
    run = daemon.wait_for_run(started.run_id)
    assert run.status == "failed"
    session = session_of(daemon, started.run_id)
    assert session.status == "failed"
    assert session.reason is not None
    assert "could not create its worktree" in session.reason, session.reason
    assert f"{plain} is not inside a git repository" in session.reason, session.reason
    assert session.pid is None and session.worktree is None
    types = types_of(daemon, started.run_id)
    assert "session_started" not in types and "worktree_created" not in types, types
    assert not (plain / "nope.txt").exists()  # the agent never ran

    # orcad is fine: the next worktree run works.
    again = start(daemon, repo, worktree=True)
    assert daemon.wait_for_run(again.run_id).status == "completed"
    assert reported(daemon, again.run_id)["branch"] == f"orca/{again.run_id}/{again.session_id}"


def test_worktree_needs_a_commit_that_holds_the_sessions_directory(
    daemon: DaemonProcess, tmp_path: Path, repo: Path
) -> None:
    """A worktree is a checkout of HEAD: an untracked directory, or a repository without a
    commit, fails the session with what is wrong (not a confusing spawn error)."""
    untracked = repo / "build"
    untracked.mkdir()
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    cases = {
        untracked: "build is not a directory in the HEAD commit of",
        empty: "has no commit yet",
    }
    for cwd, expected in cases.items():
        started = start(daemon, cwd, worktree=True)
        assert daemon.wait_for_run(started.run_id).status == "failed"
        session = session_of(daemon, started.run_id)
        assert session.reason is not None and expected in session.reason, session.reason
        assert session.pid is None
        assert not tree_path(daemon, started).exists()
    assert worktrees_of(repo) == [str(repo)]
    assert git(repo, "branch", "--list", "orca/*").stdout == ""


def test_agent_config_worktree_is_the_default_and_an_explicit_false_wins(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repo: Path
) -> None:
    command = json.dumps(agent("wt_agent.py"))
    write_config(
        orca_home,
        f'[agents.isolated]\nadapter = "command"\ncommand = {command}\nworktree = true\n\n'
        f'[agents.shared]\nadapter = "command"\ncommand = {command}\n',
    )
    daemon = make_daemon().start()

    def run(agent_name: str, **kwargs: object) -> RunStarted:
        request = StartRun(cwd=str(repo), agent=agent_name, prompt="go", **kwargs)  # type: ignore[arg-type]
        with daemon.client() as client:
            started: RunStarted = client.request(request)
        assert daemon.wait_for_run(started.run_id).status == "completed"
        return started

    by_default = run("isolated")
    seen = reported(daemon, by_default.run_id)
    assert seen["branch"] == f"orca/{by_default.run_id}/{by_default.session_id}"
    assert seen["cwd"] == str(tree_path(daemon, by_default))
    assert session_of(daemon, by_default.run_id).in_worktree

    opted_out = run("isolated", worktree=False)
    assert reported(daemon, opted_out.run_id) == {"cwd": str(repo), "branch": "main"}
    session = session_of(daemon, opted_out.run_id)
    assert not session.in_worktree and session.worktree is None

    not_configured = run("shared")
    assert reported(daemon, not_configured.run_id) == {"cwd": str(repo), "branch": "main"}

    opted_in = run("shared", worktree=True)
    assert reported(daemon, opted_in.run_id)["branch"] == (
        f"orca/{opted_in.run_id}/{opted_in.session_id}"
    )
    assert sorted(worktrees_of(repo)) == sorted(
        [str(repo), str(tree_path(daemon, by_default)), str(tree_path(daemon, opted_in))]
    )


# --------------------------------------------------------------------------- restart


def test_restart_reports_a_recorded_worktree_that_was_deleted(
    make_daemon: Callable[..., DaemonProcess], repo: Path
) -> None:
    daemon = make_daemon().start()
    deleted = start(daemon, repo, worktree=True)
    kept = start(daemon, repo, worktree=True)
    for started in (deleted, kept):
        assert daemon.wait_for_run(started.run_id).status == "completed"
    assert daemon.stop() == 0

    gone = tree_path(daemon, deleted)
    shutil.rmtree(gone)
    before = len(daemon.output())
    daemon = make_daemon().start()

    message = (
        f"worktree {gone} of session {deleted.session_id} "
        f"(branch orca/{deleted.run_id}/{deleted.session_id}) no longer exists"
    )
    wait_until(lambda: message in daemon.output()[before:], what="the missing worktree reported")
    assert str(tree_path(daemon, kept)) not in daemon.output()[before:]
    # Still recorded as not removed, and orcad serves on.
    assert session_of(daemon, deleted.run_id).worktree == WorktreeInfo(
        repo=str(repo), path=str(gone), branch=f"orca/{deleted.run_id}/{deleted.session_id}"
    )

    # `clean` notes it was already gone, and prunes git's record of it.
    result = clean(daemon, deleted.run_id)
    assert result.removed == [] and result.already_gone == [str(gone)]
    assert str(gone) not in worktrees_of(repo)
    assert session_of(daemon, deleted.run_id).worktree.removed  # type: ignore[union-attr]
    assert branch_exists(repo, f"orca/{deleted.run_id}/{deleted.session_id}")


# --------------------------------------------------------------------------- clean


def test_clean_refuses_a_live_run(daemon: DaemonProcess, repo: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    started = start(daemon, repo, "--wait", str(go), worktree=True)
    wait_until(
        lambda: "branch=" in output_of(daemon, started.run_id), what="the agent to be running"
    )
    with pytest.raises(RequestFailed) as refused:
        clean(daemon, started.run_id)
    assert refused.value.code == "invalid_state"
    assert "running" in str(refused.value) and f"orca cancel {started.run_id}" in str(refused.value)
    path = tree_path(daemon, started)
    assert path.is_dir() and str(path) in worktrees_of(repo)
    assert "worktree_removed" not in types_of(daemon, started.run_id)
    assert not session_of(daemon, started.run_id).worktree.removed  # type: ignore[union-attr]

    go.touch()
    assert daemon.wait_for_run(started.run_id).status == "completed"


def test_clean_removes_an_ended_runs_worktree_keeps_its_branch_and_can_run_twice(
    daemon: DaemonProcess, repo: Path
) -> None:
    # The agent leaves an untracked file behind: clean removes the worktree anyway.
    started = start(daemon, repo, "--write", "left-over.txt", worktree=True)
    assert daemon.wait_for_run(started.run_id).status == "completed"
    path = tree_path(daemon, started)
    branch = f"orca/{started.run_id}/{started.session_id}"
    assert (path / "left-over.txt").exists()

    # A prefix of the run id will do, as for other requests.
    result = clean(daemon, started.run_id[:8])
    assert result == CleanResult(
        run_id=started.run_id, removed=[str(path)], already_gone=[], branches_kept=[branch]
    )
    assert not path.exists()
    assert str(path) not in worktrees_of(repo)
    assert branch_exists(repo, branch)
    removed = [e for e in events_of(daemon, started.run_id) if e["type"] == "worktree_removed"]
    assert len(removed) == 1, removed
    assert removed[0]["session_id"] == started.session_id and removed[0]["path"] == str(path)
    assert session_of(daemon, started.run_id).worktree == WorktreeInfo(
        repo=str(repo), path=str(path), branch=branch, removed=True
    )
    # The main checkout is as it was.
    assert git(repo, "status", "--porcelain").stdout == ""

    # Twice: nothing to do, nothing recorded, no error.
    assert clean(daemon, started.run_id) == CleanResult(
        run_id=started.run_id, removed=[], already_gone=[], branches_kept=[]
    )
    assert types_of(daemon, started.run_id).count("worktree_removed") == 1
    assert branch_exists(repo, branch)


def test_clean_of_a_run_without_worktrees_or_of_an_unknown_run(
    daemon: DaemonProcess, repo: Path
) -> None:
    started = start(daemon, repo)
    assert daemon.wait_for_run(started.run_id).status == "completed"
    assert clean(daemon, started.run_id) == CleanResult(
        run_id=started.run_id, removed=[], already_gone=[], branches_kept=[]
    )
    with pytest.raises(RequestFailed) as unknown:
        clean(daemon, "no-such-run")
    assert unknown.value.code == "not_found"


def test_clean_says_so_when_the_repository_is_gone(daemon: DaemonProcess, repo: Path) -> None:
    started = start(daemon, repo, worktree=True)
    assert daemon.wait_for_run(started.run_id).status == "completed"
    path = tree_path(daemon, started)
    shutil.rmtree(repo)
    with pytest.raises(RequestFailed) as failed:
        clean(daemon, started.run_id)
    assert failed.value.code == "internal"
    assert f"its repository {repo} no longer exists; remove {path} by hand" in str(failed.value)
    assert path.is_dir()
    assert "worktree_removed" not in types_of(daemon, started.run_id)


# ---------------------------------------------------------- cancel or stop while it is made


def test_a_session_cancelled_while_its_worktree_is_made_never_starts(
    daemon: DaemonProcess, repo: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate_checkout(repo, gate)
    started = start(daemon, repo, "--write", "marker.txt", worktree=True)
    path = tree_path(daemon, started)
    wait_until(path.exists, what="git worktree add to be under way")
    with daemon.client() as client:
        client.request(Cancel(run_id=started.run_id))
    gate.touch()
    wait_until((tmp_path / "gate.passed").exists, what="git worktree add to be done")
    time.sleep(1.0)
    session = session_of(daemon, started.run_id)
    assert session.status == "cancelled"
    assert not (path / "marker.txt").exists(), "the cancelled session's agent ran"
    assert "output_appended" not in types_of(daemon, started.run_id)
    # Either recorded (so that clean removes it) or removed.
    assert session.worktree is not None or not path.exists()


def test_orcad_stops_promptly_when_stopped_while_a_worktree_is_made(
    daemon: DaemonProcess, repo: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    gate_checkout(repo, gate)
    started = start(daemon, repo, "--wait", str(tmp_path / "never"), worktree=True)
    wait_until(tree_path(daemon, started).exists, what="git worktree add to be under way")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping" in daemon.output(), what="orcad to begin stopping")
    gate.touch()
    try:
        assert daemon.process.wait(4) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("orcad still runs 4 s after SIGTERM: it waits for an agent it started late")


def test_clean_removes_a_worktree_that_a_crash_kept_out_of_the_log(
    daemon: DaemonProcess, repo: Path
) -> None:
    started = start(daemon, repo, worktree=True)
    assert daemon.wait_for_run(started.run_id).status == "completed"
    recorded = tree_path(daemon, started)
    # As `git worktree add` leaves it when orcad dies before recording WorktreeCreated:
    lost = recorded.parent / f"{started.run_id}.9"
    git(repo, "worktree", "add", "-q", "-b", f"orca/{started.run_id}/lost", str(lost), "HEAD")
    assert str(lost) in worktrees_of(repo)

    result = clean(daemon, started.run_id)
    assert result.removed == [str(recorded), str(lost)]
    assert not lost.exists() and str(lost) not in worktrees_of(repo)
    assert branch_exists(repo, f"orca/{started.run_id}/lost")  # branches are kept
