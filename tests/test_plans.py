"""Plans as task graphs, end to end: a real orcad runs `StartPlan` requests on its socket with a
configured command agent (tests/agents/graph_agent.py) that does what each test scripts for each
task and attempt, and records the prompt and environment each session got.

What is checked comes from the event log (order of task and session events), from `Status`, and
from what the agent itself received.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import (
    AGENTS,
    DaemonProcess,
    events_of,
    output_of,
    process_exists,
    records_of,
    wait_until,
)
from support.graph_script import GraphScript
from support.homes import write_config, write_log

from orca_client.client import RequestFailed, fetch_status
from orca_client.events import (
    LOST_REASON,
    PlanSpec,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    TaskStatusChanged,
)
from orca_client.plan import (
    Plan,
    PlanError,
    PlanTask,
    dependants_of,
    parse_plan,
    ready_tasks,
)
from orca_client.views import TERMINAL_STATUSES, RunInfo, StatusResult, TaskInfo
from orca_client.wire import (
    Answer,
    Cancel,
    RetryTask,
    RunStarted,
    StartPlan,
    StartRun,
    Status,
    TaskRetried,
)


@pytest.fixture
def log_env(any_log_env: dict[str, str]) -> dict[str, str]:
    """Every test here runs on the SQLite log and on a PostgreSQL one."""
    return any_log_env


STOPPED = "orcad stopped while the session was running"
HANG: list[dict[str, Any]] = [{"hang": True}]


# --------------------------------------------------------------------------- helpers


Bench = GraphScript


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path)


def configure(home: Path, bench: Bench, extra: str = "") -> None:
    command = bench.command
    write_config(
        home, f'[agents.task]\nadapter = "command"\ncommand = {json.dumps(command)}\n{extra}'
    )


@pytest.fixture
def plan_daemon(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, bench: Bench
) -> DaemonProcess:
    configure(orca_home, bench)
    return make_daemon().start()


def task(task_id: str, *depends_on: str, **extra: Any) -> PlanTask:
    return PlanTask(id=task_id, prompt=f"do {task_id}", depends_on=list(depends_on), **extra)


def start_plan(daemon: DaemonProcess, bench: Bench, *tasks: PlanTask, **extra: Any) -> str:
    extra.setdefault("agent", "task")
    request = StartPlan(
        cwd=str(bench.work), plan=Plan(title="test plan", tasks=list(tasks)), **extra
    )
    with daemon.client() as client:
        started: RunStarted = client.request(request)
    assert started.session_id is None
    return started.run_id


def refused(daemon: DaemonProcess, request: Any) -> RequestFailed:
    with daemon.client() as client, pytest.raises(RequestFailed) as error:
        client.request(request)
    return error.value


def positioned(daemon: DaemonProcess, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    return [(r.position, msgspec.json.decode(r.event)) for r in records_of(daemon, run_id)]


def task_moves(daemon: DaemonProcess, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    return [(p, e) for p, e in positioned(daemon, run_id) if e["type"] == "task_status_changed"]


def where(moves: list[tuple[int, dict[str, Any]]], task_id: str, status: str, n: int = 0) -> int:
    """The log position of the n-th move of `task_id` to `status`."""
    found = [p for p, e in moves if e["task_id"] == task_id and e["status"] == status]
    assert len(found) > n, (task_id, status, [e for _, e in moves])
    return found[n]


def tasks_of(daemon: DaemonProcess, run_id: str) -> dict[str, TaskInfo]:
    return {t.task_id: t for t in daemon.status(run_id).runs[0].tasks}


def wait_task(daemon: DaemonProcess, run_id: str, task_id: str, status: str) -> TaskInfo:
    return wait_until(
        lambda: (t := tasks_of(daemon, run_id)[task_id]).status == status and t,
        what=f"task {task_id} {status}",
    )


def run_statuses(daemon: DaemonProcess, run_id: str) -> list[str]:
    return [e["status"] for _, e in positioned(daemon, run_id) if e["type"] == "run_status_changed"]


def replayed_tasks(daemon: DaemonProcess, run_id: str) -> dict[str, dict[str, Any]]:
    """Each task's status, attempt, session and summary, folded here from the log alone."""
    tasks: dict[str, dict[str, Any]] = {}
    for _, event in positioned(daemon, run_id):
        if event["type"] == "run_created":
            for t in event["plan"]["plan"]["tasks"]:
                tasks[t["id"]] = {"status": "pending", "attempt": 0, "session_id": None}
                tasks[t["id"]]["summary"] = None
        elif event["type"] == "task_status_changed":
            t = tasks[event["task_id"]]
            if t["status"] in ("done", "failed", "cancelled"):
                continue
            t["status"] = event["status"]
            t["attempt"] = max(t["attempt"], event.get("attempt", 0))
            t["session_id"] = event.get("session_id") or t["session_id"]
            if event.get("summary") is not None:
                t["summary"] = event["summary"]
    return tasks


def assert_projection_is_replay(daemon: DaemonProcess, run_id: str) -> None:
    projected = {
        t.task_id: {
            "status": t.status,
            "attempt": t.attempt,
            "session_id": t.session_id,
            "summary": t.summary,
        }
        for t in daemon.status(run_id).runs[0].tasks
    }
    assert projected == replayed_tasks(daemon, run_id)


# --------------------------------------------------------------------------- pure rules


def plan_json(*tasks: dict[str, Any]) -> str:
    return json.dumps({"title": "p", "tasks": list(tasks)})


def t(task_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "prompt": f"do {task_id}", "depends_on": list(deps), **extra}


