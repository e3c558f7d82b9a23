"""What plans and parent runs decide, as pure functions of the log: "given these events, these
decisions" (orca_daemon/orchestration/plan_rules.py and parent_rules.py)."""

from __future__ import annotations

from support.timeline import Timeline

from orca_client.events import (
    RESTARTED_REASON,
    STOPPED_REASON,
    ChildrenSpec,
    ChildTarget,
    PlanSpec,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionTerminated,
    TaskStatusChanged,
)
from orca_client.plan import Plan, PlanTask
from orca_daemon.orchestration.parent_rules import decide_children
from orca_daemon.orchestration.plan_rules import plan_ending, ready_to_start, settle
from orca_daemon.runs.rules import restartable
from orca_daemon.state.projection import State

NOT_VERIFYING = lambda task_id, attempt: False  # noqa: E731


def plan_run(timeline: Timeline, *tasks: PlanTask, max_parallel: int = 4) -> None:
    spec = PlanSpec(plan=Plan(title="p", tasks=list(tasks)), max_parallel=max_parallel)
    timeline.record(RunCreated("p", title="plan", cwd="/", kind="plan", plan=spec))


def attempt(timeline: Timeline, task_id: str, number: int = 1) -> str:
    session_id = f"p.{task_id}.{number}"
    timeline.record(
        SessionCreated("p", session_id, agent="command", command=["x"], cwd="/", role="task"),
        TaskStatusChanged(
            "p", task_id, "in_progress", f"attempt {number}", attempt=number, session_id=session_id
        ),
    )
    return session_id


def task(task_id: str, *deps: str, **extra: object) -> PlanTask:
    return PlanTask(id=task_id, prompt=f"do {task_id}", depends_on=list(deps), **extra)  # type: ignore[arg-type]


def moves(state: State) -> list[tuple[str, str, bool]]:
    events = settle(state, "p", NOT_VERIFYING).events
    return [
        (e.task_id, e.status, e.interrupted) for e in events if isinstance(e, TaskStatusChanged)
    ]


def test_given_a_task_whose_agent_failed_with_retries_left_it_is_tried_again() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a", max_retries=1))
    session = attempt(timeline, "a")
    timeline.record(SessionTerminated("p", session, "failed", "exit 1", cause="agent"))
    assert moves(timeline.state()) == [("a", "pending", False)]


def test_given_an_attempt_orcad_stopped_under_it_runs_again_uncounted() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a"))
    session = attempt(timeline, "a")
    timeline.record(
        SessionTerminated("p", session, "failed", "whatever it says", cause="orcad_stopped")
    )
    assert moves(timeline.state()) == [("a", "pending", True)]


def test_given_an_old_log_without_causes_an_interrupted_attempt_is_told_by_its_reason() -> None:
    for reason in (STOPPED_REASON, RESTARTED_REASON):
        timeline = Timeline()
        plan_run(timeline, task("a"))
        session = attempt(timeline, "a")
        timeline.record(SessionTerminated("p", session, "failed", reason))  # no cause
        assert moves(timeline.state()) == [("a", "pending", True)]


def test_given_the_agents_own_failure_naming_orcad_it_is_not_an_interruption() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a"), task("b", "a"))
    session = attempt(timeline, "a")
    timeline.record(SessionTerminated("p", session, "failed", STOPPED_REASON, cause="agent"))
    assert moves(timeline.state()) == [("a", "failed", False), ("b", "cancelled", False)]


def test_given_a_cancelled_session_its_task_and_dependants_are_cancelled() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a"), task("b", "a"), task("c", "b"), task("d"))
    session = attempt(timeline, "a")
    timeline.record(SessionTerminated("p", session, "cancelled", "by hand", cause="cancelled"))
    assert moves(timeline.state()) == [
        ("a", "cancelled", False),
        ("b", "cancelled", False),
        ("c", "cancelled", False),
    ]


def test_given_a_completed_task_with_verify_commands_it_is_verified_not_settled() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a", verify=["make test"]), task("b"))
    session = attempt(timeline, "a")
    timeline.record(SessionTerminated("p", session, "completed", "done", cause="agent"))
    state = timeline.state()
    assert settle(state, "p", NOT_VERIFYING).verify == [0]
    assert settle(state, "p", lambda task_id, number: task_id == "a").verify == []
    assert moves(state) == []


