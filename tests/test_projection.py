"""The projection (orca_daemon/projection.py): run and session status as a fold over the log.

The example tests fold hand-written event sequences. The property test appends adversarial
sequences through a real `EventStore`, folds them live in a commit listener as orcad does, and
checks that live state equals a replay of the log from disk and that terminal statuses never move.
"""

from __future__ import annotations

import asyncio
import tempfile
import tracemalloc
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.timeline import Timeline

from orca_client.events import (
    AnyEvent,
    OutputAppended,
    PlanSpec,
    QuestionAnswered,
    QuestionAsked,
    QuestionCleared,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionStarted,
    SessionTerminated,
    TaskStatusChanged,
    UsageRecorded,
    run_stream,
)
from orca_client.plan import Plan, PlanTask, ready_tasks
from orca_client.view_text import VIEW_TEXT_CHARS, bounded
from orca_client.views import TERMINAL_STATUSES, PendingQuestion, Question, QuestionOption
from orca_daemon.log.records import StoredEvent
from orca_daemon.log.store import EventStore
from orca_daemon.state.projection import State, apply, replay

QUESTION = Question(id="q", question="Which branch?", options=None)


def run_created(run_id: str = "r1") -> RunCreated:
    return RunCreated(run_id=run_id, title="fix the tests", cwd="/src")


def session_created(run_id: str = "r1", session_id: str = "s1") -> SessionCreated:
    return SessionCreated(
        run_id=run_id, session_id=session_id, agent="command", command=["agent"], cwd="/src"
    )


def started(session_id: str = "s1", run_id: str = "r1") -> SessionStarted:
    return SessionStarted(run_id=run_id, session_id=session_id, pid=4242)


def asked(request_id: str = "q1", session_id: str = "s1") -> QuestionAsked:
    return QuestionAsked(
        run_id="r1", session_id=session_id, request_id=request_id, questions=[QUESTION]
    )


def answered(request_id: str = "q1", session_id: str = "s1") -> QuestionAnswered:
    return QuestionAnswered(
        run_id="r1",
        session_id=session_id,
        request_id=request_id,
        answered_by="alice",
        answers={"q": ["main"]},
    )


def cleared(request_id: str = "q1", session_id: str = "s1") -> QuestionCleared:
    return QuestionCleared(run_id="r1", session_id=session_id, request_id=request_id, reason="x")


def terminated(
    status: str = "completed", session_id: str = "s1", exit_code: int | None = 0
) -> SessionTerminated:
    return SessionTerminated(
        run_id="r1",
        session_id=session_id,
        status=status,  # type: ignore[arg-type]
        reason=f"agent {status}",
        exit_code=exit_code,
        summary="all green" if status == "completed" else None,
    )


def output(text: str = "hi\n", session_id: str = "s1") -> OutputAppended:
    return OutputAppended(run_id="r1", session_id=session_id, stream="stdout", text=text)


def run_status(status: str, run_id: str = "r1", reason: str | None = None) -> RunStatusChanged:
    return RunStatusChanged(run_id=run_id, status=status, reason=reason)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- runs


def test_a_created_run_is_queued_with_its_details() -> None:
    log = Timeline()
    log.record(RunCreated(run_id="r1", title="fix", cwd="/src", parent_run_id="r0"))
    run = log.state().runs["r1"]
    assert run.status == "queued"
    assert (run.title, run.cwd, run.parent_run_id) == ("fix", "/src", "r0")
    assert run.created_at == run.updated_at == 1001.0
    assert run.session_ids == []
    assert log.state().position == 1


def test_run_status_changes_follow_the_log_until_a_terminal_status() -> None:
    log = Timeline()
    log.record(run_created(), run_status("planning"), run_status("running", reason="go"))
    run = log.state().runs["r1"]
    assert (run.status, run.reason, run.updated_at) == ("running", "go", 1003.0)

    log.record(run_status("cancelled", reason="user asked"))
    log.record(run_status("running"), run_status("completed"), run_status("queued"))
    run = log.state().runs["r1"]
    assert (run.status, run.reason, run.updated_at) == ("cancelled", "user asked", 1004.0)


def test_a_duplicate_run_created_does_not_reset_the_run() -> None:
    log = Timeline()
    log.record(run_created(), run_status("running"))
    log.record(RunCreated(run_id="r1", title="impostor", cwd="/elsewhere"))
    run = log.state().runs["r1"]
    assert (run.title, run.status) == ("fix the tests", "running")


