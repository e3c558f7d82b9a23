"""Projection snapshots (orca_daemon/state/snapshot*.py): a restart folds only the log's tail.

The property: for any event sequence and any cut, the snapshot of the state at the cut, decoded
and folded on with the rest, equals the fold of the whole sequence (every part of `State`,
each live plan's progress included). Every test that stops a real orcad cleanly also checks the
snapshot it saved against a replay of its log (tests/conftest.py, `DaemonProcess.stop`). The
daemon tests here: a restart loads the snapshot and folds only what came after it; a snapshot
that cannot be used (damaged, from another log, from another version) is said so and the whole
log is replayed, nothing lost; the file is private (and holds no secret answer: the scan of
every file in test_questions.py's test_finding_05 covers it).
"""

from __future__ import annotations

import stat
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from conftest import DaemonProcess, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.logs import ended_runs
from support.snapshots import fold, read_log, same_state
from support.timeline import Timeline

from orca_client.events import (
    AnyEvent,
    HookFinished,
    HookStarted,
    NotificationSent,
    NotificationTriggered,
    OutputAppended,
    OutputRead,
    PlanSpec,
    QuestionAnswered,
    QuestionAsked,
    RunCreated,
    RunStatusChanged,
    SessionCreated,
    SessionStarted,
    SessionTerminated,
    TaskStatusChanged,
    UsageRecorded,
)
from orca_client.plan import Plan, PlanTask
from orca_client.views import TERMINAL_STATUSES, Question
from orca_client.wire import StartRun
from orca_daemon.state.snapshot import (
    Anchor,
    UnusableSnapshot,
    decode,
    encode,
    encode_body_into,
    header,
)
from orca_daemon.state.snapshot_keeper import SNAPSHOT_NAME
from orca_daemon.state.tables import RunTable

PLAN = PlanSpec(
    plan=Plan(
        title="p",
        tasks=[
            PlanTask(id="a", prompt="x"),
            PlanTask(id="b", prompt="y", depends_on=["a"]),
            PlanTask(id="c", prompt="z", depends_on=["a", "b"]),
            PlanTask(id="d", prompt="w"),
        ],
    ),
    max_parallel=2,
)
RUNS = ["r1", "r2", "p1"]
SESSIONS = ["r1.1", "r2.1", "p1.a.1", "r1.2"]
QUESTION = Question(id="q", question="Which branch?", options=None)

runs = st.sampled_from(RUNS)
sessions = st.sampled_from(SESSIONS)
requests = st.sampled_from(["q1", "q2"])
texts = st.sampled_from(["x", "line\n", "a\nb", "", "\r\n", "long " * 60])