def test_given_room_for_two_the_first_two_ready_tasks_start_in_plan_order() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a"), task("b", "a"), task("c"), task("d"), max_parallel=2)
    assert ready_to_start(timeline.state(), "p") == [0, 2]
    attempt(timeline, "a")
    assert ready_to_start(timeline.state(), "p") == [2]


def test_given_every_task_done_the_plan_completes_and_given_a_failure_it_fails_naming_it() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a"), task("b", "a"))
    assert plan_ending(timeline.state(), "p") is None
    timeline.record(
        TaskStatusChanged("p", "a", "done", "ok"), TaskStatusChanged("p", "b", "done", "ok")
    )
    assert plan_ending(timeline.state(), "p") == RunStatusChanged(
        "p", "completed", "all 2 tasks done"
    )
    timeline = Timeline()
    plan_run(timeline, task("a"), task("b", "a"))
    timeline.record(TaskStatusChanged("p", "a", "failed", "no"))
    ending = plan_ending(timeline.state(), "p")
    assert ending is not None and ending.status == "failed"
    assert ending.reason == "tasks failed: a; never started (a dependency did not finish): b"


def parent_run(timeline: Timeline, mode: str, repos: int, **extra: object) -> ChildrenSpec:
    spec = ChildrenSpec(
        mode=mode,  # type: ignore[arg-type]
        targets=[ChildTarget(f"r{n}", f"/r{n}") for n in range(1, repos + 1)],
        max_parallel=2,
        **extra,  # type: ignore[arg-type]
    )
    timeline.record(RunCreated("p", title="parent", cwd="/", kind="parent", children=spec))
    return spec


def child(timeline: Timeline, n: int, status: str | None = None) -> None:
    timeline.record(
        RunCreated(f"p-{n}", title=f"r{n}", cwd=f"/r{n}", parent_run_id="p", repo=f"r{n}")
    )
    if status is not None:
        timeline.record(RunStatusChanged(f"p-{n}", status))  # type: ignore[arg-type]


def decide(timeline: Timeline, spec: ChildrenSpec) -> tuple[list[int], str | None, bool]:
    state = timeline.state()
    parent = state.runs["p"]
    step = decide_children(parent, [state.runs[c] for c in parent.child_run_ids], spec)
    return step.start, step.ending.status if step.ending else None, step.running


def test_given_a_new_parallel_parent_the_first_two_children_start_and_it_runs() -> None:
    timeline = Timeline()
    spec = parent_run(timeline, "parallel", 3)
    assert decide(timeline, spec) == ([0, 1], None, True)
    child(timeline, 1, "completed")
    child(timeline, 2)
    timeline.record(RunStatusChanged("p", "running"))
    assert decide(timeline, spec) == ([2], None, False)


def test_given_a_sequential_parent_whose_child_failed_it_stops_there_and_fails() -> None:
    timeline = Timeline()
    spec = parent_run(timeline, "sequential", 3)
    assert decide(timeline, spec) == ([0], None, True)
    child(timeline, 1, "failed")
    assert decide(timeline, spec) == ([], "failed", False)
    timeline = Timeline()
    spec = parent_run(timeline, "sequential", 3, continue_on_failure=True)
    child(timeline, 1, "failed")
    assert decide(timeline, spec) == ([1], None, True)


def test_given_every_child_completed_the_parent_completes() -> None:
    timeline = Timeline()
    spec = parent_run(timeline, "parallel", 2)
    child(timeline, 1, "completed")
    child(timeline, 2, "completed")
    assert decide(timeline, spec) == ([], "completed", False)


def test_given_a_task_session_recorded_in_a_run_that_then_ended_no_orcad_starts_it() -> None:
    timeline = Timeline()
    plan_run(timeline, task("a"))
    session_id = attempt(timeline, "a")
    state = timeline.state()
    assert restartable(state, state.sessions[session_id])
    timeline.record(RunStatusChanged("p", "cancelled", "by hand"))
    state = timeline.state()
    assert not restartable(state, state.sessions[session_id])