def test_events_for_unknown_runs_and_sessions_are_ignored_but_advance_the_position() -> None:
    log = Timeline()
    log.record(
        run_status("running", run_id="ghost"),
        session_created(run_id="ghost", session_id="s9"),
        started(session_id="s9"),
        output(session_id="s9"),
    )
    state = log.state()
    assert state.runs == {} and state.sessions == {}
    assert state.position == 4


# --------------------------------------------------------------------------- sessions


def test_a_runs_usage_is_the_sum_of_its_sessions_latest_totals() -> None:
    """Given usage reports of two sessions (Codex reports its thread's running totals again and
    again; Claude once, with a cost), the run shows the sum of each session's latest totals."""
    log = Timeline()
    log.record(run_created(), session_created(session_id="s1"), session_created(session_id="s2"))
    log.record(UsageRecorded("r1", "s1", {"total": {}}, 1000, 100))
    log.record(UsageRecorded("r1", "s1", {"total": {}}, 2500, 300))
    log.record(UsageRecorded("r1", "s2", {"usage": {}}, 4000, 50, 0.25))
    log.record(UsageRecorded("r1", "s2", {"note": "no totals in this report"}))
    state = log.state()
    s1, s2, run = state.sessions["s1"], state.sessions["s2"], state.runs["r1"]
    assert (s1.input_tokens, s1.output_tokens, s1.cost_usd) == (2500, 300, None)
    assert (s2.input_tokens, s2.output_tokens, s2.cost_usd) == (4000, 50, 0.25)
    assert s2.usage == {"note": "no totals in this report"}
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (6500, 350, 0.25)


def test_a_run_with_no_usage_reported_has_none() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), UsageRecorded("r1", "s1", {"x": 1}))
    run = log.state().runs["r1"]
    assert (run.input_tokens, run.output_tokens, run.cost_usd) == (None, None, None)


def test_a_created_session_is_listed_under_its_run() -> None:
    log = Timeline()
    log.record(run_created(), session_created(session_id="s1"), session_created(session_id="s2"))
    state = log.state()
    assert state.runs["r1"].session_ids == ["s1", "s2"]
    session = state.sessions["s1"]
    assert (session.status, session.run_id, session.agent) == ("created", "r1", "command")
    assert session.pending is None
    assert [s.session_id for s in state.live_sessions()] == ["s1", "s2"]


def test_a_duplicate_session_created_is_ignored() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started())
    log.record(session_created())
    state = log.state()
    assert state.runs["r1"].session_ids == ["s1"]
    assert state.sessions["s1"].status == "running"


def test_a_started_session_is_running_with_its_pid() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started())
    session = log.state().sessions["s1"]
    assert (session.status, session.pid, session.started_at) == ("running", 4242, 1003.0)


def test_a_question_makes_the_session_wait_with_the_question_pending() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), asked("q1"))
    session = log.state().sessions["s1"]
    assert session.status == "waiting_for_answer"
    assert session.pending == PendingQuestion(
        request_id="q1", session_id="s1", questions=[QUESTION], asked_at=1004.0
    )


def test_an_answer_to_the_pending_question_resumes_the_session() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), asked("q1"), answered("q1"))
    session = log.state().sessions["s1"]
    assert (session.status, session.pending) == ("running", None)


def test_clearing_the_pending_question_resumes_the_session() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), asked("q1"), cleared("q1"))
    session = log.state().sessions["s1"]
    assert (session.status, session.pending) == ("running", None)


def test_an_answer_to_another_request_leaves_the_question_pending() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), asked("q2"))
    log.record(answered("q1"), cleared("q1"))
    session = log.state().sessions["s1"]
    assert session.status == "waiting_for_answer"
    assert session.pending is not None and session.pending.request_id == "q2"


def test_an_answer_without_a_question_changes_nothing() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), answered("q1"))
    session = log.state().sessions["s1"]
    assert (session.status, session.pending) == ("running", None)


def test_termination_records_status_reason_exit_code_and_summary() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), terminated("completed"))
    session = log.state().sessions["s1"]
    assert session.status == "completed"
    assert (session.reason, session.exit_code, session.summary) == (
        "agent completed",
        0,
        "all green",
    )
    assert session.ended_at == 1004.0
    assert log.state().live_sessions() == []


def test_termination_while_waiting_clears_the_pending_question() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), asked("q1"))
    log.record(terminated("failed", exit_code=3))
    session = log.state().sessions["s1"]
    assert (session.status, session.exit_code, session.pending) == ("failed", 3, None)


def test_a_terminal_session_ignores_everything_that_would_change_its_status() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), terminated("cancelled", exit_code=None))
    before = log.state().sessions["s1"]
    log.record(
        started(),
        asked("q9"),
        answered("q9"),
        cleared("q9"),
        terminated("completed", exit_code=0),
        terminated("failed", exit_code=1),
    )
    after = log.state().sessions["s1"]
    assert after == before
    assert after.status == "cancelled" and after.exit_code is None