event = st.one_of(
    st.builds(
        RunStatusChanged,
        run_id=runs,
        status=st.sampled_from(["running", "waiting_for_answer", "completed", "failed"]),
        reason=st.none() | st.just("why"),
    ),
    st.builds(
        SessionCreated,
        run_id=runs,
        session_id=sessions,
        agent=st.just("command"),
        command=st.just(["a"]),
        cwd=st.just("/"),
        prompt=st.none() | st.just("do it"),
    ),
    st.builds(
        SessionStarted,
        run_id=runs,
        session_id=sessions,
        pid=st.integers(1, 99),
        process_start_ticks=st.none() | st.integers(1, 9),
        holder_pid=st.none() | st.integers(100, 199),
        holder_start_ticks=st.none() | st.integers(1, 9),
    ),
    st.builds(
        OutputAppended,
        run_id=runs,
        session_id=sessions,
        stream=st.sampled_from(["stdout", "stderr", "orca"]),
        text=texts,
        offset=st.none() | st.integers(0, 10_000),
    ),
    st.builds(
        OutputRead,
        run_id=runs,
        session_id=sessions,
        stream=st.sampled_from(["stdout", "stderr"]),
        offset=st.integers(0, 10_000),
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
        answers=st.just({"q": ["main"]}),
        redacted_ids=st.sampled_from([[], ["q"]]),
    ),
    st.builds(
        UsageRecorded,
        run_id=runs,
        session_id=sessions,
        data=st.just({"tokens": 3}),
        input_tokens=st.none() | st.integers(0, 99),
        cost_usd=st.none() | st.floats(0, 1),
    ),
    st.builds(
        SessionTerminated,
        run_id=runs,
        session_id=sessions,
        status=st.sampled_from(["completed", "failed", "cancelled"]),
        reason=st.just("ended"),
        cause=st.none() | st.sampled_from(["agent", "orcad_stopped"]),
    ),
    st.builds(
        TaskStatusChanged,
        run_id=st.just("p1"),
        task_id=st.sampled_from(["a", "b", "c", "d"]),
        status=st.sampled_from(["pending", "in_progress", "done", "failed", "cancelled"]),
        attempt=st.integers(0, 3),
        session_id=st.none() | st.just("p1.a.1"),
    ),
    st.builds(
        HookStarted,
        run_id=runs,
        hook=st.sampled_from(["on_complete", "on_error"]),
        trigger_position=st.integers(1, 5),
        command=st.just(["true"]),
    ),
    st.builds(
        HookFinished,
        run_id=runs,
        hook=st.sampled_from(["on_complete", "on_error"]),
        trigger_position=st.integers(1, 5),
        exit_code=st.just(0),
    ),
    st.builds(
        NotificationTriggered,
        run_id=runs,
        trigger_position=st.integers(1, 5),
        kind=st.just("question"),
        title=st.just("t"),
        summary=st.just("s"),
        text=st.just("x"),
        channels=st.sampled_from([["desktop"], ["desktop", "webhook:0"]]),
    ),
    st.builds(
        NotificationSent,
        run_id=runs,
        trigger_position=st.integers(1, 5),
        channel=st.sampled_from(["desktop", "webhook:0"]),
    ),
)

PRELUDE: list[AnyEvent] = [
    RunCreated(run_id="r1", title="one", cwd="/"),
    RunCreated(run_id="r2", title="two", cwd="/", kind="fanout"),
    RunCreated(run_id="p1", title="plan", cwd="/", kind="plan", plan=PLAN),
    *(
        SessionCreated(
            run_id=session.split(".")[0],
            session_id=session,
            agent="command",
            command=["a"],
            cwd="/",
            prompt="go",
        )
        for session in SESSIONS
    ),
]


def timeline_of(events: list[AnyEvent]) -> Timeline:
    timeline = Timeline()
    timeline.record(*PRELUDE, *events)
    return timeline


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=40))
def test_a_snapshot_at_any_cut_folded_on_equals_the_whole_fold(events: list[AnyEvent]) -> None:
    stored = timeline_of(events).events
    whole = fold(stored)
    head = fold([])
    for cut in range(len(stored) + 1):
        anchor = Anchor(stored[cut - 1].stream, stored[cut - 1].version) if cut else None
        snapshot = decode(encode(head, anchor))
        assert snapshot.anchor == anchor
        assert same_state(fold(stored[cut:], snapshot.state), whole), f"cut at {cut}"
        if cut < len(stored):
            fold([stored[cut]], head)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=40))
def test_a_snapshot_written_as_header_then_a_reused_body_buffer_is_the_same_bytes(
    events: list[AnyEvent],
) -> None:
    """orcad encodes each body into the buffer of the one before (no fresh pages to fault in
    while the loop waits) and writes the header before it (no copy of the body)."""
    stored = timeline_of(events).events
    state = fold([])
    buffer = bytearray(b"\xff" * 100_000)  # what a bigger state left in it
    for cut in range(len(stored) + 1):
        anchor = Anchor(stored[cut - 1].stream, stored[cut - 1].version) if cut else None
        encode_body_into(state, buffer)
        assert header(state.position, anchor) + buffer == encode(state, anchor), f"cut at {cut}"
        if cut < len(stored):
            fold([stored[cut]], state)