def test_parse_plan_names_the_tasks_of_a_cycle() -> None:
    with pytest.raises(PlanError) as error:
        parse_plan(plan_json(t("a", "c"), t("b", "a"), t("c", "b"), t("d")))
    message = str(error.value)
    assert "cycle" in message
    assert message.endswith("a -> c -> b -> a"), message
    with pytest.raises(PlanError, match="depend on themselves: x"):
        parse_plan(plan_json(t("x", "x")))


def test_parse_plan_names_unknown_dependencies() -> None:
    with pytest.raises(PlanError) as error:
        parse_plan(plan_json(t("a"), t("b", "a", "zz"), t("c", "nope")))
    assert str(error.value) == "unknown dependencies: b -> zz, c -> nope"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (plan_json(t("a"), t("a")), "task id 'a' is used twice"),
        (plan_json(t("a", max_retries=99)), "task a: max_retries must be between 0 and 20"),
        (plan_json(t("a", verify=[" "])), "task a has an empty verify command"),
        (plan_json(t("bad id")), "task id 'bad id' is not allowed"),
        (plan_json(t("a", prompt=" ")), "task a has an empty prompt"),
        (plan_json(), "the plan has no tasks"),
        (plan_json(t("a", colour="red")), "unknown field `colour`"),
        ("{not json", "not valid JSON"),
    ],
)
def test_parse_plan_refuses_bad_plans_saying_why(text: str, expected: str) -> None:
    with pytest.raises(PlanError) as error:
        parse_plan(text)
    assert expected in str(error.value)