def test_output_is_counted_before_and_after_termination() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), output(), started(), output())
    log.record(terminated(), output("late\n"))
    session = log.state().sessions["s1"]
    assert session.output_events == 3
    assert session.status == "completed"


def test_a_session_keeps_its_last_output_line_bounded_and_across_chunks() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started())
    log.record(output("compiling\nstep 1"), output(" of 3\n\n  \n"))
    assert log.state().sessions["s1"].last_output_line == "step 1 of 3"
    log.record(output("tests 10%\rtests 60%\r"), output("\r\n"))
    assert log.state().sessions["s1"].last_output_line == "tests 60%"
    note = OutputAppended(run_id="r1", session_id="s1", stream="orca", text="orcad note\n")
    log.record(note, output("x" * 100), output("y" * 20_000))
    state = log.state()
    assert state.sessions["s1"].last_output_line == "…" + "y" * 199
    assert state.open_lines["s1"] == "…" + "y" * 199
    log.record(terminated(), output("late\n"))
    state = log.state()
    assert state.sessions["s1"].last_output_line == "late" and state.open_lines == {}


def test_a_session_terminating_does_not_decide_the_runs_status() -> None:
    log = Timeline()
    log.record(run_created(), session_created(), started(), terminated("failed"))
    assert log.state().runs["r1"].status == "queued"


def test_incremental_apply_equals_replay_and_views_handed_out_never_change() -> None:
    log = Timeline()
    events = log.record(run_created(), session_created(), started(), asked(), answered())
    state = State()
    views = []
    for stored in events:
        apply(state, stored)
        views.append((msgspec.json.encode(state.runs["r1"]), dict(state.sessions)))
    assert state == replay(events)
    # The session as seen after SessionStarted is still "running" with no pending question,
    # even though the live state moved on: apply swaps in new values.
    assert views[2][1]["s1"].status == "running"
    assert views[3][1]["s1"].status == "waiting_for_answer"


def test_replay_into_an_existing_state_continues_it() -> None:
    log = Timeline()
    events = log.record(run_created(), session_created(), started(), terminated())
    state = replay(events[:2])
    assert replay(events[2:], state) is state
    assert state == replay(events)


# --------------------------------------------------------------------------- property

RUNS = ["r1", "r2"]
SESSIONS = ["s1", "s2", "s3"]
REQUESTS = ["q1", "q2"]
RUN_STATUSES = [
    "queued",
    "planning",
    "running",
    "waiting_for_answer",
    "reviewing",
    "completed",
    "failed",
    "cancelled",
]
TERMINALS = sorted(TERMINAL_STATUSES)

runs = st.sampled_from(RUNS)
sessions = st.sampled_from(SESSIONS)
requests = st.sampled_from(REQUESTS)
reasons = st.sampled_from(["boom", "done", "user", ""])

adversarial_event = st.one_of(
    st.builds(RunCreated, run_id=runs, title=st.just("t"), cwd=st.just("/")),
    st.builds(
        RunStatusChanged,
        run_id=runs,
        status=st.sampled_from(RUN_STATUSES),
        reason=st.none() | reasons,
    ),
    st.builds(
        SessionCreated,
        run_id=runs,
        session_id=sessions,
        agent=st.just("command"),
        command=st.just(["a"]),
        cwd=st.just("/"),
    ),
    st.builds(SessionStarted, run_id=runs, session_id=sessions, pid=st.integers(1, 99)),
    st.builds(
        OutputAppended,
        run_id=runs,
        session_id=sessions,
        stream=st.sampled_from(["stdout", "stderr"]),
        text=st.just("x"),
    ),
    st.builds(
        QuestionAsked,
        run_id=runs,
        session_id=sessions,
        request_id=requests,
        questions=st.just([QUESTION]),
    ),
    st.builds(
        QuestionAnswered,
        run_id=runs,
        session_id=sessions,
        request_id=requests,
        answered_by=st.just("u"),
    ),
    st.builds(
        QuestionCleared, run_id=runs, session_id=sessions, request_id=requests, reason=reasons
    ),
    st.builds(
        SessionTerminated,
        run_id=runs,
        session_id=sessions,
        status=st.sampled_from(TERMINALS),
        reason=reasons,
        exit_code=st.none() | st.integers(-9, 3),
    ),
)

