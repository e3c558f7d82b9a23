"""Parent and child runs over configured repositories (seed 000), end to end: a real orcad with
`[[repos]]` in its config.toml pointing at temporary directories, `StartRun` requests on its
socket, and children running tests/agents/graph_agent.py, which does what each test scripts for
its repository ($ORCA_REPO) and records where it ran.

Order and concurrency are checked from the event log (every stream, in position order).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, all_events, process_exists, wait_until
from support.graph_script import GraphScript
from support.homes import write_config

from orca_client.client import RequestFailed
from orca_client.views import RunInfo, StatusResult
from orca_client.wire import Answer, Cancel, CancelResult, RunStarted, StartRun, Status
from orca_daemon.config import RepoSettings
from orca_daemon.orchestration.parents import resolve_repositories


@pytest.fixture
def log_env(any_log_env: dict[str, str]) -> dict[str, str]:
    """Every test here runs on the SQLite log and on a PostgreSQL one."""
    return any_log_env


HANG: list[dict[str, Any]] = [{"hang": True}]
FAIL: list[dict[str, Any]] = [{"result": {"outcome": "failed", "error": "it broke"}}]


# --------------------------------------------------------------------------- helpers


class Repos(GraphScript):
    """Repository directories, and what the child run in each one does."""

    def path(self, name: str) -> Path:
        path = self.root / "repos" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def repo_steps(self, steps: dict[str, list[dict[str, Any]]]) -> None:
        """What the child in each repository does (by repository name)."""
        self.steps({repo: {"*": repo_steps} for repo, repo_steps in steps.items()})

    def config(self, *repos: dict[str, Any]) -> str:
        """config.toml with these `[[repos]]` (each: name, and any other key; path made)."""
        lines = []
        for repo in repos:
            lines.append("[[repos]]")
            values = {"path": str(self.path(repo["name"])), **repo}
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        return "\n".join(lines) + "\n"


@pytest.fixture
def repos(tmp_path: Path) -> Repos:
    return Repos(tmp_path)


def configured(
    make_daemon: Callable[..., DaemonProcess], home: Path, repos: Repos, *names: str
) -> DaemonProcess:
    write_config(home, repos.config(*({"name": name} for name in names)))
    return make_daemon().start()


def start(daemon: DaemonProcess, bench: Repos, **extra: Any) -> RunStarted:
    request = StartRun(cwd=str(bench.work), command=bench.command, **extra)
    with daemon.client() as client:
        started: RunStarted = client.request(request)
    return started


def refused(daemon: DaemonProcess, request: Any) -> RequestFailed:
    with daemon.client() as client, pytest.raises(RequestFailed) as error:
        client.request(request)
    return error.value


def tree(daemon: DaemonProcess, run_id: str) -> StatusResult:
    with daemon.client() as client:
        result: StatusResult = client.request(Status(run_id=run_id, tree=True))
    return result


def children(daemon: DaemonProcess, parent_id: str) -> list[RunInfo]:
    return tree(daemon, parent_id).runs[1:]


def lifetimes(daemon: DaemonProcess, parent_id: str) -> dict[str, tuple[int, int | None]]:
    """Each child run, in the order they were created: the log positions of its creation and
    of its end (None while it runs)."""
    spans: dict[str, tuple[int, int | None]] = {}
    for position, event in all_events(daemon):
        if event["type"] == "run_created" and event.get("parent_run_id") == parent_id:
            spans[event["run_id"]] = (position, None)
        elif (
            event["type"] == "run_status_changed"
            and event["run_id"] in spans
            and event["status"] in ("completed", "failed", "cancelled")
        ):
            spans[event["run_id"]] = (spans[event["run_id"]][0], position)
    return spans


def most_live(daemon: DaemonProcess, parent_id: str) -> int:
    """The most child runs that were live at the same time, from the log."""
    changes = []
    for created, ended in lifetimes(daemon, parent_id).values():
        changes.append((created, 1))
        if ended is not None:
            changes.append((ended, -1))
    live = most = 0
    for _, change in sorted(changes):
        live += change
        most = max(most, live)
    return most


def parent_statuses(daemon: DaemonProcess, parent_id: str) -> list[tuple[int, str]]:
    """The parent's status changes, with their log positions."""
    return [
        (position, event["status"])
        for position, event in all_events(daemon)
        if event["type"] == "run_status_changed" and event["run_id"] == parent_id
    ]