def test_ready_tasks_and_dependants_follow_the_graph() -> None:
    plan = parse_plan(plan_json(t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c"), t("e")))
    pending = dict.fromkeys("abcde", "pending")
    assert ready_tasks(plan.tasks, pending) == ["a", "e"]
    assert ready_tasks(plan.tasks, {**pending, "a": "done"}) == ["b", "c", "e"]
    assert ready_tasks(plan.tasks, {**pending, "a": "done", "b": "done"}) == ["c", "e"]
    assert ready_tasks(plan.tasks, {**pending, "a": "failed"}) == ["e"]
    assert ready_tasks(plan.tasks, dict.fromkeys("abce", "done") | {"d": "pending"}) == ["d"]
    assert dependants_of(plan.tasks, "a") == ["b", "c", "d"]
    assert dependants_of(plan.tasks, "c") == ["d"]
    assert dependants_of(plan.tasks, "e") == []


def lines_run(work: Callable[[], object]) -> int:
    """How many lines of Python `work` executes: its number of steps, whatever the machine."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        count += event == "line"
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        work()
    finally:
        sys.settrace(previous)
    return count


def chain(n: int) -> list[dict[str, Any]]:
    """t0 <- t1 <- ... : each task depends on the one before it."""
    return [t("t0")] + [t(f"t{i}", f"t{i - 1}") for i in range(1, n)]


def chain_listed_backwards(n: int) -> list[dict[str, Any]]:
    """The same chain with the tasks listed last first (a plan may list tasks in any order)."""
    return chain(n)[::-1]


def fan(n: int) -> list[dict[str, Any]]:
    """One root, every other task depends on it."""
    return [t("t0")] + [t(f"t{i}", "t0") for i in range(1, n)]


def graph_steps(shape: Callable[[int], list[dict[str, Any]]], n: int, failing: int) -> int:
    """Steps to validate a plan of `n` tasks (ids, dependencies, cycles) and to find what the
    failure of task `t{failing}` cancels."""
    text = plan_json(*shape(n))
    return lines_run(lambda: dependants_of(parse_plan(text).tasks, f"t{failing % n}"))


@pytest.mark.parametrize(
    ("shape", "failing"),
    [(chain, 0), (chain_listed_backwards, 0), (chain, -1), (fan, 0)],
    ids=["chain", "chain-listed-backwards", "chain-last-fails", "fan"],
)
def test_graph_work_grows_linearly_with_the_plan(
    shape: Callable[[int], list[dict[str, Any]]], failing: int
) -> None:
    """Defect 3: the dependants of a chain's first task took one pass over the plan per task
    (10,000 tasks: 10^8 steps, 30+ s on orcad's event loop). Twice the tasks, twice the steps."""
    small, large = graph_steps(shape, 300, failing), graph_steps(shape, 600, failing)
    assert large < 2.3 * small, (small, large)


BIG = 10_000


@pytest.mark.parametrize("shape", [chain_listed_backwards, fan], ids=["chain", "fan"])
def test_a_10000_task_plan_whose_root_fails_ends_while_orcad_answers(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    bench: Bench,
    shape: Callable[[int], list[dict[str, Any]]],
) -> None:
    """Defect 3, end to end: the root of 10,000 tasks fails for good; orcad cancels the other
    9,999 and ends the run while it goes on answering every request, and after a restart."""
    plan_file = bench.root / "plan.json"
    plan_file.write_text(plan_json(*shape(BIG)))
    configure(orca_home, bench)
    daemon = make_daemon().start()
    validated = daemon.orca("plan", "validate", str(plan_file))
    assert validated.stdout.strip().endswith(f"valid: {BIG} tasks, {BIG - 1} dependencies")

    bench.steps({"t0": {"*": [{"result": {"outcome": "failed", "error": "it broke"}}]}})
    run_id = start_plan(daemon, bench, *parse_plan(plan_file.read_bytes()).tasks)
    with daemon.client() as client:  # each request fails if orcad does not answer within 10 s
        while client.request(Status(run_id=run_id)).runs[0].status not in TERMINAL_STATUSES:
            client.hello()

    for restarted in (False, True):
        if restarted:
            daemon.stop()
            daemon.start()
        shown = json.loads(daemon.orca("status", run_id, "--json").stdout)
        assert shown["status"] == "failed"
        assert shown["reason"].startswith("tasks failed: t0; cancelled: ")
        assert shown["reason"].endswith(f" and {BIG - 1 - 20} more")
        statuses = [task["status"] for task in shown["tasks"]]
        assert (statuses.count("failed"), statuses.count("cancelled")) == (1, BIG - 1)
        assert [s["task_id"] for s in shown["sessions"]] == ["t0"]
    with daemon.client() as client:  # its 10,000 tasks over pages of 64 KiB, put back together
        whole: StatusResult = client.request(Status(run_id=run_id))
        paged = fetch_status(client, Status(run_id=run_id, page_bytes=64 << 10))
    assert msgspec.to_builtins(paged.runs) == msgspec.to_builtins(whole.runs)


# --------------------------------------------------------------------------- order


def test_diamond_runs_in_dependency_order_with_b_and_c_in_parallel(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    # b and c each wait until the other has started: run one after the other, they would
    # never finish (and fail after 30 s).
    bench.steps(
        {
            "b": {"*": [{"wait_file": str(bench.started("c"))}]},
            "c": {"*": [{"wait_file": str(bench.started("b"))}]},
        }
    )
    run_id = start_plan(
        plan_daemon, bench, task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")
    )
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    assert run.kind == "plan"
    assert run.reason == "all 4 tasks done"
    assert [(t.task_id, t.status, t.attempt) for t in run.tasks] == [
        ("a", "done", 1),
        ("b", "done", 1),
        ("c", "done", 1),
        ("d", "done", 1),
    ]
    assert run_statuses(plan_daemon, run_id) == ["running", "completed"]

    moves = task_moves(plan_daemon, run_id)
    started = {x: where(moves, x, "in_progress") for x in "abcd"}
    done = {x: where(moves, x, "done") for x in "abcd"}
    assert started["a"] < done["a"] < min(started["b"], started["c"])
    assert max(done["b"], done["c"]) < started["d"] < done["d"]
    # b and c overlapped: each started before the other ended (in the log, and as processes).
    assert max(started["b"], started["c"]) < min(done["b"], done["c"])
    events = positioned(plan_daemon, run_id)
    session_started = {e["session_id"]: p for p, e in events if e["type"] == "session_started"}
    ended = {e["session_id"]: p for p, e in events if e["type"] == "session_terminated"}
    b, c = f"{run_id}.b.1", f"{run_id}.c.1"
    assert max(session_started[b], session_started[c]) < min(ended[b], ended[c])

    # Each task ran in its own session, in the plan's directory, told which task it is.
    for x in "abcd":
        seen = bench.seen(x)
        assert seen["cwd"] == str(bench.work)
        assert seen["env"]["ORCA_TASK_ID"] == x
        assert seen["env"]["ORCA_TASK_ATTEMPT"] == "1"
        assert seen["env"]["ORCA_SESSION_ID"] == f"{run_id}.{x}.1"
        assert seen["prompt"].startswith(f"do {x}\n")


def test_max_parallel_limits_tasks_in_progress(plan_daemon: DaemonProcess, bench: Bench) -> None:
    run_id = start_plan(plan_daemon, bench, task("a"), task("b"), task("c"), max_parallel=1)
    assert plan_daemon.wait_for_run(run_id).status == "completed"
    live, most = 0, 0
    for _, event in task_moves(plan_daemon, run_id):
        live += 1 if event["status"] == "in_progress" else -1
        most = max(most, live)
    assert most == 1


# --------------------------------------------------------------------------- verify, retries


def test_failing_verify_fails_attempt_1_and_attempt_2_passes(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    # The agent reports done both times, but creates the file verify checks only on attempt 2.
    bench.steps({"build": {"2": [{"touch": "built.ok"}, {"result": {"outcome": "done"}}]}})
    verify = ['echo "checking $ORCA_TASK_ID"; test -f built.ok']
    run_id = start_plan(plan_daemon, bench, task("build", verify=verify, max_retries=1))
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    (build,) = run.tasks
    assert (build.status, build.attempt) == ("done", 2)
    assert build.reason == "done; 1 verify command passed"

    events = [e for _, e in positioned(plan_daemon, run_id)]
    verified = [e for e in events if e["type"] == "verify_finished"]
    assert [(v["attempt"], v["ok"], v["exit_code"], v["command"]) for v in verified] == [
        (1, False, 1, verify[0]),
        (2, True, 0, verify[0]),
    ]
    assert all(v["output_tail"] == "checking build\n" for v in verified)
    moves = [(e["status"], e.get("attempt", 0)) for _, e in task_moves(plan_daemon, run_id)]
    assert moves == [("in_progress", 1), ("pending", 0), ("in_progress", 2), ("done", 0)]
    retrying = next(e for _, e in task_moves(plan_daemon, run_id) if e["status"] == "pending")
    assert "verify command failed (exit status 1)" in retrying["reason"]
    assert "retrying (1 retries left)" in retrying["reason"]
    # Both agent sessions completed: the verify command, not the agent, failed attempt 1.
    terminated = [e for e in events if e["type"] == "session_terminated"]
    assert [(e["session_id"], e["status"]) for e in terminated] == [
        (f"{run_id}.build.1", "completed"),
        (f"{run_id}.build.2", "completed"),
    ]
    # The agent was told what orcad would check.
    assert verify[0] in bench.seen("build", 2)["prompt"]
    # The retry is told why the attempt before it failed, with the verify command's output.
    first, second = bench.seen("build", 1)["prompt"], bench.seen("build", 2)["prompt"]
    assert "previous one ended" not in first
    assert (
        "This is a new attempt at this task; the previous one ended: attempt 1: verify command "
        "failed (exit status 1)"
    ) in second
    assert f"The end of the output of `{verify[0]}`:\n```\nchecking build\n```" in second


def test_a_retried_task_is_told_why_its_agent_failed(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    bench.steps({"build": {"1": [{"result": {"outcome": "failed", "summary": "no compiler"}}]}})
    run_id = start_plan(plan_daemon, bench, task("build", max_retries=1))
    assert plan_daemon.wait_for_run(run_id).status == "completed"
    second = bench.seen("build", 2)["prompt"]
    assert "the previous one ended: attempt 1 failed: " in second
    assert "no compiler" in second
    assert "The end of the output of" not in second


def test_a_task_that_fails_for_good_cancels_its_dependants(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    failing = {"*": [{"result": {"outcome": "failed", "error": "it broke"}}]}
    bench.steps({"a": failing})
    tasks = (task("a", max_retries=1), task("b", "a"), task("c", "b"), task("d"))
    run_id = start_plan(plan_daemon, bench, *tasks)
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "failed"
    assert run.reason == "tasks failed: a; cancelled: b, c"
    by_id = {t.task_id: t for t in run.tasks}
    assert (by_id["a"].status, by_id["a"].attempt) == ("failed", 2)
    assert by_id["a"].reason == "attempt 2 failed: it broke"
    assert (by_id["b"].status, by_id["b"].reason) == (
        "cancelled",
        "it depends on task a, which failed",
    )
    assert (by_id["c"].status, by_id["c"].reason) == (
        "cancelled",
        "it depends on task a, which failed",
    )
    assert (by_id["d"].status, by_id["d"].attempt) == ("done", 1)
    # The cancelled tasks never ran.
    assert not bench.started("b").exists() and not bench.started("c").exists()
    sessions = [e["session_id"] for _, e in positioned(plan_daemon, run_id) if "agent" in e]
    assert sorted(sessions) == [f"{run_id}.a.1", f"{run_id}.a.2", f"{run_id}.d.1"]

    # Without cancel_dependants, they stay pending and the run says they never started.
    kept = start_plan(plan_daemon, bench, *tasks, cancel_dependants=False)
    run = plan_daemon.wait_for_run(kept)
    assert run.status == "failed"
    assert run.reason == "tasks failed: a; never started (a dependency did not finish): b, c"
    assert [t.status for t in run.tasks] == ["failed", "pending", "pending", "done"]


# --------------------------------------------------------------------------- refused plans


def test_a_cycle_or_an_unknown_dependency_is_refused_and_nothing_recorded(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    head = plan_daemon.status().head_position
    cycle = Plan(title="p", tasks=[task("a", "c"), task("b", "a"), task("c", "b"), task("d")])
    error = refused(plan_daemon, StartPlan(cwd=str(bench.work), plan=cycle, agent="task"))
    assert error.code == "bad_request"
    assert str(error) == "invalid plan: the plan has a dependency cycle: a -> c -> b -> a"

    unknown = Plan(title="p", tasks=[task("a"), task("b", "a", "zz")])
    error = refused(plan_daemon, StartPlan(cwd=str(bench.work), plan=unknown, agent="task"))
    assert error.code == "bad_request"
    assert str(error) == "invalid plan: unknown dependencies: b -> zz"

    no_agent = Plan(title="p", tasks=[task("a"), task("b", agent="nope")])
    error = refused(plan_daemon, StartPlan(cwd=str(bench.work), plan=no_agent, agent="task"))
    assert error.code == "bad_request"
    assert str(error).startswith("task b: no agent named 'nope'")
    error = refused(plan_daemon, StartPlan(cwd=str(bench.work), plan=no_agent))
    assert str(error) == "task a names no agent: give it one, or a default with --agent"

    status = plan_daemon.status()
    assert status.runs == [] and status.head_position == head
    assert list(bench.record.iterdir()) == []


# --------------------------------------------------------------------------- context


def test_finding_10_summaries_and_answers_reach_later_tasks(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    questions = [
        {"id": "db", "question": "Which database?"},
        {"id": "pw", "question": "The admin password?", "isSecret": True},
    ]
    bench.steps(
        {
            "a": {
                "*": [
                    {"ask": questions},
                    {"result": {"outcome": "done", "summary": "the bug is in parser.py"}},
                ]
            },
            "b": {"*": [{"result": {"outcome": "done", "summary": "fixed the tokenizer"}}]},
        }
    )
    run_id = start_plan(plan_daemon, bench, task("a"), task("b", "a"), task("c", "b"))
    wait_until(
        lambda: plan_daemon.status(run_id).runs[0].status == "waiting_for_answer",
        what="task a asking",
    )
    with plan_daemon.client() as client:
        client.request(
            Answer(run_id=run_id, answers={"db": ["postgres 16"], "pw": ["hunter2-secret"]})
        )
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    assert run_statuses(plan_daemon, run_id) == [
        "running",
        "waiting_for_answer",
        "running",
        "completed",
    ]
    assert [t.summary for t in run.tasks] == [
        "the bug is in parser.py",
        "fixed the tokenizer",
        "c done",
    ]

    a, b, c = (bench.seen(x)["prompt"] for x in "abc")
    assert "parser.py" not in a and "postgres" not in a
    assert "- a (a): the bug is in parser.py" in b
    assert "Q: Which database?\n  A: postgres 16" in b
    # c builds on b, and through b on a: it hears from both, and what the run was told.
    assert "- a (a): the bug is in parser.py" in c
    assert "- b (b): fixed the tokenizer" in c
    assert "Q: Which database?\n  A: postgres 16" in c
    # A secret answer is handed to nobody else, and never recorded.
    for prompt in (b, c):
        assert "hunter2" not in prompt and "admin password" not in prompt
    assert not any(b"hunter2" in bytes(r.event) for r in records_of(plan_daemon, run_id))


# --------------------------------------------------------------------------- retry


def test_retry_task_on_a_stuck_task_starts_attempt_2(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    bench.steps({"stuck": {"1": HANG}})
    run_id = start_plan(plan_daemon, bench, task("stuck"), task("after", "stuck"))
    wait_until(bench.started("stuck").exists, what="attempt 1 started")
    first_pid = bench.seen("stuck")["pid"]

    with plan_daemon.client() as client:
        retried: TaskRetried = client.request(RetryTask(run_id=run_id, task_id="stuck"))
    assert (retried.task_id, retried.attempt) == ("stuck", 2)
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    assert [(t.task_id, t.status, t.attempt) for t in run.tasks] == [
        ("stuck", "done", 2),
        ("after", "done", 1),
    ]
    sessions = {s.session_id: s for s in plan_daemon.status(run_id).sessions}
    first = sessions[f"{run_id}.stuck.1"]
    assert (first.status, first.reason) == ("cancelled", "replaced by a retry")
    assert sessions[f"{run_id}.stuck.2"].status == "completed"
    wait_until(lambda: not process_exists(first_pid), what="attempt 1's agent stopped")
    moves = [
        (e["status"], e.get("attempt", 0))
        for _, e in task_moves(plan_daemon, run_id)
        if e["task_id"] == "stuck"
    ]
    assert moves == [("in_progress", 1), ("pending", 0), ("in_progress", 2), ("done", 0)]

    # Only a task in progress can be retried, only of a live plan run.
    for task_id, code in (("stuck", "invalid_state"), ("nope", "invalid_state")):
        assert refused(plan_daemon, RetryTask(run_id=run_id, task_id=task_id)).code == code


def test_retry_task_is_refused_for_a_task_not_in_progress(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    bench.steps({"a": {"*": HANG}})
    run_id = start_plan(plan_daemon, bench, task("a"), task("b", "a"))
    wait_until(bench.started("a").exists, what="task a started")
    error = refused(plan_daemon, RetryTask(run_id=run_id, task_id="b"))
    assert error.code == "invalid_state"
    assert str(error).startswith("task b is pending")
    error = refused(plan_daemon, RetryTask(run_id=run_id, task_id="zz"))
    assert (error.code, str(error)) == ("not_found", f"run {run_id} has no task 'zz'")
    single = StartRun(cwd=str(bench.work), command=[sys.executable, "-c", "pass"])
    with plan_daemon.client() as client:
        other = client.request(single).run_id
    error = refused(plan_daemon, RetryTask(run_id=other, task_id="a"))
    assert (error.code, str(error)) == ("invalid_state", f"run {other} is not a plan run")

    # Cancelling the plan run ends every task that had not ended, and stops its agent.
    with plan_daemon.client() as client:
        client.request(Cancel(run_id=run_id, reason="enough"))
    run = plan_daemon.wait_for_run(run_id)
    assert (run.status, run.reason) == ("cancelled", "enough")
    assert [(t.status, t.reason) for t in run.tasks] == [("cancelled", "enough")] * 2
    pid = bench.seen("a")["pid"]
    wait_until(lambda: not process_exists(pid), what="task a's agent stopped")


# --------------------------------------------------------------------------- restarts


def wait_start_recorded(daemon: DaemonProcess, run_id: str, task_id: str) -> None:
    """Until the task's session is running in the log (a session whose start is not recorded
    never started, as far as the next orcad knows: it starts it again, as the same attempt)."""

    def running() -> bool:
        sessions = daemon.status(run_id).sessions
        return any(s.task_id == task_id and s.status == "running" for s in sessions)

    wait_until(running, what=f"task {task_id}'s start to be recorded")


def interrupt(daemon: DaemonProcess, interruption: str) -> None:
    """End orcad's sessions with it: a stop that ends them, or a reboot (orcad, the holders and
    the agents all killed)."""
    if interruption == "reboot":
        daemon.crash_with_sessions()
    else:
        assert daemon.stop_ending_sessions() == 0


@pytest.mark.parametrize(
    ("interruption", "retries"), [("cancelling stop", 0), ("cancelling stop", 1), ("reboot", 1)]
)
def test_task_statuses_survive_a_restart_and_the_interrupted_task_runs_again_uncounted(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    bench: Bench,
    interruption: str,
    retries: int,
) -> None:
    configure(orca_home, bench)
    daemon = make_daemon().start()
    bench.steps({"b": {"1": HANG}})
    run_id = start_plan(daemon, bench, task("a"), task("b", "a", max_retries=retries), task("c"))
    wait_until(bench.started("b").exists, what="task b running")
    wait_task(daemon, run_id, "c", "done")
    before = tasks_of(daemon, run_id)
    assert before["b"].status == "in_progress"
    pid = bench.seen("b")["pid"]
    wait_start_recorded(daemon, run_id, "b")

    interrupt(daemon, interruption)
    daemon = make_daemon().start()
    wait_until(lambda: not process_exists(pid), what="the interrupted agent stopped")
    run = daemon.wait_for_run(run_id)
    after = {t.task_id: t for t in run.tasks}
    # What had ended is exactly as it was.
    assert after["a"] == before["a"] and after["c"] == before["c"]
    reason = STOPPED if interruption == "cancelling stop" else LOST_REASON
    # Interrupted by orcad, not failed: it runs again, and it uses none of its retries.
    assert run.status == "completed", run
    assert (after["b"].status, after["b"].attempt, after["b"].interrupted) == ("done", 2, 1)
    retrying = [e for _, e in task_moves(daemon, run_id) if e["status"] == "pending"]
    assert [(e["reason"], e["interrupted"]) for e in retrying] == [
        (f"attempt 1 was interrupted ({reason}); it runs again", True)
    ]
    assert_projection_is_replay(daemon, run_id)

    # Once the run has ended, a restart changes nothing at all.
    ended: RunInfo = daemon.status(run_id).runs[0]
    interrupt(daemon, interruption)
    daemon = make_daemon().start()
    assert daemon.status(run_id).runs[0] == ended
    assert_projection_is_replay(daemon, run_id)


def test_a_verify_command_that_hangs_times_out_and_fails_the_attempt(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, bench: Bench
) -> None:
    configure(orca_home, bench, "[orchestration]\nverify_timeout_seconds = 0.5\n")
    daemon = make_daemon().start()
    verify = ["echo $$ > verify.pid; sleep 30"]
    run_id = start_plan(daemon, bench, task("slow", verify=verify))
    run = daemon.wait_for_run(run_id)
    assert run.status == "failed"
    assert run.tasks[0].reason == (
        "attempt 1: verify command failed (timed out after 0.5s): " + verify[0]
    )
    (verified,) = [e for _, e in positioned(daemon, run_id) if e["type"] == "verify_finished"]
    assert (verified["ok"], verified["exit_code"]) == (False, None)
    shell = int((bench.work / "verify.pid").read_text())
    wait_until(lambda: not process_exists(shell), what="the timed-out verify command stopped")


@pytest.mark.parametrize("how", ["cancel", "retry"])
def test_a_verify_command_no_longer_wanted_is_stopped(
    plan_daemon: DaemonProcess, bench: Bench, how: str
) -> None:
    """A cancelled run, or a task retried while its verify runs, leaves no verify behind."""
    verify = ["echo $$ >> verify.pid; sleep 60"]
    bench.steps({"slow": {"2": [{"result": {"outcome": "done", "summary": "second"}}]}})
    run_id = start_plan(plan_daemon, bench, task("slow", verify=verify))
    pids = bench.work / "verify.pid"
    wait_until(  # (the shell makes the file before its echo fills it)
        lambda: pids.exists() and pids.read_text().endswith("\n"), what="the verify command running"
    )
    shell = int(pids.read_text())
    with plan_daemon.client() as client:
        if how == "cancel":
            client.request(Cancel(run_id=run_id))
        else:
            client.request(RetryTask(run_id=run_id, task_id="slow"))
    wait_until(lambda: not process_exists(shell), what="the unwanted verify command stopped")
    if how == "retry":
        wait_until(lambda: len(pids.read_text().split()) == 2, what="attempt 2 verifying")
        with plan_daemon.client() as client:
            client.request(Cancel(run_id=run_id))
        second = int(pids.read_text().split()[1])
        wait_until(lambda: not process_exists(second), what="attempt 2's verify stopped")
    verified = [e for _, e in positioned(plan_daemon, run_id) if e["type"] == "verify_finished"]
    assert verified == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_verify_command_interrupted_by_a_restart_is_stopped_and_run_again(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    bench: Bench,
    sig: signal.Signals,
) -> None:
    configure(orca_home, bench)
    daemon = make_daemon().start()
    verify = [
        'echo "$$ $ORCA_TASK_ID $ORCA_TASK_ATTEMPT $ORCA_SESSION_ID" >> verify.log; '
        "while [ ! -f go ]; do sleep 0.01; done"
    ]
    run_id = start_plan(daemon, bench, task("check", verify=verify))
    log = bench.work / "verify.log"
    wait_until(  # (the shell makes the file before its echo fills it)
        lambda: log.exists() and log.read_text().endswith("\n"), what="the verify command running"
    )
    first = log.read_text().split()
    assert first[1:] == ["check", "1", f"{run_id}.check.1"]

    daemon.stop(sig)
    daemon = make_daemon().start()
    # The earlier orcad's verify command is stopped (not left behind), and it runs again.
    wait_until(lambda: not process_exists(int(first[0])), what="the first verify stopped")
    wait_until(lambda: len(log.read_text().splitlines()) == 2, what="verify run again")
    (bench.work / "go").touch()
    run = daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    assert (run.tasks[0].status, run.tasks[0].attempt) == ("done", 1)
    verified = [e for _, e in positioned(daemon, run_id) if e["type"] == "verify_finished"]
    assert [(v["attempt"], v["ok"]) for v in verified] == [(1, True)]


def test_verify_runs_where_the_agent_worked_in_its_worktree(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=bench.work, check=True, capture_output=True)

    git("init", "-q")
    (bench.work / "README").write_text("hello\n")
    git("add", "README")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    built = {"result": {"outcome": "done", "summary": "built it"}}
    bench.steps({"build": {"*": [{"touch": "built.ok"}, built]}})
    run_id = start_plan(
        plan_daemon, bench, task("build", verify=["test -f built.ok"]), worktree=True
    )
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    assert run.tasks[0].summary == "built it"
    worked_in = bench.seen("build")["cwd"]
    assert worked_in != str(bench.work)
    assert Path(worked_in, "built.ok").exists()
    assert not (bench.work / "built.ok").exists()


def test_max_parallel_must_be_at_least_1(plan_daemon: DaemonProcess, bench: Bench) -> None:
    for limit in (0, -1):
        request = StartPlan(
            cwd=str(bench.work),
            plan=Plan(title="p", tasks=[task("a")]),
            agent="task",
            max_parallel=limit,
        )
        error = refused(plan_daemon, request)
        assert (error.code, str(error)) == ("bad_request", "max_parallel must be at least 1")
    assert plan_daemon.status().runs == []


def test_a_task_recorded_but_never_started_is_started_on_restart(
    make_daemon: Callable[..., DaemonProcess],
    orca_home: Path,
    bench: Bench,
    log_env: dict[str, str],
) -> None:
    """orcad killed between recording a task's session and starting its process."""
    configure(orca_home, bench)
    run_id, session_id = "c0ffee000010", "c0ffee000010.a.1"
    plan = Plan(title="crashed", tasks=[task("a")])
    command = [sys.executable, str(AGENTS / "graph_agent.py"), str(bench.script)]
    write_log(
        orca_home,
        [
            RunCreated(
                run_id,
                title="crashed",
                cwd=str(bench.work),
                kind="plan",
                plan=PlanSpec(plan=plan, max_parallel=4, agent="task"),
            ),
            RunStatusChanged(run_id, "running"),
            SessionCreated(
                run_id,
                session_id,
                "task",
                command,
                str(bench.work),
                role="task",
                prompt="do a",
                task_id="a",
                attempt=1,
            ),
            TaskStatusChanged(
                run_id, "a", "in_progress", "attempt 1", attempt=1, session_id=session_id
            ),
        ],
        log_env,
    )
    daemon = make_daemon().start()
    run = daemon.wait_for_run(run_id)
    assert run.status == "completed", daemon.status(run_id)
    assert (run.tasks[0].status, run.tasks[0].attempt) == ("done", 1)
    assert bench.seen("a")["env"]["ORCA_SESSION_ID"] == session_id


# --------------------------------------------------------------------------- prompt context


def test_a_long_chain_gives_the_nearest_summaries_within_a_limit_and_says_so() -> None:
    from orca_client.events import PlanSpec
    from orca_client.views import RunInfo, TaskInfo
    from orca_daemon.orchestration.plan_prompt import (
        CONTEXT_CHARS,
        SUMMARY_CHARS,
        build_task_prompt,
    )

    ids = [f"t{i:02}" for i in range(30)]
    tasks = [task(ids[0])] + [task(t, before) for before, t in itertools.pairwise(ids)]
    spec = PlanSpec(plan=Plan(title="chain", tasks=tasks), max_parallel=1)
    run = RunInfo(
        run_id="r",
        title="chain",
        status="running",
        cwd="/",
        created_at=0.0,
        updated_at=0.0,
        kind="plan",
        tasks=[
            TaskInfo(task_id=t, title=t, status="done", summary=f"{t}:" + "x" * 10_000)
            for t in ids[:-1]
        ]
        + [TaskInfo(task_id=ids[-1], title=ids[-1], status="pending")],
    )
    prompt = build_task_prompt(run, tasks[-1], spec, [("Which runtime?", "python3.11")])
    shown = [t for t in ids[:-1] if f"- {t} ({t}): {t}:" in prompt]
    fits = CONTEXT_CHARS // (SUMMARY_CHARS + len("- t00 (t00): "))
    assert shown == ids[-1 - fits : -1]  # the nearest ancestors, in plan order
    assert f"({29 - fits} earlier tasks left out, to keep this prompt short)" in prompt
    assert "x" * (SUMMARY_CHARS + 1) not in prompt
    assert "- Q: Which runtime?\n  A: python3.11" in prompt
    assert len(prompt) < CONTEXT_CHARS + 2_000


# --------------------------------------------------------------------------- agent lookup


def test_a_task_started_after_a_restart_finds_its_cli_where_the_client_said(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, bench: Bench, tmp_path: Path
) -> None:
    fakes = Path(__file__).resolve().parent / "fakes"
    assert not shutil.which("claude", path=os.environ.get("PATH")), "orcad must not find it"
    configure(orca_home, bench)
    env = {"FAKE_CLAUDE_HOME": str(tmp_path / "claude-home"), "ORCA_CLAUDE_PATH": ""}
    daemon = make_daemon(extra_env=env).start()
    bench.steps({"a": {"1": HANG}})
    first = task("a", max_retries=1)
    then = PlanTask(id="b", prompt="sum up", agent="claude", depends_on=["a"])
    request = StartPlan(
        cwd=str(bench.work),
        plan=Plan(title="lookup", tasks=[first, then]),
        agent="task",
        search_path=f"{fakes}:{os.environ.get('PATH', '')}",
    )
    with daemon.client() as client:
        run_id = client.request(request).run_id
    wait_until(bench.started("a").exists, what="task a to start")
    wait_start_recorded(daemon, run_id, "a")
    daemon.crash_with_sessions()  # the client's PATH is known only from the log now
    daemon = make_daemon(extra_env=env).start()
    run = daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    claude = [s for s in daemon.status(run_id).sessions if s.task_id == "b"]
    assert [(s.agent, s.status) for s in claude] == [("claude", "completed")]
    assert claude[0].command[0] == str(fakes / "claude")


def test_a_task_that_starts_while_another_waits_leaves_the_run_waiting(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    go = bench.work / "go"
    bench.steps(
        {
            "asks": {"*": [{"ask": [{"id": "db", "question": "Which database?"}]}]},
            "first": {"*": [{"wait_file": str(go)}]},
        }
    )
    run_id = start_plan(
        plan_daemon, bench, task("asks"), task("first"), task("then", "first"), max_parallel=3
    )
    wait_until(
        lambda: plan_daemon.status(run_id).runs[0].status == "waiting_for_answer",
        what="task asks to ask",
    )
    go.touch()  # `first` ends and `then` starts while `asks` still waits
    wait_until(bench.started("then").exists, what="task then to start")
    wait_until(
        lambda: (
            {t.task_id: t.status for t in plan_daemon.status(run_id).runs[0].tasks}["then"]
            == "done"
        ),
        what="task then to be done",
    )
    assert plan_daemon.status(run_id).runs[0].status == "waiting_for_answer"
    with plan_daemon.client() as client:
        client.request(Answer(run_id=run_id, text="postgres"))
    assert plan_daemon.wait_for_run(run_id).status == "completed"
    assert run_statuses(plan_daemon, run_id) == [
        "running",
        "waiting_for_answer",
        "running",
        "completed",
    ]


def test_a_nul_character_in_a_task_is_refused_by_name() -> None:
    bad = {"title": "t", "tasks": [{"id": "a", "prompt": "p", "verify": ["true\u0000; rm -rf"]}]}
    with pytest.raises(PlanError, match="task a has a NUL character"):
        parse_plan(json.dumps(bad))


# --------------------------------------------------------------------------- worktrees chained


def git_repo(path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (path / "README").write_text("hello\n")
    git("add", "README")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")


def test_in_worktrees_each_task_builds_on_the_work_of_those_it_depends_on(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    git_repo(bench.work)
    hooks = bench.work / ".git" / "hooks"
    for name in ("pre-commit", "commit-msg"):  # the user's hooks are for the user's commits
        (hooks / name).write_text("#!/bin/sh\nexit 1\n")
        (hooks / name).chmod(0o755)
    reads = [{"say_file": name} for name in ("a.txt", "b.txt", "c.txt")]
    bench.steps(
        {
            "a": {"*": [{"write": ["a.txt", "from a"]}]},
            "b": {"*": [*reads, {"write": ["b.txt", "from b"]}]},
            "c": {"*": [*reads, {"write": ["c.txt", "from c"]}]},
            "d": {"*": reads},
        }
    )
    run_id = start_plan(
        plan_daemon,
        bench,
        task("a"),
        task("b", "a"),
        task("c", "a"),
        task("d", "b", "c"),
        worktree=True,
    )
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    sessions = {s.task_id: s for s in plan_daemon.status(run_id).sessions}

    def said(task_id: str) -> str:
        return "".join(
            e["text"]
            for e in events_of(plan_daemon, run_id)
            if e["type"] == "output_appended" and e["session_id"] == sessions[task_id].session_id
        )

    assert "a.txt: from a" in said("b") and "no b.txt" in said("b") and "no c.txt" in said("b")
    assert "a.txt: from a" in said("c") and "no b.txt" in said("c")
    assert all(f"{n}.txt: from {n}" in said("d") for n in "abc")  # both branches merged
    tasks = {t.task_id: t for t in run.tasks}
    tree = sessions["a"].worktree
    assert tree is not None
    assert "its work is commit" in str(tasks["a"].reason) and tree.branch in str(tasks["a"].reason)
    assert "its work is commit" not in str(tasks["d"].reason)  # d changed nothing
    assert not (bench.work / "a.txt").exists()  # the main checkout is untouched
    log = subprocess.run(
        ["git", "log", "--format=%s", tree.branch], cwd=bench.work, capture_output=True, text=True
    ).stdout
    assert log.splitlines()[0] == f"orca: task a of run {run_id} (attempt 1)"


def test_in_worktrees_work_that_does_not_merge_fails_the_task_clearly(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    git_repo(bench.work)
    bench.steps(
        {
            "b": {"*": [{"write": ["same.txt", "b's version\n"]}]},
            "c": {"*": [{"write": ["same.txt", "c's version\n"]}]},
        }
    )
    run_id = start_plan(
        plan_daemon, bench, task("b"), task("c"), task("d", "b", "c"), worktree=True
    )
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "failed"
    d = next(t for t in run.tasks if t.task_id == "d")
    assert d.status == "failed"
    assert "could not be merged: merging" in str(d.reason)
    assert "conflicts in same.txt" in str(d.reason)
    assert not bench.started("d").exists()  # its agent never ran
    branches = subprocess.run(
        ["git", "branch", "--list", f"orca/{run_id}/*"],
        cwd=bench.work,
        capture_output=True,
        text=True,
    ).stdout
    assert f"{run_id}.d." not in branches  # the failed worktree and its branch are gone


def test_one_task_agent_configured_for_worktrees_puts_the_whole_plan_in_worktrees(
    make_daemon: Callable[..., DaemonProcess], orca_home: Path, bench: Bench
) -> None:
    wt = f'[agents.wt]\nadapter = "command"\ncommand = {json.dumps(bench.command)}\n'
    configure(orca_home, bench, wt + "worktree = true\n")
    daemon = make_daemon().start()
    git_repo(bench.work)
    bench.steps({"a": {"*": [{"write": ["a.txt", "from a"]}]}, "b": {"*": [{"say_file": "a.txt"}]}})
    b = PlanTask(id="b", prompt="read", agent="wt", depends_on=["a"])
    run_id = start_plan(daemon, bench, task("a"), b)
    assert daemon.wait_for_run(run_id).status == "completed"
    sessions = daemon.status(run_id).sessions
    assert all(s.worktree is not None for s in sessions), sessions
    assert "a.txt: from a" in output_of(daemon, run_id)
    assert not (bench.work / "a.txt").exists()


def test_doctor_shows_a_task_whose_verify_commands_hang_and_retry_gets_it_going(
    plan_daemon: DaemonProcess, bench: Bench
) -> None:
    from orca_client.views import DoctorResult
    from orca_client.wire import Doctor

    gate = bench.work / "verified"
    run_id = start_plan(
        plan_daemon,
        bench,
        task("slow", verify=[f"test -e {gate} || sleep 60"], max_retries=1),
    )
    wait_until(
        lambda: any(s.status == "completed" for s in plan_daemon.status(run_id).sessions),
        what="the agent done, its verify running",
    )
    with plan_daemon.client() as client:
        report: DoctorResult = client.request(Doctor(run_id=run_id, stuck_after=0.2))
    (health,) = report.sessions
    assert (health.task_id, health.status) == ("slow", "verifying")
    assert "running its verify commands" in health.why
    assert health.retry_command == f"orca plan retry {run_id} slow"
    gate.touch()
    with plan_daemon.client() as client:
        client.request(RetryTask(run_id=run_id, task_id="slow"))
    run = plan_daemon.wait_for_run(run_id)
    assert run.status == "completed", run
    assert run.tasks[0].attempt == 2