# Most sequences start by creating the runs and sessions, so later events hit something.
prelude = st.booleans().map(
    lambda full: (
        [run_created(r) for r in RUNS]
        + [session_created(run_id=RUNS[i % 2], session_id=s) for i, s in enumerate(SESSIONS)]
        if full
        else []
    )
)

# Events are appended in rounds; the appends of one round are concurrent (one transaction).
scenario = st.tuples(
    prelude,
    st.lists(st.lists(adversarial_event, min_size=1, max_size=6), min_size=1, max_size=10),
)


def terminal_statuses(state: State) -> dict[str, str]:
    found = {f"run {r.run_id}": r.status for r in state.runs.values()}
    found.update({f"session {s.session_id}": s.status for s in state.sessions.values()})
    return {key: status for key, status in found.items() if status in TERMINAL_STATUSES}


async def fold_through_the_store(
    path: Path, rounds: list[list[AnyEvent]]
) -> tuple[State, State, list[str]]:
    """Append `rounds` through a real store with a live-folding listener, as orcad does.

    Returns the live state, a replay of the log read back from disk, and any time a terminal
    status changed (the listener cannot raise: the store logs and swallows listener errors).
    """
    live = State()
    terminal: dict[str, str] = {}
    violations: list[str] = []

    def fold(batch: list[StoredEvent]) -> None:
        for stored in batch:
            apply(live, stored)
            now = {f"run {r.run_id}": r.status for r in live.runs.values()} | {
                f"session {s.session_id}": s.status for s in live.sessions.values()
            }
            for key, status in terminal.items():
                if now.get(key) != status:
                    violations.append(
                        f"{key} was {status}, became {now.get(key)} at {stored.type}"
                        f" (position {stored.position})"
                    )
            for key, status in terminal_statuses(live).items():
                terminal.setdefault(key, status)

    store = await EventStore.open(path, synchronous="NORMAL")
    writer = asyncio.create_task(store.run_writer())
    store.add_listener(fold)
    for events in rounds:
        await asyncio.gather(*(store.append(run_stream(e.run_id), [e]) for e in events))
    store.stop_accepting()
    await writer
    await store.close()

    reopened = await EventStore.open(path)
    try:
        from_disk = replay(await reopened.read_all(limit=1_000_000))
    finally:
        await reopened.close()
    return live, from_disk, violations


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenario)
def test_live_folding_equals_replay_from_disk_and_terminal_statuses_are_absorbing(
    case: tuple[list[AnyEvent], list[list[AnyEvent]]],
) -> None:
    first, rounds = case
    rounds = [first, *rounds] if first else rounds
    with tempfile.TemporaryDirectory() as directory:
        live, from_disk, violations = asyncio.run(
            fold_through_the_store(Path(directory) / "events.sqlite3", rounds)
        )
    assert violations == []
    assert live == from_disk
    assert live.position == sum(len(r) for r in rounds)


def test_a_plan_projects_task_statuses_and_forgets_its_setup_once_it_ends() -> None:
    from orca_client.events import PlanSpec, TaskStatusChanged
    from orca_client.plan import Plan, PlanTask

    plan = Plan(title="p", tasks=[PlanTask(id="a", prompt="x"), PlanTask(id="b", prompt="y")])
    timeline = Timeline()
    timeline.record(
        RunCreated("r", title="t", cwd="/", kind="plan", plan=PlanSpec(plan=plan, max_parallel=1)),
        TaskStatusChanged("r", "a", "in_progress", attempt=1, session_id="r.a.1"),
        TaskStatusChanged("r", "a", "done", summary="fine"),
        TaskStatusChanged("r", "a", "failed"),  # a done task stays done
    )
    state = timeline.state()
    assert "r" in state.created
    tasks = {t.task_id: (t.status, t.attempt, t.summary) for t in state.runs["r"].tasks}
    assert tasks == {"a": ("done", 1, "fine"), "b": ("pending", 0, None)}
    timeline.record(RunStatusChanged("r", "failed", "b never ran"))
    state = timeline.state()
    assert "r" not in state.created
    assert state.runs["r"].tasks[0].status == "done"


# --------------------------------------------------------------------------- plan runs


def chain_plan(n: int) -> PlanSpec:
    tasks = [
        PlanTask(id=f"t{i}", prompt="p", depends_on=[f"t{i - 1}"] if i else []) for i in range(n)
    ]
    return PlanSpec(plan=Plan(title="chain", tasks=tasks), max_parallel=1)