# --------------------------------------------------------------------------- resolution (unit)


def repo(name: str, **extra: Any) -> RepoSettings:
    return RepoSettings(name=name, path=f"/srv/{name}", **extra)


REPOS = [
    repo("r1", projects=["p"], features=["f"]),
    repo("r2", projects=["p"]),
    repo("r3", projects=["q"], features=["f"]),
    repo("r4", enabled=False, projects=["p", "lone"], features=["f", "g"]),
]


def names(found: list[RepoSettings]) -> list[str]:
    return [r.name for r in found]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"names": ["r3"]}, ["r3"]),
        ({"names": ["r3", "r1", "r3"], "project": "p", "feature": "f"}, ["r3", "r1"]),
        ({"feature": "f"}, ["r1", "r3"]),
        ({"feature": "f", "project": "q"}, ["r1", "r3"]),
        ({"feature": "g", "project": "q"}, ["r3"]),
        ({"project": "p"}, ["r1", "r2"]),
        ({"project": "lone"}, ["r1", "r2", "r3"]),
        ({}, ["r1", "r2", "r3"]),
    ],
)
def test_resolution_order_named_then_feature_then_project_then_all_enabled(
    given: dict[str, Any], expected: list[str]
) -> None:
    arguments: dict[str, Any] = {"names": [], "project": None, "feature": None, **given}
    assert names(resolve_repositories(REPOS, **arguments)) == expected


def test_resolution_with_nothing_to_run_in_is_an_error_saying_what_to_do() -> None:
    disabled = [repo("r4", enabled=False, projects=["X"])]
    for configured_repos in ([], disabled):
        with pytest.raises(ValueError) as error:
            resolve_repositories(configured_repos, names=[], project="X", feature=None)
        assert str(error.value) == (
            "no repositories configured for project X: pass --repo or add [[repos]] to config.toml"
        )
    with pytest.raises(ValueError, match=r"^no repositories configured: pass --repo"):
        resolve_repositories([], names=[], project=None, feature=None)
    with pytest.raises(ValueError) as error:
        resolve_repositories(REPOS, names=["r1", "zz"], project=None, feature=None)
    assert str(error.value) == (
        "no repository named 'zz' in config.toml (configured: r1, r2, r3, r4)"
    )


# --------------------------------------------------------------------------- resolution (e2e)


def test_runs_resolve_their_repositories_from_the_config(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    write_config(
        orca_home,
        repos.config(
            {"name": "r1", "projects": ["p"], "features": ["f"]},
            {"name": "r2", "projects": ["p"]},
            {"name": "r3", "projects": ["q"], "features": ["f"]},
            {"name": "r4", "enabled": False, "projects": ["p"], "features": ["f"]},
        ),
    )
    daemon = make_daemon().start()

    # One repository: a single run in it, no parent.
    single = start(daemon, repos, repos=["r3"])
    assert single.session_id is not None and single.child_run_ids == []
    run = daemon.wait_for_run(single.run_id)
    assert run.status == "completed", run
    assert (run.kind, run.repo, run.cwd, run.parent_run_id) == (
        "single",
        "r3",
        str(repos.path("r3")),
        None,
    )
    assert repos.seen("r3")["cwd"] == str(repos.path("r3"))
    assert repos.seen("r3")["env"]["ORCA_REPO"] == "r3"
    assert tree(daemon, single.run_id).runs == [run]

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"repos": ["r2", "r1"]}, ["r2", "r1"]),
        ({"feature": "f", "project": "q"}, ["r1", "r3"]),
        ({"project": "p"}, ["r1", "r2"]),
        ({"project": "nobody"}, ["r1", "r2", "r3"]),
        ({"mode": "plan"}, ["r1", "r2", "r3"]),
    ]
    parents = [(start(daemon, repos, **given), expected) for given, expected in cases]
    for started, expected in parents:
        assert started.session_id is None
        assert started.child_run_ids == [f"{started.run_id}-{n + 1}" for n in range(len(expected))]
        parent = daemon.wait_for_run(started.run_id)
        assert parent.status == "completed", parent
        assert parent.kind == "parent"
        kids = children(daemon, started.run_id)
        assert [(k.repo, k.cwd) for k in kids] == [(r, str(repos.path(r))) for r in expected]
        assert all(k.status == "completed" for k in kids)

    # A repository that is not configured: refused, naming it, and nothing recorded.
    head = daemon.status().head_position
    error = refused(daemon, StartRun(cwd=str(repos.work), command=repos.command, repos=["zz"]))
    assert error.code == "bad_request"
    assert str(error) == "no repository named 'zz' in config.toml (configured: r1, r2, r3, r4)"
    assert daemon.status().head_position == head