def test_a_plan_resumed_from_a_snapshot_runs_the_same_tasks_next() -> None:
    timeline = timeline_of(
        [
            TaskStatusChanged("p1", "a", "in_progress", attempt=1, session_id="p1.a.1"),
            TaskStatusChanged("p1", "d", "in_progress", attempt=1),
            TaskStatusChanged("p1", "a", "done"),
        ]
    )
    state = decode(encode(fold(timeline.events), None)).state
    assert state.plans["p1"].first_ready(4) == [1]  # b: a is done; c still waits for b
    assert state.plans["p1"].in_progress == {3}
    assert same_state(state, fold(timeline.events))


def test_a_damaged_or_foreign_snapshot_is_refused_saying_why() -> None:
    data = encode(fold(timeline_of([]).events), None)
    with pytest.raises(UnusableSnapshot, match="damaged"):
        decode(data[: len(data) // 2])
    with pytest.raises(UnusableSnapshot, match="damaged"):
        decode(b"not a snapshot")
    header = msgspec.msgpack.decode(data)
    header[0] = "0" * 32  # the fingerprint of another layout
    with pytest.raises(UnusableSnapshot, match="another version of orcad"):
        decode(msgspec.msgpack.encode(header))


# --------------------------------------------------------------------------- a real orcad


def start_runs(daemon: DaemonProcess, count: int, tmp_path: Path) -> list[str]:
    ids = []
    with daemon.client() as client:
        for index in range(count):
            started = client.request(
                StartRun(command=["true"], cwd=str(tmp_path), title=f"run {index}")
            )
            ids.append(started.run_id)
    for run_id in ids:
        daemon.wait_for_run(run_id)
    return ids


def replayed_events(daemon: DaemonProcess) -> int:
    """How many events the last start of orcad folded after its snapshot (from its log)."""
    lines = [line for line in daemon.output().splitlines() if "replayed" in line]
    return int(lines[-1].split("replayed ")[1].split(" events")[0])


def test_a_restart_folds_only_the_events_after_the_snapshot(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    daemon = make_daemon().start()
    before = start_runs(daemon, 3, tmp_path)
    assert daemon.stop() == 0  # checks the saved snapshot against a replay (conftest)
    snapshot = daemon.paths.state_dir / SNAPSHOT_NAME
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    daemon.start()
    assert replayed_events(daemon) == 0
    assert sorted(run.run_id for run in daemon.status().runs) == sorted(before)
    after = start_runs(daemon, 2, tmp_path)
    daemon.kill()  # no snapshot at the stop: the next start folds the tail after the last one
    daemon.start()
    tail = replayed_events(daemon)
    assert tail > 0
    saved_at = decode(snapshot.read_bytes()).state.position
    assert len(read_log(daemon.paths.log_file)) - tail == saved_at
    assert sorted(run.run_id for run in daemon.status().runs) == sorted(before + after)
    assert daemon.stop() == 0  # the snapshot saved now is at the head again (conftest)


def test_a_snapshot_saved_every_n_events_while_orcad_runs(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    home = make_daemon().home
    home.mkdir(parents=True, mode=0o700, exist_ok=True)
    (home / "config.toml").write_text("[daemon]\nsnapshot_every_events = 100\n")
    daemon = make_daemon().start()
    start_runs(daemon, 20, tmp_path)  # several events each: past 100
    snapshot = daemon.paths.state_dir / SNAPSHOT_NAME
    wait_until(snapshot.exists, what="a snapshot while orcad runs")
    saved = decode(snapshot.read_bytes()).state
    assert saved.position >= 100
    assert same_state(saved, fold(read_log(daemon.paths.log_file)[: saved.position]))


@pytest.mark.parametrize("damage", ["torn", "another log", "another version"])
def test_an_unusable_snapshot_is_named_and_the_whole_log_replayed(
    make_daemon: Callable[..., DaemonProcess], tmp_path: Path, damage: str
) -> None:
    daemon = make_daemon().start()
    ids = start_runs(daemon, 3, tmp_path)
    assert daemon.stop() == 0
    snapshot = daemon.paths.state_dir / SNAPSHOT_NAME
    data = snapshot.read_bytes()
    header = msgspec.msgpack.decode(data)
    if damage == "torn":
        data = data[: len(data) // 2]
    elif damage == "another log":
        header[2] = ["run-elsewhere", 7]
        data = msgspec.msgpack.encode(header)
    else:
        header[0] = "f" * 32
        data = msgspec.msgpack.encode(header)
    snapshot.write_bytes(data)
    daemon.start()
    output = daemon.output()
    reason = {
        "torn": "it is damaged",
        "another log": "of another log",
        "another version": "another version of orcad wrote it",
    }[damage]
    assert f"not using the snapshot {snapshot}" in output and reason in output
    assert replayed_events(daemon) == len(read_log(daemon.paths.log_file))
    assert sorted(run.run_id for run in daemon.status().runs) == sorted(ids)
    assert daemon.stop() == 0  # and a good snapshot is saved again (checked by conftest)


# --------------------------------------------------------------------------- packed runs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(event, max_size=40))
def test_packing_ended_runs_changes_nothing_a_reader_sees(events: list[AnyEvent]) -> None:
    stored = timeline_of(events).events
    packed = fold(stored)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RunTable, "settle", lambda self, run_id: None)
        plain = fold(stored)
    assert dict(packed.runs.items()) == dict(plain.runs.items())
    assert dict(packed.sessions.items()) == dict(plain.sessions.items())
    assert len(packed.sessions) == len(plain.sessions)
    assert packed.live_sessions() == plain.live_sessions()
    for run_id in plain.runs:
        if packed.runs.is_packed(run_id):
            assert plain.runs[run_id].status in TERMINAL_STATUSES


def test_an_ended_run_is_kept_packed_in_a_fraction_of_the_memory() -> None:
    timeline = Timeline()
    timeline.record(*ended_runs(2_000))

    def bytes_per_run(pack: bool) -> float:
        with pytest.MonkeyPatch.context() as patch:
            if not pack:
                patch.setattr(RunTable, "settle", lambda self, run_id: None)
            tracemalloc.start()
            try:
                state = fold(timeline.events)
                used = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
        assert len(state.runs) == 2_000
        return used / 2_000

    packed, plain = bytes_per_run(True), bytes_per_run(False)
    assert packed < plain / 3, (packed, plain)
    state = fold(timeline.events)
    assert all(state.runs.is_packed(run_id) for run_id in state.runs)
    assert state.runs["00000000002a"].status == "completed"
    assert state.sessions["00000000002a.1"].last_output_line == "step 42"
    assert state.live_sessions() == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=60), st.none() | st.integers(0, 70))
def test_recent_runs_are_the_live_ones_and_the_newest_ended_in_order(
    ended_flags: list[bool], ended: int | None
) -> None:
    events: list[AnyEvent] = []
    for index, has_ended in enumerate(ended_flags):
        events.append(RunCreated(run_id=f"{index:04d}", title="t", cwd="/"))
        if has_ended:
            events.append(RunStatusChanged(run_id=f"{index:04d}", status="failed"))
    timeline = Timeline()
    timeline.record(*events)
    runs = fold(timeline.events).runs
    places, hidden = runs.recent(ended)
    ended_places = [place for place, flag in enumerate(ended_flags) if flag]
    kept = ended_places if ended is None else ended_places[max(0, len(ended_places) - ended) :]
    if ended == 0:
        kept = []
    expected = sorted({place for place, flag in enumerate(ended_flags) if not flag} | set(kept))
    assert list(places) == expected
    assert hidden == len(ended_places) - len(kept)
    assert [runs.run_id_at(place) for place in places] == [f"{p:04d}" for p in expected]