def failed_chain(n: int) -> Timeline:
    """A plan run over a chain of `n` tasks whose first task failed: the events orcad records."""
    log = Timeline()
    log.record(RunCreated(run_id="r1", title="chain", cwd="/", kind="plan", plan=chain_plan(n)))
    log.record(TaskStatusChanged("r1", "t0", "in_progress", attempt=1, session_id="r1.t0.1"))
    log.record(TaskStatusChanged("r1", "t0", "failed", "it broke"))
    log.record(*(TaskStatusChanged("r1", f"t{i}", "cancelled", "t0 failed") for i in range(1, n)))
    return log


def memory_for_one_task_change(n: int) -> int:
    """The most memory applying one task's change to a plan of `n` tasks takes, in bytes."""
    log = failed_chain(n)
    state = replay(log.events[:-1])
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        apply(state, log.events[-1])
        return tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def test_a_task_change_costs_the_same_in_a_plan_of_any_size() -> None:
    """Defect 3: each task event copied the plan's whole task list, so a failure cascading to
    10,000 tasks (and its replay on every start) was quadratic."""
    small, large = memory_for_one_task_change(1_000), memory_for_one_task_change(8_000)
    assert large < 2 * small, (small, large)


def test_a_failed_chain_folds_to_one_failed_task_and_the_rest_cancelled() -> None:
    state = failed_chain(500).state()
    statuses = [t.status for t in state.runs["r1"].tasks]
    assert statuses == ["failed"] + ["cancelled"] * 499
    progress = state.plans["r1"]
    assert (progress.ready, progress.in_progress) == (set(), set())


def test_plan_progress_follows_the_tasks_as_they_move() -> None:
    """Ready tasks (pending, every dependency done) and tasks in progress, kept event by event,
    equal what the task statuses say at every step (`ready_tasks` recomputes it from scratch)."""
    tasks = [
        PlanTask(id="a", prompt="p"),
        PlanTask(id="b", prompt="p", depends_on=["a"]),
        PlanTask(id="c", prompt="p", depends_on=["a"]),
        PlanTask(id="d", prompt="p", depends_on=["b", "c", "b"]),
        PlanTask(id="e", prompt="p"),
    ]
    spec = PlanSpec(plan=Plan(title="diamond", tasks=tasks), max_parallel=2)
    log = Timeline()
    log.record(RunCreated(run_id="r1", title="d", cwd="/", kind="plan", plan=spec))
    moves = [
        ("a", "in_progress"),
        ("e", "in_progress"),
        ("a", "done"),
        ("b", "in_progress"),
        ("b", "pending"),  # a retry
        ("c", "in_progress"),
        ("c", "done"),
        ("b", "in_progress"),
        ("b", "done"),
        ("e", "failed"),
        ("d", "in_progress"),
        ("d", "done"),
    ]
    for task_id, status in moves:
        log.record(TaskStatusChanged("r1", task_id, status))  # type: ignore[arg-type]
        state = log.state()
        run, progress = state.runs["r1"], state.plans["r1"]
        statuses = {t.task_id: t.status for t in run.tasks}
        ready = ready_tasks(tasks, statuses)
        assert [tasks[i].id for i in progress.first_ready(5)] == ready, (task_id, status)
        in_progress = {t for t, s in statuses.items() if s == "in_progress"}
        assert {tasks[i].id for i in progress.in_progress} == in_progress
    assert progress.first_ready(1) == []


# --------------------------------------------------------------------------- bounded texts


def test_agent_text_is_kept_short_in_views_and_whole_in_the_log() -> None:
    """Defect 7: a view keeps each text an agent wrote to VIEW_TEXT_CHARS, with a marker; the
    question's id stays whole (answers name it); replay folds to the same."""
    long = "x" * 50_000
    short = long[:VIEW_TEXT_CHARS] + "… (46,000 more characters; see `orca logs r1`)"
    question = Question(
        id="q-" + "i" * 5_000,
        question=long,
        header=long,
        options=[QuestionOption(label=long, description=long)],
    )
    log = Timeline()
    log.record(run_created(), session_created(), started())
    log.record(QuestionAsked(run_id="r1", session_id="s1", request_id="q1", questions=[question]))
    pending = log.state().sessions["s1"].pending
    assert pending is not None
    shown = pending.questions[0]
    assert (shown.id, shown.question, shown.header) == (question.id, short, short)
    assert shown.options == [QuestionOption(label=short, description=short)]
    log.record(
        SessionTerminated("r1", "s1", "completed", long, exit_code=0, summary=long),
        run_status("completed", reason=long),
    )
    state = log.state()
    assert (state.sessions["s1"].summary, state.sessions["s1"].reason) == (short, short)
    assert state.runs["r1"].reason == short
    assert bounded(short, "r1") == short  # a shortened text is never shortened again
    assert msgspec.json.decode(log.events[-2].data)["summary"] == long  # the log keeps it whole