def test_no_repository_to_run_in_is_a_clear_error_and_nothing_starts(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    write_config(
        orca_home,
        repos.config(
            {"name": "off", "enabled": False, "projects": ["X"]},
            {"name": "gone", "enabled": False, "path": str(repos.root / "missing")},
        ),
    )
    daemon = make_daemon().start()
    for given in ({"project": "X"}, {"project": "X", "feature": "f"}, {"mode": "plan"}):
        request = StartRun(cwd=str(repos.work), command=repos.command, **given)
        error = refused(daemon, request)
        assert error.code == "bad_request"
        assert "no repositories configured" in str(error)
        assert str(error).endswith(": pass --repo or add [[repos]] to config.toml")
    error = refused(daemon, StartRun(cwd=str(repos.work), command=repos.command, project="X"))
    assert str(error) == (
        "no repositories configured for project X: pass --repo or add [[repos]] to config.toml"
    )
    error = refused(daemon, StartRun(cwd=str(repos.work), command=repos.command, repos=["gone"]))
    assert str(error) == f"repository gone: {repos.root / 'missing'} is not a directory"
    status = daemon.status()
    assert status.runs == [] and status.head_position == 0
    assert list(repos.record.iterdir()) == []


# --------------------------------------------------------------------------- parallel


def test_parallel_children_one_per_repository_and_the_parent_completes_with_them(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    daemon = configured(make_daemon, orca_home, repos, "a", "b", "c")
    # Each child waits until all three have started: they run at the same time.
    repos.repo_steps(
        {name: [{"wait_file": str(repos.started(x))} for x in "abc"] for name in "abc"}
    )
    started = start(daemon, repos, repos=["a", "b", "c"], prompt="fix it")
    parent_id = started.run_id
    parent = daemon.wait_for_run(parent_id)
    assert parent.status == "completed", parent
    assert parent.reason == "all 3 child runs completed"
    assert parent.orchestration_mode == "parallel"
    assert parent.child_run_ids == [f"{parent_id}-1", f"{parent_id}-2", f"{parent_id}-3"]

    result = tree(daemon, parent_id)
    assert [r.run_id for r in result.runs] == [parent_id, *parent.child_run_ids]
    kids = result.runs[1:]
    assert [(k.parent_run_id, k.repo, k.status, k.prompt) for k in kids] == [
        (parent_id, name, "completed", "fix it") for name in "abc"
    ]
    assert sorted(s.run_id for s in result.sessions) == parent.child_run_ids
    for kid in kids:
        assert kid.repo is not None
        seen = repos.seen(kid.repo)
        assert seen["cwd"] == str(repos.path(kid.repo))
        assert seen["env"]["ORCA_RUN_ID"] == kid.run_id
        assert seen["env"]["ORCA_REPO"] == kid.repo
    # Without tree, the parent alone.
    assert [r.run_id for r in daemon.status(parent_id).runs] == [parent_id]

    # The parent completed after its last child ended, and only then.
    ends = [ended for _, ended in lifetimes(daemon, parent_id).values()]
    assert most_live(daemon, parent_id) == 3
    statuses = parent_statuses(daemon, parent_id)
    assert [s for _, s in statuses] == ["running", "completed"]
    assert all(end is not None and end < statuses[-1][0] for end in ends)


def test_parallel_parent_fails_when_a_child_fails(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    daemon = configured(make_daemon, orca_home, repos, "a", "b", "c")
    repos.repo_steps({"b": FAIL})
    parent_id = start(daemon, repos, repos=["a", "b", "c"]).run_id
    parent = daemon.wait_for_run(parent_id)
    assert parent.status == "failed"
    assert parent.reason == f"child runs that did not complete: {parent_id}-2 (b: failed)"
    assert [(k.repo, k.status) for k in children(daemon, parent_id)] == [
        ("a", "completed"),
        ("b", "failed"),
        ("c", "completed"),
    ]
    ends = [ended for _, ended in lifetimes(daemon, parent_id).values()]
    (failed_at,) = [p for p, s in parent_statuses(daemon, parent_id) if s == "failed"]
    assert all(end is not None and end < failed_at for end in ends)


def test_max_parallel_children_is_never_exceeded(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    daemon = configured(make_daemon, orca_home, repos, *"abcde")
    go = repos.root / "go"
    repos.repo_steps({name: [{"wait_file": str(go)}] for name in "abcde"})
    started = start(daemon, repos, project="p", max_parallel=2)
    parent_id = started.run_id
    assert started.child_run_ids == [f"{parent_id}-1", f"{parent_id}-2"]
    wait_until(lambda: repos.started("a").exists() and repos.started("b").exists())
    # Two children hold their places until `go`: no third may start meanwhile.
    assert [k.repo for k in children(daemon, parent_id)] == ["a", "b"]
    go.touch()
    parent = daemon.wait_for_run(parent_id)
    assert parent.status == "completed", parent
    assert [k.repo for k in children(daemon, parent_id)] == list("abcde")
    assert most_live(daemon, parent_id) == 2


def test_max_parallel_must_be_at_least_1(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    daemon = configured(make_daemon, orca_home, repos, "a", "b")
    for limit in (0, -1):
        error = refused(
            daemon,
            StartRun(cwd=str(repos.work), command=repos.command, project="p", max_parallel=limit),
        )
        assert (error.code, str(error)) == ("bad_request", "max_parallel must be at least 1")
    assert daemon.status().runs == []


# --------------------------------------------------------------------------- sequential


def test_sequential_children_run_one_at_a_time(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    daemon = configured(make_daemon, orca_home, repos, "a", "b", "c")
    started = start(daemon, repos, project="p", orchestration_mode="sequential")
    assert started.child_run_ids == [f"{started.run_id}-1"]
    parent = daemon.wait_for_run(started.run_id)
    assert parent.status == "completed", parent
    assert parent.orchestration_mode == "sequential"
    spans = list(lifetimes(daemon, started.run_id).values())
    assert len(spans) == 3
    for (_, ended), (next_created, _) in itertools.pairwise(spans):
        assert ended is not None and ended < next_created
    assert [k.repo for k in children(daemon, started.run_id)] == ["a", "b", "c"]


@pytest.mark.parametrize("continue_on_failure", [False, True])
def test_sequential_stops_at_a_failed_child_unless_asked_to_go_on(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    repos: Repos,
    continue_on_failure: bool,
) -> None:
    daemon = configured(make_daemon, orca_home, repos, "a", "b", "c")
    repos.repo_steps({"b": FAIL})
    parent_id = start(
        daemon,
        repos,
        repos=["a", "b", "c"],
        orchestration_mode="sequential",
        continue_on_failure=continue_on_failure,
    ).run_id
    parent = daemon.wait_for_run(parent_id)
    assert parent.status == "failed"
    reason = f"child runs that did not complete: {parent_id}-2 (b: failed)"
    kids = [(k.repo, k.status) for k in children(daemon, parent_id)]
    if continue_on_failure:
        assert parent.reason == reason
        assert kids == [("a", "completed"), ("b", "failed"), ("c", "completed")]
    else:
        assert (
            parent.reason == f"{reason}; 1 not started (sequential, stopped at the first failure)"
        )
        assert kids == [("a", "completed"), ("b", "failed")]
        assert not repos.started("c").exists()
    spans = list(lifetimes(daemon, parent_id).values())
    for (_, ended), (next_created, _) in itertools.pairwise(spans):
        assert ended is not None and ended < next_created


# --------------------------------------------------------------------------- cancel


@pytest.mark.parametrize("mode", ["parallel", "sequential"])
def test_cancelling_the_parent_cancels_its_live_children_and_starts_no_more(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos, mode: str
) -> None:
    daemon = configured(make_daemon, orca_home, repos, "a", "b", "c")
    repos.repo_steps({name: HANG for name in "abc"})
    parent_id = start(daemon, repos, project="p", max_parallel=2, orchestration_mode=mode).run_id
    live = ["a", "b"] if mode == "parallel" else ["a"]
    wait_until(lambda: all(repos.started(name).exists() for name in live), what="children")
    pids = [repos.seen(name)["pid"] for name in live]

    with daemon.client() as client:
        cancelled: CancelResult = client.request(Cancel(run_id=parent_id, reason="enough"))
    assert (cancelled.status, cancelled.already_terminal) == ("cancelled", False)
    for pid in pids:
        wait_until(lambda pid=pid: not process_exists(pid), what=f"child agent {pid} stopped")
    kids = wait_until(
        lambda: (
            (k := children(daemon, parent_id)) and all(c.status == "cancelled" for c in k) and k
        ),
        what="children cancelled",
    )
    assert [k.repo for k in kids] == live
    assert all(k.reason == "its parent run was cancelled: enough" for k in kids)
    parent = daemon.status(parent_id).runs[0]
    assert (parent.status, parent.reason) == ("cancelled", "enough")
    assert [s for _, s in parent_statuses(daemon, parent_id)] == ["running", "cancelled"]
    assert not repos.started("c").exists()
    with daemon.client() as client:
        again: CancelResult = client.request(Cancel(run_id=parent_id))
    assert (again.status, again.already_terminal) == ("cancelled", True)


# --------------------------------------------------------------------------- restarts


@pytest.mark.parametrize("interruption", ["cancelling stop", "reboot"])
def test_a_parent_whose_children_were_interrupted_ends_after_a_restart(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    repos: Repos,
    interruption: str,
) -> None:
    """The children end (a stop that ends sessions, or a reboot that kills orcad, the holders
    and the agents): the parent ends failed once orcad is back."""
    daemon = configured(make_daemon, orca_home, repos, "a", "b")
    repos.repo_steps({name: HANG for name in "ab"})
    parent_id = start(daemon, repos, project="p").run_id
    wait_until(lambda: repos.started("a").exists() and repos.started("b").exists())

    def starts_recorded() -> bool:  # (else the next orcad starts them: they never started)
        sessions = tree(daemon, parent_id).sessions
        return len(sessions) == 2 and all(s.status == "running" for s in sessions)

    wait_until(starts_recorded, "the children's starts to be in the log")
    if interruption == "reboot":
        daemon.crash_with_sessions()
    else:
        assert daemon.stop_ending_sessions() == 0
    daemon = make_daemon().start()
    parent = daemon.wait_for_run(parent_id, timeout=5)
    assert parent.status == "failed"
    assert [(k.repo, k.status) for k in children(daemon, parent_id)] == [
        ("a", "failed"),
        ("b", "failed"),
    ]


def test_answering_a_parent_points_to_the_child_that_waits(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, repos: Repos
) -> None:
    daemon = configured(make_daemon, orca_home, repos, "a", "b")
    repos.repo_steps({"a": [{"ask": [{"id": "q", "question": "Which branch?"}]}]})
    parent_id = start(daemon, repos, repos=["a", "b"], prompt="go").run_id
    waiting = f"{parent_id}-1"
    daemon.wait_for_run(waiting, frozenset({"waiting_for_answer"}))
    error = refused(daemon, Answer(run_id=parent_id, text="main"))
    assert error.code == "invalid_state"
    assert f"its child run {waiting} is: orca answer {waiting}" in str(error)
    with daemon.client() as client:
        client.request(Answer(run_id=waiting, text="main"))
    assert daemon.wait_for_run(parent_id).status == "completed"
